"""1-D signal augmentations for (C, L) sequences such as MNIST-1D (see ``base``).

MNIST-1D (Greydanus, 2020) is itself made by distorting ten templates: pad and stretch the time
axis (template widths vary by about +-20%), multiply the amplitude by U(0.8, 1.2), roll the
sequence circularly, add correlated and i.i.d. noise (std 0.02 before the final
standardisation: about 0.13 of the data's unit std) and a linear shear. The defaults below
stay in those ranges, so augmented sequences look like the dataset's own.

Every op acts along the last axis, with parameters drawn per sample. Their per-sample (CPU)
path is :class:`OneSample`: the same batched code on a batch of one, drawing from the global
torch RNG, which the DataLoader seeds per sample (``loaders._Samples``). One definition, two
paths, no torchvision equivalent to keep in step with.
"""

from __future__ import annotations

from typing import Literal

import torch

from trainlab.data.augment.base import AUGMENTS, Augment, OneSample, uniform, view_per_sample
from trainlab.types import Fraction, NonNegative, NonNegativeInt, PositiveRange

__all__ = ["Amplitude", "GaussianNoise", "Shift", "TimeScale"]


def _gather_last(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[n, ..., index[n, t]]: per-sample (N, L) indices along the last axis, one gather."""
    shape = (len(x), *([1] * (x.ndim - 2)), index.shape[-1])
    return x.gather(-1, index.view(shape).expand(*x.shape[:-1], index.shape[-1]))


class Shift(Augment):
    """Translate along the time axis by a whole number of samples k ~ U{-max_shift..max_shift}
    per sample (positive: later); ``circular`` wraps around as MNIST-1D's own translation does,
    ``zeros`` pads with zeros."""

    dims = (1,)

    def __init__(self, max_shift: int, mode: str) -> None:
        self.max_shift, self.mode = max_shift, mode

    def sample(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        m = self.max_shift
        return torch.randint(-m, m + 1, (len(x),), device=x.device, generator=gen)

    def apply(self, x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        src = torch.arange(length, device=x.device) - shift[:, None]  # out[t] = x[t - k]
        if self.mode == "circular":
            return _gather_last(x, src % length)
        inside = (src >= 0) & (src < length)
        out = _gather_last(x, src.clamp(0, length - 1))
        return out * inside.view(len(x), *([1] * (x.ndim - 2)), length).to(x.dtype)

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.sample(x, gen))

    def transform(self):
        return OneSample(self)


class TimeScale(Augment):
    """Stretch (factor > 1) or compress the time axis about its centre by a factor drawn per
    sample from U(1 - stretch, 1 + stretch): out[t] = x[c + (t - c) / factor], c = (L - 1) / 2,
    linear interpolation; past the ends the edge values repeat."""

    dims = (1,)

    def __init__(self, stretch: float) -> None:
        self.stretch = stretch

    def sample(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        return uniform(x, 1.0 - self.stretch, 1.0 + self.stretch, gen)

    def apply(self, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        if length < 2:
            return x
        centre = (length - 1) / 2
        t = torch.arange(length, device=x.device, dtype=torch.float32)
        pos = (centre + (t - centre) / factor[:, None].float()).clamp(0, length - 1)
        left = pos.floor().clamp(max=length - 2)
        frac = (pos - left).to(x.dtype).view(len(x), *([1] * (x.ndim - 2)), length)
        left = left.long()
        return torch.lerp(_gather_last(x, left), _gather_last(x, left + 1), frac)

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.sample(x, gen))

    def transform(self):
        return OneSample(self)


class Amplitude(Augment):
    """Multiply each sample by its own factor drawn from U(low, high)."""

    dims = (1,)

    def __init__(self, factor: tuple[float, float]) -> None:
        self.factor = tuple(factor)

    def sample(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        return uniform(x, *self.factor, gen)

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return x * view_per_sample(self.sample(x, gen), x).to(x.dtype)

    def transform(self):
        return OneSample(self)


class GaussianNoise(Augment):
    """Add i.i.d. N(0, std^2) noise to every value; std in the raw units of the data."""

    dims = (1, 2)

    def __init__(self, std: float) -> None:
        self.std = std

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=gen)
        return x + self.std * noise

    def transform(self):
        return OneSample(self)


@AUGMENTS.register("shift", moves_positions=True)
def shift(
    *, max_shift: NonNegativeInt = 4, mode: Literal["circular", "zeros"] = "circular"
) -> Augment:
    """Shift sequences by up to max_shift samples, circularly or zero-padded (1-D)."""
    return Shift(max_shift, mode)


@AUGMENTS.register("time_scale", moves_positions=True)
def time_scale(*, stretch: Fraction = 0.2) -> Augment:
    """Stretch the time axis about its centre by a factor in [1 - stretch, 1 + stretch] (1-D)."""
    return TimeScale(stretch)


@AUGMENTS.register("amplitude", moves_positions=False)
def amplitude(*, factor: PositiveRange = (0.8, 1.2)) -> Augment:
    """Multiply sequences by a random factor in [low, high] (1-D)."""
    return Amplitude(factor)


@AUGMENTS.register("gaussian_noise", moves_positions=False)
def gaussian_noise(*, std: NonNegative = 0.1) -> Augment:
    """Add Gaussian noise of standard deviation std (raw units; sequences and images)."""
    return GaussianNoise(std)
