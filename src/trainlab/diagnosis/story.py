"""One coherent story from the checks' findings (issue 18: "a dead network is not 'lr too high'
and 'lr too low' at once").

Each check judges what it measures, so one fault shows up in several checks: all-zero weights
give an infinite update/weight ratio (the layers check would call that a learning rate far too
high), a sample that does not fit (the overfit check would call the lr too low) and a range test
that finds no descent. :func:`reconcile` keeps every finding and its status, and rewrites the
advice of the ones a deeper cause explains:

1. **Fixes already in the recipe are dropped** (applying them changes nothing): a check must
   never tell the user to do what the recipe does; the texts are written to avoid it, this is
   the net under them.
2. **Symptoms follow from the most upstream cause.** The root is the failing finding (else the
   warning) whose cause ranks first in :data:`~trainlab.diagnosis.findings.CAUSES`. Every other
   non-ok finding whose cause is a symptom (not one of ``DIRECT_CAUSES``) ranked below the root
   says "follows from ROOT" instead of its own advice, and loses its fix, so ``--fix`` tries
   the root's fix first. Direct causes (measured, not inferred) are never explained away: two
   of them are two faults.
3. **Contradicting learning-rate verdicts** left after that (one check says too high, another
   too low): the range test measured the lr directly, so its verdict stands; otherwise the
   failing one. The other says it is contradicted, with no fix.
4. **One cause, one fix.** Findings that blame the same cause carry the same fix: the one of
   the most direct measurement (``FIX_AUTHORITY``: the range test's suggested lr, then the lr
   scaled to the measured update/weight ratio), else the first finding's. Two different
   learning rates for one "too high" would be two stories.

:func:`explain` does 2-4 and needs no recipe (the layer monitor tells its findings' story with
it); :func:`reconcile` adds 1.
"""

from __future__ import annotations

from dataclasses import replace

from trainlab.diagnosis.findings import CAUSE_TEXT, CAUSES, DIRECT_CAUSES, Finding
from trainlab.recipe import Recipe, resolve_recipe

__all__ = ["FIX_AUTHORITY", "explain", "reconcile", "root_findings", "useful_fixes"]

_LR = ("lr.high", "lr.low")
#: whose fix a cause's findings share, most direct measurement first
FIX_AUTHORITY = ("lr_range", "layers.updates")


def useful_fixes(recipe: Recipe, fixes: tuple[str, ...]) -> tuple[str, ...]:
    """The overrides of ``fixes`` that change ``recipe`` (one that does not, or does not
    resolve, is dropped: a finding's fix must be something left to do)."""
    base = recipe.model_dump(mode="json")
    kept = []
    for fix in fixes:
        try:
            changed = resolve_recipe(recipe, [fix]).model_dump(mode="json") != base
        except Exception:  # noqa: BLE001 - a fix the schema refuses is no fix; tests catch it
            changed = False
        if changed:
            kept.append(fix)
    return tuple(kept)


def _root(findings: list[Finding]) -> Finding | None:
    """The failing (else warning) finding with the most upstream cause."""
    for status in ("fail", "warn"):
        blamed = [f for f in findings if f.status == status and f.cause in CAUSES]
        if blamed:
            return min(blamed, key=lambda f: CAUSES[f.cause])
    return None


def _explained(finding: Finding, root: Finding) -> Finding:
    why = CAUSE_TEXT[root.cause]
    return replace(
        finding,
        advice=f"follows from {root.check}: {why}",
        fix=(),
        values={**finding.values, "explained_by": root.check, "own_advice": finding.advice},
    )


def _contradicted(finding: Finding, winner: Finding) -> Finding:
    return replace(
        finding,
        advice=f"contradicted by {winner.check} ({CAUSE_TEXT[winner.cause]}); trust that one",
        fix=(),
        values={**finding.values, "contradicted_by": winner.check, "own_advice": finding.advice},
    )


def reconcile(findings: list[Finding], recipe: Recipe) -> list[Finding]:
    """The findings, in their order, with fixes the recipe already has dropped and the advice
    of the explained ones rewritten (see the module docstring). Statuses are kept."""
    return explain([replace(f, fix=useful_fixes(recipe, f.fix)) if f.fix else f for f in findings])


def explain(findings: list[Finding]) -> list[Finding]:
    """Steps 2-4 of the module docstring: symptoms follow from the most upstream cause,
    contradicting lr verdicts are settled, a cause's findings share one fix."""
    out = list(findings)
    root = _root(out)
    if root is not None:
        rank = CAUSES[root.cause]
        out = [
            _explained(f, root)
            if f is not root
            and f.status != "ok"
            and f.cause in CAUSES
            and f.cause not in DIRECT_CAUSES
            and CAUSES[f.cause] > rank
            else f
            for f in out
        ]
    told = [f for f in out if f.status != "ok" and "explained_by" not in f.values]
    lr = [f for f in told if f.cause in _LR]
    if len({f.cause for f in lr}) > 1:
        winner = next((f for f in lr if f.name == "lr_range"), None) or max(
            lr, key=lambda f: f.status == "fail"
        )
        out = [
            _contradicted(f, winner) if f.cause in _LR and f.cause != winner.cause and f in lr
            else f
            for f in out
        ]  # fmt: skip
    return _one_fix_per_cause(out)


def _one_fix_per_cause(findings: list[Finding]) -> list[Finding]:
    """Every told (not explained, not contradicted) finding blaming a cause gets that cause's
    fix: from the first ``FIX_AUTHORITY`` check that has one, else the first finding's."""
    told = [
        f
        for f in findings
        if f.status != "ok" and f.cause and f.fix and not _EXPLAINED & set(f.values)
    ]
    chosen: dict[str, Finding] = {}
    for f in sorted(told, key=lambda f: _authority(f.check)):
        chosen.setdefault(f.cause, f)
    return [_share_fix(f, chosen[f.cause]) if f in told else f for f in findings]


def _share_fix(finding: Finding, source: Finding) -> Finding:
    """``finding`` with ``source``'s fix; when that differs from its own, its advice names the
    shared fix instead of its own value (one cause, one number in the whole report)."""
    if finding.fix == source.fix:
        return finding
    fix = " ".join(source.fix)
    return replace(
        finding,
        fix=source.fix,
        advice=f"{CAUSE_TEXT[finding.cause]}: {fix} (the value {source.check} measured)",
        values={**finding.values, "own_advice": finding.advice, "own_fix": list(finding.fix)},
    )


_EXPLAINED = {"explained_by", "contradicted_by"}


def _authority(check: str) -> int:
    return FIX_AUTHORITY.index(check) if check in FIX_AUTHORITY else len(FIX_AUTHORITY)


def root_findings(findings: list[Finding]) -> list[Finding]:
    """The non-ok findings that are not explained by, or contradicted by, another: the causes
    ``--fix`` tries, most upstream first."""
    roots = [f for f in findings if f.status != "ok" and not _EXPLAINED & set(f.values)]
    return sorted(roots, key=lambda f: (f.status != "fail", CAUSES.get(f.cause, 99)))
