"""The functions behind the CLI, for use from Python (and by search, ladder, ensembles later).

``train`` turns one resolved recipe into one run folder and returns its summary; ``evaluate``
reloads a run folder (recipe + weights + preprocessing) and measures it on the test split.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from trainlab.engine import checkpoint as ckpt
from trainlab.errors import RunFolderError
from trainlab.recipe import Recipe, load_recipe

__all__ = ["train", "evaluate", "doctor", "resolve_recipe", "augment_preview"]


def resolve_recipe(recipe: Recipe | str | Path | None, overrides: list[str] | None) -> Recipe:
    """A validated Recipe from an object, a YAML path or the default, with overrides applied."""
    if isinstance(recipe, Recipe):
        if not overrides:
            return recipe
        from trainlab.recipe import apply_overrides, validate

        return validate(apply_overrides(recipe.model_dump(mode="json"), overrides))
    return load_recipe(recipe, overrides)


def _new_run_dir(out: str | Path | None, name: str) -> Path:
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{name}-{stamp}"
        n = 1
        while out.exists():
            n += 1
            out = Path("runs") / f"{name}-{stamp}-{n}"
    run_dir = Path(out)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise RunFolderError(
            f"{run_dir}: already exists and is not empty; use --resume to continue that run "
            "or choose another --out"
        )
    return run_dir


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The dotted key of the first value that differs between two recipe dumps."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return None if a == b else path


HARMLESS_ON_RESUME = {"training.progress"}


def _same_recipe(recipe: Recipe, run_dir: Path) -> None:
    """A resumed run must continue the recipe it started with (a changed one is not a resume)."""
    saved = load_recipe(run_dir / "recipe.yaml").model_dump(mode="json")
    given = recipe.model_dump(mode="json")
    for key in HARMLESS_ON_RESUME:
        section, name = key.split(".")
        given[section][name] = saved[section][name]
    key = _first_difference(saved, given)
    if key is not None:
        raise RunFolderError(
            f"{run_dir}: --resume with a different recipe ({key} differs from "
            f"{run_dir / 'recipe.yaml'}); resume without changes, or train into a new --out"
        )


def train(
    recipe: Recipe | str | Path | None = None,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one recipe into a run folder; returns the summary (also in ``summary.json``).

    Everything is validated and the data is loaded before the folder is created, so a bad recipe
    or bad data leaves no half-made run behind and never touches an existing one.
    """
    from trainlab.engine.loop import Trainer

    if resume:
        if out is None:
            raise RunFolderError("--resume needs --out DIR naming the run to continue")
        run_dir = Path(out)
        if recipe is None:
            recipe = run_dir / "recipe.yaml"
        if not (run_dir / "checkpoints" / "last").is_file():
            raise RunFolderError(f"{run_dir}: no checkpoint to resume from")
    resolved = resolve_recipe(recipe, overrides)
    if resume:
        _same_recipe(resolved, run_dir)
    else:
        run_dir = _new_run_dir(out, resolved.name)
    trainer = Trainer(resolved, run_dir, progress=progress)
    if resume:
        trainer.resume()
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.atomic_write(run_dir / "recipe.yaml", resolved.to_yaml().encode())
    return trainer.fit()


def evaluate(run_dir: str | Path, weights: str = "final", plot: bool = True) -> dict[str, Any]:
    """Test-split loss, accuracy, per-class accuracy and confusion matrix of a trained run.

    ``weights``: ``final`` (what training ended with), ``best`` (best validation) or ``last``.
    """
    from trainlab.engine.loop import Trainer

    run = Path(run_dir)
    if not (run / "recipe.yaml").is_file():
        raise RunFolderError(f"{run}: not a run folder (no recipe.yaml)")
    recipe = load_recipe(run / "recipe.yaml")
    trainer = Trainer(recipe, run, progress=False)
    if weights == "final":
        trainer.load_weights(ckpt.load_weights(run / "model.safetensors"))
    else:
        trainer.load_weights(ckpt.load_checkpoint(run / "checkpoints", weights)[0])
    metrics, conf = trainer.evaluate_split("test", confusion=True)
    totals = conf.sum(1).clamp_min(1)
    per_class = (conf.diag() / totals).tolist()
    result: dict[str, Any] = {
        **metrics,
        "weights": weights,
        "per_class_acc": dict(zip(trainer.splits.classes, per_class, strict=True)),
        "confusion": conf.tolist(),
    }
    if plot:
        from trainlab.evaluation.plots import plot_confusion

        result["confusion_png"] = str(
            plot_confusion(conf, trainer.splits.classes, run / "confusion.png")
        )
    return result


def augment_preview(
    recipe: Recipe | str | Path | None = None,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    n: int = 16,
    seed: int | None = None,
) -> dict[str, Any]:
    """Write a PNG grid of training samples beside augmented draws of the recipe's pipeline.

    ``out`` defaults to ``NAME-augment.png`` in the current folder (an existing PNG is replaced,
    atomically); ``seed`` picks the samples and the draws (default: the recipe's seed). Returns
    what was written (path, pixel size, samples, draws). No run folder is made.
    """
    from trainlab.evaluation.augment_preview import render_augment_grid

    resolved = resolve_recipe(recipe, overrides)
    path = Path(out) if out is not None else Path(f"{resolved.name}-augment.png")
    return render_augment_grid(resolved, path, n=n, seed=resolved.seed if seed is None else seed)


def doctor(
    recipe: Recipe | str | Path | None = None,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    run: str | Path | None = None,
    checks: tuple[str, ...] | None = None,
    on_finding: Any = None,
) -> dict[str, Any]:
    """Run the doctor's checks on a recipe (and the loss curves of ``run``, a run folder).

    Writes figures, ``report.html`` and ``findings.json`` into ``out`` (default
    ``doctor-NAME``); returns ``{"status", "findings", "report"}``, status the worst finding's.
    """
    from trainlab.diagnosis.doctor import CHECKS, run_doctor
    from trainlab.diagnosis.findings import worst
    from trainlab.errors import RecipeError

    resolved = resolve_recipe(recipe, overrides)
    for name in checks or ():
        if name not in CHECKS:
            raise RecipeError(f"--checks: unknown check {name!r}; valid: {', '.join(CHECKS)}")
    run_dir = Path(run) if run is not None else None
    if run_dir is not None and not (run_dir / "metrics.jsonl").is_file():
        raise RunFolderError(f"{run_dir}: not a run folder (no metrics.jsonl)")
    folder = Path(out) if out is not None else Path(f"doctor-{resolved.name}")
    findings = run_doctor(resolved, folder, run_dir, checks or CHECKS, on_finding=on_finding)
    return {
        "status": worst(findings),
        "findings": [f.to_json() for f in findings],
        "report": str(folder / "report.html"),
    }
