"""From the command's arguments to a checked :class:`SearchConfig`, and local worker processes.

Everything is checked before any trial runs: the recipe (it must have a validation split), the
space against the recipe's schema, the stages, the sampler and pruner names, and the storage
(several local workers on one SQLite file are refused: Optuna's FAQ advises against concurrent
writers to SQLite; a PostgreSQL server is what several workers share).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from trainlab.errors import RecipeError, TrainlabError, TrainlabWarning
from trainlab.recipe import Overrides, Recipe, resolve_recipe
from trainlab.tuning.engines import PRUNERS, SAMPLERS
from trainlab.tuning.space import load_space
from trainlab.tuning.stages import parse_stages
from trainlab.tuning.study import SearchConfig, check_config, default_storage, run_search

__all__ = ["search_config", "search_with_workers", "trial_line", "print_trial"]


def search_config(
    recipe: Recipe | str | Path | None,
    space: str | Path,
    overrides: Overrides | None,
    *,
    out: str | Path | None,
    trials: int | None,
    sampler: str,
    pruner: str,
    stages: str | None,
    storage: str | None,
    study: str | None,
    metric: str | None,
    seed: int | None,
    retries: int,
    heartbeat: int,
    prune_sick: bool,
    seeds: int | None,
) -> SearchConfig:
    """The search's settings, checked (a RecipeError/TrainlabError names what is wrong); the
    keywords and their defaults are :func:`trainlab.search`'s."""
    if sampler not in SAMPLERS:
        raise RecipeError(f"--sampler {sampler!r}: expected one of {', '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise RecipeError(f"--pruner {pruner!r}: expected one of {', '.join(PRUNERS)}")
    if trials is not None and trials < 1:
        raise RecipeError(f"--trials {trials}: expected at least 1")
    if heartbeat < 1 or retries < 0:
        raise RecipeError("--heartbeat must be >= 1 second and --retries >= 0")
    resolved = resolve_recipe(recipe, overrides)
    parsed = load_space(space, resolved)
    metric = metric or parsed.metric or "val_acc"
    if metric not in ("val_acc", "val_loss"):
        raise RecipeError(f"--metric {metric!r}: expected val_acc or val_loss (validation only)")
    folder = Path(out) if out is not None else Path(f"search-{resolved.name}")
    cfg = SearchConfig(
        recipe=resolved, recipe_source=str(recipe or "digits"), space=parsed,
        stages=parse_stages(stages, parsed.stages, trials, parsed.source), out=folder,
        storage=storage or default_storage(folder), study=study or folder.resolve().name,
        sampler=sampler, pruner=pruner, metric=metric,
        seed=resolved.seed if seed is None else seed, retries=retries, heartbeat=heartbeat,
        prune_sick=prune_sick, seeds=parsed.seeds if seeds is None else seeds,
    )  # fmt: skip
    if cfg.seeds < 0:
        raise RecipeError(f"--seeds {cfg.seeds}: expected a whole number >= 0")
    check_config(cfg)
    return cfg


def search_with_workers(
    cfg: SearchConfig, workers: int, on_trial: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Run the search in this process, with ``workers - 1`` more local processes joining it."""
    if workers < 1:
        raise RecipeError(f"--workers {workers}: expected at least 1")
    if workers > 1 and cfg.storage.startswith("sqlite"):
        raise TrainlabError(
            f"--workers {workers} on SQLite ({cfg.storage}): SQLite does not take concurrent "
            "writers well (Optuna's FAQ); give --storage postgresql://USER@HOST/DB for several "
            "workers, or run one"
        )
    if workers == 1:
        return run_search(cfg, on_trial)
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch state
    helpers = [
        ctx.Process(target=_worker, args=(replace(cfg, finalists=False), threads, on_trial))
        for _ in range(workers - 1)
    ]
    for proc in helpers:
        proc.start()
    try:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            result = run_search(cfg, on_trial)
        finally:
            torch.set_num_threads(previous)
    finally:
        for proc in helpers:
            proc.join()
    failed = [p.exitcode for p in helpers if p.exitcode not in (0, None)]
    if failed:
        warnings.warn(
            f"{len(failed)} of the {workers - 1} extra workers stopped with exit code "
            f"{failed[0]} (their lines above say why); the study in {cfg.storage} holds what "
            "they finished",
            TrainlabWarning,
            stacklevel=2,
        )
    return result


def _worker(cfg: SearchConfig, threads: int, on_trial: Any) -> None:
    """A local worker process: the same loop on the same storage, its share of the cores; a
    user error or Ctrl-C is one line and its exit code, as in the main process."""
    import torch

    torch.set_num_threads(threads)
    try:
        run_search(cfg, on_trial)
    except TrainlabError as exc:
        print(f"trainlab: worker {os.getpid()}: {exc.prefix}: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def print_trial(card: dict[str, Any]) -> None:
    """The command's line for a finished trial (a function, so worker processes can take it)."""
    print(trial_line(card), flush=True)


def trial_line(card: dict[str, Any]) -> str:
    """One line per finished trial: stage, number, state, value, values tried, reason."""
    metric = card.get("metric", "val_acc")
    params = " ".join(f"{k}={_short(v)}" for k, v in card["params"].items())
    value = f"{metric} {card['value']:.4f}" if card.get("value") is not None else ""
    why = f" ({card['reason']})" if card.get("reason") else ""
    return (
        f"{card['stage']} #{card['number']:<3} {card['state']:<8} {value:<16} {params}{why}"
    ).rstrip()


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
