"""Check 2: overfit a small sample, with models and data built to fail it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

import trainlab
from trainlab.diagnosis.overfit import overfit_recipe, run_overfit_check

MLP = ["training.progress=false", "model.name=mlp", "model.widths=[64]"]


def _check(*overrides: str):
    return run_overfit_check(trainlab.resolve_recipe(None, [*MLP, *overrides]))


def test_the_default_recipe_fits_its_sample():
    finding = run_overfit_check(trainlab.resolve_recipe(None, ["training.progress=false"]))
    assert finding.status == "ok", finding.line()
    assert finding.values["final_acc"] == 1.0


def test_regularisation_is_turned_off():
    recipe = trainlab.resolve_recipe(
        None,
        [
            "model.dropout=0.5",
            "optimizer.weight_decay=0.1",
            "regularization.l2=0.01",
            "loss.label_smoothing=0.1",
            "augment=[hflip, mixup]",
        ],
    )
    plain = overfit_recipe(recipe)
    assert plain.augment == [] and plain.model.dropout == 0
    assert plain.optimizer.weight_decay == 0 and plain.regularization.l2 == 0
    assert plain.loss.params()["label_smoothing"] == 0 and plain.schedule.name == "constant"


@pytest.fixture(scope="module")
def shuffled_digits(tmp_path_factory) -> Path:
    digits = load_digits()
    y = np.random.default_rng(0).permutation(digits.target)  # labels unrelated to the images
    path = tmp_path_factory.mktemp("shuffled") / "digits.npz"
    np.savez(path, x=digits.images[:, None].astype(np.float32), y=y)
    return path


def test_shuffled_labels_are_a_label_bug(shuffled_digits: Path):
    finding = _check("data.name=npz", f"data.path={shuffled_digits}")
    assert finding.status == "fail"
    assert "labels are learned no faster than randomly permuted ones" in finding.summary
    assert "aligned with the inputs" in finding.advice


@pytest.mark.parametrize(
    "overrides, cause",
    [
        (["optimizer.lr=10"], "learning rate too high"),
        (["optimizer.lr=1e-7"], "learning rate too low"),
        (["model.widths=[2]"], "model too small"),
    ],
    ids=["lr-too-high", "lr-too-low", "too-small"],
)
def test_failures_name_their_cause(overrides, cause):
    finding = _check(*overrides)
    assert finding.status == "fail" and cause in finding.advice, finding.line()
