"""MC dropout (``--mc-dropout T``): T passes with only the dropout-like layers sampling, the
mean probabilities, their entropy and the variance across passes, reproducibly and without
touching the caller's RNG."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import trainlab
from tests.conftest import last_json
from trainlab.data.datasets import load_splits
from trainlab.engine.calibration import probabilities
from trainlab.engine.seeding import preserved_global_state
from trainlab.errors import TrainlabError
from trainlab.evaluation.tta import averaged_probabilities, check_mc_dropout, tta_levels
from trainlab.nn.regularizers import DropConnectLinear


def _test_split(run: Path, n: int | None = None):
    predictor = trainlab.load_run(run)
    splits = load_splits(predictor.recipe.data)
    return predictor, splits.x_test[:n], splits.y_test[:n]


def test_dropout_with_p_zero_is_plain_evaluation(digits_dropout_run: Path):
    predictor, x, y = _test_split(digits_dropout_run)
    dropouts = [m for m in predictor.model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts
    for m in dropouts:
        m.p = 0.0  # still a dropout layer: MC dropout samples it (and draws nothing)
    mc = averaged_probabilities(predictor, x, mc_dropout=4)
    plain = predictor.predict_proba(x)
    torch.testing.assert_close(mc.probs, plain, rtol=0, atol=1e-7)
    assert float(mc.variance.abs().max()) < 1e-12
    torch.testing.assert_close(mc.entropy, -torch.special.xlogy(plain, plain).sum(1))
    levels = tta_levels(predictor, x, y, mc_dropout=4)["levels"]
    assert levels["mc_dropout4"]["test_acc"] == levels["identity"]["test_acc"]
    assert levels["mc_dropout4"]["test_nll"] == pytest.approx(levels["identity"]["test_nll"])


def test_passes_are_the_formula_with_only_dropout_sampling(digits_dropout_run: Path):
    predictor, x, _ = _test_split(digits_dropout_run, 50)
    seen: list[tuple[str, bool]] = []
    hooks = [
        m.register_forward_pre_hook(lambda m, a: seen.append((type(m).__name__, m.training)))
        for m in predictor.model.modules()
        if isinstance(m, (nn.Dropout, nn.BatchNorm2d))
    ]
    mc = averaged_probabilities(predictor, x, mc_dropout=5, seed=3)
    for h in hooks:
        h.remove()
    assert {name for name, _ in seen} == {"Dropout", "BatchNorm2d"}
    assert all(training == (name == "Dropout") for name, training in seen)  # BN stays in eval
    assert not any(m.training for m in predictor.model.modules())  # modes restored
    # the same T passes by hand: batch 0 is seeded with seed + 0
    raw = predictor.inputs(x)
    with preserved_global_state(), torch.no_grad():
        torch.manual_seed(3)
        for m in predictor.model.modules():
            if isinstance(m, nn.Dropout):
                m.train()
        passes = torch.stack(
            [probabilities(predictor.model(predictor.preprocess(raw))) for _ in range(5)]
        )
        predictor.model.eval()
    mean = passes.mean(0)
    torch.testing.assert_close(mc.probs, mean, rtol=0, atol=1e-7)
    torch.testing.assert_close(mc.entropy, -(mean * mean.log()).sum(1))
    torch.testing.assert_close(mc.variance, passes.var(0, correction=0).mean(1))
    assert float(mc.variance.min()) > 0  # dropout p=0.3 makes the passes disagree
    assert not torch.allclose(mc.probs, predictor.predict_proba(x))


def test_same_command_same_numbers_and_the_callers_rng_is_untouched(digits_dropout_run: Path):
    predictor, x, _ = _test_split(digits_dropout_run, 40)
    before = torch.get_rng_state()
    first = averaged_probabilities(predictor, x, mc_dropout=3)
    assert torch.equal(torch.get_rng_state(), before)
    again = averaged_probabilities(predictor, x, mc_dropout=3)
    assert torch.equal(first.probs, again.probs) and torch.equal(first.variance, again.variance)
    other = averaged_probabilities(predictor, x, mc_dropout=3, seed=1)
    assert not torch.equal(first.probs, other.probs)


def test_mc_dropout_combines_with_tta(mnist1d_fmp_run: Path):
    predictor, x, y = _test_split(mnist1d_fmp_run, 100)
    levels = tta_levels(predictor, x, y, "shifts", mc_dropout=2)["levels"]
    assert list(levels) == ["identity", "shifts", "mc_dropout2", "shifts+mc_dropout2"]
    assert levels["shifts+mc_dropout2"]["views"] == 10
    both = averaged_probabilities(predictor, x, "shifts", mc_dropout=2)
    assert both.entropy.shape == both.variance.shape == (100,)


def test_a_model_without_dropout_or_a_bad_count_is_one_line():
    with pytest.raises(TrainlabError, match=r"^--mc-dropout 5: the model has no dropout"):
        check_mc_dropout(5, nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
    for bad in (0, -1, True):
        with pytest.raises(TrainlabError, match=r"expected a number of passes >= 1"):
            check_mc_dropout(bad, nn.Sequential(nn.Dropout(0.5)))
    assert check_mc_dropout(5, nn.Sequential(nn.Dropout(0.0))) == 5  # p=0 counts as dropout
    assert check_mc_dropout(2, nn.Sequential(DropConnectLinear(2, 2, p=0.5))) == 2
    assert check_mc_dropout(None, nn.Sequential(nn.Linear(2, 2))) is None


def test_cli_predict_with_mc_dropout(digits_dropout_run: Path, tmp_path: Path):
    from trainlab.cli import app

    _, x, y = _test_split(digits_dropout_run, 25)
    np.savez(tmp_path / "some.npz", x=x, y=y)
    out = tmp_path / "pred.csv"
    args = ["predict", str(digits_dropout_run), str(tmp_path / "some.npz")]
    done = CliRunner().invoke(app, [*args, "--mc-dropout", "5", "--json", "-o", str(out)])
    assert done.exit_code == 0, done.output
    result = last_json(done.stdout)
    assert result["mc_dropout"] == 5 and result["n"] == 25
    assert all(r["entropy"] >= 0 and r["variance"] >= 0 for r in result["rows"])
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[-2:] == ["entropy", "variance"] and len(rows) == 25
    assert float(rows[0]["entropy"]) == result["rows"][0]["entropy"]
    done = CliRunner().invoke(app, [*args, "--mc-dropout", "0"])
    lines = [line for line in done.output.splitlines() if line.startswith("trainlab:")]
    assert done.exit_code == 2 and lines == [
        "trainlab: error: --mc-dropout 0: expected a number of passes >= 1"
    ]


def test_evaluate_with_mc_dropout(digits_dropout_run: Path):
    result = trainlab.evaluate(digits_dropout_run, plot=False, mc_dropout=3)
    levels = result["tta"]["levels"]
    assert list(levels) == ["identity", "mc_dropout3"]
    assert levels["identity"]["test_ece"] == result["test_ece"]
    assert set(levels["mc_dropout3"]) == {"test_acc", "test_nll", "test_ece", "test_brier", "views"}
