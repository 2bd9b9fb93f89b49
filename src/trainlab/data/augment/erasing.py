"""Cutout and random erasing (lectures 000 and 004): blank a random box of the input.

- cutout (DeVries & Taylor, 2017): with probability p, a ``size`` x ``size`` square centred at
  a uniformly random pixel, clipped at the border, is set to ``value`` ("dropout of the input
  space"); on sequences, a segment of ``size`` samples;
- random erasing (Zhong et al., 2020): with probability p, a box of area fraction
  U(scale) and aspect ratio (height / width) log-uniform in ``ratio`` placed wholly inside
  the image, as ``v2.RandomErasing`` draws it (up to 10 tries; none fits: no erasing); on
  sequences, a segment of length fraction U(scale).

The batch builds every sample's box mask from aranges (one comparison per axis), with no
Python loop over samples. Inputs are raw, so ``value=0`` is black for images; the paper's
zero after standardisation (the mean) is ``value`` set to the data's mean. Random erasing also
takes ``value: random`` (lecture 000: "mean value or random values"), ``v2.RandomErasing``'s
``value='random'``: every erased value of every channel an independent N(0, 1) draw.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from trainlab.data.augment.base import AUGMENTS, Augment, OneSample, chance
from trainlab.data.augment.geometric import randint_per_sample
from trainlab.types import Finite, PositiveInt, PositiveRange, Probability, UnitRange

__all__ = ["Cutout", "RandomErasing", "box_mask"]


def box_mask(spatial: tuple[int, ...], low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """(N, *spatial) booleans, True inside each sample's box [low, high) (both (N, dims))."""
    mask = None
    for d, size in enumerate(spatial):
        pos = torch.arange(size, device=low.device)
        inside = (pos >= low[:, d, None]) & (pos < high[:, d, None])  # (N, size)
        shape = [len(low)] + [1] * len(spatial)
        shape[1 + d] = size
        inside = inside.view(shape)
        mask = inside if mask is None else mask & inside
    return mask


RANDOM = "random"  # v2.RandomErasing's value for per-pixel N(0, 1) noise


def _fill_value(value: Any) -> float | str:
    """A finite number or ``random``; anything else is refused naming both (a bare float
    type would only say "a valid number" and hide the other choice)."""
    if value == RANDOM:
        return RANDOM
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PydanticCustomError("fill", "expected a finite number or 'random'")
    return float(value)


Fill = Annotated[float | str, BeforeValidator(_fill_value)]


def _erase(
    x: torch.Tensor, mask: torch.Tensor, value: float | str, gen: torch.Generator | None
) -> torch.Tensor:
    """x with the masked positions (every channel) set to ``value``, or for ``random`` to
    N(0, 1) noise drawn per value from ``gen`` (the global RNG when None, as v2 draws it)."""
    if value == RANDOM:
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=gen)
        return torch.where(mask[:, None], noise, x)
    return torch.where(mask[:, None], value, x)  # value a Python scalar: nothing to copy


class _BoxEraser(Augment):
    """Blank one box per sample; subclasses say how the boxes are drawn (``sample``)."""

    dims = (1, 2)
    value = 0.0

    def sample(self, x: torch.Tensor, gen: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        """(apply (N,), low (N, dims), high (N, dims))."""
        raise NotImplementedError

    def apply(self, x, apply, low, high, gen: torch.Generator | None = None) -> torch.Tensor:
        """x with each applied sample's box [low, high) erased (``gen``: random fills)."""
        mask = box_mask(tuple(x.shape[2:]), low, high)
        return _erase(x, mask & apply.view(-1, *([1] * (mask.ndim - 1))), self.value, gen)

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.apply(x, *self.sample(x, gen), gen)


class Cutout(_BoxEraser):
    """A square (a segment on sequences) of side ``size`` centred uniformly, clipped, blanked
    with probability p, per sample."""

    dims = (1, 2)

    def __init__(self, p: float, size: int, value: float) -> None:
        self.p, self.size, self.value = p, size, value

    def sample(self, x: torch.Tensor, gen: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        """(apply (N,), low (N, dims), high (N, dims)): boxes clipped to the input."""
        spatial = torch.tensor(x.shape[2:], device=x.device)
        u = torch.rand(len(x), len(spatial), device=x.device, generator=gen)
        centre = torch.minimum((u * spatial).long(), spatial - 1)
        low = centre - self.size // 2
        high = low + self.size
        return chance(x, self.p, gen), low.clamp(min=0), torch.minimum(high, spatial)

    def transform(self):
        return OneSample(self)  # torchvision has no cutout (RandomErasing keeps boxes inside)


class RandomErasing(_BoxEraser):
    """``v2.RandomErasing``'s box distribution, drawn for every sample of the batch at once."""

    dims = (1, 2)
    tries = 10

    def __init__(
        self,
        p: float,
        scale: tuple[float, float],
        ratio: tuple[float, float],
        value: float | str,
    ) -> None:
        self.p, self.scale, self.ratio, self.value = p, tuple(scale), tuple(ratio), value

    def sample(self, x: torch.Tensor, gen: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        """(apply (N,), low (N, dims), high (N, dims)) as v2 draws them: sides rounded to whole
        pixels, strictly smaller than the input, the first of 10 tries that fits."""
        n, spatial, dev = len(x), x.shape[2:], x.device
        s0, s1 = self.scale
        area = math.prod(spatial) * (
            s0 + (s1 - s0) * torch.rand(n, self.tries, device=dev, generator=gen)
        )
        if len(spatial) == 2:
            r0, r1 = math.log(self.ratio[0]), math.log(self.ratio[1])
            aspect = torch.exp(
                r0 + (r1 - r0) * torch.rand(n, self.tries, device=dev, generator=gen)
            )
            sides = torch.stack([torch.sqrt(area * aspect), torch.sqrt(area / aspect)], -1)
        else:  # a segment: its length is the area
            sides = area[..., None]
        sides = torch.round(sides)  # (N, tries, dims)
        limit = torch.tensor(spatial, device=dev, dtype=sides.dtype)
        fits = (sides < limit).all(-1)
        first = fits.int().argmax(1)  # the first try that fits
        side = sides[torch.arange(n, device=dev), first]  # (N, dims)
        low = randint_per_sample(limit - side, gen)
        apply = chance(x, self.p, gen) & fits.any(1)
        return apply, low.long(), (low + side).long()

    def transform(self):
        return _Erasing(self)


class _Erasing:
    """v2.RandomErasing for images; the batched code on one sample for sequences."""

    def __init__(self, aug: RandomErasing) -> None:
        from torchvision.transforms import v2

        self.aug = aug
        self.v2 = v2.RandomErasing(aug.p, aug.scale, aug.ratio, aug.value)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.v2(x) if x.ndim == 3 else OneSample(self.aug)(x)


@AUGMENTS.register("cutout", moves_positions=False)
def cutout(*, p: Probability = 0.5, size: PositiveInt = 8, value: Finite = 0.0) -> Augment:
    """Cutout: blank a size x size square at a random centre with probability p (DeVries)."""
    return Cutout(p, size, value)


@AUGMENTS.register("random_erasing", moves_positions=False)
def random_erasing(
    *,
    p: Probability = 0.5,
    scale: UnitRange = (0.02, 0.33),
    ratio: PositiveRange = (0.3, 3.3),
    value: Fill = 0.0,
) -> Augment:
    """Random erasing: fill a box of random area and aspect ratio with probability p (Zhong).

    ``value``: a number, or ``random`` for N(0, 1) noise per erased value (v2's 'random').
    """
    return RandomErasing(p, scale, ratio, value)
