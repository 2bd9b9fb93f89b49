"""``load_run(run_dir) -> Predictor``: a trained run's model and preprocessing, ready to use.

Only the run folder is read: ``recipe.yaml`` (how to build the model and preprocessing),
``model.json`` (input shape, class names: what the dataset would otherwise have told), and the
weights (``model.safetensors``, or a checkpoint's). No dataset is loaded, no RNG of the caller's
is touched, nothing is written. Evaluation, prediction, export, test-time augmentation and MC
dropout (:mod:`trainlab.evaluation.tta`) and ensembles (:mod:`trainlab.evaluation.ensemble`) are
built on it. Reading the folder is the engine's (:mod:`trainlab.engine.run_folder`), which a
distillation teacher needs too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainlab.data.inputs import Inputs
from trainlab.data.preprocess import Preprocessor
from trainlab.engine.calibration import probabilities
from trainlab.engine.run_folder import WEIGHTS, RunCard, load_trained
from trainlab.errors import DataError
from trainlab.recipe import Recipe

__all__ = ["Predictor", "load_run", "WEIGHTS", "RunCard"]


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


def load_run(
    run_dir: str | Path, weights: str = "final", device: str | torch.device | None = None
) -> Predictor:
    """The run's model and preprocessing with the ``final`` weights (what training ended
    with), the ``best`` validation checkpoint's, or the ``last`` checkpoint's. ``device``:
    default the recipe's ``training.device``."""
    trained = load_trained(run_dir, weights)  # the engine's reader (a teacher uses it too)
    where = _device(trained.recipe.training.device, device)
    run = trained.to(where)
    return Predictor(run.recipe, run.model, run.preprocess, run.card, where, run.run_dir, weights)


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
