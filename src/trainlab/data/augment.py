"""Training-time augmentation, each one on two paths with the same meaning.

- ``batch(x, gen)``: the whole mini-batch at once on the device where the data lives, with
  independent random parameters per sample (airbench's approach; no per-sample Python);
- ``transform()``: a torchvision ``transforms.v2`` transform, per sample inside a DataLoader.

Evaluation never sees them. Later issues add more (the full toolbox); each is one registered
factory returning an :class:`Augment`, and :class:`Pipeline` needs no change to take them.
Inputs are (N, C, H, W) images or (N, C, L) sequences; flips and shifts act on the last axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from trainlab.registry import Registry
from trainlab.types import NonNegativeInt, Probability

__all__ = ["AUGMENTS", "Augment", "Pipeline"]

AUGMENTS = Registry("augment", "training-only input transforms (augment: [...])")


class Augment:
    """One augmentation: a batched device implementation and a per-sample v2 transform."""

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def transform(self):
        raise NotImplementedError


class HorizontalFlip(Augment):
    """Mirror the last axis with probability p, independently per sample."""

    def __init__(self, p: float) -> None:
        self.p = p

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        flip = torch.rand(len(x), device=x.device, generator=gen) < self.p
        return torch.where(flip.view(-1, *([1] * (x.ndim - 1))), x.flip(-1), x)

    def transform(self):
        from torchvision.transforms import v2

        return v2.RandomHorizontalFlip(self.p)


class RandomCrop(Augment):
    """Zero-pad by ``padding`` then crop the original size at a random offset (a translation).

    The batched form gathers each sample's window with advanced indexing: offsets are drawn per
    sample, so the batch is translated by up to ``padding`` in every direction independently.
    """

    def __init__(self, padding: int) -> None:
        self.padding = padding

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        p, n = self.padding, len(x)
        spatial = x.shape[2:]
        padded = F.pad(x, [p, p] * len(spatial))
        idx = []
        for size in spatial:
            offset = torch.randint(0, 2 * p + 1, (n,), device=x.device, generator=gen)
            idx.append(offset[:, None] + torch.arange(size, device=x.device))
        batch = torch.arange(n, device=x.device)
        chan = torch.arange(x.shape[1], device=x.device)
        if len(spatial) == 1:
            return padded[batch[:, None, None], chan[None, :, None], idx[0][:, None, :]]
        rows, cols = idx
        return padded[
            batch[:, None, None, None],
            chan[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]

    def transform(self):
        from torchvision.transforms import v2

        return _Crop(self.padding, v2)


class _Crop:
    """v2.RandomCrop needs the output size; take it from each input (it keeps the input size)."""

    def __init__(self, padding: int, v2) -> None:
        self.padding, self.v2 = padding, v2

    def __call__(self, img):
        if img.ndim == 2:  # a (C, L) sequence: v2 transforms are for images
            p = self.padding
            offset = int(torch.randint(0, 2 * p + 1, ()))
            return F.pad(img, [p, p])[:, offset : offset + img.shape[-1]]
        size = tuple(img.shape[-2:])
        return self.v2.RandomCrop(size, padding=self.padding)(img)


@AUGMENTS.register("hflip")
def hflip(*, p: Probability = 0.5) -> Augment:
    """Horizontal flip with probability p."""
    return HorizontalFlip(p)


@AUGMENTS.register("random_crop")
def random_crop(*, padding: NonNegativeInt = 4) -> Augment:
    """Random crop of the original size after zero padding (random translation by <= padding)."""
    return RandomCrop(padding)


class Pipeline:
    """The recipe's augmentations, in order. Empty pipelines cost nothing."""

    def __init__(self, augments: Sequence[Augment]) -> None:
        self.augments = list(augments)

    def __bool__(self) -> bool:
        return bool(self.augments)

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for aug in self.augments:
            x = aug.batch(x, gen)
        return x

    def transforms(self) -> list:
        return [aug.transform() for aug in self.augments]
