"""Calibration: how far a model's confidence is from its accuracy (ECE, NLL, Brier score).

Written by hand because neither torch nor torchvision has them (torchmetrics would be a new
dependency for three sums). The definitions are the ones Guo et al. 2017 ("On calibration of
modern neural networks") use, so the figures compare with the literature:

- **ECE**: the top-class confidence of each example falls in one of :data:`ECE_BINS` equal-width
  bins ``(k/B, (k+1)/B]`` (a confidence of exactly 0 goes to the first); ECE is
  ``sum_b |B_b|/n * |accuracy(B_b) - mean confidence(B_b)|``. A perfectly calibrated predictor
  has ECE ~0; one that says 99% and is right 60% of the time has ECE ~0.39.
- **NLL**: the mean ``-log p(true class)`` from the scores' log-softmax (not from clamped
  probabilities, so it is exact for confident models).
- **Brier score**: the mean over examples of ``sum_c (p_c - [c == y])^2`` (Brier 1950, summed
  over classes: 0 is perfect, 2 the worst).

Everything here stays a device tensor until the caller reads it back (see
:mod:`trainlab.engine.metrics`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "ECE_BINS",
    "ece_bin",
    "probabilities",
    "log_probabilities",
    "CalibrationSums",
    "calibration_metrics",
]

ECE_BINS = 15  # Guo et al. 2017's choice; the reliability diagram uses the same bins


def probabilities(scores: torch.Tensor) -> torch.Tensor:
    """Class probabilities from scores: softmax, or sigmoid and complement for one logit."""
    if scores.shape[1] == 1:
        p = torch.sigmoid(scores[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(scores, dim=1)


def log_probabilities(scores: torch.Tensor) -> torch.Tensor:
    """Log class probabilities, computed stably (a log-softmax, or log-sigmoids for one logit)."""
    if scores.shape[1] == 1:
        s = scores[:, 0]
        return torch.stack([F.logsigmoid(-s), F.logsigmoid(s)], dim=1)
    return torch.log_softmax(scores, dim=1)


def ece_bin(confidence: torch.Tensor, bins: int = ECE_BINS) -> torch.Tensor:
    """The bin of each top-class confidence: ``k`` for ``(k/B, (k+1)/B]``, 0 for exactly 0."""
    return (confidence * bins).ceil().long().clamp(1, bins) - 1


class CalibrationSums:
    """Running sums of NLL, Brier score and the ECE bins, on the device.

    ``add`` takes either scores (``log_probs`` computed here) or probabilities that are already
    averaged (an ensemble, TTA, MC dropout: ``from_probs=True``; the NLL is then ``-log p``
    clamped at 1e-12, since no scores exist for an average of probabilities).
    """

    def __init__(self, device: torch.device, bins: int = ECE_BINS) -> None:
        self.bins = bins
        self.sums = torch.zeros(3, device=device, dtype=torch.float64)  # n, nll, brier
        # per bin: count, sum of confidences, sum of correct
        self.binned = torch.zeros(3, bins, device=device, dtype=torch.float64)

    @torch.no_grad()
    def add(self, values: torch.Tensor, y: torch.Tensor, from_probs: bool = False) -> None:
        values = values.float()
        if from_probs:
            probs = values
            log_p = probs.clamp_min(1e-12).log()
        else:
            log_p = log_probabilities(values)
            probs = log_p.exp()
        y = y.to(probs.device)
        nll = -log_p.gather(1, y[:, None]).sum()
        onehot = F.one_hot(y, probs.shape[1]).to(probs.dtype)
        brier = (probs - onehot).pow(2).sum()
        n = torch.tensor(len(y), device=probs.device, dtype=torch.float64)
        self.sums += torch.stack([n, nll.double(), brier.double()])
        conf, pred = probs.max(1)
        index = ece_bin(conf, self.bins)
        correct = (pred == y).double()
        for row, weights in enumerate((None, conf.double(), correct)):
            self.binned[row] += torch.bincount(index, weights=weights, minlength=self.bins)

    def result(self, prefix: str) -> dict[str, float]:
        """``{prefix}_nll``, ``{prefix}_ece``, ``{prefix}_brier`` (read back once an evaluation)."""
        (n, nll, brier), binned = self.sums.tolist(), self.binned
        return {
            f"{prefix}_nll": nll / max(n, 1.0),
            f"{prefix}_ece": expected_calibration_error(binned[0], binned[1], binned[2]),
            f"{prefix}_brier": brier / max(n, 1.0),
        }


def expected_calibration_error(
    count: torch.Tensor, conf_sum: torch.Tensor, correct_sum: torch.Tensor
) -> float:
    """ECE from per-bin counts and sums (empty bins weigh nothing)."""
    n = float(count.sum())
    if n == 0:
        return 0.0
    return float((conf_sum - correct_sum).abs().sum() / n)


def calibration_metrics(
    values: torch.Tensor, y: torch.Tensor, prefix: str = "test", from_probs: bool = False
) -> dict[str, float]:
    """NLL, ECE and Brier score of scores (or probabilities, ``from_probs``) against labels."""
    sums = CalibrationSums(values.device)
    sums.add(values, torch.as_tensor(y, dtype=torch.long), from_probs)
    return sums.result(prefix)
