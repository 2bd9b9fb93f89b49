"""``load_run(run_dir) -> Predictor``: a trained run's model and preprocessing, ready to use.

Only the run folder is read: ``recipe.yaml`` (how to build the model and preprocessing),
``model.json`` (input shape, class names: what the dataset would otherwise have told), and the
weights (``model.safetensors``, or a checkpoint's). No dataset is loaded, no RNG of the caller's
is touched, nothing is written. Evaluation, prediction, export (and later test-time
augmentation, ensembles and transfer learning) are built on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainlab.data.inputs import Inputs
from trainlab.data.preprocess import Preprocessor, create_preprocessor
from trainlab.errors import DataError, RunFolderError
from trainlab.recipe import Recipe, load_recipe

__all__ = ["Predictor", "load_run", "WEIGHTS"]

WEIGHTS = ("final", "best", "last")


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
        from trainlab.engine.build import num_outputs

        splits = load_splits(recipe.data)
        card = input_card(recipe.data, splits)
        outputs = num_outputs(recipe.loss.name, splits.num_classes)
        return cls(tuple(splits.in_shape), card["classes"], outputs, card["input_dtype"],
                   card.get("columns"))  # fmt: skip


class Predictor:
    """A trained model with its preprocessing, in eval mode.

    ``predict_proba(x)`` takes raw inputs as the dataset gave them (the shape in
    ``in_shape``, one example or a batch; uint8 arrays are scaled to [0, 1] as in training) and
    returns class probabilities on the CPU: a softmax over the scores, or for a single binary
    logit (``loss: bce`` on two classes) the sigmoid and its complement.
    """

    def __init__(
        self,
        recipe: Recipe,
        model: nn.Module,
        preprocess: Preprocessor,
        card: RunCard,
        device: torch.device,
        run_dir: Path | None = None,
        weights: str = "final",
    ) -> None:
        from trainlab.engine.build import autocast_factory, build_losses

        self.recipe, self.model, self.preprocess, self.card = recipe, model, preprocess, card
        self.device, self.run_dir, self.weights = device, run_dir, weights
        self.autocast = autocast_factory(recipe.training.precision, device)
        self.eval_loss_fn = build_losses(recipe)[1]
        self.model.eval()

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.card.in_shape

    def inputs(self, x: Any) -> torch.Tensor:
        """Raw inputs as float32 (N, *in_shape): one example gets a batch dimension."""
        from trainlab.data.datasets import features_as_float

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = features_as_float(np.asarray(x), "predict")
        if tuple(x.shape) == self.in_shape:
            x = x[None]
        if tuple(x.shape[1:]) != self.in_shape:
            raise DataError(
                f"predict: inputs of shape {tuple(x.shape)}; the model takes "
                f"(N, {', '.join(map(str, self.in_shape))}) or one example of shape "
                f"{self.in_shape}"
            )
        return torch.from_numpy(x)

    def read(self, path: str | Path) -> Inputs:
        """Inputs from a file or folder (.npz, .npy, a CSV with the training columns, an image,
        a folder of images), shaped and scaled as training saw them."""
        from trainlab.data.inputs import read_inputs

        return read_inputs(path, self.in_shape, self.classes, self.recipe.data, self.card.columns)

    def batches(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """Preprocessed batches of ``evaluation.batch_size`` on the model's device."""
        size = self.recipe.evaluation.batch_size
        for i in range(0, len(x), size):
            yield self.preprocess(x[i : i + size].to(self.device))

    @torch.no_grad()
    def scores(self, x: Any) -> torch.Tensor:
        """The model's raw outputs (N, num_outputs) for raw inputs, on the CPU."""
        out = []
        for xb in self.batches(self.inputs(x)):
            with self.autocast():
                out.append(self.model(xb).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.card.num_outputs)

    def predict_proba(self, x: Any) -> torch.Tensor:
        return probabilities(self.scores(x))

    def predict(self, x: Any) -> torch.Tensor:
        """The most probable class of each input (indices into ``classes``)."""
        return self.predict_proba(x).argmax(1)

    def evaluate(
        self, x: Any, y: Any, split: str = "test"
    ) -> tuple[dict[str, float], torch.Tensor]:
        """Loss (without label smoothing), accuracy and top-k on (x, y), and the confusion
        matrix, computed exactly as training evaluates its validation and test splits."""
        from trainlab.data.loaders import eval_batches
        from trainlab.engine.build import build_topk
        from trainlab.engine.metrics import evaluate_model

        num_classes = len(self.classes)
        xs = x if hasattr(x, "decode") else self.inputs(x)  # streamed image files stay streamed
        ys = torch.as_tensor(np.asarray(y), dtype=torch.long)
        batches = eval_batches(
            xs, ys, self.recipe.evaluation.batch_size, self.preprocess, self.device,
            self.recipe.data.num_workers,
        )  # fmt: skip
        topk = build_topk(self.recipe, num_classes)
        return evaluate_model(
            self.model, batches, self.eval_loss_fn, num_classes, topk, split, self.autocast, True
        )


def probabilities(scores: torch.Tensor) -> torch.Tensor:
    """Class probabilities from scores: softmax, or sigmoid and complement for one logit."""
    if scores.shape[1] == 1:
        p = torch.sigmoid(scores[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(scores, dim=1)


def load_run(
    run_dir: str | Path, weights: str = "final", device: str | torch.device | None = None
) -> Predictor:
    """The run's model and preprocessing with the ``final`` weights (what training ended
    with), the ``best`` validation checkpoint's, or the ``last`` checkpoint's. ``device``:
    default the recipe's ``training.device``."""
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
    where = _device(recipe.training.device, device)
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
    return Predictor(recipe, model.to(where), preprocess.to(where), card, where, run, weights)


def _device(recorded: str, asked: str | torch.device | None) -> torch.device:
    """The device asked for; else the one the run trained on, or ``auto`` where that one is
    missing (a run trained on a GPU, loaded on a laptop)."""
    from trainlab.engine.build import pick_device
    from trainlab.errors import RecipeError

    if asked is not None:
        return pick_device(str(asked))
    try:
        return pick_device(recorded)
    except RecipeError:
        return pick_device("auto")
