"""The callbacks every run folder gets, in the order they are dispatched.

Its own module because it gathers callbacks from several (logs, loggers, the plateau schedule,
early stopping, checkpoints, the terminal), which all import :mod:`trainlab.engine.callbacks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trainlab.engine.callbacks import (
    Callback,
    Checkpointer,
    EarlyStopping,
    EpochLines,
    MetricsLog,
    ProgressBar,
)
from trainlab.engine.ema import EMA
from trainlab.engine.loggers import metric_loggers
from trainlab.engine.plateau import schedule_callbacks
from trainlab.engine.snapshots import SNAPSHOT_DIR, Snapshots
from trainlab.engine.transfer import transfer_callbacks

if TYPE_CHECKING:
    from trainlab.recipe import Recipe

__all__ = ["standard_callbacks"]


def standard_callbacks(
    recipe: Recipe,
    run_dir: Path,
    total_steps: int,
    progress: bool,
    extra: Sequence[Callback] = (),
    *,
    quiet: bool = False,
    writer: bool = True,
) -> list[Callback]:
    """The callbacks every run folder gets, in dispatch order, with ``extra`` (the caller's,
    e.g. a pruner or the layer monitor) between the metrics log and early stopping and the
    checkpointer: the metrics log sees each event first, the checkpointer after everything
    that changes state (the weight average of ``training.ema`` among them), the progress bar
    and the epoch lines (printed through the bar when it is live) last. ``quiet`` leaves out
    the bar and the epoch lines (a search's trials, whose progress is one line each, printed by
    the search). ``writer=False`` (a DDP rank other than 0) keeps only what changes the
    training state, and the checkpointer and snapshots, which check but do not write."""
    tcfg = recipe.training
    logs: list[Callback] = [
        MetricsLog(run_dir / "metrics.jsonl"),
        *metric_loggers(recipe, run_dir),  # training.loggers: csv, tensorboard
    ]
    first: list[Callback] = [
        *(logs if writer else []),
        *schedule_callbacks(recipe.schedule.name, recipe.schedule.params()),  # reduce_on_plateau
        *transfer_callbacks(recipe),  # model.freeze
    ]
    if tcfg.ema is not None:  # before early stopping: its restored best weights win at the end
        first.append(EMA(tcfg.ema.decay, tcfg.ema.every, tcfg.ema.warmup))
    if tcfg.early_stopping is not None:
        first.append(EarlyStopping(tcfg.early_stopping.patience, tcfg.early_stopping.restore_best))
    if tcfg.snapshots:  # after the weight average: a snapshot holds the step's exported weights
        first.append(Snapshots(run_dir / SNAPSHOT_DIR, recipe))
    checkpointer = Checkpointer(
        run_dir / "checkpoints", tcfg.checkpoint_every, tcfg.checkpoint_every_steps
    )
    if quiet or not writer:
        return [*first, *extra, checkpointer]
    bar = ProgressBar(total_steps, progress and tcfg.progress)
    return [*first, *extra, checkpointer, bar, EpochLines(bar)]
