"""One recipe on several seeds: sibling run folders and the mean +- std of every figure.

airbench's habit: a result is a mean over seeds with its spread, because one seed's luck is
often larger than the effect being measured. ``train_seeds`` trains the recipe with ``seed``,
``seed + 1``, ... into ``OUT/seed-S`` (each an ordinary run folder), skips the seeds that have
finished (so re-running the same command after a crash finishes the set: a seed killed midway
resumes from its checkpoint; a folder trained with another recipe is refused, naming the keys)
and writes ``OUT/seeds.json``: each validation figure of the best epoch and each test figure,
as mean and sample standard deviation (n - 1; 0 for one seed), and with two seeds or more the
test figures of their ensemble (:mod:`trainlab.evaluation.ensemble`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.errors import RecipeError, RunFolderError
from trainlab.recipe import Overrides, Recipe, resolve_recipe

if TYPE_CHECKING:
    from trainlab.engine.callbacks import Callback
    from trainlab.engine.result import RunResult

__all__ = ["train_seeds", "seed_stats", "SEEDS_FILE"]

SEEDS_FILE = "seeds.json"


def train_seeds(
    recipe: Recipe | str | Path | None,
    overrides: Overrides | None,
    seeds: int,
    *,
    out: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    quiet: bool = False,
    on_run: Any = None,
) -> dict[str, Any]:
    """Train ``recipe`` on ``seeds`` consecutive seeds into sibling folders of ``out``; returns
    ``{"seeds", "runs", "mean", "std", "n", "file"}`` (also written to ``OUT/seeds.json``).
    ``on_run`` sees each seed's :class:`RunResult` as it finishes (or is found finished)."""
    from trainlab.engine.result import RunResult
    from trainlab.runs import train

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise RecipeError(f"--seeds {seeds!r}: expected a whole number of seeds >= 1")
    resolved = resolve_recipe(recipe, overrides)
    parent = Path(out) if out is not None else _new_parent(resolved.name)
    if parent.exists() and not parent.is_dir():
        raise RecipeError(f"{parent}: not a folder; --out names the folder of the seeds' runs")
    results: list[RunResult] = []
    numbers = [resolved.seed + i for i in range(seeds)]
    for seed in numbers:
        run_dir = parent / f"seed-{seed}"
        started = (run_dir / "recipe.yaml").is_file()
        if started:
            _same_recipe(run_dir, resolved, seed)
        if (run_dir / "summary.json").is_file():
            result = RunResult.load(run_dir)
        else:
            result = train(
                resolved, {"seed": seed}, out=run_dir, callbacks=callbacks, resume=started,
                progress=progress, quiet=quiet,
            )  # fmt: skip
        results.append(result)
        if on_run is not None:
            on_run(result)
    summary = {"recipe": resolved.name, "seeds": numbers, **seed_stats(results)}
    summary["runs"] = [str(r.run_dir) for r in results]
    if len(results) > 1:
        summary["ensemble"] = _ensemble_of(results)
    from trainlab.files import atomic_write

    atomic_write(parent / SEEDS_FILE, json.dumps(summary, indent=2).encode())
    return {**summary, "file": str(parent / SEEDS_FILE)}


def _same_recipe(run_dir: Path, recipe: Recipe, seed: int) -> None:
    """A seed's folder from an earlier call is kept only if it was trained with this recipe."""
    from trainlab.recipe import load_recipe, recipe_differences

    saved = load_recipe(run_dir / "recipe.yaml", trained=True).model_dump(mode="json")
    wanted = resolve_recipe(recipe, {"seed": seed}).model_dump(mode="json")
    keys = recipe_differences(saved, wanted)
    if keys:
        shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        raise RunFolderError(
            f"{run_dir}: trained with another recipe ({shown} differ); give another --out, "
            "or the same recipe and overrides to finish this set"
        )


def _ensemble_of(results: list[RunResult]) -> dict[str, Any]:
    """The seeds' runs as one ensemble (probabilities averaged): its test accuracy, NLL, ECE
    and Brier score and its gain over the mean seed. Sibling seeds are the independent models
    the lecture's "train multiple independent models" asks for, so the set gives the
    ensemble's figure for the price of one forward pass per seed."""
    from trainlab.evaluation.ensemble import ensemble

    report = ensemble([r.run_dir for r in results])
    return {**report["ensemble"], "gain_over_mean_member": report["gain_over_mean_member"]}


def _new_parent(name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}-seeds"


def _figures(result: RunResult) -> dict[str, float]:
    """The numeric validation (best epoch, ``val_`` keys) and test figures of one run."""
    found = {k: v for k, v in result.val.items() if k.startswith("val_")}
    found.update(result.test)
    return {k: float(v) for k, v in found.items() if isinstance(v, int | float)}


def seed_stats(results: Sequence[RunResult]) -> dict[str, Any]:
    """Mean and sample standard deviation of every figure the runs share."""
    figures = [_figures(r) for r in results]
    keys = [k for k in figures[0] if all(k in f for f in figures)] if figures else []
    mean, std = {}, {}
    for key in keys:
        values = [f[key] for f in figures]
        m = sum(values) / len(values)
        var = sum((v - m) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        mean[key], std[key] = m, math.sqrt(var)
    return {"n": len(results), "mean": mean, "std": std}
