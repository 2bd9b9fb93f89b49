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
