"""The cifar10 reader (trainlab.data.formats.cifar): batches, meta, malicious pickles refused."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.data.formats.formats_util import load, raises_at


def write_cifar_batch(path: Path, n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """A batch in CIFAR-10's format (bytes keys, uint8 (N, 3072), list labels), protocol 2."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    batch = {b"batch_label": b"fake", b"labels": labels, b"data": data, b"filenames": [b"f"] * n}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return data, labels


def test_cifar10_batches(tmp_path: Path) -> None:
    d1, l1 = write_cifar_batch(tmp_path / "data_batch_1", 20, 1)
    d2, l2 = write_cifar_batch(tmp_path / "data_batch_2", 20, 2)
    dt, lt = write_cifar_batch(tmp_path / "test_batch", 20, 3)
    names = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"x"]
    meta = {b"num_cases_per_batch": 20, b"label_names": names, b"num_vis": 3072}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    raw = load("cifar10", path=str(tmp_path))
    assert raw.x_train.shape == (40, 3, 32, 32) and raw.x_train.dtype == np.uint8
    assert raw.x_test.shape == (20, 3, 32, 32)
    assert np.array_equal(raw.x_train[21, 1].ravel(), d2[1, 1024:2048])  # channel-major rows
    assert raw.y_train.tolist() == l1 + l2 and raw.y_test.tolist() == lt
    assert raw.classes[:2] == ["plane", "car"] and len(raw.classes) == 10


def test_cifar10_without_meta_or_test(tmp_path: Path) -> None:
    write_cifar_batch(tmp_path / "data_batch_1", 20, 1)
    raw = load("cifar10", path=str(tmp_path))
    assert raw.x_test is None and raw.classes[0] == "airplane"


class _Evil:
    """Unpickling this with plain pickle runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar10_malicious_pickle_refused(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    payload = {b"data": _Evil(marker), b"labels": [0]}
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(pickle.dumps(payload, protocol=protocol))
    with raises_at(batch, "refusing to unpickle", "system"):
        load("cifar10", path=str(tmp_path))
    assert not marker.exists()


def test_cifar10_errors(tmp_path: Path) -> None:
    with raises_at(tmp_path, "no CIFAR-10 batches"):
        load("cifar10", path=str(tmp_path))
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, 2))
    with raises_at(batch, "100 values per image"):
        load("cifar10", path=str(tmp_path))
    batch.write_bytes(b"\x80\x02garbage")
    with raises_at(batch, "cannot unpickle"):
        load("cifar10", path=str(tmp_path))
