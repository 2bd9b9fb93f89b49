"""``trainlab search``: the stages of a search run as Optuna studies, one worker's loop.

Each stage is its own Optuna study (``NAME-coarse``, ``NAME-fine``) in one storage, so every
worker, on this machine or another, joins the same trials. A worker runs trials until the
stage has its count (complete, pruned, failed and running trials all count; a failed trial that
was queued again counts once), then waits for trials still running elsewhere (a dead worker's
trial is failed by the heartbeat check after its grace period, and retried when asked) before
the next stage narrows its ranges: every worker computes the same ranges from the same finished
trials, and the first to store them in the stage's study wins. Re-running the same command
continues an interrupted study: finished trials count, interrupted ones resume.

The objective is the validation metric; the best trial is the best validation figure of the last
stage. Its recipe is written to ``best.yaml`` (``trainlab train best.yaml`` re-runs it as is)
and, with ``seeds``, trained again on that many seeds (``best/seed-K``), reported as mean +- std.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from trainlab.errors import RecipeError, TrainlabError
from trainlab.files import atomic_write
from trainlab.recipe import Recipe, recipe_to_yaml, resolve_recipe
from trainlab.tuning.engines import (
    grid_size,
    make_pruner,
    make_sampler,
    open_storage,
    shown_url,
)
from trainlab.tuning.slots import SKIPPED, place_of, places
from trainlab.tuning.space import Distribution, Space, narrowed
from trainlab.tuning.stages import Stage, stage_overrides
from trainlab.tuning.trial import Objective, TrialFailed

__all__ = ["SearchConfig", "run_search", "default_storage"]

SEARCH_FILE = "search.json"


@dataclass(frozen=True)
class SearchConfig:
    """Everything a worker needs; every worker of one study is started with the same."""

    recipe: Recipe
    recipe_source: str
    space: Space
    stages: list[Stage]
    out: Path
    storage: str
    study: str
    sampler: str = "random"
    pruner: str = "none"
    metric: str = "val_acc"
    seed: int = 0
    retries: int = 0
    heartbeat: int = 30
    prune_sick: bool = False
    seeds: int = 0
    finalists: bool = True  # False in the extra local workers: the first one trains them

    @property
    def direction(self) -> str:
        return "minimize" if self.metric.endswith("loss") else "maximize"


def default_storage(out: Path) -> str:
    """A SQLite file in the study folder."""
    return f"sqlite:///{(out / 'study.db').resolve()}"


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's per-trial log lines and experimental-feature warnings off (the search prints
    its own line per trial); put back afterwards."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
            yield
    finally:
        optuna.logging.set_verbosity(level)


@dataclass
class StageRun:
    """One stage as it ran: its study, its space and the overrides of its length."""

    stage: Stage
    study: Any
    space: Space
    overrides: dict[str, Any] = field(default_factory=dict)


def run_search(
    cfg: SearchConfig, on_trial: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Run (or join, or continue) the study; returns what ``search.json`` records."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    with _quiet_optuna():
        storage = open_storage(cfg.storage, cfg.heartbeat, cfg.retries)
        runs: list[StageRun] = []
        for stage in cfg.stages:
            space = cfg.space if not runs else _next_space(cfg, runs[-1], stage)
            run = _open_stage(cfg, storage, stage, space)
            _work(cfg, run, on_trial)
            runs.append(run)
        result = _result(cfg, runs)
    if cfg.finalists and result["best"] is not None:
        result["best"]["recipe"] = str(_write_best(cfg, runs, result["best"]))
        if cfg.seeds:
            result["seeds"] = _train_finalists(cfg, result["best"])
    atomic_write(cfg.out / SEARCH_FILE, json.dumps(result, indent=2).encode())
    return result


def _study_name(cfg: SearchConfig, stage: Stage) -> str:
    return f"{cfg.study}-{stage.name}"


def _open_stage(cfg: SearchConfig, storage: Any, stage: Stage, space: Space) -> StageRun:
    """The stage's study, created or joined; a study of another space under that name is
    refused (continuing it would mix two searches)."""
    trials = stage.trials
    if cfg.sampler == "grid":
        trials = min(trials, grid_size(space, trials))
        stage = replace(stage, trials=trials)
    epochs = stage.epochs or cfg.recipe.training.epochs
    study = optuna.create_study(
        storage=storage, study_name=_study_name(cfg, stage), direction=cfg.direction,
        sampler=make_sampler(cfg.sampler, space, trials, cfg.seed, not _local(cfg.storage)),
        pruner=make_pruner(cfg.pruner, epochs), load_if_exists=True,
    )  # fmt: skip
    ranges = {k: d.to_json() for k, d in space.params.items()}
    overrides = stage_overrides(cfg.recipe, stage)
    trained = _trained_recipe(cfg, overrides)
    stored = study.user_attrs.get("ranges")
    if stored is None:
        study.set_user_attr("ranges", ranges)
        study.set_user_attr("stage", stage.to_json())
        study.set_user_attr("metric", cfg.metric)
        study.set_user_attr("recipe", trained)
    _check_recipe(study, cfg, trained)
    if stored is not None and stored != ranges and not _is_later_stage(cfg, stage):
        raise TrainlabError(
            f"study {study.study_name!r} in {cfg.storage} holds trials of another search space "
            f"({_first_difference(stored, ranges)}); continue it with the same space, or give "
            "another --study or -o"
        )
    elif study.user_attrs.get("metric", cfg.metric) != cfg.metric:
        raise TrainlabError(
            f"study {study.study_name!r} optimises {study.user_attrs['metric']}, not "
            f"{cfg.metric}; give another --study or -o"
        )
    if stored is not None:  # another worker narrowed this stage first: use its ranges
        space = space.with_params({k: Distribution.from_json(v) for k, v in stored.items()})
    return StageRun(stage, study, space, overrides)


#: recipe keys that may differ between the machines of one study (where each finds its files)
MACHINE_KEYS = ("data.path", "data.test_path", "data.labels_path", "data.cache_dir")


def _trained_recipe(cfg: SearchConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """The recipe a stage's trials start from (before the trial's values), as a dump."""
    return resolve_recipe(cfg.recipe, overrides).model_dump(mode="json")


def _check_recipe(study: Any, cfg: SearchConfig, trained: dict[str, Any]) -> None:
    """A study continues with the recipe it was started with: one line naming what differs."""
    from trainlab.recipe import recipe_differences

    stored = study.user_attrs.get("recipe")
    if stored is None:
        return
    keys = [k for k in recipe_differences(stored, trained) if k not in MACHINE_KEYS]
    if keys:
        shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        raise TrainlabError(
            f"study {study.study_name!r} in {shown_url(cfg.storage)} was started with another "
            f"recipe ({shown} differ); continue it with the same recipe and overrides, or give "
            "another --study or -o"
        )


def _local(url: str) -> bool:
    """A SQLite file: one worker at a time (several local workers on it are refused)."""
    return url.startswith("sqlite")


def _is_later_stage(cfg: SearchConfig, stage: Stage) -> bool:
    return stage.name != cfg.stages[0].name


def _first_difference(stored: dict[str, Any], ranges: dict[str, Any]) -> str:
    for key in [*stored, *ranges]:
        if stored.get(key) != ranges.get(key):
            return f"{key}: {stored.get(key)} there, {ranges.get(key)} here"
    return "?"


def _next_space(cfg: SearchConfig, previous: StageRun, stage: Stage) -> Space:
    """The later stage's space: the previous stage's narrowed around its best trials."""
    done = _complete(previous.study, cfg.direction)
    k = max(2, math.ceil(stage.top * len(done)))
    return narrowed(previous.space, [t.params for t in done[:k]], stage.margin)


def _complete(study: Any, direction: str) -> list[Any]:
    """Complete trials, best first."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    return sorted(done, key=lambda t: t.value, reverse=direction == "maximize")


def _requeue(study: Any, trials_dir: Path) -> None:
    """Queue again every trial that stopped without an end: Ctrl-C/SIGTERM (``interrupted``)
    and a trial of this study folder whose worker on this machine was killed (its process is
    gone but its trial is RUNNING: failed now rather than after the heartbeat's grace period).
    Each resumes its run folder from its last checkpoint. A place that already has a later try
    is left alone; other machines' dead trials are the heartbeat's."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        ours = Path(t.user_attrs.get("run_dir", "")).parent == trials_dir
        if ours and _dead_here(t.user_attrs.get("worker", "")):
            study.tell(t.number, state=TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs=_resume_attrs(t))
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        if t.state != TrialState.FAIL or not t.user_attrs.get("interrupted"):
            continue
        later = [u for u in trials if u.number > t.number and place_of(u) == place_of(t)]
        if not later:
            study.enqueue_trial(t.params, user_attrs=_resume_attrs(t))


def _resume_attrs(trial: Any) -> dict[str, Any]:
    return {"run_dir": trial.user_attrs.get("run_dir"), "resumes": place_of(trial)}


def _dead_here(worker: str) -> bool:
    """Whether ``host:pid`` names a process of this machine that no longer runs."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _pending_retry(cfg: SearchConfig, trials: list[Any]) -> bool:
    """A trial the heartbeat check has just failed, whose retry is not queued yet (Optuna
    fails it first and queues its retry after): the stage is not over yet."""
    if not cfg.retries:
        return False
    for t in trials:
        unexplained = not ({"reason", "interrupted", SKIPPED} & set(t.user_attrs))
        if t.state == TrialState.FAIL and unexplained:
            tries = [u for u in trials if place_of(u) == place_of(t)]
            if max(u.number for u in tries) == t.number and len(tries) <= cfg.retries:
                return True
    return False


def _work(cfg: SearchConfig, run: StageRun, on_trial: Callable | None) -> None:
    """Run trials until the stage has its count, then wait for the ones running elsewhere."""
    study, stage = run.study, run.stage
    _requeue(study, cfg.out / "trials")
    objective = Objective(
        cfg.recipe, run.space, stage.name, run.overrides, cfg.out / "trials", cfg.metric,
        extra_callbacks=_sick_callbacks(cfg), on_done=on_trial, study_name=study.study_name,
        sick_overrides=_sick_overrides(cfg), count=stage.trials,
        maximize=cfg.direction == "maximize",
    )  # fmt: skip
    while True:
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if len(places(trials)) < stage.trials or waiting:
            study.optimize(objective, n_trials=1, catch=(TrialFailed,))
            continue
        running = any(t.state == TrialState.RUNNING for t in trials)
        if not running and not _pending_retry(cfg, trials):
            return
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed after grace
        time.sleep(min(5.0, cfg.heartbeat / 2))


def _sick_callbacks(cfg: SearchConfig) -> Callable[[], list[Any]]:
    if not cfg.prune_sick:
        return list
    from trainlab.tuning.sick import SickPruning

    return lambda: [SickPruning()]


def _sick_overrides(cfg: SearchConfig) -> dict[str, Any]:
    if not cfg.prune_sick:
        return {}
    from trainlab.tuning.sick import sick_overrides

    return sick_overrides(cfg.recipe)


def _trial_json(t: Any) -> dict[str, Any]:
    state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
             TrialState.FAIL: "failed", TrialState.RUNNING: "running",
             TrialState.WAITING: "waiting"}[t.state]  # fmt: skip
    if SKIPPED in t.user_attrs:
        state = SKIPPED
    reason = t.user_attrs.get("reason") or t.user_attrs.get(SKIPPED)
    if t.state == TrialState.FAIL and reason is None:
        reason = "interrupted" if t.user_attrs.get("interrupted") else "its worker stopped"
    return {"number": t.number, "state": state, "value": t.value, "params": t.params,
            "run_dir": t.user_attrs.get("run_dir"), "reason": reason,
            "place": place_of(t), "epochs": _epochs_of(t)}  # fmt: skip


def _result(cfg: SearchConfig, runs: list[StageRun]) -> dict[str, Any]:
    """What ``search.json`` holds: settings, each stage's ranges and trials, the best trial."""
    stages = []
    best = None
    for run in runs:
        trials = run.study.get_trials(deepcopy=False)
        stages.append({
            **run.stage.to_json(), "study": run.study.study_name,
            "ranges": {k: d.to_json() for k, d in run.space.params.items()},
            "trials_run": [_trial_json(t) for t in trials],
            "epochs_trained": sum(_epochs_of(t) for t in trials),
        })  # fmt: skip
        done = _complete(run.study, cfg.direction)
        if done:
            top = done[0]
            best = {"stage": run.stage.name, "number": top.number, "value": top.value,
                    "params": top.params, "run_dir": top.user_attrs.get("run_dir")}  # fmt: skip
    return {
        "storage": shown_url(cfg.storage),
        "study": cfg.study, "metric": cfg.metric, "direction": cfg.direction,
        "recipe": cfg.recipe_source, "space": cfg.space.to_text(), "sampler": cfg.sampler,
        "pruner": cfg.pruner, "prune_sick": cfg.prune_sick, "stages": stages, "best": best,
    }  # fmt: skip


def _epochs_of(trial: Any) -> int:
    """Epochs this try trained: from its first reported epoch to its last (a resumed try
    starts where the try it continues stopped, so the tries of a place add up)."""
    epochs = trial.intermediate_values
    return max(epochs) - min(epochs) + 1 if epochs else 0


def _write_best(cfg: SearchConfig, runs: list[StageRun], best: dict[str, Any]) -> Path:
    """``best.yaml``: the recipe the best trial trained, complete (every default written out):
    its own ``recipe.yaml`` where its run folder is on this machine."""
    from trainlab.recipe import load_recipe

    saved = Path(best["run_dir"] or "") / "recipe.yaml"
    if best["run_dir"] and saved.is_file():
        recipe = load_recipe(saved, trained=True)
    else:  # trained on another machine: the same recipe, from the stage's and trial's values
        run = next(r for r in runs if r.stage.name == best["stage"])
        recipe = resolve_recipe(cfg.recipe, {**run.overrides, **best["params"]})
    path = cfg.out / "best.yaml"
    header = (
        f"# best trial of {cfg.study}: stage {best['stage']}, trial {best['number']}, "
        f"{cfg.metric} {best['value']:.4f} (validation)\n"
    )
    atomic_write(path, (header + recipe_to_yaml(recipe)).encode())
    return path


def _train_finalists(cfg: SearchConfig, best: dict[str, Any]) -> dict[str, Any]:
    """The best recipe trained on ``cfg.seeds`` seeds, in a folder of that trial's own (a study
    continued later may find another best; its seeds go beside, never over, these)."""
    from trainlab.seeds import train_seeds

    folder = cfg.out / "best" / f"{best['stage']}-{best['number']:04d}"
    return train_seeds(cfg.out / "best.yaml", None, cfg.seeds, out=folder, quiet=True)


def check_config(cfg: SearchConfig) -> None:
    """What must hold before any trial runs (every problem is bad input: exit 2)."""
    if cfg.recipe.data.val_fraction == 0:
        raise RecipeError(
            f"{cfg.recipe_source}: data.val_fraction is 0: a search selects on the validation "
            "split (never on test); give the recipe one, e.g. data.val_fraction=0.1"
        )
    for stage in cfg.stages:
        try:
            resolve_recipe(cfg.recipe, stage_overrides(cfg.recipe, stage))
        except RecipeError as exc:
            raise RecipeError(f"stage {stage.name}: {exc.problems[0]}") from None
