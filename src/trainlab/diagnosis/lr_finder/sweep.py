"""The sweep: one seed's recipe trained at exponentially growing lrs, the loss of each batch
recorded (before its update) until it diverges; and the loss of predicting the class prior."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from trainlab.engine.build import Parts, build, num_outputs
from trainlab.engine.seeding import set_rng_state
from trainlab.engine.step import Step
from trainlab.errors import RecipeError
from trainlab.recipe import Recipe, ScheduleConfig


def _batches(parts: Parts) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The recipe's training batches, epoch after epoch, as the trainer sees them."""
    epoch = 0
    while True:
        yield from parts.loader.epoch(epoch)
        epoch += 1


def _parts(recipe: Recipe, seed: int) -> Parts:
    """The recipe's parts with ``seed`` and no schedule; the global RNG continues the build's
    stream (callers hold :func:`preserved_global_state`), as the trainer's would."""
    rec = recipe.model_copy(update={"seed": seed, "schedule": ScheduleConfig(name="constant")})
    parts = build(rec)
    if parts.needs_closure:
        raise RecipeError(
            f"optimizer.name={recipe.optimizer.name}: the lr range test needs a mini-batch "
            "optimiser (full-batch optimisers such as L-BFGS search their own step size)"
        )
    set_rng_state(parts.rng)
    return parts


@torch.no_grad()
def _chance_loss(parts: Parts) -> float:
    """The training loss of a model that ignores its input and outputs the log class
    frequencies (the best constant cross-entropy predictor): ln C for balanced classes. NaN
    where the loss does not take such scores."""
    try:
        y = parts.loader.y
        counts = torch.bincount(y.long().flatten(), minlength=parts.num_classes).double()
        prior = (counts / counts.sum()).clamp_min(1e-12)
        scores = prior.log()

        if (
            num_outputs(parts.recipe.loss.name, parts.num_classes) == 1
        ):  # one logit for binary cross-entropy
            scores = (prior[1] / prior[0]).log().reshape(1)
        scores = scores.float().to(y.device).expand(len(y), -1)
        return float(parts.loss_fn(scores, y))
    except (RuntimeError, ValueError, TypeError, AttributeError, IndexError):
        return math.nan


def _ema(losses: Sequence[float], beta: float) -> list[float]:
    avg, out = 0.0, []
    for i, x in enumerate(losses):
        avg = beta * avg + (1 - beta) * x
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def _sweep_one(
    recipe: Recipe, seed: int, lrs: np.ndarray, beta: float, diverge: float
) -> tuple[list[float], list[float], str, Parts]:
    """One seed's sweep: the recipe's step at each lr of ``lrs`` in turn, the loss of each
    batch (before its update) recorded, until it diverges or turns non-finite."""
    parts = _parts(recipe, seed)
    step = Step.of(parts)
    parts.model.train()
    losses: list[float] = []
    smoothed: list[float] = []
    avg, best, stop = 0.0, math.inf, "end"
    batches = _batches(parts)
    for i, lr in enumerate(lrs):
        out = step(*next(batches), float(lr))
        value = float(out.loss)  # the per-step read-back: a diagnostic, not a training run
        losses.append(value)
        if not out.updated or not math.isfinite(value):
            smoothed.append(math.inf)
            stop = "nonfinite"
            break
        avg = beta * avg + (1 - beta) * value
        smooth = avg / (1 - beta ** (i + 1))
        smoothed.append(smooth)
        if not math.isfinite(smooth):
            stop = "nonfinite"
            break
        best = min(best, smooth)
        if smooth > diverge * best:
            stop = "diverged"
            break
    return losses, smoothed, stop, parts
