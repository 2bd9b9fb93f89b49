"""The npz and npy readers (trainlab.data.formats.arrays): keys, classes, no pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.data.formats.formats_util import load, raises_at
from trainlab.errors import DataError


def test_npz_train_test_keys_and_classes(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.normal(size=(30, 4)).astype(np.float32),
        y_train=np.arange(30) % 3,
        x_test=rng.normal(size=(9, 4)).astype(np.float32),
        y_test=np.arange(9) % 3,
        classes=np.array(["cat", "dog", "eel"]),
    )
    raw = load("npz", path=str(path))
    assert raw.x_train.shape == (30, 4) and raw.x_test.shape == (9, 4)
    assert raw.y_train.tolist() == (np.arange(30) % 3).tolist()
    assert raw.classes == ["cat", "dog", "eel"]
    assert raw.source == str(path)


def test_npz_x_y_keys_leave_the_classes_to_load_splits(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((5, 2, 3), np.uint8), y=np.array([0, 3, 1, 1, 2]))
    raw = load("npz", path=str(path))
    assert raw.x_train.shape == (5, 2, 3) and raw.x_train.dtype == np.uint8
    assert raw.x_test is None and raw.y_test is None
    assert raw.classes is None  # no names stored: C is settled by check_classes


def test_npz_missing_key_names_file_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((3, 2)), labels=np.zeros(3))
    with raises_at(path, "key 'x_train' needs 'y_train'", "found keys: labels, x_train"):
        load("npz", path=str(path))


def test_npz_missing_features_names_the_key_present(tmp_path: Path) -> None:
    """The labels without their features: the message names y_train as present (it once said
    "missing key 'x_train' beside 'x_train'")."""
    path = tmp_path / "d.npz"
    np.savez(path, y_train=np.zeros(3), x_test=np.zeros((1, 2)), y_test=np.zeros(1))
    with raises_at(path, "key 'y_train' needs 'x_train' beside it", "found keys:"):
        load("npz", path=str(path))


@pytest.mark.parametrize(
    "keys",
    [
        {"X_train": (6, 2), "y_train": (6,), "X_test": (3, 2), "y_test": (3,)},
        {"X": (6, 2), "y": (6,)},
    ],
    ids=["X_train", "X"],
)
def test_npz_reads_scikit_learns_capital_x(tmp_path: Path, keys: dict) -> None:
    path = tmp_path / "d.npz"
    arrays = {k: np.arange(np.prod(s)).reshape(s) % 2 for k, s in keys.items()}
    np.savez(path, **arrays)
    raw = load("npz", path=str(path))
    assert raw.x_train.shape == (6, 2) and raw.y_train.tolist() == [0, 1, 0, 1, 0, 1]
    assert (raw.x_test is None) == ("X_test" not in keys)


def test_npz_x_and_capital_x_together_are_ambiguous(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), X=np.ones((3, 2)), y=np.zeros(3))
    with raises_at(path, "keys 'x' and 'X' both present"):
        load("npz", path=str(path))


def test_npz_test_pair_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.zeros(3), x_test=np.zeros((1, 2)))
    with raises_at(path, "x_test", "y_test"):
        load("npz", path=str(path))


def test_npz_object_array_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
    with raises_at(path, "'x'", "pickle"):
        load("npz", path=str(path))


def test_npz_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    path.write_text("hello")
    with raises_at(path, "cannot read"):
        load("npz", path=str(path))


def test_npz_missing_file(tmp_path: Path) -> None:
    with raises_at(tmp_path / "nope.npz", "no such file"):
        load("npz", path=str(tmp_path / "nope.npz"))


def test_npy_features_and_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((6, 1, 4, 4), np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 0, 1, 4]))
    raw = load("npy", path=str(tmp_path / "x.npy"), labels_path=str(tmp_path / "y.npy"))
    assert raw.x_train.shape == (6, 1, 4, 4) and raw.x_test is None
    assert raw.y_train.tolist() == [0, 1, 2, 0, 1, 4]
    assert raw.classes is None


def test_npy_errors(tmp_path: Path) -> None:
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x, np.ones((6, 2)))
    np.save(y, np.zeros(5))
    with raises_at(x, "6 feature rows", "5 labels"):
        load("npy", path=str(x), labels_path=str(y))
    np.save(y, np.array(["a", None] * 3, dtype=object))
    with raises_at(y, "pickle"):
        load("npy", path=str(x), labels_path=str(y))
    with pytest.raises(DataError, match="labels_path"):
        load("npy", path=str(x), labels_path=None)
