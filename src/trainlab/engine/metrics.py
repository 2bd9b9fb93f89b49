"""Classification metrics, accumulated on the device and read back once per evaluation.

Reading a scalar back to the host (``.item()``) waits for the device; doing it per batch would
serialise a GPU run. The accumulators here stay tensors until :meth:`Accumulator.result`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from trainlab.engine.calibration import CalibrationSums

__all__ = ["predictions", "Accumulator", "evaluate_model", "per_class_accuracy"]


def predictions(scores: torch.Tensor) -> torch.Tensor:
    """Predicted class: argmax, or ``score > 0`` for a single binary logit."""
    return (scores[:, 0] > 0).long() if scores.shape[1] == 1 else scores.argmax(1)


def hard_labels(target: torch.Tensor) -> torch.Tensor:
    """Class indices from indices or soft targets (mixup's dominant class)."""
    return target.argmax(1) if target.is_floating_point() else target


class Accumulator:
    """Running sums of loss, correct and top-k correct, the calibration figures (NLL, ECE,
    Brier: :mod:`trainlab.engine.calibration`), and an optional confusion matrix."""

    def __init__(self, num_classes: int, topk: int | None, device: torch.device, confusion=False):
        self.topk, self.num_classes = topk, num_classes
        self.sums = torch.zeros(4, device=device, dtype=torch.float64)  # loss, n, correct, topk
        self.calibration = CalibrationSums(device)
        self.confusion = (
            torch.zeros(num_classes, num_classes, device=device, dtype=torch.int64)
            if confusion
            else None
        )

    @torch.no_grad()
    def add(self, scores: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> None:
        y = hard_labels(target)
        pred = predictions(scores)
        n = len(y)
        top = torch.zeros((), device=scores.device)
        if self.topk and scores.shape[1] > self.topk:
            top = (scores.topk(self.topk, 1).indices == y[:, None]).any(1).sum()
        self.sums += torch.stack(
            [
                loss.detach().double() * n,
                torch.tensor(n, device=y.device).double(),
                (pred == y).sum().double(),
                top.double(),
            ]
        )
        self.calibration.add(scores, y)
        if self.confusion is not None:
            flat = y * self.num_classes + pred
            self.confusion += torch.bincount(flat, minlength=self.num_classes**2).view_as(
                self.confusion
            )

    def result(self, prefix: str) -> dict[str, float]:
        loss, n, correct, top = self.sums.tolist()
        n = max(n, 1.0)
        out = {f"{prefix}_loss": loss / n, f"{prefix}_acc": correct / n}
        if self.topk and self.num_classes > self.topk:
            out[f"{prefix}_top{self.topk}"] = top / n
        return {**out, **self.calibration.result(prefix)}


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable,
    num_classes: int,
    topk: int | None,
    prefix: str,
    autocast: Callable,
    confusion: bool = False,
) -> tuple[dict[str, float], torch.Tensor | None]:
    """Loss/accuracy (and top-k) of ``model`` in eval mode over ``batches``; restores the mode."""
    was_training = model.training
    model.eval()
    acc = Accumulator(num_classes, topk, next(model.parameters()).device, confusion)
    for xb, yb in batches:
        with autocast():
            scores = model(xb)
        scores = scores.float()
        acc.add(scores, yb, loss_fn(scores, yb))
    model.train(was_training)
    conf = acc.confusion.cpu() if acc.confusion is not None else None
    return acc.result(prefix), conf


def per_class_accuracy(confusion: torch.Tensor, classes: Sequence[str]) -> dict[str, float]:
    """Accuracy (recall) of each class that has examples, from a confusion matrix (true class
    in rows). A class without examples is absent, not 0.0: a zero would read as a class the
    model always gets wrong, when nothing was measured."""
    counts = confusion.sum(1)
    return {
        name: float(confusion[i, i]) / float(counts[i])
        for i, name in enumerate(classes)
        if int(counts[i]) > 0
    }
