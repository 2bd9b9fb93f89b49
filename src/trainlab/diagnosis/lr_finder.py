"""Check 3 of the doctor: the learning-rate range test (Smith 2017, "Cyclical learning rates";
fastai's ``lr_find``) made robust, plus lecture 002's rule ("find a learning rate that makes the
loss drop significantly within ~100 iterations").

Written by hand because no library in the stack has it: torch has no range test, and the
finders of fastai and Lightning give one number from one noisy curve (a known failure).

The sweep. For each seed a fresh model, data order and optimiser are built from the recipe (its
optimiser, weight decay and gradient clipping; no schedule); the lr grows exponentially from
``min_lr`` to ``max_lr`` over ``steps`` mini-batches and the loss of each batch (before its
update) is recorded. The smoothed loss is fastai's bias-corrected exponential moving average;
the sweep stops when it exceeds ``diverge`` x its best value or the loss is NaN/inf.

The suggestion. The EMA lags the raw loss by ``beta / (1 - beta)`` steps (49 at fastai's 0.98,
four decades of lr on the default sweep), which drags any feature read off it to the right. The
analysis therefore reads a *centred* running mean of the raw loss (no lag, a window of about a
third of a decade) and local least-squares slopes of the raw loss against log10(lr) (windows of
about two thirds of a decade, none near the ends). Per seed:

- ``min_lr``: the lr of the lowest centred loss before the sweep stopped;
- the *steepest range*: around the most negative slope, the lrs where the slope is at least half
  as steep (reported and drawn);
- THE suggestion: ``min_lr / 10``, the classic rule of thumb, clipped into the falling part of the
  curve (from 10% to 90% of the way down from the start to the minimum). Why this one: the
  minimum is a level and moves little with noise, while the point of steepest slope is a
  derivative of a noisy curve and jumps between seeds; one decade below the minimum the loss
  still falls fast and training stays stable for far more steps than the sweep spends at any lr.
  Measured (benchmarks/lr_finder.py, digits and MNIST-1D against a half-decade grid of 10-epoch
  runs): min/10 landed 0.1 and 1.0 decade from the grid's best lr, inside its flat top, where
  the steepest point landed 0.9 and 1.2 decades below it and the minimum itself 0.9 above on
  digits.

Across seeds: the suggestion is the median (on a log scale) of the per-seed ones and the spread
is their min and max. The shapes, in the order they are tested:

- ``diverges_at_once``: most seeds stop (divergence or NaN) within the first ``max(5, steps/10)``
  steps, or never fall and rise over those steps: even ``min_lr`` is too high.
- ``no_descent``: the centred loss never falls 10% below the lower of its start and the loss of
  predicting the class frequencies (ln C for balanced classes; a fall from an over-confident init
  down to the prior is not learning): nothing in the range trains the model (labels unrelated
  to the inputs, weights that do not move, a range too low). A healthy 100-step sweep falls
  20-80% below it; digits with shuffled labels 0%.
- ``too_noisy``: the per-seed suggestions spread over more than one decade, or the noise of the
  raw loss around its centred curve is more than half its drop (signal/noise below 2).
- ``ok`` otherwise.

The 100-iteration rule (lecture 002), asked of the suggestion. From the first seed's initial
weights, train at the suggested lr (constant, the recipe's optimiser and weight decay) until the
mean loss of the last 10 steps is 20% below the initial loss; it passes if that happens within
``rule_iters`` (100) steps without diverging, and the number of steps is reported. A try that
diverges or ends 10% above its start is followed by one 10x lower, one that falls too slowly by
one 10x higher (never at or above where the sweeps stopped), ``rule_tries`` (3) tries at most;
the rule's lr is the first that passes. Stopping a try as soon as it passes is what makes the
rule cheap: on the default recipe it passes in about 10 steps, where training every decade lr
for the full 100 steps (the first version) cost 300 of the doctor's 700 steps to find 0.01.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainlab.diagnosis.findings import Finding
from trainlab.engine.build import Parts, build, num_outputs
from trainlab.engine.seeding import preserved_global_state, set_rng_state
from trainlab.engine.step import Step
from trainlab.errors import RecipeError
from trainlab.recipe import Recipe, ScheduleConfig

__all__ = ["SeedSweep", "LRSweep", "lr_range_test", "check_lr", "plot_lr_sweep"]

# the thresholds (see the module docstring for why)
NO_DESCENT_DROP = 0.1  # smoothed loss must fall below (1 - this) x its start
NOISE_TO_DROP = 0.5  # noise (std of raw around smoothed) above this x the drop: too noisy
SPREAD_DECADES = 1.0  # per-seed suggestions further apart than this: too noisy
RULE_DROP = 0.2  # the 100-iteration rule: the loss must fall by this fraction
SHAPES = ("ok", "no_descent", "diverges_at_once", "too_noisy")


@dataclass(frozen=True)
class SeedSweep:
    """One seed's sweep: the lrs and losses per step and what was read off them."""

    seed: int
    lrs: tuple[float, ...]
    losses: tuple[float, ...]  # raw, one per step (the last may be NaN/inf)
    smoothed: tuple[float, ...]  # fastai's bias-corrected EMA
    centred: tuple[float, ...]  # the lag-free running mean the analysis reads
    stop: str  # "end", "diverged" or "nonfinite"
    start_loss: float
    min_loss: float
    min_lr: float | None
    steepest_lr: float | None
    steepest_range: tuple[float, float] | None
    suggestion: float | None
    drop: float  # (reference - min) / reference, reference = min(start, chance loss)
    noise: float  # std of raw loss around the centred curve, before the minimum
    chance_loss: float = math.nan  # the loss of predicting the class frequencies


@dataclass(frozen=True)
class LRSweep:
    """The range test over several seeds, the verdict's inputs, and the 100-iteration rule."""

    seeds: tuple[SeedSweep, ...]
    shape: str
    suggestion: float | None  # absolute lr (what the optimiser sees)
    steepest_range: tuple[float, float] | None
    spread: tuple[float, float] | None  # min and max of the per-seed suggestions
    spread_decades: float
    noise_to_drop: float
    rule_lr: float | None  # the lecture's rule: an lr whose loss drops clearly in rule_iters
    rule_iters: int
    rule_trials: tuple[dict[str, Any], ...] = ()
    min_lr: float = 1e-7
    max_lr: float = 10.0
    steps: int = 100
    lr_scale: float = 1.0  # absolute lr / recipe's optimizer.lr (batch-size scaling rule)
    optimizer: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def recipe_lr(self) -> float | None:
        """The suggestion as the recipe's ``optimizer.lr`` (undoing the batch-size scaling)."""
        return None if self.suggestion is None else self.suggestion / self.lr_scale

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "suggested_lr": self.suggestion,
            "recipe_lr": self.recipe_lr,
            "steepest_range": list(self.steepest_range) if self.steepest_range else None,
            "spread": list(self.spread) if self.spread else None,
            "spread_decades": self.spread_decades,
            "noise_to_drop": self.noise_to_drop,
            "rule_lr": self.rule_lr,
            "rule_iters": self.rule_iters,
            "rule_trials": list(self.rule_trials),
            "min_lr": self.min_lr,
            "max_lr": self.max_lr,
            "steps": self.steps,
            "optimizer": self.optimizer,
            "lengthened_from": self.extra.get("lengthened_from"),
            "seeds": [
                {
                    "seed": s.seed,
                    "suggestion": s.suggestion,
                    "min_lr": s.min_lr,
                    "steepest_lr": s.steepest_lr,
                    "steepest_range": list(s.steepest_range) if s.steepest_range else None,
                    "stop": s.stop,
                    "steps_run": len(s.losses),
                    "start_loss": s.start_loss,
                    "min_loss": s.min_loss,
                    "drop": s.drop,
                    "chance_loss": s.chance_loss,
                    "noise": s.noise,
                }
                for s in self.seeds
            ],
        }


# ----------------------------------------------------------------------------------------------
# global state: the test leaves the RNGs and torch's switches as it found them


# ----------------------------------------------------------------------------------------------
# the sweep


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


def _centred(values: np.ndarray, half: int) -> np.ndarray:
    """Running mean over ``2 * half + 1`` points, the window shrinking (symmetrically) at the
    ends so that it never lags."""
    n = len(values)
    out = np.empty(n)
    for i in range(n):
        h = min(half, i, n - 1 - i)
        out[i] = values[i - h : i + h + 1].mean()
    return out


def _analyse(
    seed: int,
    lrs: np.ndarray,
    losses: list[float],
    smoothed: list[float],
    stop: str,
    steps_per_decade: float,
    chance: float = math.nan,
) -> SeedSweep:
    raw = np.asarray(losses, dtype=float)
    finite = raw[np.isfinite(raw)] if len(raw) else raw
    n = len(finite) if stop == "nonfinite" else len(raw)
    raw = raw[:n]
    lr = lrs[:n]
    none = SeedSweep(
        seed,
        tuple(float(x) for x in lrs[: len(losses)]),
        tuple(float(x) for x in losses),
        tuple(float(x) for x in smoothed),
        tuple(float(x) for x in raw),
        stop,
        float(raw[0]) if n else math.nan,
        float(raw.min()) if n else math.nan,
        None,
        None,
        None,
        None,
        0.0,
        0.0,
    )
    if n < 3:
        return none
    half = max(1, round(steps_per_decade / 6))  # a window of about a third of a decade
    centred = _centred(raw, half)
    start = float(np.median(raw[: min(5, n)]))
    m = int(np.argmin(centred))
    min_loss = float(centred[m])
    # a fall from an over-confident init down to the class prior is not learning: measure the
    # drop from the lower of the start and the loss of predicting the class frequencies
    ref = min(start, chance) if math.isfinite(chance) else start
    drop = max(0.0, (ref - min_loss) / abs(ref)) if ref else 0.0
    resid = raw[: m + 1] - centred[: m + 1]
    noise = float(resid.std()) if m >= 2 else 0.0
    steep_lr = steep_range = suggestion = None
    if m >= 1:
        slope = _local_slopes(raw[: m + 1], np.log10(lr[: m + 1]), 2 * half)
        k = int(np.nanargmin(slope)) if np.isfinite(slope).any() else -1
        if k >= 0 and slope[k] < 0:
            lo = hi = k
            while lo > 0 and slope[lo - 1] <= 0.5 * slope[k]:
                lo -= 1
            while hi < m and slope[hi + 1] <= 0.5 * slope[k]:
                hi += 1
            steep_lr = float(lr[k])
            steep_range = (float(lr[lo]), float(lr[hi]))
        if start > min_loss:
            # the falling part: from 10% to 90% of the way down from the start to the minimum
            gone = (start - centred[: m + 1]) / (start - min_loss)
            a = int(np.argmax(gone >= 0.1))
            b = int(np.argmax(gone >= 0.9))
            suggestion = float(np.clip(lr[m] / 10, lr[a], lr[max(a, b)]))
    return SeedSweep(
        seed,
        none.lrs,
        none.losses,
        none.smoothed,
        tuple(float(x) for x in centred),
        stop,
        start,
        min_loss,
        float(lr[m]),
        steep_lr,
        steep_range,
        suggestion,
        drop,
        noise,
        chance,
    )


def _local_slopes(y: np.ndarray, x: np.ndarray, half: int) -> np.ndarray:
    """Least-squares slope of ``y`` against ``x`` over ``[i - half, i + half]`` at each point
    whose window fits entirely (NaN near the ends, where a shrunken window is all noise)."""
    n = len(y)
    out = np.full(n, np.nan)
    if n < 3:
        return out
    half = min(half, (n - 1) // 2)
    for i in range(half, n - half):
        xs, ys = x[i - half : i + half + 1], y[i - half : i + half + 1]
        xc = xs - xs.mean()
        out[i] = float((xc * (ys - ys.mean())).sum() / (xc * xc).sum())
    return out


def _geo_median(values: list[float]) -> float:
    """The median on a log scale; for an odd count exactly one of the values."""
    v = sorted(values)
    mid = len(v) // 2
    return float(v[mid]) if len(v) % 2 else math.sqrt(v[mid - 1] * v[mid])


def _shape(seeds: list[SeedSweep], early: int) -> tuple[str, float, float]:
    """The curve's shape (see the module docstring) and the two noise measures."""
    stopped_early = [len(s.losses) <= early and s.stop != "end" for s in seeds]
    rose = [
        s.stop != "end" and s.drop < NO_DESCENT_DROP and len(s.centred) > 2
        and s.centred[min(early, len(s.centred) - 1)] > s.start_loss
        and (s.min_lr is None or s.min_lr <= s.lrs[min(early, len(s.lrs) - 1)])
        for s in seeds
    ]  # fmt: skip
    sugg = [s.suggestion for s in seeds if s.suggestion is not None]
    spread = math.log10(max(sugg) / min(sugg)) if sugg else 0.0
    ratios = [s.noise / (s.start_loss - s.min_loss) for s in seeds if s.start_loss > s.min_loss]
    noise_to_drop = float(np.median(ratios)) if ratios else math.inf
    majority = len(seeds) // 2 + 1
    if sum(a or b for a, b in zip(stopped_early, rose, strict=True)) >= majority:
        return "diverges_at_once", spread, noise_to_drop
    if float(np.median([s.drop for s in seeds])) < NO_DESCENT_DROP or len(sugg) < majority:
        return "no_descent", spread, noise_to_drop
    if spread > SPREAD_DECADES or noise_to_drop > NOISE_TO_DROP:
        return "too_noisy", spread, noise_to_drop
    return "ok", spread, noise_to_drop


def _start_index(lrs: np.ndarray, first: SeedSweep, narrow: float | None) -> int:
    """Where a later seed's sweep starts: ``narrow`` decades below the first seed's minimum-loss
    lr. Below that the lr is too small to move the weights (the steps before it add up to less
    than a thousandth of the lr spent up to the minimum), so the curve from there on is the one
    a full sweep draws, and the 3-4 decades skipped are a third of each sweep. The whole range
    when the first seed found no healthy minimum: its shape must then be confirmed in full (and
    a narrowed seed that blows up within its first steps or finds no minimum is swept again in
    full, so that every shape is judged on the whole range)."""
    if narrow is None or first.suggestion is None or first.min_lr is None:
        return 0
    return int(np.searchsorted(lrs, first.min_lr / 10**narrow))


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

    "No descent" is confirmed before it is reported: the test runs again with ``lengthen``
    times the steps (1: no second run) and that result stands (``extra["lengthened_from"]``
    says so), unless it diverges at once: over the same lrs the shorter sweep did not, so its
    "no descent" stands (``extra["longer_shape"]``). The rule runs once, on the result that
    stands. A model that starts slowly gets only a few dozen steps at useful lrs in a
    100-step sweep: group norm on digits falls 7% below the class prior there and 57-66% in a
    300-step sweep, and trains to 98.6%; labels unrelated to the inputs fall in neither.
    """
    if 0 < rule_iters < 10:
        raise ValueError(f"rule_iters={rule_iters}: the rule averages the last 10 steps (0: skip)")
    kwargs = dict(beta=beta, diverge=diverge, narrow=narrow)
    sweep = _range_test(recipe, min_lr, max_lr, steps, seeds, **kwargs)
    if sweep.shape == "no_descent" and lengthen > 1:
        longer = _range_test(recipe, min_lr, max_lr, steps * lengthen, seeds, **kwargs)
        if longer.shape == "diverges_at_once":  # not what "no descent" over the range meant
            sweep = dataclasses.replace(sweep, extra={"longer_shape": longer.shape})
        else:
            sweep = dataclasses.replace(longer, extra={"lengthened_from": steps})
    if rule_iters == 0:
        return sweep
    return _with_rule(recipe, sweep, seeds[0], rule_iters, rule_tries, diverge)


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


# ----------------------------------------------------------------------------------------------
# the verdict and the figure


def _fmt(lr: float | None) -> str:
    return "none" if lr is None else f"{lr:.2g}"


def _judge_current(sweep: LRSweep, current: float) -> tuple[str, str]:
    """(status, advice) for the recipe's own (absolute) lr against the sweep: fail at or above
    the lr where the sweeps diverged or more than 2 decades above the suggestion, warn more
    than 1.5 decades from it."""
    stops = [s.lrs[len(s.losses) - 1] for s in sweep.seeds if s.stop != "end" and s.losses]
    if stops and current >= min(stops):
        return "fail", (
            f"the recipe's lr {_fmt(current)} is at or above where the loss diverged in the "
            f"sweep ({_fmt(min(stops))}): set optimizer.lr near {_fmt(sweep.recipe_lr)}"
        )
    decades = math.log10(current / sweep.suggestion) if sweep.suggestion else 0.0
    if abs(decades) > 1.5:  # fail far above: 100x the suggestion trains badly or not at all
        return "fail" if decades > 2 else "warn", (
            f"the recipe's lr {_fmt(current)} is {abs(decades):.1f} decades "
            f"{'above' if decades > 0 else 'below'} the suggestion: try optimizer.lr near "
            f"{_fmt(sweep.recipe_lr)}"
        )
    return "ok", ""


def _rule_text(sweep: LRSweep) -> str:
    """One clause on the 100-iteration rule: where it passed and how fast, or that it did not."""
    passed = [t for t in sweep.rule_trials if t["passed"]]
    if passed:
        t = passed[0]
        return (
            f"at lr {_fmt(t['lr'])} the loss falls {100 * RULE_DROP:.0f}% in {t['steps']} steps "
            f"(lecture's rule: within {sweep.rule_iters})"
        )
    tried = ", ".join(_fmt(t["lr"]) for t in sweep.rule_trials)
    drop = f"{100 * RULE_DROP:.0f}%"
    return f"no lr tried ({tried}) drops the loss {drop} in {sweep.rule_iters} steps"


def check_lr(sweep: LRSweep, figure: str | None = None, current_lr: float | None = None) -> Finding:
    """The doctor's finding for a range test (check ``lr_range``); ``figure``: its PNG name;
    ``current_lr``: the recipe's own (absolute) learning rate, judged against the sweep."""
    values = sweep.to_json()
    figures = (figure,) if figure else ()
    rule = f"; {_rule_text(sweep)}" if sweep.rule_trials else ""
    seeds = len(sweep.seeds)
    short = sweep.extra.get("lengthened_from")
    sweeps = f"{seeds} seeds, {short} and {sweep.steps} steps" if short else f"{seeds} seeds"
    if sweep.shape == "diverges_at_once":
        n = [len(s.losses) for s in sweep.seeds]
        return Finding(
            "lr_range",
            "fail",
            f"the loss diverges at once: from lr {_fmt(sweep.min_lr)} the sweep blew up within "
            f"{max(n)} steps ({seeds} seeds)",
            f"even lr {_fmt(sweep.min_lr)} is too high for {sweep.optimizer}: sweep from a lower "
            "min_lr; if it still diverges check the initial loss and the input scale "
            "(preprocessing)",
            values,
            figures,
        )
    if sweep.shape == "no_descent":
        drop = max((s.drop for s in sweep.seeds), default=0.0)
        c = sweep.seeds[0].chance_loss if sweep.seeds else math.nan
        chance = f"the class-prior loss {c:.3g}" if math.isfinite(c) else "its start"
        return Finding(
            "lr_range",
            "fail",
            f"no descent: over lr {_fmt(sweep.min_lr)}..{_fmt(sweep.max_lr)} the smoothed loss "
            f"never falls more than {100 * drop:.0f}% below the lower of its start and "
            f"{chance} ({sweeps})",
            "nothing in this range trains the model: check that the labels match the inputs "
            "(overfit a small sample), that the weights require grad and reach the optimiser, "
            "the loss, and whether the gradients vanish before the first layers (the layers "
            "check: saturating units without normalisation); or raise max_lr if the range is "
            "too low",
            values,
            figures,
        )
    lo, hi = sweep.steepest_range or (None, None)
    spread = sweep.spread or (None, None)
    measured = (
        f"suggested lr {_fmt(sweep.suggestion)} (min-loss lr / 10), steepest descent "
        f"{_fmt(lo)}..{_fmt(hi)}, seeds {_fmt(spread[0])}..{_fmt(spread[1])}"
    )
    if sweep.lr_scale != 1.0:
        measured += f" (optimizer.lr {_fmt(sweep.recipe_lr)} before batch-size scaling)"
    if short:
        measured += f" (a slow start: no descent in {short} steps, read off {sweep.steps})"
    if sweep.shape == "too_noisy":
        why = (
            f"per-seed suggestions spread over {sweep.spread_decades:.1f} decades"
            if sweep.spread_decades > SPREAD_DECADES
            else f"loss noise is {sweep.noise_to_drop:.2f} of its drop"
        )
        return Finding(
            "lr_range",
            "warn",
            f"too noisy to trust: {why}; {measured}{rule}",
            "prefer the lower end of the spread, or rerun with a larger batch or more steps; "
            "confirm with a short grid around it",
            values,
            figures,
        )
    status, advice = ("ok", "") if current_lr is None else _judge_current(sweep, current_lr)
    if status == "ok" and sweep.rule_trials and sweep.rule_lr is None:
        status, advice = (
            "warn",
            (
                f"the suggestion does not pass the lecture's rule (a clear drop within "
                f"{sweep.rule_iters} steps): confirm it with a short grid of real runs around it"
            ),
        )
    return Finding("lr_range", status, f"{measured}{rule}", advice, values, figures)


def plot_lr_sweep(sweep: LRSweep, path: str | Path) -> Path:
    """Loss vs lr (log x): raw losses faint, the smoothed curve per seed, the suggestion and
    the steepest range marked. Written as a PNG through :mod:`trainlab.figures` (no global
    backend or figure state, atomic)."""
    from trainlab.figures import new_figure, save_figure

    fig, ax = new_figure(7.5, 4.5, dpi=110)
    colours = [f"C{i}" for i in range(10)]
    tops, bottoms = [], []
    for i, s in enumerate(sweep.seeds):
        c = colours[i % 10]
        lrs, raw = np.asarray(s.lrs), np.asarray(s.losses)
        ok = np.isfinite(raw)
        ax.scatter(lrs[ok], raw[ok], s=7, color=c, alpha=0.25, linewidths=0)
        n = len(s.centred)
        if n:
            ax.plot(lrs[:n], s.centred, color=c, lw=2, label=f"seed {s.seed} (smoothed)")
            tops.append(max(s.start_loss, s.centred[0]))
            bottoms.append(min(s.centred))
        if s.stop != "end" and n:
            ax.plot(lrs[n - 1], s.centred[-1], "x", color=c, ms=8, mew=2)
    if sweep.steepest_range:
        ax.axvspan(*sweep.steepest_range, color="0.5", alpha=0.15, label="steepest descent")
    if sweep.suggestion:
        ax.axvline(
            sweep.suggestion, color="k", lw=1.5, label=f"suggested lr {_fmt(sweep.suggestion)}"
        )
    if sweep.rule_lr:
        ax.axvline(
            sweep.rule_lr,
            color="k",
            ls=":",
            lw=1.5,
            label=f"drops clearly within {sweep.rule_iters} steps: {_fmt(sweep.rule_lr)}",
        )
    if tops:
        top, bottom = max(tops), min(bottoms)
        pad = 0.1 * max(top - bottom, 1e-3)
        ax.set_ylim(bottom - pad, top + 4 * pad)
    ax.set_xscale("log")
    ax.set_xlim(sweep.min_lr, sweep.max_lr)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    title = {
        "ok": "LR range test",
        "no_descent": "LR range test: NO DESCENT",
        "diverges_at_once": "LR range test: DIVERGES AT ONCE",
        "too_noisy": "LR range test: TOO NOISY TO TRUST",
    }[sweep.shape]
    ax.set_title(f"{title} ({sweep.optimizer}, {len(sweep.seeds)} seeds, x = stopped)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.8)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.12, top=0.92)  # fixed: no tight_layout
    return save_figure(fig, path)
