"""Models with a planted fault, for ``benchmarks/doctor_faults.py`` (and its healthy twins).

Recipes name them as ``model.name=benchmarks.fault_models:NAME`` with ``model.init=keep`` so
the planted weights survive. Each is the same small MLP on flattened inputs; only the fault
differs, so a twin differs from its fault in one thing.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _mlp(in_shape: tuple[int, ...], num_classes: int, width: int = 128) -> nn.Sequential:
    d = math.prod(in_shape)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, num_classes),
    )  # fmt: skip


class HealthyMLP(nn.Sequential):
    """The twin: PyTorch's default init, logits out."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(*_mlp(in_shape, num_classes))


class SoftmaxMLP(nn.Sequential):
    """Probabilities out (a softmax before cross-entropy, which expects logits)."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(*_mlp(in_shape, num_classes), nn.Softmax(dim=1))


class BiasedHeadMLP(nn.Sequential):
    """A last-layer bias of std 10: the scores start with a large constant offset per class."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(*_mlp(in_shape, num_classes))
        with torch.no_grad():
            self[-1].bias.normal_(0.0, 10.0, generator=torch.Generator().manual_seed(0))


class DeadReLUMLP(nn.Sequential):
    """Hidden biases of -10: every ReLU unit is off for every input (dead from the start)."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(*_mlp(in_shape, num_classes))
        with torch.no_grad():
            for layer in (self[1], self[3]):
                layer.bias.fill_(-10.0)
