"""Losses by name. Each takes raw scores (N, C) and targets that are either class indices (N,)
or class probabilities (N, C) (soft targets, as mixup/cutmix produce).

Label smoothing follows lecture 004: the target is 1 - eps (C-1)/C on the true class and eps/C
elsewhere, i.e. ``(1 - eps) * onehot + eps / C``; on soft targets the same mixing is applied to
the given distribution (torch's definition), so smoothing and mixing compose in one defined way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from trainlab.registry import Registry
from trainlab.types import Fraction, NonNegative

__all__ = ["LOSSES", "to_probs", "LossFn", "num_outputs"]

LOSSES = Registry("loss", "training objectives (loss)")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def num_outputs(loss_name: str, num_classes: int) -> int:
    """One logit for binary cross-entropy on two classes, else one score per class."""
    return 1 if loss_name == "bce" and num_classes == 2 else num_classes


def to_probs(target: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """Class indices or probabilities -> (smoothed) probabilities of shape (N, C)."""
    if target.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        target = F.one_hot(target.long(), num_classes).float()
    if smoothing:
        target = target * (1.0 - smoothing) + smoothing / num_classes
    return target


@LOSSES.register("cross_entropy")
def cross_entropy(*, label_smoothing: Fraction = 0.0) -> LossFn:
    """Softmax cross-entropy, -sum_k t_k log softmax(s)_k, with optional label smoothing."""

    def loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(scores, target, label_smoothing=label_smoothing)

    return loss


@LOSSES.register("bce")
def bce(*, label_smoothing: Fraction = 0.0) -> LossFn:
    """Binary cross-entropy on sigmoid scores: one logit for two classes, else one-vs-all."""

    def loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if scores.shape[1] == 1:
            probs = to_probs(target, 2, label_smoothing)[:, 1:]
        else:
            probs = to_probs(target, scores.shape[1], label_smoothing)
        return F.binary_cross_entropy_with_logits(scores, probs.to(scores.dtype))

    return loss


@LOSSES.register("hinge")
def hinge(*, margin: NonNegative = 1.0) -> LossFn:
    """Multiclass SVM (lecture 001): sum over k != y of max(0, s_k - s_y + margin).

    torch's MultiMarginLoss divides this sum by C; the lecture (and cs231n) does not, so the
    lecture's table (0, 12, 0) is reproduced here exactly. Soft targets use their argmax.
    """

    def loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y = target.argmax(1) if target.is_floating_point() else target.long()
        correct = scores.gather(1, y[:, None])
        margins = (scores - correct + margin).clamp_min(0.0)
        margins = margins.scatter(1, y[:, None], 0.0)
        return margins.sum(1).mean()

    return loss


@LOSSES.register("l1")
def l1() -> LossFn:
    """Mean absolute difference between the scores and the one-hot (or soft) targets."""
    return lambda scores, target: F.l1_loss(scores, to_probs(target, scores.shape[1]).to(scores))


@LOSSES.register("mse")
def mse() -> LossFn:
    """L2 loss: mean squared difference between the scores and the one-hot targets."""
    return lambda scores, target: F.mse_loss(scores, to_probs(target, scores.shape[1]).to(scores))


@LOSSES.register("kl")
def kl(*, label_smoothing: Fraction = 0.0) -> LossFn:
    """KL(target || softmax(scores)) per example: cross-entropy minus the targets' entropy."""

    def loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = to_probs(target, scores.shape[1], label_smoothing).to(scores.dtype)
        return F.kl_div(F.log_softmax(scores, 1), probs, reduction="batchmean")

    return loss
