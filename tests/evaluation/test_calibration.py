"""Temperature scaling (Guo et al. 2017) and the reliability diagram."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trainlab.engine.calibration import calibration_metrics
from trainlab.evaluation.calibration import fit_temperature, plot_reliability, reliability_bins


def _overconfident(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax at T=1 would be calibrated, multiplied by 3: over-confident."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 10, generator=g) * 1.5
    y = torch.multinomial(torch.softmax(logits, 1), 1, generator=g)[:, 0]
    return logits * 3, y


def test_temperature_scaling_recovers_the_temperature_and_lowers_validation_nll():
    scores, y = _overconfident(20_000, seed=0)
    t = fit_temperature(scores, y)
    assert t == pytest.approx(3.0, rel=0.05)
    before, after = F.cross_entropy(scores, y), F.cross_entropy(scores / t, y)
    assert after < before - 0.1
    # NLL is minimal at the fitted T: a little either way is worse
    for other in (t * 0.9, t * 1.1):
        assert F.cross_entropy(scores / other, y) > after
    # accuracy is unchanged, calibration much better
    assert torch.equal((scores / t).argmax(1), scores.argmax(1))
    ece = calibration_metrics(scores, y)["test_ece"], calibration_metrics(scores / t, y)["test_ece"]
    assert ece[1] < ece[0] / 3


def test_an_underconfident_model_gets_a_temperature_below_one():
    scores, y = _overconfident(5000, seed=1)
    assert fit_temperature(scores / 9, y) == pytest.approx(1 / 3, rel=0.1)


def test_reliability_bins_and_diagram(tmp_path: Path):
    scores, y = _overconfident(3000, seed=2)
    probs = torch.softmax(scores, 1)
    count, conf, acc = reliability_bins(probs, y)
    assert count.sum() == 3000
    full = count >= 100  # over-confident: every well-filled bin is below the diagonal
    assert full.sum() >= 5 and (conf[full] > acc[full]).all()
    png = plot_reliability(
        {"T=1": (probs, y), "scaled": (torch.softmax(scores / 3, 1), y)}, tmp_path / "r.png"
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_a_separable_validation_split_fits_nothing_and_a_nearly_separable_one_is_bounded():
    """Every example right: NLL falls for ever as T -> 0, so no temperature is fitted (T = 1);
    one wrong example gives a minimum, kept within T_RANGE."""
    from trainlab.evaluation.calibration import T_RANGE

    scores = torch.eye(5).repeat(20, 1) * 3
    y = torch.arange(5).repeat(20)
    assert fit_temperature(scores, y) == 1.0
    y[0] = 1
    assert T_RANGE[0] <= fit_temperature(scores, y) < 1.0
