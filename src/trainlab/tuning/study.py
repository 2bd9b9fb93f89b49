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
from trainlab.tuning.engines import grid_size, make_pruner, make_sampler, open_storage
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
            result["seeds"] = _train_finalists(cfg)
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
        sampler=make_sampler(cfg.sampler, space, trials, cfg.seed),
        pruner=make_pruner(cfg.pruner, epochs), load_if_exists=True,
    )  # fmt: skip
    ranges = {k: d.to_json() for k, d in space.params.items()}
    stored = study.user_attrs.get("ranges")
    if stored is None:
        study.set_user_attr("ranges", ranges)
        study.set_user_attr("stage", stage.to_json())
        study.set_user_attr("metric", cfg.metric)
    elif stored != ranges and not _is_later_stage(cfg, stage):
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
    return StageRun(stage, study, space, stage_overrides(cfg.recipe, stage))


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


def _retried(trials: list[Any]) -> set[int]:
    """Numbers of failed trials that were queued again (by the heartbeat retry or by resuming
    an interrupted trial): their retry holds their place in the count."""
    numbers: set[int] = set()
    for t in trials:
        numbers.update(t.system_attrs.get("retry_history", []))
        if "resumes" in t.user_attrs:
            numbers.add(t.user_attrs["resumes"])
    return numbers


def _taken(trials: list[Any]) -> int:
    """Trials that hold a place in the stage's count."""
    retried = _retried(trials)
    return sum(1 for t in trials if not (t.state == TrialState.FAIL and t.number in retried))


def _requeue_interrupted(study: Any) -> None:
    """Queue again every trial stopped by Ctrl-C/SIGTERM (it resumes from its checkpoint)."""
    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    for t in trials:
        interrupted = t.state == TrialState.FAIL and t.user_attrs.get("interrupted")
        if interrupted and t.number not in retried:
            attrs = {"run_dir": t.user_attrs.get("run_dir"), "resumes": t.number}
            study.enqueue_trial(t.params, user_attrs=attrs)


def _work(cfg: SearchConfig, run: StageRun, on_trial: Callable | None) -> None:
    """Run trials until the stage has its count, then wait for the ones running elsewhere."""
    study, stage = run.study, run.stage
    _requeue_interrupted(study)
    objective = Objective(
        cfg.recipe, run.space, stage.name, run.overrides, cfg.out / "trials", cfg.metric,
        extra_callbacks=_sick_callbacks(cfg), on_done=on_trial, study_name=study.study_name,
        sick_overrides=_sick_overrides(cfg),
    )  # fmt: skip
    while True:
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if _taken(trials) < stage.trials or waiting:
            study.optimize(objective, n_trials=1, catch=(TrialFailed,))
            continue
        if not any(t.state == TrialState.RUNNING for t in trials):
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
    return {"number": t.number, "state": state, "value": t.value, "params": t.params,
            "run_dir": t.user_attrs.get("run_dir"), "reason": t.user_attrs.get("reason"),
            "epochs": max(t.intermediate_values, default=0)}  # fmt: skip


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
        "storage": cfg.storage if not cfg.storage.startswith("postgres") else _hide(cfg.storage),
        "study": cfg.study, "metric": cfg.metric, "direction": cfg.direction,
        "recipe": cfg.recipe_source, "space": cfg.space.to_text(), "sampler": cfg.sampler,
        "pruner": cfg.pruner, "prune_sick": cfg.prune_sick, "stages": stages, "best": best,
    }  # fmt: skip


def _epochs_of(trial: Any) -> int:
    """Epochs a trial trained: its last reported epoch (0 for one that failed before any)."""
    return max(trial.intermediate_values, default=0)


def _hide(url: str) -> str:
    from trainlab.tuning.engines import _shown

    return _shown(url)


def _write_best(cfg: SearchConfig, runs: list[StageRun], best: dict[str, Any]) -> Path:
    """``best.yaml``: the best trial's recipe, complete (every default written out)."""
    run = next(r for r in runs if r.stage.name == best["stage"])
    recipe = resolve_recipe(cfg.recipe, {**run.overrides, **best["params"]})
    path = cfg.out / "best.yaml"
    header = (
        f"# best trial of {cfg.study}: stage {best['stage']}, trial {best['number']}, "
        f"{cfg.metric} {best['value']:.4f} (validation)\n"
    )
    atomic_write(path, (header + recipe_to_yaml(recipe)).encode())
    return path


def _train_finalists(cfg: SearchConfig) -> dict[str, Any]:
    """The best recipe trained on ``cfg.seeds`` seeds (resumable: finished seeds are kept)."""
    from trainlab.seeds import train_seeds

    return train_seeds(cfg.out / "best.yaml", None, cfg.seeds, out=cfg.out / "best", quiet=True)


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
