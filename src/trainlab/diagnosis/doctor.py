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
from trainlab.engine.build import build
from trainlab.engine.seeding import preserved_global_state, set_rng_state
from trainlab.errors import RunFolderError
from trainlab.recipe import Recipe

#: each check and the module that registers it, in the order the checks run (the order of
#: registration depends on what imported a module first, so it is not relied on)
CHECK_MODULES = {
    "data": "trainlab.diagnosis.data",
    "initial_loss": "trainlab.diagnosis.initial_loss",
    "layers": "trainlab.diagnosis.layers",
    "overfit": "trainlab.diagnosis.overfit",
    "lr_range": "trainlab.diagnosis.lr_finder.check",
    "curves": "trainlab.diagnosis.curves",
}
for _module in CHECK_MODULES.values():
    importlib.import_module(_module)

__all__ = ["CHECKS", "CHECK_REGISTRY", "Context", "run_doctor"]

#: the checks ``trainlab doctor --checks`` may name, in the order they run
CHECKS = tuple(CHECK_MODULES)
assert set(CHECKS) == set(CHECK_REGISTRY.names()), "a registered check is missing its place"


def run_doctor(
    recipe: Recipe,
    out: Path,
    run_dir: Path | None = None,
    checks: tuple[str, ...] = CHECKS,
    seeds: tuple[int, ...] = (0, 1, 2),
    on_finding: Callable[[Finding], None] | None = None,
) -> list[Finding]:
    """Run ``checks`` on ``recipe`` (those that need a run only with ``run_dir``), writing
    figures and the report into ``out``; ``on_finding`` sees each finding as soon as it is
    made. The caller's global RNGs and torch's switches are left as they were."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"{out}: cannot create the report folder ({exc.strerror})") from None
    findings: list[Finding] = []
    with preserved_global_state():
        parts = build(recipe)
        set_rng_state(parts.rng)  # the checks' random draws continue the recipe's stream
        ctx = Context(recipe, parts, out, run_dir, tuple(seeds))
        for name in checks:
            entry = CHECK_REGISTRY.get(name)
            if entry.info.get("needs_run") and run_dir is None:
                continue
            made = entry.factory(ctx)
            for finding in made if isinstance(made, list) else [made]:
                findings.append(finding)
                if on_finding is not None:
                    on_finding(finding)
    from trainlab.diagnosis.report import write_report

    write_report(findings, out, f"trainlab doctor: recipe {recipe.name!r}", recipe.to_yaml())
    return findings
