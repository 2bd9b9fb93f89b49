"""Small models built to pass or fail the doctor's checks, and the default recipe's parts."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
from torch import nn

import trainlab
from trainlab.engine.build import Parts, build


def mlp(
    act: Callable[[], nn.Module],
    std: Callable[[int], float],
    depth: int = 8,
    width: int = 256,
    d_in: int = 64,
    classes: int = 10,
) -> nn.Sequential:
    """``depth`` hidden Linear layers with weights N(0, std(fan_in)^2), zero biases."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layer = nn.Linear(d, width)
        nn.init.normal_(layer.weight, 0.0, std(d))
        nn.init.zeros_(layer.bias)
        layers += [layer, act()]
        d = width
    layers.append(nn.Linear(d, classes))
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def default_recipe_batches() -> tuple[Parts, list]:
    """The default recipe's parts (nothing written) and five of its training batches."""
    parts = build(trainlab.resolve_recipe(None, []))
    batches = list(itertools.islice(parts.loader.epoch(0), 5))
    return parts, batches
