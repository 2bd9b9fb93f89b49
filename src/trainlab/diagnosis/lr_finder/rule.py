"""Lecture 002's 100-iteration rule, asked of the sweep's suggestion: from the first seed's
initial weights, does the loss fall clearly (RULE_DROP) within ``rule_iters`` steps?"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from trainlab.diagnosis.lr_finder.reading import _geo_median
from trainlab.diagnosis.lr_finder.results import LRSweep
from trainlab.diagnosis.lr_finder.sweep import _batches, _parts
from trainlab.engine.build import Parts
from trainlab.engine.seeding import preserved_global_state
from trainlab.engine.step import Step
from trainlab.recipe import Recipe

RULE_DROP = 0.2  # the 100-iteration rule: the loss must fall by this fraction (package docstring)


def _rule_try(
    parts: Parts, init_state: dict[str, torch.Tensor], lr: float, start_loss: float,
    iters: int, diverge: float,
) -> dict[str, Any]:  # fmt: skip
    """Train from ``init_state`` at constant ``lr`` until the mean of the last 10 losses is
    RULE_DROP below ``start_loss`` (passed: stop there), it diverges, or ``iters`` steps."""
    parts.model.load_state_dict(init_state)
    parts.model.train()
    step = Step.of(parts, optimizer=parts.fresh_optimizer(parts.model, lr))
    batches = _batches(parts)
    losses: list[float] = []
    diverged = passed = False
    for _ in range(iters):
        out = step(*next(batches), lr)
        value = float(out.loss)
        losses.append(value)
        if not out.updated or not math.isfinite(value) or value > diverge * start_loss:
            diverged = True
            break
        if len(losses) >= 10 and np.mean(losses[-10:]) <= (1 - RULE_DROP) * start_loss:
            passed = True
            break
    tail = float(np.mean(losses[-10:]))
    return {"lr": lr, "steps": len(losses), "final_loss": tail, "diverged": diverged,
            "passed": passed}  # fmt: skip


def _rule_of_100(
    parts: Parts,
    init_state: dict[str, torch.Tensor],
    start_loss: float,
    suggestion: float,
    top_lr: float,
    iters: int,
    tries: int,
    diverge: float,
) -> tuple[float | None, list[dict[str, Any]]]:
    """Lecture 002's rule, asked of the suggestion: does the loss drop clearly (RULE_DROP) within
    ``iters`` steps at it? A try stops as soon as it does, so a good lr costs a few dozen steps
    (the earlier version trained every decade for the full ``iters``: 300 of the doctor's 700
    steps). A try that diverges or ends 10% above its start is followed by one 10x lower, one that
    falls too slowly by one 10x higher (moves to ``top_lr``, where the sweeps stopped, or above
    are not made; the suggestion itself is always tried); at most ``tries`` tries. The rule's lr
    is the first that passes."""
    trials: list[dict[str, Any]] = []
    lr = suggestion
    while len(trials) < tries:
        trial = _rule_try(parts, init_state, lr, start_loss, iters, diverge)
        trials.append(trial)
        if trial["passed"]:
            return lr, trials
        rising = trial["diverged"] or trial["final_loss"] > 1.1 * start_loss  # flat: too slow
        lr = lr / 10 if rising else lr * 10
        if lr >= top_lr or any(math.isclose(lr, t["lr"]) for t in trials):
            break
    return None, trials


def _with_rule(
    recipe: Recipe, sweep: LRSweep, seed: int, iters: int, tries: int, diverge: float
) -> LRSweep:
    """The sweep with lecture 002's rule asked of its suggestion, from the initial weights of
    its first seed; no tries when the sweep failed ("no descent", "diverges at once") or has no
    suggestion. The tries never go at or above where the sweeps stopped (or the range's top)."""
    first = sweep.seeds[0]
    trials: list[dict[str, Any]] = []
    rule_lr = None
    trusted = sweep.shape in ("ok", "too_noisy")  # a failed sweep's suggestion means nothing
    if trusted and sweep.suggestion is not None and math.isfinite(first.start_loss):
        ends = [s.lrs[-1] for s in sweep.seeds if s.stop != "end"]
        top = sweep.max_lr
        if len(ends) * 2 > len(sweep.seeds):
            top = min(top, _geo_median(ends))
        with preserved_global_state():
            init = _parts(recipe, seed)  # the same initial weights as the first sweep
            state = {k: v.clone() for k, v in init.model.state_dict().items()}
            rule_lr, trials = _rule_of_100(
                init, state, first.start_loss, sweep.suggestion, top, iters, tries, diverge
            )
    return dataclasses.replace(sweep, rule_lr=rule_lr, rule_iters=iters, rule_trials=tuple(trials))
