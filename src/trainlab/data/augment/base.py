"""What every augmentation shares: the two-path interface, the registry and batched helpers.

Each augmentation is one registered factory returning an :class:`Augment` with two paths of the
same meaning:

- ``batch(x, gen)``: the whole mini-batch at once on the device where the data lives, with
  independent random parameters per sample (airbench's approach; no per-sample Python);
- ``transform()``: a per-sample callable (a torchvision ``transforms.v2`` transform where one
  exists) run on the CPU inside a DataLoader.

Inputs are raw (before preprocessing) float tensors, (N, C, H, W) images or (N, C, L) sequences.
``fit(x)`` sees a sample of the raw training split once before training (PCA lighting fits its
eigenpairs there; photometric ops read the value range). A :class:`Mixer` (mixup, cutmix) acts
on a whole batch and its labels, on both paths, after the per-sample transforms.
Evaluation never sees any of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainlab.errors import RecipeError
from trainlab.registry import Registry

__all__ = [
    "AUGMENTS",
    "Augment",
    "Mixer",
    "OneSample",
    "Pipeline",
    "affine_batch",
    "chance",
    "from_host",
    "host_generator",
    "uniform",
    "value_bound",
    "view_per_sample",
]

AUGMENTS = Registry("augment", "training-only input transforms (augment: [...])")
# Every entry declares ``moves_positions``: whether it moves values to other input positions
# (crops, flips, warps, shifts, policies with geometric ops). Augmentation runs on raw inputs,
# so the recipe refuses those beside preprocessing fitted per position (``per_position_scale``).


def value_bound(x: torch.Tensor) -> float:
    """The top of the raw value range that photometric ops clamp to and invert about:
    1 for images scaled to [0, 1] (uint8 sources), else the training data's maximum (16 for
    scikit-learn's digits)."""
    top = float(x.max()) if x.numel() else 1.0
    return 1.0 if top <= 1.0 else top


def host_generator(gen: torch.Generator, seed: int | None) -> np.random.Generator:
    """A numpy generator for per-batch host-side draws: from ``seed`` when the loader gives
    one, else seeded from ``gen`` (one integer read back from gen's device)."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
    return np.random.default_rng(seed)


def from_host(values: np.ndarray, device: torch.device) -> torch.Tensor:
    """A small host array as a float32 tensor on ``device``, copied without a stream sync."""
    tensor = torch.from_numpy(values).float()
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def view_per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) per-sample values shaped to broadcast against x (N, ...)."""
    return values.view(-1, *([1] * (x.ndim - 1)))


def chance(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """(N,) booleans, each True with probability p, drawn independently per sample."""
    return torch.rand(len(x), device=x.device, generator=gen) < p


def uniform(x: torch.Tensor, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    """(N,) floats drawn uniformly from [low, high), one per sample."""
    return low + (high - low) * torch.rand(len(x), device=x.device, generator=gen)


def affine_batch(x: torch.Tensor, theta: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Warp each image of x (N, C, H, W) by its own 2x3 matrix theta (N, 2, 3).

    theta maps output coordinates to input coordinates in normalised [-1, 1] units
    (``F.affine_grid``'s convention, align_corners=False); pixels from outside the image get
    ``fill``. Bilinear, one grid_sample call for the whole batch.
    """
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    if fill == 0.0:
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ones = torch.ones_like(x[:, :1])
    warped = F.grid_sample(
        torch.cat([x, ones], 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    inside = warped[:, -1:]
    return warped[:, :-1] + (1.0 - inside) * fill


def rotation_matrix(angle_deg: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) rotations about the image centre (normalised coordinates)."""
    a = angle_deg * (math.pi / 180.0)
    cos, sin, zero = torch.cos(a), torch.sin(a), torch.zeros_like(a)
    return torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class Augment:
    """One augmentation: a batched device implementation and a per-sample CPU transform."""

    #: spatial ranks it applies to: 1 for (C, L) sequences, 2 for (C, H, W) images
    dims: tuple[int, ...] = (1, 2)
    name: str = ""

    def fit(self, x: torch.Tensor) -> None:
        """See a sample of the raw training inputs once, before training (default: nothing)."""

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        raise NotImplementedError


class OneSample:
    """The per-sample path of an augmentation without a v2 transform: ``aug.batch`` on one
    sample, drawing from the global RNG (seeded per sample by the DataLoader)."""

    def __init__(self, aug: Augment) -> None:
        self.aug = aug

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.aug.batch(x[None], None)[0]


class Mixer(Augment):
    """Mixes samples of a batch and their labels (mixup, cutmix); acts on batches on both paths.

    ``mix(x, y, gen)`` takes soft targets y (N, C) and returns mixed inputs and targets.
    """

    def __init__(self, p: float) -> None:
        self.p = p

    def mix(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        gen: torch.Generator,
        host: np.random.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed inputs and targets; per-sample draws that torch cannot make with a generator
        (Beta) come from ``host``, a numpy generator seeded per batch by the loader."""
        raise NotImplementedError

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return x  # not a per-sample transform: Pipeline.mix applies it

    def transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return _identity  # Pipeline.mix applies mixers to whole batches on both paths


class Pipeline:
    """The recipe's augmentations, in order: per-sample transforms, then at most one mixer per
    batch (chosen uniformly among those listed, like torchvision's RandomChoice of MixUp and
    CutMix). Empty pipelines cost nothing."""

    def __init__(self, augments: Sequence[Augment], num_classes: int = 0) -> None:
        self.augments = [a for a in augments if not isinstance(a, Mixer)]
        self.mixers = [a for a in augments if isinstance(a, Mixer)]
        self.num_classes = num_classes

    @classmethod
    def from_specs(cls, specs: Sequence[Any], num_classes: int) -> Pipeline:
        """The pipeline of a recipe's ``augment`` list (each spec has ``name`` and ``build()``)."""
        augments = []
        for spec in specs:
            aug = spec.build()
            aug.name = spec.name
            augments.append(aug)
        return cls(augments, num_classes)

    def __bool__(self) -> bool:
        return bool(self.augments or self.mixers)

    def check(self, in_shape: tuple[int, ...]) -> None:
        """Refuse, before training, an augmentation that does not apply to this data's shape."""
        rank = len(in_shape) - 1
        for aug in [*self.augments, *self.mixers]:
            if rank not in aug.dims:
                kinds = " or ".join(
                    {1: "(C, L) sequences", 2: "(C, H, W) images"}[d] for d in aug.dims
                )
                raise RecipeError(
                    f"augment {aug.name or type(aug).__name__!r} applies to {kinds}; the data has "
                    f"examples of shape {tuple(in_shape)}"
                )

    def fit(self, x: torch.Tensor) -> None:
        for aug in [*self.augments, *self.mixers]:
            aug.fit(x)

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for aug in self.augments:
            x = aug.batch(x, gen)
        return x

    def mix(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft targets (N, C) and the inputs mixed by one of the mixers (or unchanged labels
        as class indices when the pipeline has no mixer).

        ``seed`` (the loader's per-batch seed) seeds the host-side draws: which mixer, and the
        Beta lambdas. Drawn on the host, they need no device-to-host read (a sync on a GPU).
        """
        if not self.mixers:
            return x, y
        host = host_generator(gen, seed)
        pick = int(host.integers(len(self.mixers))) if len(self.mixers) > 1 else 0
        soft = F.one_hot(y.long(), self.num_classes).to(x.dtype) if not y.is_floating_point() else y
        return self.mixers[pick].mix(x, soft, gen, host)

    def transforms(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        return [aug.transform() for aug in self.augments]
