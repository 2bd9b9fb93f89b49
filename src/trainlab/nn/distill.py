"""Knowledge distillation's loss (Hinton, Vinyals and Dean 2015), lecture 004's step 6.

A student learns from a teacher's temperature-softened class probabilities beside the labels::

    loss = (1 - alpha) * hard_loss(s, y) + alpha * T^2 * KL(p_T || softmax(s / T))

``p_T`` is the teacher's ``softmax(t / T)``; for an ensemble of teachers it is the MEAN of
their softened probabilities (the ensemble's own prediction at temperature T, as
``trainlab``'s probability-averaging ensembles predict), not the softmax of averaged logits:
averaging probabilities keeps each teacher's confidence as it is, and its KL is what the
ensemble would score. The ``T^2`` keeps the soft term's gradient magnitude independent of T
(its gradient scales as 1/T^2), so ``alpha`` means the same at every temperature.

Written by hand because torch has no distillation loss; its KL is ``F.kl_div`` (a test checks
the two, values and gradients). The hard loss is the recipe's own (label smoothing, soft mixup
targets and all), so nothing about the labels changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["class_scores", "soft_targets", "distill_loss"]


def class_scores(scores: torch.Tensor) -> torch.Tensor:
    """Scores as one per class: a single binary logit z (``loss: bce`` on two classes) becomes
    (0, z), whose softmax at temperature T is (1 - sigmoid(z/T), sigmoid(z/T)): the two-class
    form of the same probabilities."""
    if scores.shape[1] != 1:
        return scores
    return torch.cat([torch.zeros_like(scores), scores], dim=1)


def soft_targets(teacher_scores: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
    """The teachers' softened probabilities ``softmax(t / T)``, averaged over the teachers."""
    probs = [F.softmax(class_scores(t.float()) / temperature, dim=1) for t in teacher_scores]
    return probs[0] if len(probs) == 1 else torch.stack(probs).mean(0)


def distill_loss(
    scores: torch.Tensor,
    y: torch.Tensor,
    targets: torch.Tensor,
    hard_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """``(1 - alpha) * hard_loss(scores, y) + alpha * T^2 * KL(targets || softmax(scores / T))``,
    the KL averaged over the batch (``F.kl_div(..., reduction="batchmean")``, the mathematical
    KL; ``"mean"`` would also divide by C). ``targets``: :func:`soft_targets`."""
    log_q = F.log_softmax(class_scores(scores) / temperature, dim=1)
    soft = F.kl_div(log_q, targets, reduction="batchmean")
    return (1.0 - alpha) * hard_loss(scores, y) + (alpha * temperature * temperature) * soft
