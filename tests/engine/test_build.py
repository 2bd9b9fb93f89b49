"""``build(recipe) -> Parts``: every piece of a run, and no global state changed for the caller."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import trainlab
from trainlab.engine.build import Parts, build
from trainlab.engine.loop import Trainer

MLP = ["model.name=mlp", "model.widths=[32]", "training.epochs=2", "training.progress=false"]


def _global_state() -> tuple:
    return (
        random.getstate(),
        np.random.get_state()[1].copy(),
        torch.get_rng_state(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )


def _same(a: tuple, b: tuple) -> bool:
    return (
        a[0] == b[0] and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2]) and a[3:] == b[3:]
    )


@pytest.mark.parametrize("deterministic", ["true", "warn", "false"])
def test_build_fit_and_evaluate_leave_the_callers_global_state(tmp_path: Path, deterministic):
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    before = _global_state()
    recipe = trainlab.resolve_recipe(None, [*MLP, f"training.deterministic={deterministic}"])
    parts = build(recipe)
    assert _same(_global_state(), before)
    Trainer(parts, tmp_path / "run", progress=False).fit()
    assert _same(_global_state(), before)
    trainlab.evaluate(tmp_path / "run", plot=False)
    trainlab.load_run(tmp_path / "run").predict_proba(parts.splits.x_test[:3])
    assert _same(_global_state(), before)


def test_the_seed_not_the_callers_rng_decides_the_weights(tmp_path: Path):
    recipe = trainlab.resolve_recipe(None, MLP)
    torch.manual_seed(1)
    a = build(recipe)
    torch.manual_seed(2)
    b = build(recipe)
    for (name, x), y in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y), name
    assert torch.equal(a.rng["torch"], b.rng["torch"])  # fit() continues the same stream


def test_parts_hold_each_piece(tmp_path: Path):
    overrides = [*MLP, "optimizer.lr=0.01", "schedule={name: constant}"]
    parts = build(trainlab.resolve_recipe(None, overrides))
    assert isinstance(parts, Parts)
    assert parts.steps_per_epoch == len(parts.loader)
    assert parts.total_steps == 2 * len(parts.loader)
    assert parts.lr(0) == pytest.approx(0.01) and parts.base_lr == pytest.approx(0.01)
    assert parts.num_classes == 10 and parts.splits.in_shape == (1, 8, 8)
    assert next(parts.model.parameters()).device == parts.device
    assert not (tmp_path / "anything").exists()


def test_trainer_refuses_a_recipe_in_place_of_parts(tmp_path: Path):
    with pytest.raises(TypeError, match="trainlab.build"):
        Trainer(trainlab.resolve_recipe(None, MLP), tmp_path / "r")
