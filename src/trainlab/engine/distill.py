"""The distillation teacher of a run: trained run folders whose softened probabilities the
student's step learns from (``distill:`` in the recipe; the loss is :mod:`trainlab.nn.distill`).

Layering: the teacher is built by :func:`build_distillation`, called from ``build(recipe)``
like every other piece, so every user of ``Step.of(parts)`` (the trainer, the lr finder, the
overfit check) takes the same distilled update. Run folders are read with
:func:`trainlab.engine.run_folder.load_trained`, the reader ``load_run`` wraps: the engine never
imports ``evaluation``.

Preprocessing: the student's loader yields batches already augmented (and mixed) and then
preprocessed with the STUDENT's statistics, while each teacher was trained on its own
statistics. A teacher whose preprocessing is the student's (same kind, same fitted buffers:
the usual case of a teacher trained on the same data and split) takes the batch as it is, at
no cost. Otherwise the batch is mapped back to raw inputs by undoing the student's affine
preprocessing and the teacher's own is applied (two elementwise ops, or two small matmuls for
PCA/ZCA, per step), so the teacher sees exactly the augmented raw batch the student saw, in
its own units. Changing the loaders to also hand out the raw batch would cost a second copy
of every batch for the one feature that needs it.

The teacher runs in eval mode, without gradients, on the student's device and inside the
student's autocast (its own recipe's precision is not used). It is not saved in checkpoints:
a resumed run loads the teacher folders again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from trainlab.data.datasets import Splits
from trainlab.data.preprocess import (
    PerChannel,
    PerChannelMean,
    Preprocessor,
    Standardize,
    Whiten,
)
from trainlab.engine.run_folder import TrainedRun, load_trained, split_differences
from trainlab.errors import RecipeError, RunFolderError
from trainlab.nn.distill import distill_loss, soft_targets
from trainlab.recipe import Recipe

__all__ = ["Distillation", "Teacher", "build_distillation", "undo_preprocess"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Teacher:
    """One teacher network and what its inputs need: None when the student's preprocessed
    batch is already the teacher's input, else the map from the student's preprocessed
    inputs to the teacher's."""

    model: nn.Module
    reprocess: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.reprocess is not None:
            with torch.autocast(x.device.type, enabled=False):  # preprocessing is fp32
                x = self.reprocess(x)
        return self.model(x)


class Distillation:
    """The teachers, T and alpha of a run; the step calls :meth:`targets` inside its autocast
    and :meth:`loss` in place of the plain loss. No host sync in either."""

    def __init__(self, teachers: list[Teacher], temperature: float, alpha: float) -> None:
        self.teachers, self.temperature, self.alpha = teachers, temperature, alpha

    @torch.no_grad()
    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """The teachers' T-softened probabilities on the student's batch, averaged."""
        return soft_targets([t(x) for t in self.teachers], self.temperature)

    def loss(
        self, scores: torch.Tensor, y: torch.Tensor, targets: torch.Tensor, hard_loss: LossFn
    ) -> torch.Tensor:
        return distill_loss(scores, y, targets, hard_loss, self.temperature, self.alpha)


def build_distillation(
    recipe: Recipe, splits: Splits, preprocess: Preprocessor, device: torch.device
) -> Distillation | None:
    """The recipe's teachers loaded on ``device`` and checked against the student's data, or
    None when ``distill`` is off (the step then costs what it always did)."""
    cfg = recipe.distill
    if cfg is None:
        return None
    teachers = []
    for folder in cfg.teachers():
        run = _load_teacher(folder, cfg.weights, device)
        _check_fits(run, folder, splits)
        _check_split(run, folder, recipe)
        teachers.append(Teacher(run.model, _reprocess(preprocess, run.preprocess, folder)))
    return Distillation(teachers, cfg.temperature, cfg.alpha)


def _load_teacher(folder: str, weights: str, device: torch.device) -> TrainedRun:
    try:
        run = load_trained(folder, weights).to(device)
    except (RunFolderError, RecipeError) as exc:
        raise RecipeError(
            f"distill.teacher={folder}: expected a trained run folder ({exc})"
        ) from None
    for p in run.model.parameters():
        p.requires_grad_(False)
    return run


def _check_fits(run: TrainedRun, folder: str, splits: Splits) -> None:
    """A teacher must score the student's examples over the student's classes, in order."""
    card = run.card
    if tuple(card.in_shape) != tuple(splits.in_shape) or len(card.classes) != splits.num_classes:
        raise RecipeError(
            f"distill.teacher={folder}: the teacher takes inputs of shape {tuple(card.in_shape)} "
            f"and scores {len(card.classes)} classes; expected the student's data: shape "
            f"{tuple(splits.in_shape)}, {splits.num_classes} classes"
        )
    if list(card.classes) != list(splits.classes):
        raise RecipeError(
            f"distill.teacher={folder}: the teacher's classes {card.classes} are not the "
            f"student's {splits.classes} (same names in the same order expected)"
        )


def _check_split(run: TrainedRun, folder: str, recipe: Recipe) -> None:
    """The teacher was trained on the student's training split (not on its test examples)."""
    differ = split_differences(recipe, run.recipe)
    if differ:
        key, mine, theirs = differ[0]
        raise RecipeError(
            f"distill.teacher={folder}: trained with data.{key}={theirs!r}, the student has "
            f"{mine!r}; a teacher on another split may have seen the student's validation or "
            "test examples (train the teacher on the student's data section)"
        )


def _same(a: Preprocessor, b: Preprocessor) -> bool:
    """The same preprocessing: one kind, identical fitted statistics."""
    sa, sb = a.state_dict(), b.state_dict()
    return (
        type(a) is type(b)
        and sa.keys() == sb.keys()
        and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k].to(sa[k])) for k in sa)
    )


def _reprocess(
    student: Preprocessor, teacher: Preprocessor, folder: str
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """None when the teacher's preprocessing is the student's; else student-preprocessed
    inputs -> raw -> the teacher's preprocessing."""
    if _same(student, teacher):
        return None
    try:
        undo = undo_preprocess(student)
    except TypeError as exc:
        raise RecipeError(
            f"distill.teacher={folder}: the teacher's preprocessing differs from the "
            f"student's, and {exc}; train the student with the teacher's preprocess.name"
        ) from None
    return lambda x: teacher(undo(x))


def undo_preprocess(pre: Preprocessor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The inverse of a fitted affine preprocessing: preprocessed inputs back to raw ones.

    Every shipped preprocessor is affine (a mean, a scale, a whitening matrix); the whitening
    matrix ``U diag(1/sqrt(l + eps))`` (PCA, or ZCA's rotated back) is invertible since eps > 0,
    inverted once here in float64. Another kind raises TypeError.
    """
    if type(pre) is Preprocessor:
        return lambda x: x
    if isinstance(pre, Standardize | PerChannel):  # ZeroCenter and mean_image: std = 1
        mean, std = pre.mean, pre.std
        return lambda x: torch.addcmul(mean, x, std)
    if isinstance(pre, PerChannelMean):
        mean = pre.mean
        return lambda x: x + mean
    if isinstance(pre, Whiten):
        inv = torch.linalg.inv(pre.proj.double()).to(pre.proj)
        mean = pre.mean
        return lambda x: torch.addmm(mean, x.flatten(1), inv).reshape(x.shape)
    raise TypeError(f"{type(pre).__name__} cannot be undone")
