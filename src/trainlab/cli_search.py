"""``trainlab search`` and ``trainlab compare``: commands that cli.py registers on its app.

Apart from cli.py only to keep each file about one thing; they follow the same rules (one line
per user error, exit 2; ``--json`` prints one object last) through cli_common.
"""

from __future__ import annotations

from typing import Any

import typer

from trainlab.cli_common import emit as _emit
from trainlab.cli_common import make_console, split_recipe_args, user_errors
from trainlab.errors import TrainlabError

__all__ = ["search", "compare", "SearchStopped"]


class SearchStopped(TrainlabError):
    """Ctrl-C between two trials: nothing was running, so nothing needs resuming."""

    prefix = "stopped"
    exit_code = 130

    def __init__(self) -> None:
        super().__init__("interrupted between trials; run the same command again to continue")


@user_errors
def search(
    args: list[str] = typer.Argument(
        None, metavar="[RECIPE] [KEY=VALUE]...", help="the recipe searched around, overrides"
    ),
    space: str = typer.Option(..., "--space", help="YAML: KEY.PATH: loguniform(lo, hi) ..."),
    trials: int = typer.Option(None, "--trials", help="trials of a one-stage search (20)"),
    sampler: str = typer.Option("random", "--sampler", help="random | grid | tpe"),
    pruner: str = typer.Option("none", "--pruner", help="none | median | asha | hyperband"),
    stages: str = typer.Option(
        None, "--stages", help="coarse:fine (the space file's) or TRIALSxEPOCHS:..., e.g. 24x3:8x20"
    ),
    storage: str = typer.Option(
        None, "--storage", help="Optuna storage URL (default: OUT/study.db, SQLite)"
    ),
    study: str = typer.Option(None, "--study", help="study name (default: OUT's folder name)"),
    workers: int = typer.Option(1, "--workers", help="local worker processes (not on SQLite)"),
    out: str = typer.Option(None, "--out", "-o", help="study folder (default: search-NAME)"),
    metric: str = typer.Option(None, "--metric", help="val_acc (default) or val_loss"),
    seed: int = typer.Option(None, "--seed", help="the sampler's seed (default: the recipe's)"),
    retries: int = typer.Option(0, "--retries", help="retry a dead worker's trial N times"),
    heartbeat: int = typer.Option(30, "--heartbeat", help="seconds between worker heartbeats"),
    prune_sick: bool = typer.Option(
        False, "--prune-sick", help="also stop trials the doctor's monitors find sick"
    ),
    seeds: int = typer.Option(None, "--seeds", help="retrain the best recipe on N seeds"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (last line)"),
) -> None:
    """Random, grid or TPE search on Optuna, coarse to fine; selects on validation only."""
    from trainlab.api import search as run_search
    from trainlab.tuning.launch import print_trial

    recipe, overrides = split_recipe_args(args or [])
    try:
        result = run_search(
            recipe, space, overrides, out=out, trials=trials, sampler=sampler, pruner=pruner,
            stages=stages, storage=storage, study=study, workers=workers, metric=metric,
            seed=seed, retries=retries, heartbeat=heartbeat, prune_sick=prune_sick, seeds=seeds,
            on_trial=None if as_json else print_trial,
        )  # fmt: skip
    except KeyboardInterrupt:  # between trials (inside one, the trainer stops it cleanly)
        raise SearchStopped() from None
    if not as_json:
        _print_search(result)
    _emit(result, as_json)


def _print_search(result: dict[str, Any]) -> None:
    """Each stage's counts and epochs, then the best trial and where its recipe is."""
    console = make_console()
    for stage in result["stages"]:
        states = [t["state"] for t in stage["trials_run"]]
        counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
        console.print(
            f"{stage['name']}: {counts}; {stage['epochs_trained']} epochs trained",
            highlight=False,
        )
    best = result["best"]
    if best is None:
        console.print("no trial completed: nothing to select", highlight=False)
        return
    shown = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in best["params"].items())  # fmt: skip
    console.print(
        f"best: {best['stage']} #{best['number']} {result['metric']} {best['value']:.4f} "
        f"(validation) {shown} -> {best.get('recipe', best['run_dir'])}",
        highlight=False,
    )
    seeds = result.get("seeds")
    if seeds:
        for key in ("val_acc", "test_acc"):
            if key in seeds["mean"]:
                console.print(
                    f"best recipe on {seeds['n']} seeds: {key} {seeds['mean'][key]:.4f} +- "
                    f"{seeds['std'][key]:.4f}",
                    highlight=False,
                )


@user_errors
def compare(
    paths: list[str] = typer.Argument(..., metavar="RUN_DIR... | STUDY_DIR"),
    out: str = typer.Option("compare.html", "--out", "-o", help="the HTML page to write"),
    smooth: int = typer.Option(
        0, "--smooth", help="moving-average window in logged records (0: a tenth of them)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (last line)"),
) -> None:
    """The command center: every run's curves, a sortable table, metric against each value."""
    from trainlab.tuning.compare import compare as run_compare

    result = run_compare(paths, out, smooth=smooth)
    if not as_json:
        best = result.get("best")
        shown = f"; best {best['name']} {best['metric']} {best['value']:.4f}" if best else ""
        make_console().print(f"{result['runs']} runs{shown} -> {result['report']}", highlight=False)
    _emit(result, as_json)
