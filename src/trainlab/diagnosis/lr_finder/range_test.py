"""The entry point, :func:`lr_range_test`: the sweep over seeds, read and judged, "no descent"
confirmed with a longer sweep, then the 100-iteration rule. The test leaves the RNGs and
torch's switches as it found them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from trainlab.diagnosis.lr_finder.reading import _analyse, _geo_median, _shape, _start_index
from trainlab.diagnosis.lr_finder.results import LRSweep
from trainlab.diagnosis.lr_finder.rule import _with_rule
from trainlab.diagnosis.lr_finder.sweep import _chance_loss, _sweep_one
from trainlab.engine.seeding import preserved_global_state
from trainlab.recipe import Recipe

__all__ = ["lr_range_test"]


def lr_range_test(
    recipe: Recipe,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    beta: float = 0.98,
    diverge: float = 4.0,
    rule_iters: int = 100,
    rule_tries: int = 3,
    narrow: float | None = 3.0,
    lengthen: int = 3,
) -> LRSweep:
    """Smith's lr range test on ``recipe`` over ``seeds``, and lecture 002's 100-iteration rule.

    Creates no files and leaves the global RNG states (Python, NumPy, torch) and torch's
    determinism switches as they were. ``rule_iters=0`` skips the 100-iteration rule. Seeds
    after the first start ``narrow`` decades below the first seed's minimum-loss lr, on the
    same grid (``None``: every seed sweeps the whole range); see ``_start_index``.

    "No descent" is confirmed before it is reported: the test runs again, on the first seed,
    with ``lengthen`` times the steps (1: no second run) and that result stands
    (``extra["lengthened_from"]`` says so), unless it diverges at once: over the same lrs the
    shorter sweep did not, so its "no descent" stands (``extra["longer_shape"]``). The rule runs
    once, on the result that stands. A model that starts slowly gets only a few dozen steps at
    useful lrs in a 100-step sweep: group norm on digits falls 7% below the class prior there
    and 57-66% in a 300-step sweep, and trains to 98.6%; labels unrelated to the inputs fall in
    neither.
    """
    if 0 < rule_iters < 10:
        raise ValueError(f"rule_iters={rule_iters}: the rule averages the last 10 steps (0: skip)")
    kwargs = dict(beta=beta, diverge=diverge, narrow=narrow)
    sweep = _range_test(recipe, min_lr, max_lr, steps, seeds, **kwargs)
    if sweep.shape == "no_descent" and lengthen > 1:
        # one seed confirms: the question is whether the model trains at all, and three longer
        # sweeps (about 800 steps) cost twice the doctor's whole budget of 400 (issue 18)
        longer = _range_test(recipe, min_lr, max_lr, steps * lengthen, seeds[:1], **kwargs)
        if longer.shape == "diverges_at_once":  # not what "no descent" over the range meant
            sweep = dataclasses.replace(sweep, extra={"longer_shape": longer.shape})
        else:
            sweep = dataclasses.replace(
                longer, extra={"lengthened_from": steps, "short_seeds": len(seeds)}
            )
    if rule_iters == 0:
        return sweep
    return _with_rule(recipe, sweep, seeds[0], rule_iters, rule_tries, diverge)


def _range_test(
    recipe: Recipe,
    min_lr: float,
    max_lr: float,
    steps: int,
    seeds: Sequence[int],
    *,
    beta: float,
    diverge: float,
    narrow: float | None,
) -> LRSweep:
    """One run of the range test, without the rule (see ``lr_range_test``)."""
    if not 0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr, got {min_lr} and {max_lr}")
    if steps < 5:
        raise ValueError(f"steps={steps}: the sweep needs at least 5 steps")
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    lrs = min_lr * (max_lr / min_lr) ** (np.arange(steps) / (steps - 1))
    steps_per_decade = (steps - 1) / math.log10(max_lr / min_lr)
    early = max(5, steps // 10)
    with preserved_global_state():
        results, first = [], None
        for seed in seeds:
            start = _start_index(lrs, results[0], narrow) if results else 0
            while True:
                grid = lrs[start:]
                losses, smoothed, stop, parts = _sweep_one(recipe, seed, grid, beta, diverge)
                chance = _chance_loss(parts)
                result = _analyse(seed, grid, losses, smoothed, stop, steps_per_decade, chance)
                stopped_early = stop != "end" and len(losses) <= early
                if start == 0 or (result.suggestion is not None and not stopped_early):
                    break
                start = 0  # a narrowed seed that blew up or found nothing: judge it in full
            results.append(result)
            if first is None:
                first = parts
        shape, spread, noise_to_drop = _shape(results, early)
        sugg = [s.suggestion for s in results if s.suggestion is not None]
        ranges = [s.steepest_range for s in results if s.steepest_range is not None]
        suggestion = _geo_median(sugg) if sugg and shape != "diverges_at_once" else None
        steepest = (
            (_geo_median([r[0] for r in ranges]), _geo_median([r[1] for r in ranges]))
            if ranges and suggestion is not None
            else None
        )
    return LRSweep(
        seeds=tuple(results),
        shape=shape,
        suggestion=suggestion,
        steepest_range=steepest,
        spread=(min(sugg), max(sugg)) if sugg else None,
        spread_decades=spread,
        noise_to_drop=noise_to_drop,
        rule_lr=None,
        rule_iters=0,
        min_lr=min_lr,
        max_lr=max_lr,
        steps=steps,
        lr_scale=first.base_lr / recipe.optimizer.lr if first is not None else 1.0,
        optimizer=recipe.optimizer.name,
    )
