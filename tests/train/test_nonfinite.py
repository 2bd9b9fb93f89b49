"""The NaN/inf guard: training stops before the bad update, says where and why, and the last
good checkpoint stays loadable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import trainlab
from tests.conftest import run_cli
from trainlab.data.loaders import _order
from trainlab.train.callbacks import Callback
from trainlab.train.checkpoint import load_checkpoint
from trainlab.train.loop import Trainer

BASE = [
    "model.name=mlp",
    "model.widths=[32]",
    "model.norm=none",
    "augment=[]",
    "training.checkpoint_every_steps=1",
    "training.progress=false",
]


def _finite_checkpoint(run: Path) -> int:
    weights, state = load_checkpoint(run / "checkpoints", "last")
    assert all(torch.isfinite(w).all() for w in weights.values())
    return state["step"]


def test_a_huge_learning_rate_stops_with_the_step_and_the_likely_cause(tmp_path: Path):
    run = tmp_path / "lr"
    done = run_cli("train", *BASE, "optimizer.lr=1e6", "--out", str(run))
    assert done.returncode == 3
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    message = lines[0]
    for part in (
        "at step",
        "epoch 1",
        "batch",
        "before the update",
        "learning rate too high",
        "optimizer.lr=1000000.0",
        "last good checkpoint is kept",
    ):
        assert part in message, message
    assert not (run / "summary.json").exists()
    assert _finite_checkpoint(run) >= 1


class _PoisonNextBatch(Callback):
    """Puts a NaN into one example of the batch that step ``at + 1`` will read."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_batch_end(self, trainer: Trainer) -> None:
        if trainer.step != self.at:
            return
        loader = trainer.loader
        order = _order(len(loader.x), loader.seed, trainer.epoch)
        i = trainer.step - trainer.epoch * trainer.steps_per_epoch
        loader.x[order[i * loader.batch_size]] = float("nan")


def test_a_nan_in_one_input_batch_stops_before_that_update(tmp_path: Path):
    recipe = trainlab.resolve_recipe(None, BASE)
    run = tmp_path / "nan"
    run.mkdir()
    trainer = Trainer(recipe, run, callbacks=[_PoisonNextBatch(at=3)], progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(trainlab.TrainlabError, match=r"loss is nan at step 4 \(epoch 1, batch 4 "):
        trainer.fit()
    assert trainer.step == 3  # the poisoned batch's update was never applied
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values())
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert _finite_checkpoint(run) == 3


def test_the_guard_can_be_turned_off(tmp_path: Path):
    recipe = trainlab.resolve_recipe(None, [*BASE, "training.nonfinite=ignore"])
    assert not Trainer(recipe, tmp_path / "off", progress=False).guard
