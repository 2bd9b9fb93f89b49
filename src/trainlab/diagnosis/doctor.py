"""``trainlab doctor``: every check of the doctor on one recipe, one line per finding, and a
report folder (figures, ``report.html``, ``findings.json``).

The order follows lecture 002's recipe: look at the data, check the initial loss, look at the
layers at init and after a few steps, overfit a small sample, find a learning rate; then, given
a finished or running run folder, read its loss curves. Each check lives in its own module and
registers itself there; importing them here, in that order, is what orders the checks.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from trainlab.diagnosis.checks import CHECK_REGISTRY, Context
from trainlab.diagnosis.findings import Finding
from trainlab.diagnosis.fixes import FixTrial, try_fixes
from trainlab.diagnosis.story import reconcile
from trainlab.engine.build import build
from trainlab.engine.seeding import preserved_global_state, set_rng_state
from trainlab.errors import RunFolderError
from trainlab.recipe import Recipe

#: each check and the module that registers it, in the order the checks run (the order of
#: registration depends on what imported a module first, so it is not relied on)
CHECK_MODULES = {
    "data": "trainlab.diagnosis.data",
    "baselines": "trainlab.diagnosis.baselines",
    "initial_loss": "trainlab.diagnosis.initial_loss",
    "layers": "trainlab.diagnosis.layers",
    "overfit": "trainlab.diagnosis.overfit",
    "lr_range": "trainlab.diagnosis.lr_finder.check",
    "curves": "trainlab.diagnosis.curves",
}
for _module in CHECK_MODULES.values():
    importlib.import_module(_module)

__all__ = ["CHECKS", "CHECK_REGISTRY", "Context", "fix_trials", "run_doctor"]

#: the checks ``trainlab doctor --checks`` may name, in the order they run
CHECKS = tuple(CHECK_MODULES)
assert set(CHECKS) == set(CHECK_REGISTRY.names()), "a registered check is missing its place"


def run_doctor(
    recipe: Recipe,
    out: Path,
    run_dir: Path | None = None,
    checks: tuple[str, ...] = CHECKS,
    seeds: tuple[int, ...] = (0, 1, 2),
    on_check: Callable[[str], None] | None = None,
) -> list[Finding]:
    """Run ``checks`` on ``recipe`` (those that need a run only with ``run_dir``), reconcile
    their findings into one story (``diagnosis.story``) and write figures and the report into
    ``out``; ``on_check`` is told each check's name as it starts. The caller's global RNGs and
    torch's switches are left as they were."""
    findings = _diagnose(recipe, out, run_dir, checks, seeds, on_check)
    from trainlab.diagnosis.report import write_report

    title = f"trainlab doctor: recipe {recipe.name!r}"
    if run_dir is not None:
        title += f", run {run_dir}"
    write_report(findings, out, title, recipe.to_yaml())
    return findings


def _diagnose(
    recipe: Recipe,
    out: Path,
    run_dir: Path | None,
    checks: tuple[str, ...],
    seeds: tuple[int, ...],
    on_check: Callable[[str], None] | None = None,
) -> list[Finding]:
    """The reconciled findings of ``checks`` on ``recipe``; figures go into ``out``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"{out}: cannot create the report folder ({exc.strerror})") from None
    findings: list[Finding] = []
    with preserved_global_state():
        parts = build(recipe)
        set_rng_state(parts.rng)  # the checks' random draws continue the recipe's stream
        ctx = Context(parts.recipe, parts, out, run_dir, tuple(seeds))
        for name in (c for c in CHECKS if c in checks):
            entry = CHECK_REGISTRY.get(name)
            if entry.info.get("needs_run") and run_dir is None:
                continue
            if on_check is not None:
                on_check(name)
            made = entry.factory(ctx)
            findings += made if isinstance(made, list) else [made]
    return reconcile(findings, parts.recipe)


def fix_trials(
    recipe: Recipe, findings: list[Finding], out: Path, seeds: tuple[int, ...] = (0, 1, 2)
) -> tuple[list[FixTrial], tuple[str, ...]]:
    """``doctor --fix``: the root findings' fixes tried (``diagnosis.fixes``), each trial's
    figures in ``out/fix-N``; returns the trials and the overrides worth keeping."""

    def diagnose(trial: Recipe, checks: tuple[str, ...], folder: Path) -> list[Finding]:
        return _diagnose(trial, folder, None, checks, seeds)

    return try_fixes(recipe, findings, diagnose, out, CHECKS)
