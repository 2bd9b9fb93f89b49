"""Every registered schedule against a lecture formula (002, 004) or torch's own scheduler stepped
once per iteration, plus the linear warm-up composition.

A schedule is ``mult(t, T)``, the factor on the base learning rate at step t of T; torch's
schedulers give absolute learning rates, so they are compared as ``lr * mult``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch.optim import lr_scheduler

import trainlab.catalog  # noqa: F401  (fills every registry)
from trainlab.errors import RecipeError
from trainlab.optim.schedules import SCHEDULES, create_schedule, with_warmup

LR = 0.4


def _build(name: str, lr: float = LR, steps_per_epoch: int = 10, **params):
    return SCHEDULES.build(name, context={"lr": lr, "steps_per_epoch": steps_per_epoch}, **params)


def _torch_lrs(make: Callable, total: int, lr: float = LR) -> list[float]:
    """The learning rate torch's scheduler gives at each step 0..total-1 (stepped per iteration)."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    sched = make(opt)
    lrs = []
    for t in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        if t < total - 1:
            opt.step()
            sched.step()
    return lrs


def _assert_matches(mult, ref: list[float], total: int, lr: float = LR) -> None:
    ours = torch.tensor([lr * mult(t, total) for t in range(total)], dtype=torch.float64)
    torch.testing.assert_close(ours, torch.tensor(ref, dtype=torch.float64), rtol=1e-9, atol=1e-12)


def check_constant() -> None:
    mult = _build("constant")
    assert all(mult(t, 50) == 1.0 for t in range(51))


def check_step() -> None:
    spe, total = 7, 200
    for step_epochs, gamma in [(3, 0.1), (5, 0.5)]:
        mult = _build("step", steps_per_epoch=spe, step_epochs=step_epochs, gamma=gamma)
        ref = _torch_lrs(
            lambda o, s=step_epochs, g=gamma: lr_scheduler.StepLR(o, step_size=s * spe, gamma=g),
            total,
        )
        _assert_matches(mult, ref, total)
    # the defaults: x0.1 every 30 epochs
    mult = _build("step", steps_per_epoch=2)
    assert mult(59, 1000) == 1.0 and mult(60, 1000) == pytest.approx(0.1)


def check_multistep() -> None:
    spe, total = 5, 300
    milestones, gamma = [3, 7, 20], 0.3
    mult = _build("multistep", steps_per_epoch=spe, milestones=milestones, gamma=gamma)
    steps = [m * spe for m in milestones]
    ref = _torch_lrs(lambda o: lr_scheduler.MultiStepLR(o, milestones=steps, gamma=gamma), total)
    _assert_matches(mult, ref, total)
    # unsorted milestones are the same schedule
    shuffled = _build("multistep", steps_per_epoch=spe, milestones=[20, 3, 7], gamma=gamma)
    assert [shuffled(t, total) for t in range(total)] == [mult(t, total) for t in range(total)]
    # ResNet defaults: x0.1 at epochs 30, 60, 90
    mult = _build("multistep", steps_per_epoch=1)
    assert [mult(t, 100) for t in (29, 30, 60, 90)] == pytest.approx([1.0, 0.1, 0.01, 0.001])


def check_cosine() -> None:
    total = 100
    for final_lr in (0.0, 0.04):
        mult = _build("cosine", final_lr=final_lr)
        # lecture 004: lr_t = lr_T + 1/2 (lr_0 - lr_T)(1 + cos(pi t / T))
        assert LR * mult(0, total) == pytest.approx(LR)
        assert LR * mult(total // 2, total) == pytest.approx((LR + final_lr) / 2)
        assert LR * mult(total, total) == pytest.approx(final_lr, abs=1e-12)
        for t in range(total + 1):
            lecture = final_lr + 0.5 * (LR - final_lr) * (1 + math.cos(t * math.pi / total))
            assert LR * mult(t, total) == pytest.approx(lecture)
        ref = _torch_lrs(
            lambda o, f=final_lr: lr_scheduler.CosineAnnealingLR(o, T_max=total, eta_min=f), total
        )
        _assert_matches(mult, ref, total)


def check_linear() -> None:
    total = 80
    mult = _build("linear")
    for t in range(total + 1):
        assert mult(t, total) == pytest.approx(1 - t / total)  # lecture 002
    mult = _build("linear", final_lr=0.1)
    assert LR * mult(0, total) == pytest.approx(LR)
    assert LR * mult(total, total) == pytest.approx(0.1)
    assert LR * mult(total // 4, total) == pytest.approx(0.1 + (LR - 0.1) * 0.75)


def check_inverse_sqrt() -> None:
    for spe, timescale in [(10, 1.0), (4, 2.5)]:
        mult = _build("inverse_sqrt", steps_per_epoch=spe, timescale_epochs=timescale)
        tau = timescale * spe
        for t in range(0, 300, 7):
            assert mult(t, 300) == pytest.approx(1.0 / math.sqrt(1.0 + t / tau))
        assert mult(0, 300) == 1.0
        # after k timescales the lr is lr_0 / sqrt(1 + k) (lecture 002's alpha_0 / sqrt(t))
        assert mult(round(3 * tau), 300) == pytest.approx(0.5)


def _lecture_onecycle(i: float, total: float, p: float, lr0: float, lr_max: float, lr_min: float):
    """Lecture 004 (linear segments): peak at i = pI, lr_min at i = I."""
    if i < p * total:
        return lr_max + (lr0 - lr_max) * (1 - i / (p * total))
    return lr_min + (lr_max - lr_min) * (1 - (i - p * total) / (total - p * total))


def check_onecycle() -> None:
    cases = [(100, 0.3, 25.0, 1e4), (57, 0.25, 10.0, 100.0), (12, 0.5, 4.0, 3.0)]
    for total, pct, div, final_div in cases:
        mult = _build("onecycle", pct_start=pct, div_factor=div, final_div_factor=final_div)
        ref = _torch_lrs(
            lambda o, T=total, p=pct, d=div, f=final_div: lr_scheduler.OneCycleLR(
                o,
                max_lr=LR,
                total_steps=T,
                pct_start=p,
                anneal_strategy="cos",
                div_factor=d,
                final_div_factor=f,
                three_phase=False,
                cycle_momentum=False,
            ),
            total,
        )
        _assert_matches(mult, ref, total)

    # anneal=linear is the lecture's formula itself, at every step, for whole and fractional pI
    for total, pct, div, final_div in [(100, 0.3, 25.0, 1e4), (100, 0.25, 20.0, 50.0), *cases]:
        mult = _build(
            "onecycle", pct_start=pct, div_factor=div, final_div_factor=final_div, anneal="linear"
        )
        lr0, lr_min = LR / div, LR / div / final_div
        for t in range(total):
            lecture = _lecture_onecycle(t, total, pct, lr0, LR, lr_min)
            assert LR * mult(t, total) == pytest.approx(lecture, rel=1e-12), (total, t)


def test_onecycle_linear_peaks_at_step_pI_and_ends_one_segment_above_lr_min() -> None:
    """The slide on a 100-step run (p = 0.3): lr_0 at step 0, lr_max at step 30 (not 29), and
    the last step 99 at lr_min + (lr_max - lr_min) / 70 (lr_min itself would be step 100)."""
    total, pct, div, final_div = 100, 0.3, 25.0, 1e4
    mult = _build(
        "onecycle", pct_start=pct, div_factor=div, final_div_factor=final_div, anneal="linear"
    )
    lr0, lr_min = LR / div, LR / div / final_div
    lrs = [LR * mult(t, total) for t in range(total)]
    assert lrs[0] == pytest.approx(lr0)
    assert max(lrs) == lrs[30] == pytest.approx(LR) and lrs.index(max(lrs)) == 30
    assert lrs[29] == pytest.approx(LR - (LR - lr0) / 30)
    assert lrs[99] == pytest.approx(lr_min + (LR - lr_min) / 70)
    # torch's OneCycleLR(anneal_strategy=linear) puts the peak at pT - 1 = 29 and lr_min at
    # step 99: 3.2% of lr_max below the slide at step 29, one step ahead all the way down
    ref = _torch_lrs(
        lambda o: lr_scheduler.OneCycleLR(
            o,
            max_lr=LR,
            total_steps=total,
            pct_start=pct,
            anneal_strategy="linear",
            div_factor=div,
            final_div_factor=final_div,
            three_phase=False,
            cycle_momentum=False,
        ),
        total,
    )
    assert ref.index(max(ref)) == 29 and ref[99] == pytest.approx(lr_min)
    assert ref[29] - lrs[29] == pytest.approx((LR - lr0) / 30)  # 0.032 lr_max
    for t in range(29, total - 1):
        assert ref[t] == pytest.approx(lrs[t + 1], rel=1e-9)  # the down phase, one step early


def check_sgdr() -> None:
    total = 120
    cases = [(1, 7, 1, 0.0), (2, 2.5, 2, 0.01), (3, 1, 3, 0.05)]
    for spe, period_epochs, period_mult, final_lr in cases:
        mult = _build(
            "sgdr",
            steps_per_epoch=spe,
            period_epochs=period_epochs,
            period_mult=period_mult,
            final_lr=final_lr,
        )
        t0 = round(period_epochs * spe)
        ref = _torch_lrs(
            lambda o, a=t0, m=period_mult, f=final_lr: lr_scheduler.CosineAnnealingWarmRestarts(
                o, T_0=a, T_mult=m, eta_min=f
            ),
            total,
        )
        _assert_matches(mult, ref, total)
        assert mult(t0, total) == pytest.approx(1.0)  # the first restart


def check_reduce_on_plateau() -> None:
    """The step multiplier is 1 (the reduction is the callback's scale); the rule that sets the
    scale matches torch's ReduceLROnPlateau (tests/engine/test_plateau.py: every parameter)."""
    from trainlab.optim.schedules import Plateau

    mult = _build("reduce_on_plateau")
    assert all(mult(t, 50) == 1.0 for t in range(51))
    values = [1.0, 0.8, 0.8, 0.8, 0.79999, 0.7, 0.7, 0.7, 0.7, 0.7]
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=LR)
    sched = lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=1)
    rule = Plateau(mode="min", factor=0.1, patience=1)
    for v in values:
        sched.step(v)
        rule.update(v, LR)
        assert LR * rule.scale == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
    assert rule.scale < 0.01


CHECKS: dict[str, Callable[[], None]] = {
    "constant": check_constant,
    "step": check_step,
    "multistep": check_multistep,
    "cosine": check_cosine,
    "linear": check_linear,
    "inverse_sqrt": check_inverse_sqrt,
    "onecycle": check_onecycle,
    "sgdr": check_sgdr,
    "reduce_on_plateau": check_reduce_on_plateau,
}


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedule_matches_reference(name: str) -> None:
    if name not in CHECKS:
        pytest.fail(f"schedule {name!r} is registered but has no reference check in this test")
    CHECKS[name]()


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedule_is_positive_and_starts_sensibly(name: str) -> None:
    mult = _build(name, **({"final_lr": 0.0} if "final_lr" in SCHEDULES.get(name).params() else {}))
    total = 97
    values = [mult(t, total) for t in range(total)]
    assert all(math.isfinite(v) and v >= 0.0 for v in values)
    assert max(values) <= 1.0 + 1e-12


# ---------------------------------------------------------------------------------------------
# warm-up


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_with_warmup_ramps_then_runs_the_schedule_over_the_rest(name: str) -> None:
    warmup, total = 10, 130
    sched = _build(name)
    mult = with_warmup(sched, warmup, total)
    for t in range(warmup):
        assert mult(t) == pytest.approx((t + 1) / warmup)
    assert mult(warmup - 1) == pytest.approx(1.0)
    for t in range(warmup, total):
        assert mult(t) == sched(t - warmup, total - warmup)


def test_without_warmup_is_the_schedule() -> None:
    sched = _build("cosine")
    mult = with_warmup(sched, 0, 50)
    assert [mult(t) for t in range(50)] == [sched(t, 50) for t in range(50)]


def test_create_schedule_passes_params_and_warmup() -> None:
    mult = create_schedule(
        "cosine", {"final_lr": 0.04}, lr=LR, steps_per_epoch=10, warmup=5, total=105
    )
    assert mult(0) == pytest.approx(1 / 5)
    assert mult(5) == pytest.approx(1.0)
    assert LR * mult(55) == pytest.approx((LR + 0.04) / 2)  # half way through the 100 cosine steps
    assert mult(104) == pytest.approx(_build("cosine", final_lr=0.04)(99, 100))
    step = create_schedule(
        "step", {"step_epochs": 2, "gamma": 0.5}, lr=LR, steps_per_epoch=3, warmup=0, total=100
    )
    assert [step(t) for t in (5, 6, 12)] == pytest.approx([1.0, 0.5, 0.25])


def test_create_schedule_unknown_name() -> None:
    with pytest.raises(RecipeError, match="did you mean 'cosine'"):
        create_schedule("cosin", {}, lr=LR, steps_per_epoch=1, warmup=0, total=10)


def test_epoch_milestones_stay_absolute_with_warmup() -> None:
    """multistep [3, 6] with 2 warm-up epochs still decays at epochs 3 and 6 (not 5 and 8)."""
    from trainlab.optim.schedules import create_schedule

    spe = 10
    mult = create_schedule(
        "multistep", {"milestones": (3, 6), "gamma": 0.1}, 1.0, spe, 2 * spe, 100
    )
    assert mult(0) == pytest.approx(1 / 20) and mult(19) == pytest.approx(1.0)
    assert mult(29) == pytest.approx(1.0) and mult(30) == pytest.approx(0.1)
    assert mult(59) == pytest.approx(0.1) and mult(60) == pytest.approx(0.01)
