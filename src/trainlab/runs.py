"""A recipe into a run folder: the one place a run is started, continued or refused.

``train`` (re-exported as ``trainlab.train``) checks everything and loads the data before it
makes the folder, adds the recipe's callbacks that live above the engine (the layer monitor:
the loop never imports the doctor), and trains; the search's trials and ``--seeds`` train
through it too, so every run folder is made the same way.
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

__all__ = ["train"]


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
    quiet: bool = False,
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
    ``progress=False`` draws no bar but still prints a line per epoch on stderr; ``quiet=True``
    prints neither (a search prints one line per trial instead).

    Everything is validated and the data is loaded before the folder is created, so a bad recipe
    or bad data leaves no half-made run behind and never touches an existing one.
    """
    from trainlab.engine import distributed

    distributed.init_from_env()  # torchrun: join its processes (gloo, or NCCL), once
    return _train(recipe, overrides, out, callbacks, resume, model, progress, quiet)


def _train(
    recipe: Recipe | str | Path | None,
    overrides: Overrides | None,
    out: str | Path | None,
    callbacks: Sequence[Callback],
    resume: bool,
    model: type[nn.Module] | nn.Module | None,
    progress: bool,
    quiet: bool,
) -> RunResult:
    from trainlab.engine.build import build
    from trainlab.engine.distributed import broadcast, world
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
    if not resume:  # under torchrun every process checks the folder rank 0 named
        run_dir = _new_run_dir(out, resolved.name)
        run_dir = Path(broadcast(str(run_dir)))
    writer = world()[0] == 0  # rank 0 alone writes the run folder
    extra = [*_checked(callbacks), *(_diagnosis_callbacks(resolved, run_dir) if writer else [])]
    parts = build(resolved, model=instance)
    if resolved.evaluation.tta:  # a policy that does not fit the data fails before training
        from trainlab.evaluation.tta_views import resolve_policies

        resolve_policies(resolved.evaluation.tta, parts.splits.in_shape, parts.model)
    trainer = Trainer(parts, run_dir, extra, progress=progress, quiet=quiet)
    if started:
        trainer.resume()
    elif resume:
        _fresh_start_in(trainer)
    result = trainer.fit()
    return _with_tta(result, resolved) if resolved.evaluation.tta and writer else result


def _with_tta(result: RunResult, recipe: Recipe) -> RunResult:
    """``evaluation.tta``: the final model's test figures under each policy and their gains
    over plain evaluation, added to ``summary.json`` as ``tta`` (what ``trainlab evaluate
    --tta`` reports), so a recipe key turns TTA on for everything that reads the summary."""
    import json

    from trainlab.data.datasets import load_splits
    from trainlab.evaluation.predictor import load_run
    from trainlab.evaluation.tta import tta_levels
    from trainlab.files import atomic_write

    predictor = load_run(result.run_dir)
    splits = load_splits(recipe.data)
    levels = tta_levels(predictor, splits.x_test, splits.y_test, recipe.evaluation.tta)
    summary = {**result.summary, "tta": levels}
    atomic_write(result.run_dir / "summary.json", json.dumps(summary, indent=2).encode())
    return type(result).from_summary(summary)


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
