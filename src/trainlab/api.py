"""The functions behind the CLI, for use from Python (and by search, ladder, ensembles later).

``train`` turns one resolved recipe into one run folder and returns its summary; ``evaluate``
reloads a run folder (recipe + weights + preprocessing) and measures it on the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.errors import RecipeError, RunFolderError
from trainlab.recipe import Overrides, Recipe, resolve_recipe
from trainlab.runs import train
from trainlab.seeds import train_seeds

if TYPE_CHECKING:
    from trainlab.evaluation.predictor import Predictor

__all__ = [
    "train",
    "train_seeds",
    "search",
    "evaluate",
    "doctor",
    "resolve_recipe",
    "augment_preview",
    "list_components",
    "load_run",
    "predict",
    "export",
]


def evaluate(
    run_dir: str | Path,
    weights: str = "final",
    plot: bool = True,
    tta: str | list[str] | None = None,
    mc_dropout: int | None = None,
) -> dict[str, Any]:
    """Test-split loss, accuracy, per-class accuracy and confusion matrix of a trained run.

    ``weights``: ``final`` (what training ended with), ``best`` (best validation) or ``last``.
    The model comes from :func:`load_run`; only the test split is read from the dataset.
    ``per_class_acc`` holds only the classes with test examples (a class without any has no
    accuracy, and 0.0 would claim one); those are listed in ``no_test_examples``.
    ``tta`` (policies, ``"flip,crops"``) and ``mc_dropout`` (passes) add ``tta``: accuracy and
    calibration of each level and its gain over plain evaluation
    (:func:`trainlab.evaluation.tta.tta_levels`); the other figures stay plain evaluation's.
    """
    from trainlab.data.datasets import load_splits
    from trainlab.engine.metrics import per_class_accuracy
    from trainlab.evaluation.predictor import load_run
    from trainlab.evaluation.tta import check_mc_dropout, resolve_policies, tta_levels

    predictor = load_run(run_dir, weights)
    resolve_policies(tta, predictor.in_shape, predictor.model)  # bad values fail before the data
    check_mc_dropout(mc_dropout, predictor.model)
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
    if tta or mc_dropout is not None:
        result["tta"] = tta_levels(predictor, splits.x_test, splits.y_test, tta, mc_dropout)
    from trainlab.evaluation.calibration import calibration_report

    reliability = Path(run_dir) / "reliability.png" if plot else None
    result["calibration"] = calibration_report(predictor, splits, reliability)
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
    tta: str | None = None,
    mc_dropout: int | None = None,
) -> dict[str, Any]:
    """Class and probabilities of every input in ``inputs`` (an .npz/.npy, a CSV with the
    training columns, an image file or a folder of images), with accuracy when the inputs carry
    labels. ``out``: also write one CSV row per input (input, class, name, p_CLASS...).
    ``tta``: one policy, probabilities averaged over its views; ``mc_dropout``: T passes with
    dropout on, averaged, and each row gains ``entropy`` and ``variance``
    (:mod:`trainlab.evaluation.tta`)."""
    from trainlab.errors import TrainlabError
    from trainlab.evaluation.predictor import load_run as load
    from trainlab.evaluation.tta import averaged_probabilities, check_mc_dropout, resolve_policies

    predictor = load(run_dir, weights)
    if tta is not None and len(resolve_policies(tta, predictor.in_shape, predictor.model)) > 1:
        raise TrainlabError(f"--tta {tta!r}: predict averages over one policy; name one")
    check_mc_dropout(mc_dropout, predictor.model)
    read = predictor.read(inputs)
    entropy = variance = None
    if tta is None and mc_dropout is None:
        probs = predictor.predict_proba(read.x)
    else:
        averaged = averaged_probabilities(predictor, read.x, tta or "identity", mc_dropout)
        probs, entropy, variance = averaged.probs, averaged.entropy, averaged.variance
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
    if entropy is not None and variance is not None:
        for row, h, v in zip(rows, entropy.tolist(), variance.tolist(), strict=True):
            row["entropy"], row["variance"] = round(h, 6), round(v, 8)
    result: dict[str, Any] = {"inputs": read.source, "n": len(rows), "weights": weights}
    if tta is not None:
        result["tta"] = tta
    if mc_dropout is not None:
        result["mc_dropout"] = mc_dropout
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
    extra = [k for k in ("entropy", "variance") if rows and k in rows[0]]  # with --mc-dropout
    writer.writerow(["input", "class", "name", *(f"p_{c}" for c in classes), *extra])
    for row in rows:
        probs = [row["probabilities"][c] for c in classes]
        writer.writerow([row["input"], row["class"], row["name"], *probs, *(row[k] for k in extra)])
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


def search(
    recipe: Recipe | str | Path | None,
    space: str | Path,
    overrides: Overrides | None = None,
    *,
    out: str | Path | None = None,
    trials: int | None = None,
    sampler: str = "random",
    pruner: str = "none",
    stages: str | None = None,
    storage: str | None = None,
    study: str | None = None,
    workers: int = 1,
    metric: str | None = None,
    seed: int | None = None,
    retries: int = 0,
    heartbeat: int = 30,
    prune_sick: bool = False,
    seeds: int | None = None,
    on_trial: Any = None,
) -> dict[str, Any]:
    """Search ``space`` (a YAML file of ``KEY.PATH: distribution``) around ``recipe`` on Optuna;
    see :mod:`trainlab.tuning.study`. Returns what ``OUT/search.json`` records: each stage's
    ranges and trials, the best trial (by validation only) and its ``best.yaml``, and with
    ``seeds`` the best recipe's mean +- std over that many seeds.

    ``out`` (default ``search-NAME``) holds one run folder per trial and, without ``storage``,
    the SQLite study; re-running the same call continues the study. ``workers`` > 1 starts
    that many local processes on one shared storage (PostgreSQL: SQLite is refused, as Optuna's
    FAQ advises against concurrent writers to one SQLite file). ``on_trial`` sees each finished
    trial's card (stage, number, params, state, value, reason).
    """
    settings = dict(locals())  # the keywords above, as given: search_config checks them
    for name in ("recipe", "space", "overrides", "workers", "on_trial"):
        del settings[name]
    from trainlab.tuning.launch import search_config, search_with_workers

    cfg = search_config(recipe, space, overrides, **settings)
    return search_with_workers(cfg, workers, on_trial)
