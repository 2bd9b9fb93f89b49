"""The idx reader (trainlab.data.formats.mnist_idx): splits, gzip, truncated files, real MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from tests.data.formats.formats_util import MNIST_DIR, cfg, load, raises_at
from trainlab.data.datasets import load_splits


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (uint8 payload) as MNIST stores it: magic, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">i4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def test_idx_train_and_test(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 5, 7), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(12) % 10, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:4])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([9, 8, 7, 6]))
    raw = load("idx", path=str(tmp_path))
    assert raw.x_train.shape == (12, 1, 5, 7) and raw.x_train.dtype == np.uint8
    assert raw.x_train.flags.writeable  # a copy, not a view of the file's bytes
    assert np.array_equal(raw.x_train[:, 0], images)
    assert raw.y_train.tolist() == (np.arange(12) % 10).tolist()
    assert raw.x_test.shape == (4, 1, 5, 7) and raw.y_test.tolist() == [9, 8, 7, 6]
    assert raw.classes is None  # IDX stores no names: check_classes numbers them


def test_idx_single_pair_is_train(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 2, 2)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 11, 2]))
    raw = load("idx", path=str(tmp_path))
    assert raw.x_train.shape == (3, 1, 2, 2) and raw.x_test is None
    assert raw.y_train.tolist() == [0, 11, 2]


def test_idx_truncated_names_file(tmp_path: Path) -> None:
    images = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 3, 3)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4))
    images.write_bytes(images.read_bytes()[:-5])
    with raises_at(images, "truncated", "(4, 3, 3)"):
        load("idx", path=str(tmp_path))


def test_idx_truncated_gzip_names_file(tmp_path: Path) -> None:
    labels = write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(400), gz=True)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((400, 3, 3)), gz=True)
    labels.write_bytes(labels.read_bytes()[:-12])
    with raises_at(labels, "cannot read"):
        load("idx", path=str(tmp_path))


def test_idx_errors(tmp_path: Path) -> None:
    with raises_at(tmp_path, "no IDX files"):
        load("idx", path=str(tmp_path))
    images = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 3, 3)))
    with raises_at(images, "no matching labels"):
        load("idx", path=str(tmp_path))
    labels = write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5))
    with raises_at(images, "4 images", "5 labels"):
        load("idx", path=str(tmp_path))
    labels.write_bytes(b"\x08\x03" + labels.read_bytes()[2:])
    with raises_at(labels, "not an IDX file"):
        load("idx", path=str(tmp_path))


@pytest.mark.skipif(MNIST_DIR is None, reason="shared data folder with MNIST t10k not present")
def test_idx_real_mnist_t10k() -> None:
    raw = load("idx", path=str(MNIST_DIR))
    assert raw.x_train.shape == (10000, 1, 28, 28) and raw.x_train.dtype == np.uint8
    assert raw.x_test is None
    assert raw.y_train.min() == 0 and raw.y_train.max() == 9
    assert np.bincount(raw.y_train).min() > 800  # every digit is present
    assert raw.y_train[:5].tolist() == [7, 2, 1, 0, 4]  # MNIST's published first test labels
    splits = load_splits(cfg("idx", path=str(MNIST_DIR)))
    assert splits.classes == [str(i) for i in range(10)]
