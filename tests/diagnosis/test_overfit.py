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
    "overrides, cause, fix",
    [
        (["optimizer.lr=10"], "lr.high", ("optimizer.lr=1",)),
        (["optimizer.lr=1e-5"], "lr.low", ("optimizer.lr=0.0001",)),
        (["model.widths=[2]"], "capacity", ("model.widths=[4]",)),
    ],
    ids=["lr-too-high", "lr-too-low", "too-small"],
)
def test_failures_name_their_cause_and_fix(overrides, cause, fix):
    finding = _check(*overrides)
    assert (finding.status, finding.cause, finding.fix) == ("fail", cause, fix), finding.line()


def test_full_accuracy_with_a_high_loss_is_not_a_fitted_sample():
    """A softmax before cross-entropy classifies the sample but its loss cannot go below
    ln(1 + (C - 1)/e) = 1.46 on 10 classes: that is a fail naming the output, not an ok."""
    from torch import nn

    from trainlab.diagnosis.overfit import LabelProbe, OverfitRun, check_overfit

    run = OverfitRun([0, 100, 200, 300], [2.3, 1.6, 1.5, 1.47], [0.1, 0.9, 1.0, 1.0])
    finding = check_overfit(run, LabelProbe(0.3, 0.05), 0.003, 2.30)
    assert (finding.status, finding.cause) == ("fail", "model.output"), finding.line()
    fitted = OverfitRun([0, 30], [2.3, 0.04], [0.1, 1.0])
    assert check_overfit(fitted, LabelProbe(0.98, 0.5), 0.003, 2.30).status == "ok"
    del nn


def test_a_full_batch_recipe_gets_the_check():
    """L-BFGS steps through a closure on the (sample's) full batch."""
    finding = _check("optimizer={name: lbfgs, lr: 1.0}")
    assert finding.status == "ok", finding.line()
    assert finding.values["steps"] <= 50


def test_the_probe_reuses_the_runs_first_steps(tmp_path: Path):
    """The overfit run's first 30 steps are the probe's real-label copy: training that copy
    separately (as the probe did before sharing) gives the same loss drop."""
    import copy

    from trainlab.diagnosis.overfit import label_probe, overfit_sample
    from trainlab.engine.build import build
    from trainlab.engine.step import Step

    parts = build(overfit_recipe(trainlab.resolve_recipe(None, MLP)))
    sample = list(parts.loader.epoch(0))[:5]
    initial = copy.deepcopy(parts.model)
    run = overfit_sample(Step.of(parts), sample, parts.base_lr, 30, 10, 0.0)

    def make_step(net):
        return Step.of(parts, net, parts.fresh_optimizer(net, weight_decay=0.0))

    separate = label_probe(initial, make_step, sample, parts.base_lr, steps=30)
    assert run.steps[-1] == 30
    shared = (run.losses[0] - run.losses[-1]) / run.losses[0]
    assert separate.real == pytest.approx(shared, rel=1e-5)
    assert 0 < separate.permuted < separate.real


def test_the_check_passes_the_runs_own_drop_to_the_probe(monkeypatch, tmp_path: Path):
    """run_overfit_check wires the run's drop at step 30 into the probe, which then trains only
    the permuted copy for 30 steps."""
    import copy

    from trainlab.diagnosis import overfit

    recipe = trainlab.resolve_recipe(None, MLP)
    seen = {}
    real_probe = overfit.label_probe

    def spy(model, make_step, batches, lr, steps=30, real=None):
        seen.update(steps=steps, real=real)
        separate = real_probe(copy.deepcopy(model), make_step, batches, lr, steps)
        seen["separate"] = separate.real
        return real_probe(model, make_step, batches, lr, steps, real)

    monkeypatch.setattr(overfit, "label_probe", spy)
    finding = run_overfit_check(recipe)
    assert finding.values["steps"] > 30  # the run went on past the probe's 30 steps
    assert seen["steps"] == 30
    assert seen["real"] == pytest.approx(seen["separate"], rel=1e-5)
    assert finding.values["probe_drop_labels"] == seen["real"]


def test_mnist1d_memorised_fast_is_not_a_label_bug():
    """A model that memorises permuted labels too (98% vs 90% drop in 30 steps) still learns
    the real ones clearly faster: 2% of the loss left against 10%."""
    from trainlab.recipe import DEFAULT_RECIPE

    path = DEFAULT_RECIPE.parent / "mnist1d.yaml"
    finding = run_overfit_check(trainlab.resolve_recipe(path, ["training.progress=false"]))
    assert finding.status == "ok", finding.line()
    assert finding.values["probe_drop_permuted"] > 0.5  # the probe was informative


@pytest.mark.parametrize(
    "real, permuted, bug",
    [
        (0.3, 0.3, True),  # shuffled labels: the same drop
        (0.98, 0.9, False),  # MNIST-1D: both memorised, the labels' rest 5x lower
        (0.5, 0.3, False),  # a clearly larger drop
        (0.9, 0.88, True),  # neither larger nor a clearly lower rest
        (0.2, 0.01, False),  # permuted labels not learned at all: the probe says nothing
    ],
)
def test_label_bug_rule(real: float, permuted: float, bug: bool):
    from trainlab.diagnosis.overfit import LabelProbe

    assert LabelProbe(real, permuted).label_bug is bug


def test_a_slow_start_is_not_a_label_bug():
    """A sigmoid convnet without normalisation sits on a plateau for its first steps (7% drop
    in 30 steps, on real and permuted labels alike) and fits the sample later: the probe waits
    until the real labels' loss has fallen 25% before it compares."""
    finding = run_overfit_check(
        trainlab.resolve_recipe(
            None, ["training.progress=false", "model.norm=none", "model.activation=sigmoid"]
        )
    )
    assert "aligned with the inputs" not in finding.advice, finding.line()
    assert finding.values["probe_drop_labels"] >= 0.25
    assert finding.values["probe_drop_labels"] > 1.2 * finding.values["probe_drop_permuted"]
