"""Dumb baselines as reference points (lecture 004, step 2: "set up the end-to-end
training/evaluation skeleton + get dumb baselines").

Two figures a network must beat, on the validation split (the test split when there is none):

- the **majority class**: always answer the most frequent training class. Its accuracy is the
  share of that class, what a network that learned only the priors scores;
- a **linear model on the same inputs**: ridge regression of one-hot targets on the flattened
  preprocessed training inputs, solved in closed form, W = (X^T X + lambda I)^-1 X^T Y (a bias
  column appended), predicting the argmax of X W. No optimiser step: it costs one D x D solve
  (milliseconds on digits and MNIST-1D) and has no learning rate to get wrong, so it is a
  reference the network's own pipeline cannot spoil. A softmax regression trained to
  convergence can score higher (MNIST-1D's paper reports 32% for logistic regression, 24% here);
  either is a floor to clear, not a target.

The finding ``baselines`` is ok with both figures. Given a run folder (``--run``), the run's
accuracy (``summary.json``: the final validation accuracy and the test accuracy; while it runs,
the last ``val_acc`` of ``metrics.jsonl``) is compared on the same split: a network that does
not beat the linear model (below it, or level with it short of 100%) warns. No cause is blamed:
the data, the init, the learning rate or the model can each do it, and the other checks say
which. A validation split too small to judge from
(:func:`~trainlab.diagnosis.data.validation_too_small`) is said so instead of judged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from trainlab.diagnosis.checks import CHECK_REGISTRY, Context
from trainlab.diagnosis.data import _take, validation_too_small
from trainlab.diagnosis.findings import Finding

if TYPE_CHECKING:
    from trainlab.data.datasets import Splits

__all__ = [
    "check_baselines",
    "fit_linear",
    "linear_baseline",
    "predict_linear",
    "majority_baseline",
    "network_accuracy",
    "baseline_inputs",
]

# lambda = RIDGE x the mean diagonal of X^T X: scale-free, and small enough not to bias a
# well-conditioned fit (validation: digits 90.3%, MNIST-1D 24.0%, the same at 1e-4, 1e-3 and
# 1e-2) while it keeps the solve defined when features are constant or collinear (digits'
# always-0 corners).
RIDGE = 1e-3
# at most this many features enter the solve (D x D in float64: 4096^2 x 8 B = 134 MB); larger
# images are average-pooled down to it first. CIFAR-10's 3,072 fit as they are.
MAX_FEATURES = 4096
# training rows the linear model is fitted on: the fit's cost is N x D^2; 20,000 rows leave an
# MNIST-sized fit (784 features) under a second and change its accuracy by a fraction of a point
BASELINE_SAMPLE = 20_000
EVAL_SAMPLE = 20_000  # validation/test rows scored


def majority_baseline(
    y_train: np.ndarray, y_eval: np.ndarray, num_classes: int
) -> tuple[int, float]:
    """The most frequent training class and the accuracy of always answering it on ``y_eval``."""
    majority = int(np.argmax(np.bincount(y_train, minlength=num_classes)))
    return majority, float(np.mean(y_eval == majority)) if len(y_eval) else math.nan


def _features(x: torch.Tensor, max_features: int = MAX_FEATURES) -> torch.Tensor:
    """Flattened float64 rows; images with more than ``max_features`` values are first
    average-pooled to the largest square grid that fits (per channel)."""
    if x.ndim == 4 and x[0].numel() > max_features:
        side = max(1, math.isqrt(max_features // x.shape[1]))
        x = F.adaptive_avg_pool2d(x.float(), min(side, x.shape[-1]))
    elif x.ndim == 3 and x[0].numel() > max_features:
        x = F.adaptive_avg_pool1d(x.float(), max(1, max_features // x.shape[1]))
    return x.reshape(len(x), -1).double()


def fit_linear(
    x_train: torch.Tensor, y_train: torch.Tensor, num_classes: int, ridge: float = RIDGE
) -> torch.Tensor:
    """Weights (D + 1, C) of ridge regression onto one-hot targets, fitted in closed form on
    preprocessed ``(x_train, y_train)`` (see the module docstring); the last row is the bias."""
    a = _features(x_train.cpu())
    a = torch.cat([a, a.new_ones(len(a), 1)], 1)
    targets = F.one_hot(y_train.cpu().long(), num_classes).double()
    gram = a.T @ a
    lam = ridge * float(gram.diagonal().mean())
    gram.diagonal().add_(max(lam, 1e-12))
    return torch.linalg.solve(gram, a.T @ targets)


def predict_linear(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Class predictions of :func:`fit_linear`'s weights on preprocessed inputs ``x``."""
    b = _features(x.cpu())
    return (b @ weights[:-1] + weights[-1]).argmax(1)


def linear_baseline(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_eval: torch.Tensor,
    num_classes: int,
    ridge: float = RIDGE,
) -> torch.Tensor:
    """Class predictions on ``x_eval`` of the ridge baseline fitted on ``(x_train, y_train)``."""
    return predict_linear(fit_linear(x_train, y_train, num_classes, ridge), x_eval)


def _rows(n: int, limit: int, seed: int) -> np.ndarray:
    """All of ``range(n)``, or a sorted seeded sample of ``limit`` of them."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def baseline_inputs(
    splits: Splits,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    split: str,
    limit: int,
    seed: int = 0,
) -> tuple[torch.Tensor, np.ndarray]:
    """Preprocessed inputs and labels of (a seeded sample of ``limit`` rows of) ``split``."""
    x, y = getattr(splits, f"x_{split}"), getattr(splits, f"y_{split}")
    idx = _rows(len(y), limit, seed)
    raw = torch.from_numpy(np.ascontiguousarray(_take(x, idx), np.float32))
    buffers = list(preprocess.buffers()) if isinstance(preprocess, torch.nn.Module) else []
    device = buffers[0].device if buffers else torch.device("cpu")
    with torch.no_grad():
        return preprocess(raw.to(device)).float().cpu(), y[idx]


def network_accuracy(run_dir: Path) -> dict[str, float]:
    """The run's accuracy by split: ``val`` (final validation) and ``test`` from summary.json,
    or, while the run is going, ``val`` from the last evaluation in metrics.jsonl."""
    found: dict[str, float] = {}
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            data = json.loads(summary.read_text())
        except ValueError:
            data = {}
        val = ((data.get("val") or {}).get("final") or {}).get("val_acc")
        if isinstance(val, int | float):
            found["val"] = float(val)
        if isinstance(data.get("test_acc"), int | float):
            found["test"] = float(data["test_acc"])
        return found
    log = run_dir / "metrics.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row.get("val_acc"), int | float):
                found["val"] = float(row["val_acc"])
    return found


def check_baselines(
    splits: Splits,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    network: dict[str, float] | None = None,
    seed: int = 0,
) -> Finding:
    """The majority-class and linear baselines on the validation split (test without one), and,
    given ``network`` (:func:`network_accuracy` of a run), a warning when the network does not
    beat the linear model on a split big enough to judge."""
    c = splits.num_classes
    x_train, y_train = baseline_inputs(splits, preprocess, "train", BASELINE_SAMPLE, seed)
    splits_scored = ["val"] if len(splits.y_val) else []
    if len(splits.y_test) and (not splits_scored or (network and "test" in network)):
        splits_scored.append("test")
    figures: dict[str, dict[str, float]] = {}
    weights = fit_linear(x_train, torch.from_numpy(y_train), c) if splits_scored else None
    for name in splits_scored:
        x_eval, y_eval = baseline_inputs(splits, preprocess, name, EVAL_SAMPLE, seed)
        majority, maj_acc = majority_baseline(y_train, y_eval, c)
        pred = predict_linear(weights, x_eval).numpy()
        figures[name] = {
            "majority": maj_acc,
            "linear": float(np.mean(pred == y_eval)),
            "examples": len(y_eval),
        }
    values: dict[str, Any] = {
        "majority_class": str(splits.classes[majority]) if figures else "",
        "train_examples": len(y_train),
        **{f"{k}_{m}": v for k, fig in figures.items() for m, v in fig.items()},
    }
    if not figures:
        return Finding(
            "baselines", "ok", "no validation or test split to score baselines on", "", values
        )
    first = next(iter(figures))
    word = {"val": "validation", "test": "test"}
    text = (
        f"majority class '{values['majority_class']}' {figures[first]['majority']:.1%}, "
        f"linear (ridge on the preprocessed inputs) {figures[first]['linear']:.1%} "
        f"on {word[first]} ({figures[first]['examples']} examples)"
    )
    if "test" in figures and first != "test":
        text += f"; on test {figures['test']['majority']:.1%}, {figures['test']['linear']:.1%}"
    if not network:
        return Finding("baselines", "ok", text, "", values)
    values["network"] = dict(network)
    behind, notes = [], []
    for name, acc in network.items():
        if name not in figures:
            continue
        linear = figures[name]["linear"]
        small = validation_too_small(figures[name]["examples"], c) if name == "val" else None
        notes.append(f"network {acc:.1%} on {word[name]}")
        if small:
            notes.append(f"{word[name]} too small to judge ({small})")
        elif acc < linear or (acc == linear and linear < 1.0):  # a tie at 100% is no failing
            behind.append(f"{acc:.1%} on {word[name]} against the linear model's {linear:.1%}")
    text += "; " + ", ".join(notes) if notes else ""
    if behind:
        return Finding(
            "baselines",
            "warn",
            f"the network does not beat a linear model on the same inputs ({'; '.join(behind)}): "
            f"{text}",
            "a network should beat a linear model: read the other checks' verdicts (initial "
            "loss, layers, overfit, curves) for what holds it back",
            values,
        )
    return Finding("baselines", "ok", text, "", values)


@CHECK_REGISTRY.register("baselines")
def _check(ctx: Context) -> Finding:
    """Majority-class and linear baselines on validation (lecture 004 step 2); against the run's
    accuracy given ``--run``."""
    network = network_accuracy(ctx.run_dir) if ctx.run_dir is not None else None
    return check_baselines(ctx.parts.splits, ctx.parts.preprocess, network, seed=ctx.recipe.seed)
