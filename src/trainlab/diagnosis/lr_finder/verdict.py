"""The doctor's finding for a range test (check ``lr_range``): the shape, the suggestion, the
100-iteration rule and the recipe's own lr in words."""

from __future__ import annotations

import math

from trainlab.diagnosis.findings import Finding
from trainlab.diagnosis.lr_finder.reading import SPREAD_DECADES
from trainlab.diagnosis.lr_finder.results import LRSweep
from trainlab.diagnosis.lr_finder.rule import RULE_DROP

__all__ = ["check_lr"]


def _fmt(lr: float | None) -> str:
    return "none" if lr is None else f"{lr:.2g}"


def _suggested_fix(sweep: LRSweep) -> tuple[str, ...]:
    """``optimizer.lr=`` the suggestion in the recipe's units (before batch-size scaling)."""
    if sweep.recipe_lr is None:
        return ()
    return (f"optimizer.lr={float(f'{sweep.recipe_lr:.2g}'):g}",)


def _judge_current(sweep: LRSweep, current: float) -> tuple[str, str, str]:
    """(status, advice, cause) for the recipe's own (absolute) lr against the sweep: fail at or
    above the lr where the sweeps diverged or more than 2 decades above the suggestion, warn
    more than 1.5 decades from it."""
    stops = [s.lrs[len(s.losses) - 1] for s in sweep.seeds if s.stop != "end" and s.losses]
    if stops and current >= min(stops):
        return (
            "fail",
            (
                f"the recipe's lr {_fmt(current)} is at or above where the loss diverged in the "
                f"sweep ({_fmt(min(stops))}): set optimizer.lr near {_fmt(sweep.recipe_lr)}"
            ),
            "lr.high",
        )
    decades = math.log10(current / sweep.suggestion) if sweep.suggestion else 0.0
    if abs(decades) > 1.5:  # fail far above: 100x the suggestion trains badly or not at all
        return (
            "fail" if decades > 2 else "warn",
            (
                f"the recipe's lr {_fmt(current)} is {abs(decades):.1f} decades "
                f"{'above' if decades > 0 else 'below'} the suggestion: try optimizer.lr near "
                f"{_fmt(sweep.recipe_lr)}"
            ),
            ("lr.high" if decades > 0 else "lr.low"),
        )
    return "ok", "", ""


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
    swept = sweep.extra.get("short_seeds", seeds)  # the short sweep's seeds (all of them)
    counted = f"{swept} seed{'s' if swept != 1 else ''}"
    sweeps = f"{counted} at {short}, the first at {sweep.steps} steps" if short else counted
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
            cause="gradients",
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
            cause="gradients",
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
    status, advice, cause = (
        ("ok", "", "") if current_lr is None else _judge_current(sweep, current_lr)
    )
    if status == "ok" and sweep.rule_trials and sweep.rule_lr is None:
        status, advice = (
            "warn",
            (
                f"the suggestion does not pass the lecture's rule (a clear drop within "
                f"{sweep.rule_iters} steps): confirm it with a short grid of real runs around it"
            ),
        )
    fix = _suggested_fix(sweep) if cause else ()
    return Finding(
        "lr_range", status, f"{measured}{rule}", advice, values, figures, cause=cause, fix=fix
    )
