"""A trained run folder read back as a model and its preprocessing: what ``load_run`` and a
distillation teacher both need.

It lives in the engine, not in ``evaluation``, because the engine itself loads trained runs
(a distillation teacher is built with the student's parts) and the engine must not import the
layer above it. :func:`trainlab.evaluation.predictor.load_run` wraps it in a Predictor.

Only the run folder is read: ``recipe.yaml`` (how to build the model and preprocessing),
``model.json`` (input shape, class names: what the dataset would otherwise have told), and the
weights (``model.safetensors``, or a checkpoint's). No dataset is loaded (except for a folder
from before ``model.json``), no RNG of the caller's is touched, nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainlab.data.preprocess import Preprocessor, create_preprocessor
from trainlab.errors import RunFolderError
from trainlab.recipe import Recipe, load_recipe

__all__ = ["RunCard", "TrainedRun", "load_trained", "WEIGHTS", "split_differences"]

WEIGHTS = ("final", "best", "last")
# data keys that change how a split is read, not which examples it holds
_READING_KEYS = {"num_workers", "loader", "cache_dir", "max_resident_mb", "on_corrupt"}


def split_differences(a: Recipe, b: Recipe) -> list[tuple[str, Any, Any]]:
    """``(key, a's value, b's value)`` for each ``data`` key on which two recipes' splits may
    hold other examples. Runs combined on one test split (an ensemble) or one trained on the
    other's outputs (a distillation teacher) must agree on all of them: a teacher that saw the
    student's test examples in training would inflate the student's test figures silently."""
    da, db = a.data.model_dump(mode="json"), b.data.model_dump(mode="json")
    keys = sorted((da.keys() | db.keys()) - _READING_KEYS)
    return [(k, da.get(k), db.get(k)) for k in keys if da.get(k) != db.get(k)]


@dataclass(frozen=True)
class RunCard:
    """What the model's inputs and outputs look like (``model.json`` in a run folder)."""

    in_shape: tuple[int, ...]
    classes: list[str]
    num_outputs: int
    input_dtype: str = "float32"
    columns: list[str] | None = None  # a CSV dataset's feature columns, in order

    @classmethod
    def read(cls, run_dir: Path, recipe: Recipe) -> RunCard:
        path = run_dir / "model.json"
        if not path.is_file():  # a run folder from before model.json: ask the dataset once
            return cls._from_dataset(recipe)
        try:
            card = json.loads(path.read_text())
            return cls(
                tuple(card["in_shape"]), list(card["classes"]), int(card["num_outputs"]),
                card.get("input_dtype", "float32"), card.get("columns"),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise RunFolderError(f"{path}: damaged ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_dataset(cls, recipe: Recipe) -> RunCard:
        from trainlab.data.datasets import load_splits
        from trainlab.data.inputs import input_card
        from trainlab.nn.losses import num_outputs

        splits = load_splits(recipe.data)
        card = input_card(recipe.data, splits)
        outputs = num_outputs(recipe.loss.name, splits.num_classes)
        return cls(tuple(splits.in_shape), card["classes"], outputs, card["input_dtype"],
                   card.get("columns"))  # fmt: skip


@dataclass(frozen=True)
class TrainedRun:
    """A run folder's recipe, model (eval mode) and fitted preprocessing."""

    run_dir: Path
    recipe: Recipe
    model: nn.Module
    preprocess: Preprocessor
    card: RunCard

    def to(self, device: torch.device) -> TrainedRun:
        """The same run with its model and preprocessing on ``device``."""
        model, pre = self.model.to(device), self.preprocess.to(device)
        return TrainedRun(self.run_dir, self.recipe, model, pre, self.card)


def load_trained(run_dir: str | Path, weights: str = "final") -> TrainedRun:
    """The run's model (eval mode) and preprocessing on the CPU, with the ``final`` weights
    (what training ended with), the ``best`` validation checkpoint's, or the ``last``
    checkpoint's. The caller moves them (:meth:`TrainedRun.to`): which device a run loads on
    is the caller's choice (``load_run``: the recorded one; a teacher: the student's)."""
    from trainlab.engine import checkpoint as ckpt
    from trainlab.engine.seeding import run_state
    from trainlab.nn.models import create_model

    run = Path(run_dir)
    if not (run / "recipe.yaml").is_file():
        raise RunFolderError(f"{run}: not a run folder (no recipe.yaml)")
    if weights not in WEIGHTS:
        raise RunFolderError(f"weights={weights!r}: expected one of {', '.join(WEIGHTS)}")
    recipe = load_recipe(run / "recipe.yaml", trained=True)  # trained before a newer rule: loads
    card = RunCard.read(run, recipe)
    # the weights are loaded over it: build without the init (LSUV would need data)
    shell = recipe.model.model_copy(update={"init": type(recipe.model.init)(name="keep")})
    with run_state(0, False):  # building draws initial weights: never from the caller's RNG
        model = create_model(shell, card.in_shape, card.num_outputs)
    preprocess = create_preprocessor(recipe.preprocess.name, recipe.preprocess.eps)
    preprocess.init_buffers(card.in_shape)
    if weights == "final":
        tensors = ckpt.load_weights(run / "model.safetensors")
    elif not (run / "checkpoints" / weights).is_file():
        raise RunFolderError(
            f"{run}: no {weights!r} checkpoint (a run without a validation split has no 'best'; "
            "one stopped before its first checkpoint has neither)"
        )
    else:
        tensors = ckpt.load_checkpoint(run / "checkpoints", weights)[0]
    ckpt.apply_run_weights(model, preprocess, tensors)
    return TrainedRun(run, recipe, model.eval(), preprocess, card)
