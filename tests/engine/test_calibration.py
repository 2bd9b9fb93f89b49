"""ECE, NLL and Brier score against their definitions (Guo et al. 2017; Brier 1950)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainlab.engine.calibration import (
    ECE_BINS,
    CalibrationSums,
    calibration_metrics,
    probabilities,
)


def _calibrated(n: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and labels drawn from those probabilities: calibrated by construction."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, classes, generator=g), 1)
    y = torch.multinomial(probs, 1, generator=g)[:, 0]
    return probs, y


def _ece_by_hand(probs: torch.Tensor, y: torch.Tensor, bins: int = ECE_BINS) -> float:
    conf, pred = probs.max(1)
    total = 0.0
    for k in range(bins):
        lo, hi = k / bins, (k + 1) / bins
        inside = (conf > lo) & (conf <= hi) if k else (conf <= hi)
        if inside.any():
            gap = (pred[inside] == y[inside]).double().mean() - conf[inside].double().mean()
            total += float(inside.sum()) / len(y) * abs(float(gap))
    return total


def test_a_calibrated_predictor_has_ece_near_zero_and_an_overconfident_one_a_large_ece():
    probs, y = _calibrated(200_000, 10, seed=0)
    calibrated = calibration_metrics(probs, y, from_probs=True)["test_ece"]
    assert calibrated < 0.005
    # says 99% on its guess, is right as often as the calibrated one: ECE = 0.99 - accuracy
    sharp = torch.full_like(probs, 0.01 / 9).scatter_(1, probs.argmax(1, keepdim=True), 0.99)
    accuracy = float((probs.argmax(1) == y).double().mean())
    over = calibration_metrics(sharp, y, from_probs=True)["test_ece"]
    assert over == pytest.approx(0.99 - accuracy, abs=1e-6) and over > 0.2


def test_ece_matches_the_binned_definition_on_random_predictions():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(997, 7, generator=g) * 2
    y = torch.randint(0, 7, (997,), generator=g)
    got = calibration_metrics(scores, y)["test_ece"]
    assert got == pytest.approx(_ece_by_hand(torch.softmax(scores, 1), y), abs=1e-9)


def test_nll_and_brier_match_torch_and_the_formula():
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(300, 5, generator=g) * 4
    y = torch.randint(0, 5, (300,), generator=g)
    got = calibration_metrics(scores, y, prefix="val")
    assert got["val_nll"] == pytest.approx(float(F.cross_entropy(scores.double(), y)), rel=1e-6)
    brier = ((torch.softmax(scores.double(), 1) - F.one_hot(y, 5)) ** 2).sum(1).mean()
    assert got["val_brier"] == pytest.approx(float(brier), rel=1e-6)


def test_one_binary_logit_is_scored_as_two_classes():
    g = torch.Generator().manual_seed(3)
    logit = torch.randn(400, 1, generator=g) * 3
    y = torch.randint(0, 2, (400,), generator=g)
    got = calibration_metrics(logit, y)
    bce = F.binary_cross_entropy_with_logits(logit[:, 0].double(), y.double())
    assert got["test_nll"] == pytest.approx(float(bce), rel=1e-6)
    two = probabilities(logit)
    assert got == pytest.approx(calibration_metrics(two, y, from_probs=True), rel=1e-5)


def test_sums_over_batches_equal_one_pass_and_confidence_one_lands_in_the_last_bin():
    g = torch.Generator().manual_seed(4)
    scores, y = torch.randn(250, 3, generator=g), torch.randint(0, 3, (250,), generator=g)
    sums = CalibrationSums(torch.device("cpu"))
    for i in range(0, 250, 64):
        sums.add(scores[i : i + 64], y[i : i + 64])
    assert sums.result("test") == pytest.approx(calibration_metrics(scores, y), rel=1e-6)
    certain = CalibrationSums(torch.device("cpu"))
    certain.add(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), from_probs=True)
    assert certain.binned[0].tolist() == [0.0] * (ECE_BINS - 1) + [1.0]
    assert certain.result("t")["t_ece"] == 0.0
