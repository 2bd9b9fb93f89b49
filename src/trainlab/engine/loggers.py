"""Metric loggers beside ``metrics.jsonl``: ``metrics.csv`` and TensorBoard event files.

``training.loggers`` picks them (``[jsonl, csv, tensorboard]``; ``jsonl`` is always on). Each is
a callback on the same events as :class:`~trainlab.engine.callbacks.MetricsLog` (``on_log``:
the training records, ``on_eval_end``: the validation ones) and, like it, exact under resume:
what a checkpoint counts is kept, whatever was written after it is dropped, so a stopped and
resumed run has the points of an uninterrupted one, none missing and none twice.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.engine.callbacks import Callback
from trainlab.errors import RecipeError
from trainlab.files import atomic_write, storage_error

if TYPE_CHECKING:
    from trainlab.engine.loop import Trainer
    from trainlab.recipe import Recipe

__all__ = ["CsvLog", "TensorBoardLog", "metric_loggers", "require_tensorboard"]

TRAIN_COLUMNS = ("step", "epoch", "loss", "acc", "lr", "samples_per_s")


def metric_loggers(recipe: Recipe, run_dir: Path) -> list[Callback]:
    """The loggers ``training.loggers`` names besides jsonl (the trainer's own metrics log)."""
    names = recipe.training.loggers
    loggers: list[Callback] = []
    if "csv" in names:
        loggers.append(CsvLog(run_dir / "metrics.csv"))
    if "tensorboard" in names:
        loggers.append(TensorBoardLog(run_dir / "tensorboard"))
    return loggers


def eval_record(trainer: Trainer, metrics: dict[str, float]) -> dict[str, Any]:
    """A validation record as metrics.jsonl writes it (step, 1-based epoch, the metrics)."""
    return {"step": trainer.step, "epoch": trainer.epoch + 1, **metrics}


# ----------------------------------------------------------------------------------------------
# csv


def known_columns(trainer: Trainer) -> list[str]:
    """The columns every record of this run can have, known before the first one: the training
    record's, then validation's (loss, accuracy, top-k when the run reports it)."""
    columns = list(TRAIN_COLUMNS)
    if len(trainer.splits.x_val):
        columns += ["val_loss", "val_acc"]
        if trainer.parts.topk:
            columns.append(f"val_top{trainer.parts.topk}")
    return columns


class CsvLog(Callback):
    """``metrics.csv``: one row per training record and per validation, under one header.

    The header is the union of the keys known up front (:func:`known_columns`), so a training
    row has empty validation cells and the other way round. A key nobody announced (a metric
    added later) extends the header and the file is rewritten once with it, never a row with
    more cells than the header. Exact under resume as metrics.jsonl: the row count and the
    header are in every checkpoint, and a resumed run cuts the file back to them.
    """

    key = "csv_log"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: io.TextIOBase | None = None
        self.columns: list[str] = []
        self.rows = 0

    def on_fit_start(self, trainer: Trainer) -> None:
        if not self.columns:
            self.columns = known_columns(trainer)
        self._open()

    def _open(self) -> None:
        """Keep the header and the rows the state counts, drop the rest, append from there."""
        kept: list[str] = []
        if self.path.exists():
            lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            for cells in csv.reader(lines[1 : 1 + self.rows]):  # as many cells as the header
                kept.append(",".join(cells[: len(self.columns)]) + "\n")
        self._rewrite(kept)

    def _rewrite(self, rows: list[str]) -> None:
        """The file as the header plus ``rows`` (lines of cells), replaced atomically."""
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(self.columns)
        atomic_write(self.path, (header.getvalue() + "".join(rows)).encode())
        self.file = self.path.open("a", encoding="utf-8", newline="")

    def _write(self, record: dict[str, Any]) -> None:
        new = [k for k in record if k not in self.columns]
        if new:
            self._extend(new)
        cells = ["" if record.get(c) is None else _cell(record[c]) for c in self.columns]
        try:
            csv.writer(self.file, lineterminator="\n").writerow(cells)
            self.file.flush()
        except OSError as exc:  # a full disk: one line (the torn row is cut back on resume)
            raise storage_error(exc, self.path) from None
        self.rows += 1

    def _extend(self, new: list[str]) -> None:
        """Add ``new`` columns: every earlier row gets empty cells for them."""
        self.file.close()
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)[1:]
        self.columns = [*self.columns, *new]
        self._rewrite([line.rstrip("\n") + "," * len(new) + "\n" for line in lines])

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self._write(record)

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self._write(eval_record(trainer, metrics))

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):  # a row the full disk refused: cut on resume
                self.file.close()
            self.file = None

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": list(self.columns)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows, self.columns = state["rows"], list(state["columns"])
        if self.file is not None:  # rolled back during a fit: cut the file back right away
            self.file.close()
            self._open()


def _cell(value: Any) -> str:
    """A number as Python writes it (repr: read back, it is the same float)."""
    return repr(value) if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------------------------
# tensorboard


def require_tensorboard() -> None:
    """A one-line recipe error when the optional ``tensorboard`` package is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise RecipeError(
            "training.loggers: tensorboard needs the tensorboard package, which is not "
            "installed; pip install 'trainlab[tensorboard]' (or drop tensorboard from the list)"
        )


_EVENT_FILE = re.compile(r"events\.out\.tfevents\.(\d+)\.")


def wait_for_a_later_file_name(folder: Path, limit_s: float = 2.0) -> None:
    """Until a new event file's name sorts after every existing one in ``folder``.

    TensorBoard reads a folder's event files in name order, and a name starts with the
    second it was opened in; a resumed run's file must be read after the interrupted one's,
    or its purge of the steps after the checkpoint would come before them.
    """
    stamps = [int(m.group(1)) for p in folder.glob("*") if (m := _EVENT_FILE.match(p.name))]
    if not stamps:
        return
    deadline = time.monotonic() + limit_s
    while int(time.time()) <= max(stamps) and time.monotonic() < deadline:
        time.sleep(0.02)


class TensorBoardLog(Callback):
    """TensorBoard event files under ``RUN/tensorboard``: every number of metrics.jsonl's records
    (but step and epoch, the x axis) as a scalar of the same name at the record's step.

    Exact under resume: the checkpoint keeps the step of the last point written and the points
    at that step. A resumed run opens a new event file with ``purge_step`` at that step (the
    reader drops every earlier point at or after it, those written after the checkpoint
    included), writes the kept points of that step again with their wall times, and goes on.
    """

    key = "tensorboard_log"

    def __init__(self, folder: Path) -> None:
        require_tensorboard()
        self.folder = folder
        self.writer = None
        self.last_step: int | None = None  # the step of the last point written
        self.at_last: list[list[Any]] = []  # [tag, value, wall time] of the points at last_step
        self.resumed = False

    def on_fit_start(self, trainer: Trainer) -> None:
        self._open()

    def _open(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder.mkdir(parents=True, exist_ok=True)
        purge = None
        if self.resumed:
            purge = self.last_step if self.last_step is not None else 0
            wait_for_a_later_file_name(self.folder)
        self.writer = SummaryWriter(str(self.folder), purge_step=purge)
        for tag, value, wall in self.at_last:
            self.writer.add_scalar(tag, value, purge, walltime=wall)
        self.writer.flush()

    def _write(self, record: dict[str, Any]) -> None:
        step, wall = int(record["step"]), time.time()
        if step != self.last_step:
            self.last_step, self.at_last = step, []
        for tag, value in record.items():
            if tag in ("step", "epoch") or not _is_number(value):
                continue
            self.writer.add_scalar(tag, float(value), step, walltime=wall)
            self.at_last.append([tag, float(value), wall])
        self.writer.flush()  # on disk before the next checkpoint counts it

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self._write(record)

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self._write(eval_record(trainer, metrics))

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "at_last": [list(p) for p in self.at_last]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step, self.at_last = state["last_step"], [list(p) for p in state["at_last"]]
        self.resumed = True
        if self.writer is not None:  # rolled back during a fit: purge from here right away
            self.writer.close()
            self._open()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
