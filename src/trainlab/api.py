"""The functions behind the CLI, for use from Python (and by search, ladder, ensembles later).

``train`` turns one resolved recipe into one run folder and returns its summary; ``evaluate``
reloads a run folder (recipe + weights + preprocessing) and measures it on the test split.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.errors import RecipeError, RunFolderError
from trainlab.recipe import Overrides, Recipe, resolve_recipe

if TYPE_CHECKING:
    from torch import nn

    from trainlab.engine.callbacks import Callback
    from trainlab.engine.result import RunResult
    from trainlab.evaluation.predictor import Predictor

__all__ = [
    "train",
    "evaluate",
    "doctor",
    "resolve_recipe",
    "augment_preview",
    "list_components",
    "load_run",
    "predict",
    "export",
]


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


def _resume_dir(out: str | Path | None) -> tuple[Path, bool]:
    """The run folder ``--resume`` continues, and whether it holds a checkpoint yet.

    A missing or empty folder, or a run folder killed before its first checkpoint, is resumed
    from step 0 (so re-running the same command after a crash at any moment works); a folder
    that is not a run's is refused, as a plain ``train`` would.
    """
    if out is None:
        raise RunFolderError("--resume needs --out DIR naming the run to continue")
    from trainlab.engine.checkpoint import has_checkpoint
    from trainlab.engine.lock import LOCK_NAME

    run_dir = Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: not a folder; --out names a run folder")
    if has_checkpoint(run_dir / "checkpoints"):
        return run_dir, True
    entries = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    if entries and not entries & {"recipe.yaml", LOCK_NAME, "checkpoints"}:
        raise RunFolderError(
            f"{run_dir}: not a run folder (no recipe.yaml, no checkpoints) and not empty; "
            "choose another --out"
        )
    return run_dir, False


def train(
    recipe: Recipe | str | Path | None = None,
    overrides: Overrides | None = None,
    *,
    out: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    model: type[nn.Module] | nn.Module | None = None,
    progress: bool = True,
) -> RunResult:
    """Train one recipe into a run folder; returns its :class:`RunResult` (``.val`` to select
    on, ``.test`` to report; all of ``summary.json`` in ``.summary``).

    ``overrides``: ``{"optimizer.lr": 3e-3}`` or the CLI's ``["optimizer.lr=3e-3"]``.
    ``callbacks``: :class:`trainlab.Callback` instances, called after the metrics log and
    before the checkpointer (their state is saved in checkpoints under their ``key``).
    ``resume``: continue the run in ``out`` from its last checkpoint (with the recipe it was
    started with; any difference is refused, naming every differing key), or start it from step
    0 when it has none yet (a missing folder, or one killed before its first checkpoint), so
    re-running the same call after a crash finishes the run.
    ``model``: an ``nn.Module`` subclass or instance to train instead of ``model.name``; the run
    records its import path (``model.name=package.module:Class``) so it can be loaded again,
    which a class defined in ``__main__`` cannot be. A class is constructed with
    ``num_classes`` (and ``in_shape`` when its signature asks) plus ``model.kwargs``; an
    instance is trained as it is. Either keeps its own initial weights unless the recipe names
    a ``model.init``.

    Everything is validated and the data is loaded before the folder is created, so a bad recipe
    or bad data leaves no half-made run behind and never touches an existing one.
    """
    from trainlab.engine.build import build
    from trainlab.engine.loop import Trainer

    instance = _model_override(model)
    started = False
    if resume:
        run_dir, started = _resume_dir(out)
        if recipe is None and (run_dir / "recipe.yaml").is_file():
            recipe = run_dir / "recipe.yaml"
    if model is not None:  # an override like any other: the schema then picks its defaults
        overrides = _with_override(overrides, "model.name", _import_path(model))
    resolved = resolve_recipe(recipe, overrides)
    if not resume:
        run_dir = _new_run_dir(out, resolved.name)
    extra = [*_checked(callbacks), *_diagnosis_callbacks(resolved, run_dir)]
    trainer = Trainer(build(resolved, model=instance), run_dir, extra, progress=progress)
    if started:
        trainer.resume()
    elif resume:
        _fresh_start_in(trainer)
    return trainer.fit()


def _fresh_start_in(trainer: Any) -> None:
    """``--resume`` on a run that has no checkpoint yet: same recipe, then step 0, said once."""
    import warnings

    from trainlab.errors import TrainlabWarning

    if (trainer.run_dir / "recipe.yaml").is_file():
        trainer.check_recipe(trainer.saved_recipe(), "recipe.yaml")
    warnings.warn(
        f"{trainer.run_dir}: no checkpoint yet; starting from step 0",
        TrainlabWarning,
        stacklevel=3,
    )


def _with_override(overrides: Overrides | None, key: str, value: str) -> Overrides:
    """``overrides`` plus ``key=value``, in the form they came in (mapping or strings)."""
    if isinstance(overrides, Mapping):
        return {**overrides, key: value}
    return [*(overrides or []), f"{key}={value}"]


def _checked(callbacks: Sequence[Callback]) -> list[Callback]:
    from trainlab.engine.callbacks import Callback

    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks: {cb!r} is not a trainlab.Callback")
    return list(callbacks)


def _diagnosis_callbacks(recipe: Recipe, run_dir: Path) -> list[Callback]:
    """The recipe's callbacks that live above the engine (the loop never imports the doctor)."""
    if not recipe.training.monitor_every:
        return []
    from trainlab.diagnosis.monitor import LayerMonitor

    return [LayerMonitor(run_dir / "layers.jsonl", recipe.training.monitor_every)]


def _model_override(model: type[nn.Module] | nn.Module | None) -> nn.Module | None:
    """The instance to train (None for a class: the builder constructs it by its path)."""
    import torch

    if model is None or isinstance(model, torch.nn.Module):
        return model
    if isinstance(model, type) and issubclass(model, torch.nn.Module):
        return None
    raise TypeError(f"model: expected an nn.Module subclass or instance, got {model!r}")


def _import_path(model: type | object) -> str:
    """``package.module:Class`` of a model class or instance, refused when it could not be
    imported again to load the run (``__main__``, a class defined inside a function)."""
    cls = model if isinstance(model, type) else type(model)
    where = f"{cls.__module__}:{cls.__qualname__}"
    if cls.__module__ == "__main__":
        raise RecipeError(
            f"model={cls.__qualname__}: a class defined in __main__ (a script or notebook) "
            "cannot be imported again to load the run; move it into a module and import it"
        )
    if "<locals>" in cls.__qualname__:
        raise RecipeError(
            f"model={cls.__qualname__}: a class defined inside a function cannot be imported "
            "again to load the run; define it at the top level of a module"
        )
    return where


def evaluate(run_dir: str | Path, weights: str = "final", plot: bool = True) -> dict[str, Any]:
    """Test-split loss, accuracy, per-class accuracy and confusion matrix of a trained run.

    ``weights``: ``final`` (what training ended with), ``best`` (best validation) or ``last``.
    The model comes from :func:`load_run`; only the test split is read from the dataset.
    ``per_class_acc`` holds only the classes with test examples (a class without any has no
    accuracy, and 0.0 would claim one); those are listed in ``no_test_examples``.
    """
    from trainlab.data.datasets import load_splits
    from trainlab.engine.metrics import per_class_accuracy
    from trainlab.evaluation.predictor import load_run

    predictor = load_run(run_dir, weights)
    splits = load_splits(predictor.recipe.data)
    metrics, conf = predictor.evaluate(splits.x_test, splits.y_test)
    per_class = per_class_accuracy(conf, predictor.classes)
    result: dict[str, Any] = {
        **metrics,
        "weights": weights,
        "per_class_acc": per_class,
        "no_test_examples": [name for name in predictor.classes if name not in per_class],
        "confusion": conf.tolist(),
    }
    if plot:
        from trainlab.evaluation.plots import plot_confusion

        png = Path(run_dir) / "confusion.png"
        result["confusion_png"] = str(plot_confusion(conf, predictor.classes, png))
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
    *,
    fix: bool = False,
    on_check: Any = None,
) -> dict[str, Any]:
    """Run the doctor's checks on a recipe, or on a run folder's own recipe and its curves.

    With ``run``, the run's ``recipe.yaml`` is the recipe diagnosed; a ``recipe``/``overrides``
    that differ from it are named in a warning. Writes figures, ``report.html`` and
    ``findings.json`` into ``out`` (default ``doctor-NAME``). ``on_finding`` sees each finding
    once all are made (they are reconciled into one story first), ``on_check`` each check's
    name as it starts. ``fix=True`` tries the top fixes (``diagnosis.fixes``). Returns
    ``{"status", "findings", "report", "run", "fixes", "keep"}``, status the worst finding's.
    """
    from trainlab.diagnosis.doctor import CHECK_REGISTRY, CHECKS, fix_trials, run_doctor
    from trainlab.diagnosis.findings import worst
    from trainlab.errors import RecipeError

    for name in checks or ():
        if name not in CHECKS:
            raise RecipeError(f"--checks: unknown check {name!r}; valid: {', '.join(CHECKS)}")
    run_dir = Path(run) if run is not None else None
    for name in checks or ():
        if CHECK_REGISTRY.get(name).info.get("needs_run") and run_dir is None:
            raise RecipeError(f"--checks {name}: this check reads a run's curves; give --run RUN")
    if run_dir is not None:
        resolved = _run_recipe(run_dir, recipe, overrides)
    else:
        resolved = resolve_recipe(recipe, overrides)
    folder = Path(out) if out is not None else Path(f"doctor-{resolved.name}")
    findings = run_doctor(resolved, folder, run_dir, checks or CHECKS, on_check=on_check)
    for finding in findings:
        if on_finding is not None:
            on_finding(finding)
    trials, keep = fix_trials(resolved, findings, folder) if fix else ([], ())
    return {
        "status": worst(findings),
        "findings": [f.to_json() for f in findings],
        "report": str(folder / "report.html"),
        "run": None if run_dir is None else str(run_dir),
        "fixes": [t.to_json() for t in trials],
        "keep": list(keep),
    }


def _run_recipe(
    run_dir: Path, recipe: Recipe | str | Path | None, overrides: list[str] | None
) -> Recipe:
    """The recipe ``run_dir`` was trained with (its ``recipe.yaml``); a given recipe or
    overrides that differ from it are a warning naming the keys (the run's own is used)."""
    import warnings

    from trainlab.errors import TrainlabWarning
    from trainlab.recipe import load_recipe, recipe_differences

    if not (run_dir / "metrics.jsonl").is_file():
        raise RunFolderError(f"{run_dir}: not a run folder (no metrics.jsonl)")
    saved_path = run_dir / "recipe.yaml"
    if not saved_path.is_file():
        raise RunFolderError(f"{run_dir}: no recipe.yaml, so the run's recipe is unknown")
    saved = load_recipe(saved_path, trained=True)
    if recipe is None and not overrides:
        return saved
    given = resolve_recipe(saved if recipe is None else recipe, overrides)
    keys = recipe_differences(saved.model_dump(mode="json"), given.model_dump(mode="json"))
    if keys:
        shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
        warnings.warn(
            f"{saved_path}: the run was trained with its own recipe, which differs from the "
            f"one given in {shown}; diagnosing the run's",
            TrainlabWarning,
            stacklevel=2,
        )
    return saved


def list_components(kind: str | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Every name a recipe may use, by family (``trainlab list``): ``{kind: {name: {"summary",
    "params"}}}``, with ``technique`` (the recipe keys that turn a technique on, under
    ``"set"``). ``kind`` picks one family; an unknown one is a RecipeError with the closest."""
    import trainlab.catalog  # noqa: F401  (registers every component)
    import trainlab.diagnosis.doctor  # noqa: F401  (registers the doctor's checks)
    from trainlab.registry import REGISTRIES, closest
    from trainlab.techniques import TECHNIQUES

    kinds = [*REGISTRIES, "technique"]
    if kind is not None and kind not in kinds:
        hint = closest(kind, kinds)
        did = f" did you mean {hint!r}?" if hint else ""
        raise RecipeError(f"unknown kind {kind!r};{did} valid: {', '.join(kinds)}")
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for k in [kind] if kind else kinds:
        if k == "technique":
            result[k] = {
                t.name: {"summary": t.summary, "set": list(t.overrides)} for t in TECHNIQUES
            }
        else:
            result[k] = {
                e.name: {"summary": e.summary, "params": e.params()} for e in REGISTRIES[k]
            }
    return result


def load_run(run_dir: str | Path, weights: str = "final", device: str | None = None) -> Predictor:
    """A trained run's model and preprocessing (no dataset): see :class:`Predictor`."""
    from trainlab.evaluation.predictor import load_run as load

    return load(run_dir, weights, device)


def predict(
    run_dir: str | Path,
    inputs: str | Path,
    out: str | Path | None = None,
    weights: str = "final",
) -> dict[str, Any]:
    """Class and probabilities of every input in ``inputs`` (an .npz/.npy, a CSV with the
    training columns, an image file or a folder of images), with accuracy when the inputs carry
    labels. ``out``: also write one CSV row per input (input, class, name, p_CLASS...)."""
    from trainlab.evaluation.predictor import load_run as load

    predictor = load(run_dir, weights)
    read = predictor.read(inputs)
    probs = predictor.predict_proba(read.x)
    picked = probs.argmax(1)
    classes = predictor.classes
    rows = [
        {
            "input": name,
            "class": int(c),
            "name": classes[int(c)],
            "probabilities": dict(zip(classes, (round(float(v), 6) for v in p), strict=True)),
        }
        for name, c, p in zip(read.names, picked, probs, strict=True)
    ]
    result: dict[str, Any] = {"inputs": read.source, "n": len(rows), "weights": weights}
    if read.y is not None:
        result["accuracy"] = float((picked.numpy() == read.y).mean()) if len(rows) else 0.0
    if out is not None:
        result["output"] = str(_write_predictions(Path(out), rows, classes))
    result["rows"] = rows
    return result


def _write_predictions(path: Path, rows: list[dict[str, Any]], classes: list[str]) -> Path:
    import csv
    import io

    from trainlab.files import atomic_write

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["input", "class", "name", *(f"p_{c}" for c in classes)])
    for row in rows:
        probs = [row["probabilities"][c] for c in classes]
        writer.writerow([row["input"], row["class"], row["name"], *probs])
    atomic_write(path, buffer.getvalue().encode())
    return path


def export(
    run_dir: str | Path,
    fmt: str = "torchscript",
    out: str | Path | None = None,
    weights: str = "final",
) -> dict[str, Any]:
    """Write the run as a TorchScript or ONNX file taking raw inputs and returning class
    probabilities (preprocessing inside); see :mod:`trainlab.evaluation.export`."""
    from trainlab.evaluation.export import export_run
    from trainlab.evaluation.predictor import load_run as load

    return export_run(load(run_dir, weights, device="cpu"), fmt, out)
