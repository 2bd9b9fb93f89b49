"""Temperature scaling and the reliability diagram, on top of the ECE/NLL/Brier sums in
:mod:`trainlab.engine.calibration`.

Temperature scaling (Guo et al. 2017) is the baseline every calibration method is compared to:
one scalar ``T > 0`` divides the logits, fitted to minimise NLL on the *validation* split (never
test), so accuracy is unchanged and only confidence moves. It is fitted on ``log T`` (so ``T``
stays positive) with L-BFGS on the full validation set, as the paper's reference code does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from trainlab.engine.calibration import ECE_BINS, ece_bin, log_probabilities, probabilities
from trainlab.engine.metrics import predictions as predictions_of
from trainlab.figures import new_figure, save_figure

if TYPE_CHECKING:
    from trainlab.data.datasets import Splits
    from trainlab.evaluation.predictor import Predictor

__all__ = ["fit_temperature", "reliability_bins", "plot_reliability", "calibration_report"]


T_RANGE = (0.05, 20.0)  # a nearly separable validation split drives T towards 0


def separable(scores: torch.Tensor, y: torch.Tensor) -> bool:
    """Every example is classified right: NLL then falls for ever as ``T`` shrinks (no
    minimum), and a fitted ``T`` would only say where L-BFGS gave up."""
    return bool((predictions_of(scores) == torch.as_tensor(y).to(scores.device)).all())


def fit_temperature(scores: torch.Tensor, y: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature ``T`` that minimises the NLL of ``scores / T`` against ``y``, within
    :data:`T_RANGE`; ``T = 1`` (nothing fitted) on a :func:`separable` split, where the
    minimum does not exist (small validation splits of easy data, e.g. digits).

    A single binary logit is scaled the same way (its sigmoid sharpens or softens). With no
    examples there is nothing to fit and ``T = 1``."""
    if len(y) == 0 or separable(scores, y):
        return 1.0
    scores, y = scores.detach().double().cpu(), torch.as_tensor(y, dtype=torch.long).cpu()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.nll_loss(log_probabilities(scores / log_t.exp()), y)
        loss.backward()
        return loss

    opt.step(closure)
    return min(max(float(log_t.detach().exp()), T_RANGE[0]), T_RANGE[1])


def reliability_bins(
    probs: torch.Tensor, y: torch.Tensor, bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin of top-class confidence (the ECE's bins): count, mean confidence, accuracy
    (NaN in empty bins)."""
    conf, pred = probs.float().max(1)
    index = ece_bin(conf, bins).numpy()
    correct = (pred == torch.as_tensor(y)).double().numpy()
    count = np.bincount(index, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, conf.double().numpy(), bins) / count
        accuracy = np.bincount(index, correct, bins) / count
    return count, mean_conf, accuracy


def plot_reliability(
    curves: dict[str, tuple[torch.Tensor, torch.Tensor]], path: Path, title: str = "test"
) -> Path:
    """A reliability diagram: accuracy against confidence per bin for each named set of
    ``(probabilities, labels)`` (e.g. before and after temperature scaling), the diagonal of
    perfect calibration, and each curve's ECE in the legend; below it, how many examples fall
    in each bin (a bin with few examples is noise)."""
    from trainlab.engine.calibration import calibration_metrics

    fig, (ax, hist) = new_figure(
        5.2, 6.0, nrows=2, sharex=True, gridspec_kw={"height_ratios": (3, 1)}
    )
    edges = np.linspace(0, 1, ECE_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for name, (probs, y) in curves.items():
        count, _, accuracy = reliability_bins(probs, y)
        ece = calibration_metrics(probs, y, "x", from_probs=True)["x_ece"]
        shown = count > 0
        ax.plot(centres[shown], accuracy[shown], marker="o", label=f"{name} (ECE {ece:.3f})")
        hist.bar(centres, count, width=1 / ECE_BINS, alpha=0.5, label=name)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"reliability ({title}, {ECE_BINS} bins)")
    ax.legend(loc="upper left", fontsize=8)
    hist.set_xlabel("confidence (top-class probability)")
    hist.set_ylabel("examples")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def scaled_probabilities(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """Class probabilities of ``scores / temperature``."""
    return probabilities(scores / temperature)


def calibration_report(
    predictor: Predictor, splits: Splits, png: Path | None = None
) -> dict[str, Any]:
    """Test NLL, ECE and Brier score before and after temperature scaling fitted on the
    validation split, and (``png``) the reliability diagram of both.

    A split without validation examples has no temperature to fit (fitting it on test would
    select on test): the report then holds the unscaled figures only."""
    from trainlab.evaluation.scores import split_scores

    scores, y = split_scores(predictor, splits.x_test, splits.y_test)
    before = _figures(scores, y)
    report: dict[str, Any] = {"bins": ECE_BINS, "test": {"T=1": before}}
    curves = {"T=1": (probabilities(scores), y)}
    if len(splits.y_val):
        val_scores, val_y = split_scores(predictor, splits.x_val, splits.y_val)
        t = fit_temperature(val_scores, val_y)
        report["temperature"] = round(t, 4)
        report["separable"] = separable(val_scores, val_y)  # T = 1: nothing to fit
        report["val_nll"] = {
            "T=1": _figures(val_scores, val_y)["nll"],
            "scaled": _figures(val_scores / t, val_y)["nll"],
        }
        report["test"]["scaled"] = _figures(scores / t, y)
        curves[f"T={t:.2f}"] = (scaled_probabilities(scores, t), y)
    if png is not None:
        report["reliability_png"] = str(plot_reliability(curves, png))
    return report


def _figures(scores: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``{nll, ece, brier}`` of scores against labels."""
    from trainlab.engine.calibration import calibration_metrics

    return {k.removeprefix("x_"): v for k, v in calibration_metrics(scores, y, "x").items()}
