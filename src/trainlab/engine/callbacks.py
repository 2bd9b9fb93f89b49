"""Callbacks: features that hang on the training loop through a small set of events.

Events, in the order the loop calls them: ``on_fit_start``, ``on_epoch_start``,
``on_batch_end`` (every step, after the optimiser step; the gradients are still there),
``on_log`` (every ``training.log_every`` steps, with host numbers), ``on_eval_end`` (after each
validation; a pruner or early stopping reads it), ``on_epoch_end``, ``on_fit_end``. A callback
with state implements ``state_dict``/``load_state_dict`` and is saved in every checkpoint under
its ``key``. Only callbacks that override an event are called for it, so an unused per-step
event costs nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.engine.checkpoint import save_checkpoint
from trainlab.files import atomic_write

if TYPE_CHECKING:
    from trainlab.engine.loop import Trainer
    from trainlab.recipe import Recipe

__all__ = [
    "Callback",
    "CallbackList",
    "JsonlLog",
    "MetricsLog",
    "EarlyStopping",
    "ProgressBar",
    "Checkpointer",
    "standard_callbacks",
]

EVENTS = (
    "on_fit_start",
    "on_epoch_start",
    "on_batch_end",
    "on_log",
    "on_eval_end",
    "on_epoch_end",
    "on_fit_end",
)


class Callback:
    """Base class: override the events you need."""

    key = ""  # non-empty: state saved in checkpoints under this name

    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer) -> None: ...
    def on_batch_end(self, trainer: Trainer) -> None: ...
    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None: ...
    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...
    def on_epoch_end(self, trainer: Trainer) -> None: ...
    def on_fit_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CallbackList:
    """Dispatches each event to the callbacks that override it."""

    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = callbacks
        self._by_event = {
            event: [
                getattr(cb, event)
                for cb in callbacks
                if getattr(type(cb), event) is not getattr(Callback, event)
            ]
            for event in EVENTS
        }

    def __call__(self, event: str, *args: Any) -> None:
        for fn in self._by_event[event]:
            fn(*args)

    def state_dict(self) -> dict[str, Any]:
        return {cb.key: cb.state_dict() for cb in self.callbacks if cb.key}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for cb in self.callbacks:
            if cb.key and cb.key in state:
                cb.load_state_dict(state[cb.key])


class JsonlLog(Callback):
    """A log of one JSON record a line in the run folder, exact under resume.

    The number of lines written is part of every checkpoint; a resumed run first cuts the file
    back to that many lines, so the log has neither a gap nor a duplicate step.
    """

    key = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = None
        self.lines = 0

    def on_fit_start(self, trainer: Trainer) -> None:
        self._open()

    def _open(self) -> None:
        """Cut the file back to the lines the loaded state counts, then append from there."""
        if self.path.exists():
            kept = self.path.read_text(encoding="utf-8").splitlines(keepends=True)[: self.lines]
            atomic_write(self.path, "".join(kept).encode())
        self.file = self.path.open("a", encoding="utf-8")

    def _write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        self.lines += 1

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.file:
            self.file.close()
            self.file = None

    def state_dict(self) -> dict[str, Any]:
        return {"lines": self.lines}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lines = state["lines"]
        if self.file is not None:  # rolled back during a fit: cut the log back right away
            self.file.close()
            self._open()


class MetricsLog(JsonlLog):
    """Appends every logged record and every evaluation to ``metrics.jsonl``."""

    key = "metrics_log"

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self._write(record)

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self._write({"step": trainer.step, "epoch": trainer.epoch + 1, **metrics})


class EarlyStopping(Callback):
    """Stop when the validation metric has not improved for ``patience`` evaluations.

    "Improved" is the trainer's :class:`~trainlab.engine.best.Best` (the metric and
    ``min_delta`` of ``training.early_stopping``), so the epoch early stopping restores is the
    epoch the best checkpoint and ``summary.json`` name. Keeps a copy of the best weights in
    memory and puts them back at the end (``restore_best``), so the test figures and the saved
    final model are those of the best validation epoch.
    """

    key = "early_stopping"

    def __init__(self, patience: int, restore_best: bool) -> None:
        self.patience, self.restore_best = patience, restore_best
        self.bad = 0
        self.best_weights: dict | None = None

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        best = trainer.best
        if best.improved:
            self.bad = 0
            if self.restore_best:
                self.best_weights = copy.deepcopy(trainer.model.state_dict())
            return
        self.bad += 1
        if self.bad >= self.patience:
            trainer.stop(
                f"early stopping: {best.metric} has not improved for {self.patience} "
                f"evaluations (best {best.value:.4g} at epoch {best.epoch})"
            )

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.restore_best and self.best_weights is not None:
            trainer.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {"bad": self.bad, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bad, self.best_weights = state["bad"], state["best_weights"]


class ProgressBar(Callback):
    """A rich progress bar over all steps, showing loss, accuracy, lr and throughput."""

    def __init__(self, total_steps: int, enabled: bool) -> None:
        self.total, self.enabled = total_steps, enabled
        self.progress = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]:>3}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
            console=Console(stderr=True),
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=self.total, completed=trainer.step, epoch=trainer.epoch + 1, stats=""
        )

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self.progress is None:
            return
        stats = (
            f"loss {record['loss']:.4f} acc {record['acc']:.3f} lr {record['lr']:.1e} "
            f"{record['samples_per_s'] / 1000:.1f}k samples/s"
        )
        self.progress.update(
            self.task, completed=trainer.step, epoch=trainer.epoch + 1, stats=stats
        )

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self.progress is not None and "val_acc" in metrics:
            self.progress.console.print(
                f"epoch {trainer.epoch + 1:>3}  val_loss {metrics['val_loss']:.4f}  "
                f"val_acc {metrics['val_acc']:.4f}"
            )

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=trainer.step)
            self.progress.stop()
            self.progress = None


class Checkpointer(Callback):
    """Saves ``last`` every ``every`` epochs, every ``every_steps`` steps (0: never mid-epoch) and
    at the end, and ``best`` whenever the trainer's :class:`~trainlab.engine.best.Best` improves
    (early stopping's metric when it is on, else validation accuracy).

    It runs after every other callback of an event (see :func:`standard_callbacks`), so each
    callback's state after a step is in that step's checkpoint.
    """

    key = "checkpointer"

    def __init__(self, root: Path, every: int, every_steps: int) -> None:
        self.root, self.every, self.every_steps = root, every, every_steps

    def on_batch_end(self, trainer: Trainer) -> None:
        if self.every_steps and trainer.step % self.every_steps == 0:
            self.save_last(trainer, epoch_done=False)

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        best = trainer.best
        if best.improved:
            state = {"step": trainer.step, "epoch": best.epoch, best.metric: best.value}
            save_checkpoint(self.root, "best", trainer.step, trainer.weights(), state)

    def on_epoch_end(self, trainer: Trainer) -> None:
        done = trainer.step >= trainer.total_steps or trainer.stop_reason is not None
        if (trainer.epoch + 1) % self.every == 0 or done:
            self.save_last(trainer, epoch_done=True)

    def save_last(self, trainer: Trainer, epoch_done: bool) -> Path:
        """The full training state as the new ``last`` (the previous one is kept as fallback)."""
        return save_checkpoint(
            self.root, "last", trainer.step, trainer.weights(), trainer.state(epoch_done), keep=2
        )


def standard_callbacks(
    recipe: Recipe,
    run_dir: Path,
    total_steps: int,
    progress: bool,
    extra: Sequence[Callback] = (),
) -> list[Callback]:
    """The callbacks every run folder gets, in dispatch order, with ``extra`` (the caller's,
    e.g. a pruner or the layer monitor) between the metrics log and early stopping and the
    checkpointer: the metrics log sees each event first, the checkpointer after everything
    that changes state, the progress bar last."""
    tcfg = recipe.training
    first: list[Callback] = [MetricsLog(run_dir / "metrics.jsonl")]
    if tcfg.early_stopping is not None:
        first.append(EarlyStopping(tcfg.early_stopping.patience, tcfg.early_stopping.restore_best))
    checkpointer = Checkpointer(
        run_dir / "checkpoints", tcfg.checkpoint_every, tcfg.checkpoint_every_steps
    )
    return [*first, *extra, checkpointer, ProgressBar(total_steps, progress and tcfg.progress)]
