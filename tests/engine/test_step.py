"""THE optimisation step: one definition, used by the trainer and every diagnosis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import trainlab
from trainlab.engine.build import build
from trainlab.engine.loop import Trainer
from trainlab.engine.step import Step

# dropout, an augmentation, a penalty, clipping and decoupled decay: every part of a step
NOISY = [
    "model.name=mlp",
    "model.widths=[32]",
    "model.dropout=0.2",
    "augment=[{name: random_crop, padding: 1}]",
    "regularization.l2=1e-3",
    "training.grad_clip=1.0",
    "optimizer={name: momentum, lr: 0.05, weight_decay: 0.01}",
    "schedule.name=constant",
    "schedule.warmup_epochs=0",
    "training.progress=false",
]


def test_lr_finder_steps_leave_the_trainers_weights(tmp_path: Path):
    """N steps of the lr range test's sweep at a fixed lr and N trainer steps: the same
    weights, bit for bit (same step, same batches, same random draws)."""
    from trainlab.diagnosis.lr_finder import _sweep_one

    n = 30
    recipe = trainlab.resolve_recipe(None, [*NOISY, f"training.max_steps={n}"])
    losses, _, stop, swept = _sweep_one(recipe, recipe.seed, np.full(n, 0.05), 0.98, np.inf)
    assert stop == "end" and len(losses) == n
    parts = build(recipe)
    Trainer(parts, tmp_path / "run", progress=False).fit()
    for (name, a), b in zip(
        swept.model.state_dict().items(), parts.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_the_guard_refuses_a_non_finite_update():
    parts = build(trainlab.resolve_recipe(None, NOISY))
    step = Step.of(parts)
    x, y = next(iter(parts.loader.epoch(0)))
    before = [p.detach().clone() for p in parts.model.parameters()]
    out = step(x * float("nan"), y, 0.05)
    assert not out.updated and not torch.isfinite(out.loss)
    for p, b in zip(parts.model.parameters(), before, strict=True):
        assert torch.equal(p, b)
    assert step(x, y, 0.05).updated


def test_lbfgs_closure_runs_without_noise():
    """Full-batch steps see one loss at one set of weights: dropout is off inside the closure
    (lecture 002), so two evaluations of the closure agree; the model is left in train mode."""
    overrides = [
        "model.name=mlp",
        "model.dropout=0.5",
        "optimizer={name: lbfgs, lr: 1.0, max_iter: 1}",
        "training.epochs=2",
        "training.progress=false",
    ]
    parts = build(trainlab.resolve_recipe(None, overrides))
    step = Step.of(parts)
    x, y = parts.loader.full_batch()
    seen = []
    original = parts.optimizer.step

    def spy(closure):
        seen.extend(float(closure().detach()) for _ in range(2))
        return original(closure)

    parts.optimizer.step = spy
    step.full_batch(x, y, 1.0)
    assert seen[0] == pytest.approx(seen[1], rel=0, abs=0)
    assert all(m.training for m in parts.model.modules())


def test_fp16_scales_the_loss_and_skips_an_overflowing_step_without_stopping():
    """training.precision=fp16 (on the CPU here): a GradScaler scales the loss; a step whose
    gradients overflow is skipped by the scaler (weights kept, scale halved), not refused by
    the guard, and the next step trains."""
    parts = build(trainlab.resolve_recipe(None, ["model.name=mlp", "training.precision=fp16"]))
    step = Step.of(parts)
    assert step.scaler is not None and step.scaler.get_scale() == 65536.0
    xb, yb = next(iter(parts.loader.epoch(0)))
    weight = next(parts.model.parameters())
    hook = weight.register_hook(lambda g: g * float("inf"))
    before = weight.detach().clone()
    out = step(xb, yb, 1e-3)
    assert out.updated and torch.equal(weight, before)
    assert step.scaler.get_scale() == 32768.0
    hook.remove()
    step(xb, yb, 1e-3)
    assert not torch.equal(weight, before)


def test_the_trainer_checkpoints_the_loss_scale(tmp_path: Path):
    recipe = trainlab.resolve_recipe(
        None, ["model.name=mlp", "training.precision=fp16", "schedule.warmup_epochs=0"]
    )
    trainer = Trainer(build(recipe), tmp_path, progress=False)
    trainer.update(*next(iter(trainer.loader.epoch(0))), 1e-3)
    trainer.update.scaler.update(1234.0)
    state = trainer.state(epoch_done=False)
    assert state["grad_scaler"]["scale"] == 1234.0
    other = Trainer(build(recipe), tmp_path / "b", progress=False)
    other._load(trainer.weights(), state)
    assert other.update.scaler.get_scale() == 1234.0


def test_channels_last_trains_the_same_weights_in_another_memory_order():
    """training.channels_last: 4-D weights and each batch in NHWC order, the same numbers."""
    base = ["augment=[]", "training.max_steps=5", "schedule.warmup_epochs=0"]
    runs, losses = [], []
    for extra in ([], ["training.channels_last=true"]):
        parts = build(trainlab.resolve_recipe(None, [*base, *extra]))
        step = Step.of(parts)
        batches = zip(range(5), parts.loader.epoch(0), strict=False)
        losses.append([step(xb, yb, 1e-3 * (i + 1)).loss.item() for i, (xb, yb) in batches])
        runs.append(parts.model)
    conv = next(p for p in runs[1].parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for a, b in zip(runs[0].parameters(), runs[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-3)  # Adam magnifies rounding


def test_channels_last_is_refused_for_inputs_that_are_not_images():
    recipe = trainlab.resolve_recipe(None, ["data.name=mnist1d", "training.channels_last=true"])
    with pytest.raises(trainlab.TrainlabError, match=r"training.channels_last: needs images"):
        build(recipe)
