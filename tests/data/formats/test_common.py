"""What the readers share (trainlab.data.formats.common), and what they no longer do: a huge
label never makes classes in a reader (check_classes refuses it, naming the row)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.data.formats.formats_util import cfg, load, raises_at
from trainlab.data.datasets import load_splits
from trainlab.data.formats.common import _one_line, _path
from trainlab.errors import DataError


def test_huge_label_refused_before_making_classes(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.array([0, 65535000, 1]))
    assert load("npz", path=str(path)).classes is None
    with raises_at(path, "label 65535000 (row 1)", "no training examples"):
        load_splits(cfg("npz", path=str(path)))


def test_path_names_the_recipe_key(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="^data.path is not set: dataset 'npz' needs it$"):
        _path(None, "path", "npz")
    with pytest.raises(DataError, match="no such folder .data.path of dataset 'idx'"):
        _path(str(tmp_path / "nope"), "path", "idx", folder=True)


def test_one_line_drops_newlines() -> None:
    assert _one_line(ValueError("bad\n  thing")) == "bad thing"
