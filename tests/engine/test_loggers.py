"""``training.loggers``: metrics.csv and TensorBoard hold what metrics.jsonl holds (TensorBoard's
file read back with tensorboard's own EventAccumulator), and both are exact under a stop and
resume at a checkpoint: the same points as an uninterrupted run, none missing, none twice."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import trainlab
from trainlab.engine.build import build
from trainlab.engine.callbacks import Callback
from trainlab.engine.loggers import CsvLog, TensorBoardLog
from trainlab.engine.loop import Trainer
from trainlab.errors import RecipeError

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

RECIPE = [
    "training.progress=false",
    "model.name=mlp",
    "model.widths=[32]",
    "augment=[{name: random_crop, padding: 1}]",
    "model.dropout=0.1",
    "training.epochs=3",
    "training.log_every=5",
    "training.checkpoint_every_steps=10",
    "training.checkpoint_every=2",  # epoch 1 ends without a checkpoint: its last one is step 20
    "training.loggers=[csv, tensorboard]",
]


def _jsonl(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _csv(run: Path) -> tuple[list[str], list[dict]]:
    with (run / "metrics.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    assert all(len(row) == len(header) for row in rows), "a row with more or fewer cells"
    return header, [
        {k: float(v) for k, v in zip(header, row, strict=True) if v} for row in rows[1:]
    ]


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected_scalars(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """metrics.jsonl's numbers as TensorBoard stores them (float32), one series per key."""
    out: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        for key, value in r.items():
            if key not in ("step", "epoch"):
                out.setdefault(key, []).append((r["step"], float(np.float32(value))))
    return out


def _untimed(series: dict) -> dict:
    return {k: v for k, v in series.items() if k != "samples_per_s"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("loggers") / "run"
    trainlab.train(None, RECIPE, out=run, progress=False)
    return run


def test_csv_and_tensorboard_hold_the_points_of_metrics_jsonl(uninterrupted: Path):
    records = _jsonl(uninterrupted)  # jsonl is written although the list does not name it
    header, rows = _csv(uninterrupted)
    assert header == [
        "step", "epoch", "loss", "acc", "lr", "samples_per_s", "val_loss", "val_acc", "val_top5",
        "val_nll", "val_ece", "val_brier",
    ]  # fmt: skip
    assert rows == [{k: float(v) for k, v in r.items()} for r in records]
    assert sum("val_acc" in r for r in rows) == 3 and sum("loss" in r for r in rows) > 3
    assert _scalars(uninterrupted) == _expected_scalars(records)


class _CrashAt(Callback):
    """A crash at the end of step ``step``, some steps after the last checkpoint: the points
    logged since that checkpoint are in the files and must not survive the resume."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, trainer: Trainer) -> None:
        if trainer.step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    "crash, checkpoint",
    [(28, 20), (38, 30), (48, 40)],
    # 28: the last checkpoint (step 20, mid-epoch) holds the training point of step 20 but not
    # the validation at step 20 written after it, so the resume purges step 20 and writes its
    # kept point again; 38: mid-epoch; 48: after the epoch-end checkpoint that follows
    # validation 2 (both points of step 40 kept)
    ids=["validation-after-the-checkpoint-at-its-step", "mid-epoch", "epoch-end"],
)
def test_stop_and_resume_gives_the_points_of_the_uninterrupted_run(
    tmp_path: Path, uninterrupted: Path, crash: int, checkpoint: int
):
    recipe = trainlab.resolve_recipe(None, RECIPE)
    run = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        Trainer(build(recipe), run, callbacks=[_CrashAt(crash)], progress=False).fit()
    assert (run / "checkpoints" / "last").read_text().endswith(f"{checkpoint:08d}")
    assert max(s for s, _ in _scalars(run)["loss"]) > checkpoint  # points to drop are there
    trainlab.train(None, out=run, resume=True, progress=False)

    records = _jsonl(run)
    untimed = [{k: v for k, v in r.items() if k != "samples_per_s"} for r in records]
    assert untimed == [
        {k: v for k, v in r.items() if k != "samples_per_s"} for r in _jsonl(uninterrupted)
    ]
    header, rows = _csv(run)
    assert header == _csv(uninterrupted)[0]
    assert rows == [{k: float(v) for k, v in r.items()} for r in records]
    scalars = _scalars(run)
    assert scalars == _expected_scalars(records)  # the resumed run's own log, timing included
    assert _untimed(scalars) == _untimed(_scalars(uninterrupted))
    assert len(list((run / "tensorboard").iterdir())) == 2  # one event file per segment


def test_tensorboard_without_the_package_is_a_one_line_recipe_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    with pytest.raises(RecipeError, match=r"pip install 'trainlab\[tensorboard\]'") as info:
        TensorBoardLog(tmp_path / "tb")
    assert "\n" not in str(info.value) and "training.loggers" in str(info.value)
    overrides = [*RECIPE, "training.loggers=[tensorboard]"]
    with pytest.raises(RecipeError, match="trainlab\\[tensorboard\\]"):
        trainlab.train(None, overrides, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_a_key_nobody_announced_extends_the_header_of_every_row(tmp_path: Path):
    trainer = SimpleNamespace(
        splits=SimpleNamespace(x_val=[0]), parts=SimpleNamespace(topk=None), step=5, epoch=0
    )
    log = CsvLog(tmp_path / "metrics.csv")
    log.on_fit_start(trainer)
    log.on_log(trainer, {"step": 5, "epoch": 0.25, "loss": 1.5, "acc": 0.5, "lr": 0.1})
    log.on_eval_end(trainer, {"val_loss": 1.25, "val_acc": 0.5, "val_f1": 0.75})
    state = log.state_dict()
    log.on_log(trainer, {"step": 10, "epoch": 0.5, "loss": 1.0, "acc": 0.5, "lr": 0.1})
    log.on_fit_end(trainer)
    header, rows = _csv(tmp_path)
    assert header[-1] == "val_f1" and len(rows) == 3
    assert rows[0] == {"step": 5, "epoch": 0.25, "loss": 1.5, "acc": 0.5, "lr": 0.1}
    assert rows[1] == {"step": 5, "epoch": 1, "val_loss": 1.25, "val_acc": 0.5, "val_f1": 0.75}
    # resumed from the state after the second row: the third is cut, the header kept
    again = CsvLog(tmp_path / "metrics.csv")
    again.load_state_dict(state)
    again.on_fit_start(trainer)
    again.on_fit_end(trainer)
    assert _csv(tmp_path) == (header, rows[:2])
