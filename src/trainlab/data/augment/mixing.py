"""Mixup and CutMix (lecture 004): mix pairs of samples of a batch and their one-hot labels.

Each sample i is paired with sample perm(i) of the same batch (one random permutation per
batch) and draws its own lambda ~ Beta(alpha, alpha), so the batch is mixed with independent
parameters per sample; with probability 1 - p a sample is left as it is (lambda = 1).

- mixup: x = lambda x_i + (1 - lambda) x_j, y = lambda e(y_i) + (1 - lambda) e(y_j);
- cutmix: a box of r_w = W sqrt(1 - lambda), r_h = H sqrt(1 - lambda) centred at a uniform
  point, clipped at the border, is pasted from x_j; the label weight is the area actually
  kept, lambda' = 1 - box area / (W H), so a clipped box gives the label it really shows.

Targets come out as probabilities (N, C). Label smoothing is applied by the loss on top of them,
(1 - eps) y + eps / C; because both are affine in the one-hot vectors, this equals mixing the
smoothed labels: the two orders timm and torchvision use agree, and there is one definition.
"""

from __future__ import annotations

import numpy as np
import torch

from trainlab.data.augment.base import (
    AUGMENTS,
    Mixer,
    from_host,
    host_generator,
    view_per_sample,
)
from trainlab.types import Positive, Probability

__all__ = ["MixUp", "CutMix", "beta_per_sample", "cutmix_boxes"]


def beta_per_sample(
    n: int, alpha: float, host: np.random.Generator, device: torch.device
) -> torch.Tensor:
    """(n,) draws from Beta(alpha, alpha) on ``device``. torch's Beta sampler takes no
    generator; numpy's does, seeded per batch, so the lambdas are reproducible (exact resume)."""
    return from_host(host.beta(alpha, alpha, size=n), device)


def _partners(x: torch.Tensor, lam: torch.Tensor, p: float, gen: torch.Generator):
    """The partner index of each sample and its lambda (1 for samples left unmixed)."""
    perm = torch.randperm(len(x), generator=gen, device=gen.device).to(x.device)
    if p < 1.0:
        keep = torch.rand(len(x), generator=gen, device=gen.device).to(x.device) >= p
        lam = torch.where(keep, torch.ones_like(lam), lam)
    return perm, lam


class _PairMixer(Mixer):
    """Pairs each sample with a partner and draws its lambda ~ Beta(alpha, alpha)."""

    def __init__(self, alpha: float, p: float) -> None:
        super().__init__(p)
        self.alpha = alpha

    def pairs(
        self, x: torch.Tensor, gen: torch.Generator, host: np.random.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(partner index (N,), lambda (N,)), lambda 1 for samples left unmixed."""
        lam = beta_per_sample(
            len(x), self.alpha, host_generator(gen, None) if host is None else host, x.device
        )
        return _partners(x, lam, self.p, gen)


class MixUp(_PairMixer):
    """Convex combinations of pairs of inputs and of their labels."""

    def mix(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        gen: torch.Generator,
        host: np.random.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        perm, lam = self.pairs(x, gen, host)
        lx = view_per_sample(lam, x).to(x.dtype)
        ly = lam[:, None].to(y.dtype)
        return lx * x + (1 - lx) * x[perm], ly * y + (1 - ly) * y[perm]


def cutmix_boxes(
    shape: tuple[int, ...], lam: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample boxes for the spatial ``shape`` ((L,) or (H, W)) covering 1 - lambda of it:
    side ratios sqrt(1 - lambda) on images (the lecture's r_w = W sqrt(1 - lambda)), a segment
    of (1 - lambda) L on sequences; centred uniformly and clipped: (low, high) integer bounds,
    each (N, dims).

    The side lengths are rounded first and the box placed after, so an unclipped box covers
    (1 - lambda) of the image to within half a pixel per side."""
    n, device = len(lam), lam.device
    size = torch.tensor(shape, device=device, dtype=torch.float32)
    side = torch.round(size * (1.0 - lam)[:, None] ** (1.0 / len(shape)))
    centre = torch.rand(n, len(shape), generator=gen, device=gen.device).to(device) * size
    low = torch.round(centre - side / 2)
    high = low + side
    return low.clamp(min=0).clamp(max=size).long(), high.clamp(min=0).clamp(max=size).long()


def box_mask(shape: tuple[int, ...], low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """(N, *shape) booleans, True inside each sample's box; built from aranges, no loop."""
    inside = None
    for d, length in enumerate(shape):
        pos = torch.arange(length, device=low.device)
        axis = (pos >= low[:, d, None]) & (pos < high[:, d, None])  # (N, length)
        axis = axis.view(len(low), *[length if k == d else 1 for k in range(len(shape))])
        inside = axis if inside is None else inside & axis
    return inside


class CutMix(_PairMixer):
    """Paste a box of one sample into its partner; labels weighted by the pasted area."""

    def mix(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        gen: torch.Generator,
        host: np.random.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        perm, lam = self.pairs(x, gen, host)
        shape = tuple(x.shape[2:])
        low, high = cutmix_boxes(shape, lam, gen)
        inside = box_mask(shape, low, high)[:, None]  # (N, 1, *shape): every channel
        mixed = torch.where(inside, x[perm], x)
        kept = 1.0 - (high - low).prod(1).float() / float(np.prod(shape))
        ly = kept[:, None].to(y.dtype)
        return mixed, ly * y + (1 - ly) * y[perm]


@AUGMENTS.register("mixup", moves_positions=False)
def mixup(*, alpha: Positive = 0.2, p: Probability = 1.0) -> Mixer:
    """Mixup: blend pairs of inputs and one-hot labels, lambda ~ Beta(alpha, alpha) per sample."""
    return MixUp(alpha, p)


@AUGMENTS.register("cutmix", moves_positions=False)
def cutmix(*, alpha: Positive = 1.0, p: Probability = 1.0) -> Mixer:
    """CutMix: paste a box of side sqrt(1-lambda) from a partner; label weight = area kept."""
    return CutMix(alpha, p)
