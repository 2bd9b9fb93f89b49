"""What the readers share (trainlab.data.formats.common): default class names from labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.data.formats.formats_util import load, raises_at


def test_huge_label_refused_before_making_classes(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.array([0, 65535000, 1]))
    with raises_at(path, "row 1", "65535000"):
        load("npz", path=str(path))
