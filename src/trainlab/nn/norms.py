"""Normalisation layers by name, built for the shape they normalise.

``dims`` is 0 for feature vectors (MLP), 1 for sequences (N, C, L) and 2 for images (N, C, H, W).
Layer norm on a conv map normalises over (C, H, W) per sample, which is ``GroupNorm(1, C)``;
instance norm is ``GroupNorm(C, C)`` with an affine per channel, the same statistic as
``InstanceNorm2d(affine=True)`` without its running-stat options.
"""

from __future__ import annotations

from torch import nn

from trainlab.errors import RecipeError
from trainlab.registry import Registry
from trainlab.types import Positive, PositiveInt, Probability

__all__ = ["NORMS"]

NORMS = Registry("norm", "normalisation layers (model.norm)")


@NORMS.register("none")
def none(*, channels: int, dims: int) -> nn.Module:
    """No normalisation."""
    return nn.Identity()


@NORMS.register("batch")
def batch(
    *, momentum: Probability = 0.1, eps: Positive = 1e-5, channels: int, dims: int
) -> nn.Module:
    """Batch norm: per-channel statistics over the mini-batch; running averages at test time."""
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(channels, eps=eps, momentum=momentum)


@NORMS.register("layer")
def layer(*, eps: Positive = 1e-5, channels: int, dims: int) -> nn.Module:
    """Layer norm: per-sample statistics over all features (C, or C x spatial for conv maps)."""
    if dims == 0:
        return nn.LayerNorm(channels, eps=eps)
    return nn.GroupNorm(1, channels, eps=eps)


@NORMS.register("instance")
def instance(*, eps: Positive = 1e-5, channels: int, dims: int) -> nn.Module:
    """Instance norm: per-sample, per-channel statistics over the spatial positions."""
    if dims == 0:
        raise RecipeError(
            "model.norm: instance norm needs spatial positions; use it in a conv model"
        )
    return nn.GroupNorm(channels, channels, eps=eps)


@NORMS.register("group")
def group(*, groups: PositiveInt = 8, eps: Positive = 1e-5, channels: int, dims: int) -> nn.Module:
    """Group norm: per-sample statistics over groups of channels (Wu and He, 2018)."""
    if channels % groups:
        raise RecipeError(
            f"model.norm.groups={groups} must divide every layer's width; {channels} does not"
        )
    return nn.GroupNorm(groups, channels, eps=eps)
