"""The decoded-image cache (trainlab.data.formats.cache): hits, invalidation, where it lives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.formats.formats_util import load, make_folder, write_image
from trainlab.data.formats import resident

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


def test_imagefolder_cache_hit_and_invalidation(tmp_path: Path, monkeypatch) -> None:
    make_folder(tmp_path / "c", {"a": 3, "b": 3})
    fields = {"path": str(tmp_path / "c"), "cache_dir": str(tmp_path / "cache")}
    first = load("imagefolder", **fields)
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".npz"  # no temp file left behind
    calls = []
    real = resident._decode_files

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(resident, "_decode_files", counting)
    second = load("imagefolder", **fields)
    assert calls == [] and "from" in second.notes[0]
    assert np.array_equal(first.x_train, second.x_train)
    assert second.y_train.tolist() == first.y_train.tolist()
    write_image(tmp_path / "c" / "b" / "new.png", torch.zeros(3, 8, 8, dtype=torch.uint8))
    third = load("imagefolder", **fields)
    assert len(calls) == 1 and len(third.x_train) == 7  # a changed tree is decoded again
    load("imagefolder", **fields, image_size=4)
    assert len(calls) == 2  # image_size is part of the key


def test_imagefolder_cache_env_var(tmp_path: Path, monkeypatch) -> None:
    make_folder(tmp_path / "c", {"a": 1, "b": 1})
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "tl"))
    load("imagefolder", path=str(tmp_path / "c"), cache_dir=None)
    assert len(list((tmp_path / "tl" / "images").glob("*.npz"))) == 1
