"""Learning-rate schedules as pure functions of the step (lecture 002 and 004 formulas).

Each registered factory returns ``mult(t, T) -> float``, the multiplier of the base learning rate
at step ``t`` of ``T`` (both counted after warm-up). ``with_warmup`` composes any of them with a
linear warm-up. The trainer sets ``lr = base_lr * mult`` on every iteration: no scheduler object,
so the state to checkpoint is only the step counter, and a schedule is testable on its own.
Epoch-based parameters (step milestones, SGDR period) are converted with ``steps_per_epoch``.

The one schedule that is not a function of the step, ``reduce_on_plateau``, reads the validation
metric: its multiplier is 1 and the run's :class:`ScaledLR` carries a ``scale`` that the
``ReduceOnPlateau`` callback (trainlab.engine.plateau) lowers after a validation; its state is
in every checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from trainlab.errors import RecipeError
from trainlab.registry import Registry
from trainlab.types import NonNegative, NonNegativeInt, Positive, PositiveInt

__all__ = [
    "SCHEDULES",
    "Schedule",
    "with_warmup",
    "sgdr_cycle_ends",
    "create_schedule",
    "ScaledLR",
    "Plateau",
]

SCHEDULES = Registry("schedule", "learning-rate schedules (schedule.name)")
Schedule = Callable[[int, int], float]


@SCHEDULES.register("constant")
def constant(*, lr: float, steps_per_epoch: int) -> Schedule:
    """lr_t = lr_0."""
    return lambda t, total: 1.0


@SCHEDULES.register("step", absolute=True)
def step(
    *, step_epochs: PositiveInt = 30, gamma: Positive = 0.1, lr: float, steps_per_epoch: int
) -> Schedule:
    """Multiply by gamma every ``step_epochs`` epochs."""
    every = max(1, step_epochs * steps_per_epoch)
    return lambda t, total: gamma ** (t // every)


@SCHEDULES.register("multistep", absolute=True)
def multistep(
    *,
    milestones: tuple[NonNegativeInt, ...] = (30, 60, 90),
    gamma: Positive = 0.1,
    lr: float,
    steps_per_epoch: int,
) -> Schedule:
    """Multiply by gamma at each milestone epoch (ResNet: x0.1 at epochs 30, 60, 90)."""
    points = sorted(m * steps_per_epoch for m in milestones)
    return lambda t, total: gamma ** sum(t >= p for p in points)


@SCHEDULES.register("cosine")
def cosine(*, final_lr: NonNegative = 0.0, lr: float, steps_per_epoch: int) -> Schedule:
    """lr_t = lr_T + 1/2 (lr_0 - lr_T)(1 + cos(pi t / T))."""
    f = final_lr / lr
    return lambda t, total: f + 0.5 * (1.0 - f) * (1.0 + math.cos(math.pi * t / total))


@SCHEDULES.register("linear")
def linear(*, final_lr: NonNegative = 0.0, lr: float, steps_per_epoch: int) -> Schedule:
    """lr_t = lr_0 (1 - t/T), ending at ``final_lr`` (0 in the lecture)."""
    f = final_lr / lr
    return lambda t, total: f + (1.0 - f) * (1.0 - t / total)


@SCHEDULES.register("inverse_sqrt")
def inverse_sqrt(*, timescale_epochs: Positive = 1.0, lr: float, steps_per_epoch: int) -> Schedule:
    """lr_t = lr_0 / sqrt(t') with t' = 1 + t / timescale (t' counts timescales from 1)."""
    tau = max(1.0, timescale_epochs * steps_per_epoch)
    return lambda t, total: 1.0 / math.sqrt(1.0 + t / tau)


@SCHEDULES.register("onecycle")
def onecycle(
    *,
    pct_start: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.3,
    div_factor: Positive = 25.0,
    final_div_factor: Positive = 1e4,
    anneal: Literal["cos", "linear"] = "cos",
    lr: float,
    steps_per_epoch: int,
) -> Schedule:
    """One cycle (lecture 004): lr_0 = lr/div up to lr_max = lr over p*T, then down to lr_min.

    lr_min = lr_0 / final_div_factor. ``anneal: cos`` is torch's OneCycleLR (cosine segments,
    peak at step pT - 1, lr_min at the last step T - 1). ``anneal: linear`` is the lecture's
    formula itself, step i of I: the peak at i = pI, lr_min at i = I (one past the last step, so
    the last step is at lr_min + (lr_max - lr_min) / (I - pI)). The two conventions differ by a
    step; the slide's is kept for the linear form so it can be checked against the slide.
    """
    start, end = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)

    def lecture(t: int, total: int) -> float:
        rise = pct_start * total
        if t < rise:
            return 1.0 + (start - 1.0) * (1.0 - t / rise)
        return end + (1.0 - end) * (1.0 - (t - rise) / (total - rise))

    def cos(a: float, b: float, frac: float) -> float:
        return b + (a - b) / 2.0 * (1.0 + math.cos(math.pi * frac))

    def torch_cos(t: int, total: int) -> float:
        peak = pct_start * total - 1  # torch's OneCycleLR convention: the peak at step pT - 1
        if t <= peak:
            return cos(start, 1.0, t / peak if peak > 0 else 1.0)
        return cos(1.0, end, (t - peak) / (total - 1 - peak))

    return lecture if anneal == "linear" else torch_cos


@SCHEDULES.register("sgdr")
def sgdr(
    *,
    period_epochs: Positive = 10.0,
    period_mult: PositiveInt = 1,
    final_lr: NonNegative = 0.0,
    lr: float,
    steps_per_epoch: int,
) -> Schedule:
    """Cosine with warm restarts (Loshchilov and Hutter): restart every period, period *= mult."""
    first, f = sgdr_first_period(period_epochs, steps_per_epoch), final_lr / lr

    def mult(t: int, total: int) -> float:
        period, start = first, 0
        while t >= start + period:
            start, period = start + period, period * period_mult
        return f + 0.5 * (1.0 - f) * (1.0 + math.cos(math.pi * (t - start) / period))

    return mult


def sgdr_first_period(period_epochs: float, steps_per_epoch: int) -> int:
    """The first SGDR cycle's length in steps (at least one)."""
    return max(1, round(period_epochs * steps_per_epoch))


def sgdr_cycle_ends(
    period_epochs: float, period_mult: int, steps_per_epoch: int, total: int
) -> list[int]:
    """The steps after which each complete SGDR cycle ends (the lr has annealed to its
    minimum): where a snapshot ensemble (Huang et al. 2017) takes its members."""
    ends, period, end = [], sgdr_first_period(period_epochs, steps_per_epoch), 0
    while end + period <= total:
        end += period
        ends.append(end)
        period *= period_mult
    return ends


@SCHEDULES.register("reduce_on_plateau", plateau=True)
def reduce_on_plateau(
    *,
    metric: Literal["val_loss", "val_acc"] = "val_loss",
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1,
    patience: NonNegativeInt = 10,
    threshold: NonNegative = 1e-4,
    threshold_mode: Literal["rel", "abs"] = "rel",
    cooldown: NonNegativeInt = 0,
    min_lr: NonNegative = 0.0,
    lr: float,
    steps_per_epoch: int,
) -> Schedule:
    """Divide the lr by 10 when the validation metric plateaus (lecture 004; torch's rule).

    torch's ReduceLROnPlateau: after more than ``patience`` validations without a ``threshold``
    improvement of ``metric`` (val_loss: lower, val_acc: higher), lr *= ``factor``, then
    ``cooldown`` validations ignored; never below ``min_lr``. The step multiplier is 1: the
    reduction is the :class:`ReduceOnPlateau` callback's ``scale`` on :class:`ScaledLR`.
    """
    return lambda t, total: 1.0


class ScaledLR:
    """``lr(step) = base_lr * scale * mult(step)``: the learning rate the trainer reads each step.

    ``scale`` is 1 (the schedule is a pure function of the step) except under
    ``reduce_on_plateau``, whose callback lowers it after a validation; the callback's state,
    not this object, is what a checkpoint keeps.
    """

    def __init__(self, base_lr: float, mult: Callable[[int], float]) -> None:
        self.base_lr, self.mult, self.scale = base_lr, mult, 1.0

    def __call__(self, step: int) -> float:
        return self.base_lr * self.scale * self.mult(step)


@dataclass
class Plateau:
    """torch.optim.lr_scheduler.ReduceLROnPlateau's rule on a scale of the base lr.

    Kept as plain numbers (no optimiser), so the state to checkpoint is this dataclass.
    ``eps`` is torch's: a reduction smaller than that (in lr units) is not applied.
    """

    mode: Literal["min", "max"]
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: Literal["rel", "abs"] = "rel"
    cooldown: int = 0
    min_lr: float = 0.0
    eps: float = 1e-8
    best: float | None = None  # None: no validation yet (torch's +-inf)
    num_bad: int = 0
    cooldown_counter: int = 0
    scale: float = 1.0

    def better(self, value: float) -> bool:
        """``value`` improves on the best by more than the threshold (torch's is_better)."""
        best, thr = self.best, self.threshold
        if best is None:
            return True
        if self.threshold_mode == "rel":  # torch's expressions, so ties break the same way
            return value < best * (1.0 - thr) if self.mode == "min" else value > best * (thr + 1.0)
        return value < best - thr if self.mode == "min" else value > best + thr

    def update(self, value: float, base_lr: float) -> None:
        """One validation result, as torch's ``scheduler.step(metric)``."""
        if self.better(value):
            self.best, self.num_bad = value, 0
        else:
            self.num_bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0  # bad validations during the cooldown do not count
        if self.num_bad > self.patience:
            new = max(self.scale * self.factor, self.min_lr / base_lr)
            if base_lr * (self.scale - new) > self.eps:
                self.scale = new
            self.cooldown_counter, self.num_bad = self.cooldown, 0

    def state_dict(self) -> dict[str, Any]:
        return {k: asdict(self)[k] for k in ("best", "num_bad", "cooldown_counter", "scale")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.num_bad = state["best"], state["num_bad"]
        self.cooldown_counter, self.scale = state["cooldown_counter"], state["scale"]


def with_warmup(
    schedule: Schedule, warmup: int, total: int, absolute: bool = False
) -> Callable[[int], float]:
    """Linear warm-up from lr/warmup to lr over ``warmup`` steps, then ``schedule``.

    Most schedules run over the steps after warm-up (``t - warmup`` of ``total - warmup``);
    ``absolute`` ones (step, multistep: "x0.1 at epochs 30, 60, 90") keep counting from 0.
    """
    rest = max(1, total - warmup)

    def mult(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        return schedule(t, total) if absolute else schedule(t - warmup, rest)

    return mult


def create_schedule(
    name: str, params: dict, lr: float, steps_per_epoch: int, warmup: int, total: int
) -> Callable[[int], float]:
    """The recipe's schedule with its warm-up, as ``mult(step)``."""
    for key in ("final_lr", "min_lr"):
        if params.get(key, 0.0) > lr:
            raise RecipeError(
                f"schedule.{key}={params[key]} is above the learning rate {lr}: "
                "a decay schedule ends below where it starts"
            )
    entry = SCHEDULES.get(name)
    schedule = entry.factory(**params, lr=lr, steps_per_epoch=steps_per_epoch)
    return with_warmup(schedule, warmup, total, entry.info.get("absolute", False))
