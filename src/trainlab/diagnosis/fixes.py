"""``trainlab doctor --fix``: prove the fix, not only name it.

Each root finding (one no other finding explains, see ``diagnosis.story``) that carries a fix
is tried in turn, most upstream first: the recipe with the fix's overrides applied, the checks
that failed re-run on it (briefly: the doctor's checks are short by design), the verdicts
before and after compared. A fix is kept when the finding's own check gets better and no
re-run check gets worse; later fixes are tried on top of the kept ones, so the recipe line at
the end is one that was measured as a whole. The curves check is not re-run: it reads a
finished run, and a fix to it needs a new run (``trainlab train RECIPE FIX...``).

Research tools that watch training repair it this way (AutoTrainer, ICSE 2021; DeepDiagnosis,
ICSE 2022); none of the PyTorch toolkits in common use does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainlab.diagnosis.findings import STATUS_RANK, Finding, Status
from trainlab.diagnosis.story import root_findings
from trainlab.recipe import Recipe, resolve_recipe

__all__ = ["FixTrial", "try_fixes", "MAX_TRIALS"]

MAX_TRIALS = 3  # the top fixes tried; each re-runs the failed checks (a few hundred steps)
NEEDS_NEW_RUN = ("curves",)


@dataclass(frozen=True)
class FixTrial:
    """One fix tried: the overrides, the finding it answers, each re-run check's worst status
    before and after, and whether it was kept."""

    fix: tuple[str, ...]
    target: str
    before: dict[str, Status]
    after: dict[str, Status]
    kept: bool

    def line(self) -> str:
        moves = ", ".join(f"{c} {self.before[c]} -> {self.after[c]}" for c in self.after)
        verdict = "kept" if self.kept else "not kept"
        return f"fix {' '.join(self.fix)} (for {self.target}): {moves} ({verdict})"

    def to_json(self) -> dict[str, Any]:
        return {
            "fix": list(self.fix),
            "target": self.target,
            "before": self.before,
            "after": self.after,
            "kept": self.kept,
        }


def _worst_by_check(findings: list[Finding], checks: tuple[str, ...]) -> dict[str, Status]:
    worst: dict[str, Status] = {c: "ok" for c in checks}
    for f in findings:
        if f.name in worst and STATUS_RANK[f.status] > STATUS_RANK[worst[f.name]]:
            worst[f.name] = f.status
    return worst


def _keys(fix: tuple[str, ...]) -> set[str]:
    return {item.split("=", 1)[0] for item in fix}


def try_fixes(
    recipe: Recipe,
    findings: list[Finding],
    diagnose: Callable[[Recipe, tuple[str, ...], Path], list[Finding]],
    out: Path,
    order: tuple[str, ...],
) -> tuple[list[FixTrial], tuple[str, ...]]:
    """Try the root findings' fixes (see the module docstring) with ``diagnose(recipe, checks,
    folder)``, which runs the doctor's ``checks`` on a recipe; ``order`` is the checks' run
    order. Returns the trials and the overrides kept, in the order they were kept."""
    failed = tuple(c for c in order if c not in NEEDS_NEW_RUN and any(
        f.name == c and f.status != "ok" for f in findings))  # fmt: skip
    candidates = [f for f in root_findings(findings) if f.fix and f.name not in NEEDS_NEW_RUN]
    trials: list[FixTrial] = []
    kept: tuple[str, ...] = ()
    current, now = recipe, _worst_by_check(findings, failed)
    for finding in candidates[:MAX_TRIALS]:
        if _keys(finding.fix) & _keys(kept):
            continue  # a kept fix already set this key: that measurement stands
        trial = resolve_recipe(current, list(finding.fix))
        folder = out / f"fix-{len(trials) + 1}"
        after = _worst_by_check(diagnose(trial, failed, folder), failed)
        better = STATUS_RANK[after[finding.name]] < STATUS_RANK[now[finding.name]]
        no_worse = all(STATUS_RANK[after[c]] <= STATUS_RANK[now[c]] for c in failed)
        trials.append(FixTrial(finding.fix, finding.check, dict(now), after, better and no_worse))
        if better and no_worse:
            current, now, kept = trial, after, (*kept, *finding.fix)
    return trials, kept
