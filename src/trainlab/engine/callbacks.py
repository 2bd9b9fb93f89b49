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
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.engine.checkpoint import save_checkpoint
from trainlab.errors import RunFolderError
from trainlab.files import storage_error

if TYPE_CHECKING:
    from trainlab.engine.loop import Trainer

__all__ = [
    "Callback",
    "CallbackList",
    "JsonlLog",
    "MetricsLog",
    "EarlyStopping",
    "ProgressBar",
    "EpochLines",
    "Checkpointer",
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
        """Cut the file back to the lines the loaded state counts, then append from there.

        Cut in place (a truncate needs no free space, so a run on a full disk gets as far as
        saying so); what is kept is the file's own prefix, unchanged.
        """
        try:
            if self.path.exists():
                os.truncate(self.path, _end_of_line(self.path, self.lines))
            self.file = self.path.open("ab", buffering=0)  # unbuffered: nothing to flush late
        except OSError as exc:  # a full disk is exit 1; a log that is a folder, read-only... 2
            error = storage_error(exc, self.path, "cannot rewrite the log to resume")
            raise error if error.disk_full else RunFolderError(str(error)) from None

    def _write(self, record: dict[str, Any]) -> None:
        """One record, written through to the OS (a short write is continued; a failed one is
        one line, and its torn line is cut off on resume)."""
        data = memoryview((json.dumps(record) + "\n").encode())
        try:
            while data:
                data = data[self.file.write(data) :]
        except OSError as exc:
            raise storage_error(exc, self.path) from None
        self.lines += 1

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.file:
            self.file.close()  # unbuffered: closing writes nothing
            self.file = None

    def state_dict(self) -> dict[str, Any]:
        return {"lines": self.lines}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lines = state["lines"]
        if self.file is not None:  # rolled back during a fit: cut the log back right away
            self.file.close()
            self._open()


def _end_of_line(path: Path, lines: int) -> int:
    """The byte offset just after the first ``lines`` complete lines of ``path`` (its length
    when it has fewer; a torn last line from a killed write is never kept)."""
    offset = 0
    with open(path, "rb") as f:
        for _ in range(lines):
            line = f.readline()
            if not line.endswith(b"\n"):
                break
            offset += len(line)
    return offset


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


def _clock(seconds: float | None) -> str:
    """``H:MM:SS`` (hours unbounded, so a long run never turns into "1 day, ..."); ``-:--:--``
    while rich has no estimate yet."""
    if seconds is None:
        return "-:--:--"
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _times_column() -> Any:
    """A rich column ``elapsed<remaining`` (tqdm's form): one fixed-width cell, so the two
    clocks cannot be squeezed apart or read as each other."""
    from rich.progress import ProgressColumn
    from rich.table import Column
    from rich.text import Text

    class TimesColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            elapsed = task.finished_time if task.finished else task.elapsed
            remaining = 0.0 if task.finished else task.time_remaining
            return Text(f"{_clock(elapsed)}<{_clock(remaining)}", style="progress.elapsed")

    return TimesColumn(table_column=Column(no_wrap=True, min_width=15))


def epochs_of(trainer: Trainer) -> int:
    """The run's length in epochs (``training.max_steps`` may end one part-way)."""
    return max(1, -(-trainer.total_steps // max(trainer.steps_per_epoch, 1)))


class ProgressBar(Callback):
    """A rich progress bar over all steps: epoch, bar, steps done/total, elapsed<remaining,
    then as many of loss, accuracy, lr and throughput as the terminal's width leaves room for.

    Every column but the last has a fixed width and never wraps, and the last one is filled in
    priority order (loss and accuracy always; lr, then samples/s only when they fit), so at 80
    columns the step count and both clocks stay whole instead of being cut to ``0:0…``. The bar
    is 10 cells wide below :attr:`WIDE` columns. Off when stderr is not a terminal: a pipe or
    a log file cannot redraw a line, and gets the :class:`EpochLines` instead.
    """

    WIDE = 110  # columns from which the bar is drawn 20 cells wide

    def __init__(self, total_steps: int, enabled: bool) -> None:
        self.total, self.enabled = total_steps, enabled
        self.progress: Any = None
        self.fixed = 0  # columns taken by everything left of the stats

    @property
    def console(self) -> Any:
        """The live bar's console (lines printed through it appear above the bar), else None."""
        return self.progress.console if self.progress is not None else None

    def on_fit_start(self, trainer: Trainer) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        from rich.table import Column

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        epochs = epochs_of(trainer)
        epoch_width = len(f"epoch {epochs}/{epochs}")
        steps_width = 2 * len(str(self.total)) + 1
        bar_width = 20 if console.width >= self.WIDE else 10
        self.fixed = epoch_width + bar_width + steps_width + 15 + 4  # 4: the gaps between
        self.progress = Progress(
            TextColumn(
                f"[bold]epoch {{task.fields[epoch]:>{len(str(epochs))}}}/{epochs}",
                table_column=Column(no_wrap=True, min_width=epoch_width),
            ),
            BarColumn(bar_width=bar_width),
            MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=steps_width)),
            _times_column(),
            TextColumn("{task.fields[stats]}", table_column=Column(no_wrap=True)),
            console=console,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=self.total, completed=trainer.step, epoch=trainer.epoch + 1, stats=""
        )

    def stats(self, record: dict[str, Any], width: int) -> str:
        """The fields of a logged record that fit in ``width`` columns, most important first
        (loss and accuracy are always kept: they are what the bar is watched for)."""
        fields = [
            f"loss {record['loss']:.4f} acc {record['acc']:.3f}",
            f"lr {record['lr']:.1e}",
            f"{record['samples_per_s'] / 1000:.1f}k samples/s",
        ]
        shown = fields[0]
        for field in fields[1:]:
            if len(shown) + 1 + len(field) > width:
                break
            shown += " " + field
        return shown

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self.progress is None:
            return
        stats = self.stats(record, self.progress.console.width - self.fixed - 1)
        self.progress.update(
            self.task, completed=trainer.step, epoch=trainer.epoch + 1, stats=stats
        )

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=trainer.step)
            self.progress.stop()
            self.progress = None


class EpochLines(Callback):
    """One line per epoch on stderr, bar or no bar: train loss/acc, val loss/acc, lr, seconds,
    and ``*`` on the epoch whose validation is the best so far (the best checkpoint's).

    Without it ``--no-progress``, or stderr sent to a file, showed nothing until the summary,
    so a long run could not be told from a hung one. With a live bar the line is printed through
    the bar's console (it appears above the bar); otherwise it is a plain ``print`` to stderr,
    never wrapped, so a log keeps one line per epoch. The train figures are the mean of the
    windows logged during the epoch (the latest window when none ended in it). A resumed run
    first says where it continues from.
    """

    def __init__(self, bar: ProgressBar | None = None) -> None:
        self.bar = bar
        self.tick = 0.0
        self.train: list[dict[str, Any]] = []
        self.latest: dict[str, Any] | None = None
        self.val: dict[str, float] = {}
        self.best = False

    def say(self, line: str) -> None:
        """Print ``line`` above the live bar, or as plain text on stderr."""
        console = self.bar.console if self.bar is not None else None
        if console is not None:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.step <= 0:
            return
        where = f"resuming from step {trainer.step} of {trainer.total_steps}"
        epoch = min(trainer.epoch + 1, epochs_of(trainer))
        if trainer.stop_reason is not None or not trainer.work_left():  # only the end is left
            self.say(f"{where}: training is done; finishing the run (test figures, summary)")
        else:  # steps, or only the end of the last steps' epoch (validation...), are left
            self.say(f"{where} (epoch {epoch} of {epochs_of(trainer)})")

    def on_epoch_start(self, trainer: Trainer) -> None:
        self.tick = time.perf_counter()
        self.train, self.val, self.best = [], {}, False

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.train.append(record)
        self.latest = record

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.val, self.best = dict(metrics), trainer.best.improved

    def on_epoch_end(self, trainer: Trainer) -> None:
        self.say(self.line(trainer, time.perf_counter() - self.tick))

    def line(self, trainer: Trainer, seconds: float) -> str:
        """``epoch  3/20 loss 0.412 acc 0.871 val_loss 0.388 val_acc 0.884 lr 2.9e-3 1.2s *``:
        under 80 columns up to 999 epochs (a wrapped line would put the ``*`` on a row of its
        own); fields without a value this epoch are left out."""
        epochs = epochs_of(trainer)
        parts = [f"epoch {trainer.epoch + 1:>{len(str(epochs))}}/{epochs}"]
        window = self.train or ([self.latest] if self.latest else [])
        if window:
            loss = sum(r["loss"] for r in window) / len(window)
            acc = sum(r["acc"] for r in window) / len(window)
            parts.append(f"loss {loss:.3f} acc {acc:.3f}")
        for key in ("val_loss", "val_acc"):
            if key in self.val:
                parts.append(f"{key} {self.val[key]:.3f}")
        if window:
            mantissa, _, exponent = f"{window[-1]['lr']:.1e}".partition("e")
            parts.append(f"lr {mantissa}e{int(exponent)}")  # 3.0e-3: two columns less
        parts.append(f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s")
        if self.best:
            parts.append("*")
        return " ".join(parts)


class Checkpointer(Callback):
    """Saves ``last`` every ``every`` epochs, every ``every_steps`` steps (0: never mid-epoch) and
    at the end, and ``best`` whenever the trainer's :class:`~trainlab.engine.best.Best` improves
    (early stopping's metric when it is on, else validation accuracy).

    It runs after every other callback of an event (see ``engine.standard``), so each
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
        if best.improved and trainer.is_writer:
            state = {"step": trainer.step, "epoch": best.epoch, best.metric: best.value}
            save_checkpoint(self.root, "best", trainer.step, trainer.weights(), state)

    def on_epoch_end(self, trainer: Trainer) -> None:
        done = trainer.step >= trainer.total_steps or trainer.stop_reason is not None
        if (trainer.epoch + 1) % self.every == 0 or done:
            self.save_last(trainer, epoch_done=True)

    def save_last(self, trainer: Trainer, epoch_done: bool) -> Path | None:
        """The full training state as the new ``last`` (the previous one is kept as fallback).
        Under DDP every process builds the state (its NaN/inf check is collective) and rank 0
        writes it."""
        state = trainer.state(epoch_done)
        if not trainer.is_writer:
            return None
        return save_checkpoint(self.root, "last", trainer.step, trainer.weights(), state, keep=2)
