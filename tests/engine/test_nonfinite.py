"""The NaN/inf guard: training stops before the bad update, says where and why, and the last
good checkpoint stays loadable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import trainlab
from tests.conftest import run_cli
from trainlab.data.loaders import _order
from trainlab.engine.build import build
from trainlab.engine.callbacks import Callback
from trainlab.engine.checkpoint import load_checkpoint
from trainlab.engine.loop import Trainer

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
        bad = order[i * loader.batch_size]
        loader.x[bad] = float("nan")
        loader.raw[bad] = float("nan")  # stays bad when a rollback re-prepares the inputs


def test_a_nan_in_one_input_batch_stops_before_that_update(tmp_path: Path):
    recipe = trainlab.resolve_recipe(None, BASE)
    run = tmp_path / "nan"
    run.mkdir()
    trainer = Trainer(build(recipe), run, callbacks=[_PoisonNextBatch(at=3)], progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(trainlab.TrainlabError, match=r"loss is nan at step 4 \(epoch 1, batch 4 "):
        trainer.fit()
    assert trainer.step == 3  # the poisoned batch's update was never applied
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values())
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert _finite_checkpoint(run) == 3


def test_the_guard_can_be_turned_off(tmp_path: Path):
    """With ``ignore`` the NaN update is applied; only the checkpoint's own check catches it."""
    recipe = trainlab.resolve_recipe(None, [*BASE, "training.nonfinite=ignore"])
    run = tmp_path / "off"
    run.mkdir()
    trainer = Trainer(build(recipe), run, callbacks=[_PoisonNextBatch(at=3)], progress=False)
    with pytest.raises(trainlab.TrainlabError, match="holds NaN or infinite values at step 4"):
        trainer.fit()
    assert _finite_checkpoint(run) == 3


def test_rollback_skips_the_bad_batch_and_finishes(tmp_path: Path):
    recipe = trainlab.resolve_recipe(
        None,
        [*BASE, "training.nonfinite=rollback", "training.epochs=2", "schedule.warmup_epochs=0"],
    )
    run = tmp_path / "rollback"
    run.mkdir()
    (run / "recipe.yaml").write_text(recipe.to_yaml())
    trainer = Trainer(build(recipe), run, callbacks=[_PoisonNextBatch(at=3)], progress=False)
    with pytest.warns(trainlab.TrainlabWarning, match="rolled back") as caught:
        summary = trainer.fit().summary
    rollbacks = [str(w.message) for w in caught if "rolled back" in str(w.message)]
    assert len(rollbacks) == 2 and "rolled back to step 3 " in rollbacks[0]
    # the poisoned example stays in the data: its batch is skipped once in each epoch
    assert len(summary["skipped_batches"]) == 2 and summary["skipped_batches"][0] == [0, 3]
    assert summary["steps"] == 2 * trainer.steps_per_epoch
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values())
    steps = [
        json.loads(line)["step"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert steps == sorted(set(steps))  # the log was cut back to the checkpoint: no duplicates


def test_rollback_gives_up_after_the_allowed_retries(tmp_path: Path):
    recipe = trainlab.resolve_recipe(
        None,
        [
            *BASE,
            "training.nonfinite=rollback",
            "training.nonfinite_retries=1",
            "training.epochs=2",
            "schedule.warmup_epochs=0",
        ],
    )
    run = tmp_path / "giveup"
    run.mkdir()
    trainer = Trainer(build(recipe), run, callbacks=[_PoisonNextBatch(at=3)], progress=False)
    with (
        pytest.warns(trainlab.TrainlabWarning),
        pytest.raises(trainlab.TrainlabError, match="loss is nan"),
    ):
        trainer.fit()


NO_STEP_CHECKPOINTS = [b for b in BASE if not b.startswith("training.checkpoint_every_steps")]


def test_the_step_itself_checks_nothing_and_the_first_epoch_still_stops_at_the_batch(
    tmp_path: Path,
):
    """The guard is lazy (no per-step check while training); a NaN in epoch 1, with no
    checkpoint on disk yet, is replayed from the run's start held in memory, to the exact
    batch, and nothing is saved."""
    recipe = trainlab.resolve_recipe(None, NO_STEP_CHECKPOINTS)
    run = tmp_path / "early"
    run.mkdir()
    trainer = Trainer(build(recipe), run, callbacks=[_PoisonNextBatch(at=3)], progress=False)
    assert trainer.update.guard is False
    with pytest.raises(trainlab.TrainlabError, match=r"loss is nan at step 4 \(epoch 1, batch 4 "):
        trainer.fit()
    assert trainer.step == 3
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values())
    assert not (run / "checkpoints" / "last").exists()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(row["step"] <= 3 for row in rows)  # no NaN row, nothing past the bad step


class _InfGradient(Callback):
    """Makes the first weight's gradient infinite at step ``at + 1``; the loss stays finite."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_fit_start(self, trainer: Trainer) -> None:
        weight = next(trainer.model.parameters())
        weight.register_hook(lambda g: g * float("inf") if trainer.step == self.at else g)


def test_an_infinite_gradient_behind_a_finite_loss_is_found_at_its_step(tmp_path: Path):
    """The lazy check sees the weights the bad update made at the epoch's end (the loss of the
    bad step itself was finite) and the replay names the step and the gradient norm."""
    recipe = trainlab.resolve_recipe(None, NO_STEP_CHECKPOINTS)
    run = tmp_path / "inf"
    run.mkdir()
    trainer = Trainer(build(recipe), run, callbacks=[_InfGradient(at=5)], progress=False)
    with pytest.raises(trainlab.TrainlabError, match=r"gradient norm is inf at step 6 "):
        trainer.fit()
    assert trainer.step == 5
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_rollback_in_the_first_epoch_goes_back_to_the_start(tmp_path: Path):
    recipe = trainlab.resolve_recipe(
        None,
        [
            *NO_STEP_CHECKPOINTS,
            "training.nonfinite=rollback",
            "training.epochs=2",
            "schedule.warmup_epochs=0",
        ],
    )
    run = tmp_path / "start"
    run.mkdir()
    trainer = Trainer(build(recipe), run, callbacks=[_PoisonNextBatch(at=3)], progress=False)
    with pytest.warns(trainlab.TrainlabWarning, match="rolled back to step 0 "):
        summary = trainer.fit().summary
    assert summary["skipped_batches"][0] == [0, 3]
    assert summary["steps"] == trainer.total_steps
