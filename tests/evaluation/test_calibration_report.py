"""``trainlab evaluate`` reports calibration: NLL/ECE/Brier, temperature scaling fitted on
validation (never test), and a reliability diagram."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.nn.functional as F

import trainlab
from trainlab.data.datasets import load_splits
from trainlab.evaluation.calibration import fit_temperature
from trainlab.evaluation.scores import split_scores


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("calibration") / "run"
    trainlab.train(None, ["training.epochs=3", "training.progress=false"], out=out, progress=False)
    return out


def test_evaluate_reports_the_training_figures_and_a_temperature_fitted_on_validation(run: Path):
    result = trainlab.evaluate(run)
    summary = json.loads((run / "summary.json").read_text())
    for key in ("test_nll", "test_ece", "test_brier"):
        assert result[key] == pytest.approx(summary[key], rel=1e-6)
    report = result["calibration"]
    assert report["test"]["T=1"]["ece"] == pytest.approx(result["test_ece"], rel=1e-6)
    predictor = trainlab.load_run(run)
    splits = load_splits(predictor.recipe.data)
    scores, y = split_scores(predictor, splits.x_val, splits.y_val)
    assert report["temperature"] == pytest.approx(fit_temperature(scores, y), rel=1e-3)
    assert report["val_nll"]["scaled"] <= report["val_nll"]["T=1"]
    t = report["temperature"]
    assert report["val_nll"]["scaled"] == pytest.approx(float(F.cross_entropy(scores / t, y)), 1e-3)
    assert Path(report["reliability_png"]).read_bytes()[:4] == b"\x89PNG"


def test_split_scores_are_what_evaluation_measures(run: Path):
    predictor = trainlab.load_run(run)
    splits = load_splits(predictor.recipe.data)
    scores, y = split_scores(predictor, splits.x_test, splits.y_test)
    metrics, _ = predictor.evaluate(splits.x_test, splits.y_test)
    assert float(F.cross_entropy(scores, y)) == pytest.approx(metrics["test_loss"], rel=1e-5)
