"""``data.keep_classes``: a subset of a dataset's classes, relabelled 0..K-1, names kept."""

from __future__ import annotations

import numpy as np
import pytest

from trainlab.data.datasets import keep_classes, load_splits, read_raw
from trainlab.errors import DataError, RecipeError
from trainlab.recipe import DataConfig, resolve_recipe


def test_kept_classes_are_relabelled_in_the_given_order_with_their_names():
    full = read_raw(DataConfig(name="digits"))
    kept = keep_classes(full, [7, 2, 9])
    assert kept.classes == ["7", "2", "9"]
    for new, old in enumerate([7, 2, 9]):  # the same examples, in the same order
        np.testing.assert_array_equal(
            kept.x_train[kept.y_train == new], full.x_train[full.y_train == old]
        )
        np.testing.assert_array_equal(
            kept.x_test[kept.y_test == new], full.x_test[full.y_test == old]
        )
    assert len(kept.y_train) == np.isin(full.y_train, [7, 2, 9]).sum()


def test_the_splits_of_a_subset_hold_only_its_classes():
    splits = load_splits(DataConfig(name="digits", keep_classes=[5, 6, 7, 8, 9]))
    assert splits.classes == ["5", "6", "7", "8", "9"]
    for y in (splits.y_train, splits.y_val, splits.y_test):
        assert set(np.unique(y).tolist()) == {0, 1, 2, 3, 4}


def test_a_label_without_examples_is_a_one_line_error():
    with pytest.raises(DataError, match=r"data.keep_classes \[3, 12\]: label 12 has no training"):
        load_splits(DataConfig(name="digits", keep_classes=[3, 12]))


@pytest.mark.parametrize("value", ["[1, 1]", "[-1, 2]", "[4]"])
def test_bad_keep_classes_are_refused(value: str):
    with pytest.raises(RecipeError, match="data.keep_classes"):
        resolve_recipe(None, [f"data.keep_classes={value}"])
