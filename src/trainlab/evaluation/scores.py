"""A trained run's raw outputs over a whole split, streamed: what calibration, temperature
scaling and ensembles start from.

``Predictor.scores`` takes arrays; a split may also be streamed image files, so this goes
through the same :func:`~trainlab.data.loaders.eval_batches` that evaluation uses (the scores
are exactly those the test figures are computed from).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from trainlab.evaluation.predictor import Predictor

__all__ = ["split_scores"]


@torch.no_grad()
def split_scores(predictor: Predictor, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores (N, num_outputs) float32, labels (N,))`` on the CPU, in the split's order."""
    from trainlab.data.loaders import eval_batches

    xs = x if hasattr(x, "decode") else predictor.inputs(x)
    ys = torch.as_tensor(np.asarray(y), dtype=torch.long)
    recipe = predictor.recipe
    batches = eval_batches(
        xs, ys, recipe.evaluation.batch_size, predictor.preprocess, predictor.device,
        recipe.data.num_workers,
    )  # fmt: skip
    predictor.model.eval()
    out = []
    for xb, _ in batches:
        with predictor.autocast():
            out.append(predictor.model(xb).float().cpu())
    scores = torch.cat(out) if out else torch.empty(0, predictor.card.num_outputs)
    return scores, ys
