"""The recipe overrides the doctor's findings propose, computed from the recipe in one place,
so that every check words the same remedy the same way (``optimizer.lr=0.0003``) and none
proposes a value the recipe already has."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainlab.recipe import Recipe

__all__ = ["lr_fix", "round_lr", "wider_model"]


def round_lr(lr: float) -> float:
    """``lr`` rounded to the nearest (in log scale) of 1 and 3 times a power of ten: the grid a
    person types (lecture 002 tries 1e-1, 1e-2, 1e-3, 1e-4)."""
    exponent = math.floor(math.log10(lr))
    grid = [m * 10.0**e for e in (exponent - 1, exponent, exponent + 1) for m in (1, 3)]
    return float(f"{min(grid, key=lambda g: abs(math.log(g / lr))):.1g}")


def lr_fix(lr: float | None, factor: float) -> tuple[str, ...]:
    """``optimizer.lr=<lr * factor>`` on the 1-3 grid (:func:`round_lr`), moved by at least one
    grid step in the factor's direction; () without a known lr. ``lr`` is the recipe's own
    ``optimizer.lr`` (before batch-size scaling), which is what the override sets."""
    if lr is None or not math.isfinite(factor) or factor <= 0 or factor == 1:
        return ()
    value = round_lr(lr * factor)
    if (factor < 1 and value >= lr) or (factor > 1 and value <= lr):
        value = round_lr(lr * (1 / 3 if factor < 1 else 3))
    return (f"optimizer.lr={value:g}",)


def wider_model(recipe: Recipe | None) -> tuple[str, ...]:
    """The override that doubles the model's width (hidden widths of an MLP, stage channels of
    a convnet or ResNet); () for models the recipe does not size (torchvision's, your own)."""
    if recipe is None:
        return ()
    model = recipe.model
    if model.name == "mlp" and model.widths:
        return (f"model.widths=[{', '.join(str(2 * w) for w in model.widths)}]",)
    if model.name in ("convnet", "resnet") and model.channels:
        return (f"model.channels=[{', '.join(str(2 * c) for c in model.channels)}]",)
    return ()
