"""What the engine's resume tests share: a crash at a chosen moment, the log without timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import trainlab
from trainlab.engine.build import build
from trainlab.engine.callbacks import Callback
from trainlab.engine.loop import Trainer


class Crash(Callback):
    """Simulates a crash right after the checkpoint of a given step or epoch end. A user's
    callbacks run before the checkpointer, so the crash comes at the next event: the end of
    the next step (its work is lost), the start of the next epoch."""

    def __init__(self, step: int | None = None, epoch: int | None = None) -> None:
        self.step, self.epoch = step, epoch

    def on_batch_end(self, trainer: Trainer) -> None:
        if self.step is not None and trainer.step == self.step + 1:
            raise KeyboardInterrupt

    def on_epoch_start(self, trainer: Trainer) -> None:
        if trainer.epoch == self.epoch:
            raise KeyboardInterrupt


def log_without_timing(run: Path) -> list[dict]:
    """``metrics.jsonl``'s records less throughput (the one field a resumed run may change)."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "samples_per_s"} for x in lines]


def crash_then_resume(overrides: list[str], run: Path, crash: Crash) -> dict:
    """Train ``overrides`` into ``run`` until ``crash``, then resume as a user would (the same
    command with --resume); the resumed run's summary."""
    recipe = trainlab.resolve_recipe(None, overrides)
    run.mkdir()
    (run / "recipe.yaml").write_text(recipe.to_yaml())
    with pytest.raises(KeyboardInterrupt):
        Trainer(build(recipe), run, callbacks=[crash], progress=False).fit()
    assert not (run / "summary.json").exists()
    return trainlab.train(None, out=run, resume=True, progress=False).summary


def train_uninterrupted(tmp_path_factory: pytest.TempPathFactory, overrides: list[str]) -> Path:
    """The reference a resume test compares with: ``overrides`` trained start to end."""
    run = tmp_path_factory.mktemp("full") / "run"
    trainlab.train(None, overrides, out=run, progress=False)
    return run
