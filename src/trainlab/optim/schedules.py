"""Learning-rate schedules as pure functions of the step (lecture 002 and 004 formulas).

Each registered factory returns ``mult(t, T) -> float``, the multiplier of the base learning rate
at step ``t`` of ``T`` (both counted after warm-up). ``with_warmup`` composes any of them with a
linear warm-up. The trainer sets ``lr = base_lr * mult`` on every iteration: no scheduler object,
so the state to checkpoint is only the step counter, and a schedule is testable on its own.
Epoch-based parameters (step milestones, SGDR period) are converted with ``steps_per_epoch``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import Field

from trainlab.errors import RecipeError
from trainlab.registry import Registry
from trainlab.types import NonNegative, NonNegativeInt, Positive, PositiveInt

__all__ = ["SCHEDULES", "Schedule", "with_warmup", "create_schedule"]

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

    lr_min = lr_0 / final_div_factor. ``anneal`` is ``cos`` (torch's OneCycleLR) or ``linear``
    (the lecture's formula).
    """
    start, end = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)

    def interp(a: float, b: float, frac: float) -> float:
        if anneal == "linear":
            return a + (b - a) * frac
        return b + (a - b) / 2.0 * (1.0 + math.cos(math.pi * frac))

    def mult(t: int, total: int) -> float:
        peak = pct_start * total - 1  # torch's OneCycleLR convention: the peak at step pT - 1
        if t <= peak:
            return interp(start, 1.0, t / peak if peak > 0 else 1.0)
        return interp(1.0, end, (t - peak) / (total - 1 - peak))

    return mult


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
    first, f = max(1, round(period_epochs * steps_per_epoch)), final_lr / lr

    def mult(t: int, total: int) -> float:
        period, start = first, 0
        while t >= start + period:
            start, period = start + period, period * period_mult
        return f + 0.5 * (1.0 - f) * (1.0 + math.cos(math.pi * (t - start) / period))

    return mult


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
    if params.get("final_lr", 0.0) > lr:
        raise RecipeError(
            f"schedule.final_lr={params['final_lr']} is above the learning rate {lr}: "
            "a decay schedule ends below where it starts"
        )
    entry = SCHEDULES.get(name)
    schedule = entry.factory(**params, lr=lr, steps_per_epoch=steps_per_epoch)
    return with_warmup(schedule, warmup, total, entry.info.get("absolute", False))
