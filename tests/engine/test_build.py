"""``build(recipe) -> Parts``: every piece of a run, and no global state changed for the caller."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import trainlab
from trainlab.data.preprocess import PerChannel, Standardize
from trainlab.engine.build import Parts, build, warn_dropout_with_batch_norm
from trainlab.engine.loop import Trainer
from trainlab.errors import TrainlabWarning
from trainlab.nn.models import create_model
from trainlab.recipe import DEFAULT_RECIPE, load_recipe, validate

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


# preprocess: auto, resolved from the data's shape when the run is built


def test_auto_preprocess_is_per_channel_on_digits_and_written_into_the_run_folder(
    tmp_path: Path,
):
    recipe = trainlab.resolve_recipe(
        None, [*MLP, "preprocess=auto", "training.max_steps=2", "schedule.warmup_epochs=0"]
    )
    parts = build(recipe)
    assert recipe.preprocess.name == "auto"  # the caller's recipe is left as it was
    assert parts.recipe.preprocess.name == "per_channel"
    assert isinstance(parts.preprocess, PerChannel) and parts.preprocess.mean.shape == (1, 1, 1, 1)
    assert parts.recipe.model_dump(exclude={"preprocess"}) == recipe.model_dump(
        exclude={"preprocess"}
    )
    Trainer(parts, tmp_path / "run", progress=False).fit()
    written = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert written["preprocess"] == {"name": "per_channel", "eps": 1e-5}
    loaded = trainlab.load_run(tmp_path / "run")  # the run reloads with what it trained with
    assert isinstance(loaded.preprocess, PerChannel)
    torch.testing.assert_close(loaded.preprocess.mean, parts.preprocess.mean.cpu())


def test_auto_preprocess_is_standardize_on_feature_vectors(tmp_path: Path):
    recipe = validate(
        {
            "data": {"name": "spiral"},
            "model": {"name": "mlp", "widths": [16]},
            "training": {"max_steps": 2, "progress": False},
        }
    )
    assert recipe.preprocess.name == "auto"
    parts = build(recipe)
    assert parts.splits.in_shape == (2,)
    assert parts.recipe.preprocess.name == "standardize"
    assert isinstance(parts.preprocess, Standardize)
    Trainer(parts, tmp_path / "run", progress=False).fit()
    written = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert written["preprocess"]["name"] == "standardize"


def test_digits_with_the_default_preprocessing_and_random_crop_trains_far_above_chance(
    tmp_path: Path,
):
    """The issue: standardize (the old default) with the digits recipe's random_crop tested
    at 0.111 after 3 epochs; the data-dependent default must learn."""
    overrides = ["preprocess=auto", "training.epochs=3", "schedule.warmup_epochs=0"]
    recipe = trainlab.resolve_recipe(None, [*overrides, "training.progress=false"])
    assert [a.name for a in recipe.augment] == ["random_crop"]  # the shipped default's
    summary = trainlab.train(recipe, out=tmp_path / "run", progress=False).summary
    assert summary["test_acc"] > 0.8  # chance is 0.1


# dropout with batch norm (lecture 001: "usually does not work well when combined")


def _dropout_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(w.message)
        for w in record
        if issubclass(w.category, TrainlabWarning) and "dropout" in str(w.message)
    ]


def test_dropout_with_batch_norm_warns_once_at_build_time():
    recipe = trainlab.resolve_recipe(None, [*MLP, "model.norm=batch", "model.dropout=0.2"])
    with pytest.warns(TrainlabWarning, match="dropout .* with batch norm") as record:
        build(recipe)
    (message,) = _dropout_warnings(record.list)
    assert "Dropout, p=0.2" in message and "BatchNorm1d" in message
    assert "lecture 001" in message and "model.dropout: 0" in message


class _UserNet(nn.Module):
    """A user's own class: dropout before batch norm, as the variance-shift paper's case."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.Dropout2d(0.1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_dropout_with_batch_norm_is_found_on_a_users_own_model():
    recipe = trainlab.resolve_recipe(None, MLP)
    with pytest.warns(TrainlabWarning, match="Dropout2d, p=0.1.*BatchNorm2d") as record:
        build(recipe, model=_UserNet())
    assert len(_dropout_warnings(record.list)) == 1


@pytest.mark.parametrize(
    "model",
    [
        nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)),
        nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)),
        nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.0), nn.BatchNorm1d(4)),  # p=0: no dropout
        nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.LayerNorm(4)),
    ],
)
def test_no_warning_without_both(model: nn.Module):
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainlabWarning)
        warn_dropout_with_batch_norm(model)


@pytest.mark.parametrize("name", ["digits", "mnist1d", "cifar10"])
def test_the_shipped_recipes_do_not_warn(name: str):
    recipe = load_recipe(DEFAULT_RECIPE.parent / f"{name}.yaml")
    in_shape = {"digits": (1, 8, 8), "mnist1d": (1, 40), "cifar10": (3, 32, 32)}[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainlabWarning)
        warn_dropout_with_batch_norm(create_model(recipe.model, in_shape, 10))
        if name == "digits":  # the others' data is not here (cifar10) or slow to make
            build(recipe)
