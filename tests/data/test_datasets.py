"""Built-in datasets, the fixed splits and the label/feature checks."""

from __future__ import annotations

import numpy as np
import pytest

from trainlab.data.datasets import (
    DATASETS,
    _digits_arrays,
    _split,
    check_features,
    check_labels,
    load_splits,
    read_raw,
)
from trainlab.errors import DataError
from trainlab.recipe import DataConfig


@pytest.mark.parametrize(
    "name, shape, n_train_val, n_test, classes",
    [
        ("digits", (1, 8, 8), 1438, 359, 10),
        ("mnist1d", (1, 40), 4000, 1000, 10),
        ("spiral", (2,), 2400, 600, 3),
    ],
)
def test_builtin_datasets_have_fixed_documented_splits(name, shape, n_train_val, n_test, classes):
    splits = load_splits(DataConfig(name=name, val_fraction=0.1))
    assert splits.in_shape == shape
    assert len(splits.x_train) + len(splits.x_val) == n_train_val
    assert len(splits.x_test) == n_test
    assert splits.num_classes == classes
    assert splits.x_train.dtype == np.float32 and splits.y_train.dtype == np.int64
    again = load_splits(DataConfig(name=name, val_fraction=0.1))
    np.testing.assert_array_equal(again.x_test, splits.x_test)  # the test split never moves


def test_validation_is_carved_from_train_never_test():
    small = load_splits(DataConfig(name="digits", val_fraction=0.1))
    large = load_splits(DataConfig(name="digits", val_fraction=0.3))
    np.testing.assert_array_equal(small.x_test, large.x_test)
    assert len(large.x_val) > len(small.x_val)
    rows = {r.tobytes() for r in small.x_test.reshape(len(small.x_test), -1)}
    val_rows = {r.tobytes() for r in large.x_val.reshape(len(large.x_val), -1)}
    train_rows = {r.tobytes() for r in large.x_train.reshape(len(large.x_train), -1)}
    # digits has a few duplicate images; nearly all test rows must be absent from train/val
    assert len(rows & (val_rows | train_rows)) <= 3


def test_digits_test_split_is_the_published_one():
    """Stratifying the validation split must not move a built-in test split: published figures
    were measured on it (20% of the examples drawn with seed 0, whatever the recipe)."""
    images, _target = _digits_arrays()
    _keep, test = _split(len(images), 0.2, 0)
    splits = load_splits(DataConfig(name="digits", split_seed=7, stratify=True))
    np.testing.assert_array_equal(splits.x_test, images[test].astype(np.float32)[:, None])


@pytest.mark.parametrize("name", ["digits", "spiral"])
def test_builtin_validation_splits_are_stratified(name: str):
    splits = load_splits(DataConfig(name=name, val_fraction=0.1))
    both = np.concatenate([splits.y_train, splits.y_val])
    for c, n in enumerate(np.bincount(both)):
        assert abs(np.sum(splits.y_val == c) - 0.1 * n) <= 1, c
    assert splits.notes == []


def test_no_validation_split_when_fraction_is_zero():
    splits = load_splits(DataConfig(name="digits", val_fraction=0.0))
    assert len(splits.x_val) == 0 and len(splits.x_train) == 1438


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([0, 1, 3]), "row 2: label 3 is out of range [0, 3)"),
        (np.array([0, -1, 2]), "row 1: label -1 is negative"),
        (np.array([0.0, 1.5, 2.0]), "row 1: label 1.5 is not an integer"),
        (np.array([0.0, np.nan, 2.0]), "row 1: label nan is not an integer"),
        (np.array(["a", "b", "c"], dtype=object), "labels must be integers"),
        (np.zeros((3, 2), np.int64), "labels must be one-dimensional"),
    ],
)
def test_bad_labels_name_the_row(labels, message):
    with pytest.raises(DataError, match="^data.npz: ") as info:
        check_labels(labels, "data.npz", num_classes=3)
    assert message in str(info.value)


def test_bad_features_are_refused():
    y = np.zeros(3, np.int64)
    with pytest.raises(DataError, match="3 feature rows but 2 labels"):
        check_features(np.zeros((3, 2)), np.zeros(2), "f")
    with pytest.raises(DataError, match="row 1: features contain NaN"):
        check_features(np.array([[0.0], [np.nan], [1.0]]), y, "f")
    with pytest.raises(DataError, match="shape"):
        check_features(np.zeros(3), y, "f")
    assert check_features(np.full((3, 1), 255, np.uint8), y, "f").max() == 1.0


def test_every_registered_dataset_has_a_summary():
    for entry in DATASETS:
        assert entry.summary, entry.name


def test_loading_mnist1d_does_not_reseed_the_global_generators():
    import random

    random.seed(5)
    np.random.seed(5)
    expected = (random.random(), np.random.rand())
    random.seed(5)
    np.random.seed(5)
    read_raw(DataConfig(name="mnist1d"))
    assert (random.random(), np.random.rand()) == expected


def test_digits_read_without_sklearn_equal_load_digits():
    """The CSV read (no scikit-learn import, ~1 s saved per run) gives load_digits' arrays, in a
    process where scikit-learn has not been imported."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from trainlab.data.datasets import _digits_arrays\n"
        "images, target = _digits_arrays()\n"
        "assert 'sklearn' not in sys.modules\n"
        "from sklearn.datasets import load_digits\n"
        "b = load_digits()\n"
        "assert np.array_equal(images, b.images) and np.array_equal(target, b.target)\n"
        "assert images.dtype == b.images.dtype and target.dtype == b.target.dtype\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_mnist1d_arrays_are_copies():
    """The generated MNIST-1D is cached per process; each load gets its own arrays."""
    from trainlab.data.datasets import mnist1d

    first = mnist1d()
    first.x_train[:] = 0
    second = mnist1d()
    assert second.x_train.any()
