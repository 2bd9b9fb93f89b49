"""Augmentation policies (lectures 000 and 001): RandAugment, TrivialAugment, AutoAugment.

The CPU path is torchvision's ``v2.RandAugment`` / ``v2.TrivialAugmentWide`` /
``v2.AutoAugment``. The device path draws the same things per sample from the same tables
(torchvision's own ``_AUGMENTATION_SPACE`` and AutoAugment's sub-policy list, read from the
classes, so both paths sample one distribution): every sample its own op in each round, its
own magnitude (TrivialAugment) and its own sign. Each op then runs once per round on the
subset of samples that drew it, with per-sample parameters:

- ShearX/ShearY/TranslateX/TranslateY/Rotate: together one ``affine_batch`` call, each sample
  with the inverse matrix torchvision's ``F.affine``/``F.rotate`` builds (shears about the top
  left corner, translations truncated to whole pixels, rotations counter-clockwise);
- Brightness/Color/Contrast/Sharpness: torchvision's blends with per-sample factors 1 + m;
- Posterize/Solarize: per-sample bits and thresholds; Invert: 1 - x;
- AutoContrast/Equalize: ``v2.functional.autocontrast``/``equalize`` on the subset (they
  compute per-image statistics on batches).

Both paths divide by the value bound (``fit``), apply the op to images in [0, 1] as torchvision
does for float images, and multiply back. Geometric ops interpolate bilinearly on both paths
(torchvision's default is nearest; ``affine_batch`` is bilinear) and fill with 0, torchvision's
default ``fill=None``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from trainlab.data.augment.base import AUGMENTS, Augment, affine_batch
from trainlab.data.augment.photometric import (
    blend,
    check_image_channels,
    grayscale,
    image_bound,
    scaled,
)
from trainlab.errors import RecipeError
from trainlab.types import NonNegativeInt

MagnitudeBins = Annotated[int, Field(ge=2)]  # torchvision's Posterize bins divide by bins - 1

__all__ = [
    "PolicyAugment",
    "RandAugment",
    "TrivialAugment",
    "AutoAugment",
    "apply_ops",
    "grouped_ops",
    "masked_ops",
]

GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


def _v2():
    from torchvision.transforms import v2

    return v2


# ---------------------------------------------------------------------------------------------
# the ops, batched, on images in [0, 1] with per-sample magnitudes m (N,) (float64)


def _affine_theta(
    h: int,
    w: int,
    angle: torch.Tensor,
    translate: tuple[torch.Tensor, torch.Tensor],
    shear: tuple[torch.Tensor, torch.Tensor],
    center: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """(N, 2, 3) ``affine_grid`` matrices of torchvision's ``_get_inverse_affine_matrix``
    (scale 1), vectorised: angles and shears in degrees, translations in pixels, centres in
    pixels from the image centre. torchvision's grid divides the pixel-unit matrix by (w/2, h/2)
    after applying it; the same in normalised units is theta = D^-1 M D with D = diag(w/2, h/2).
    """
    rot, sx, sy = torch.deg2rad(angle), torch.deg2rad(shear[0]), torch.deg2rad(shear[1])
    cx, cy = center
    tx, ty = translate
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -(a * torch.tan(sx) + torch.sin(rot))
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = torch.cos(rot) - c * torch.tan(sx)
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = cx - m0 * (cx + tx) - m1 * (cy + ty)
    m5 = cy - m3 * (cx + tx) - m4 * (cy + ty)
    row0 = torch.stack([m0, m1 * (h / w), m2 * (2.0 / w)], 1)
    row1 = torch.stack([m3 * (w / h), m4, m5 * (2.0 / h)], 1)
    return torch.stack([row0, row1], 1)


def _geometric(x: torch.Tensor, kind: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Each sample warped by its own op GEOMETRIC[kind] of magnitude m, in one grid_sample,
    with the arguments torchvision's ``_apply_image_or_video_transform`` passes."""
    h, w = x.shape[-2:]
    zero = torch.zeros_like(m)
    is_ = [kind == k for k in range(len(GEOMETRIC))]
    shear_deg = torch.rad2deg(torch.atan(m))  # magnitude is tan(shear)
    shear_x = torch.where(is_[0], shear_deg, zero)
    shear_y = torch.where(is_[1], shear_deg, zero)
    tx = torch.where(is_[2], torch.trunc(m), zero)  # int(magnitude)
    ty = torch.where(is_[3], torch.trunc(m), zero)
    angle = torch.where(is_[4], -m, zero)  # F.rotate(angle) builds the matrix of -angle
    shears = is_[0] | is_[1]  # F.affine(center=[0, 0]): the top left corner
    cx = torch.where(shears, zero - w * 0.5, zero)
    cy = torch.where(shears, zero - h * 0.5, zero)
    theta = _affine_theta(h, w, angle, (tx, ty), (shear_x, shear_y), (cx, cy))
    return affine_batch(x, theta.to(x.dtype))


def _brightness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return blend(x, torch.zeros((), dtype=x.dtype, device=x.device), 1.0 + m)


def _color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    if x.shape[-3] == 1:  # torchvision: saturation leaves one-channel images as they are
        return x
    return blend(x, grayscale(x), 1.0 + m)


def _contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return blend(x, grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), 1.0 + m)


def _sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_sharpness``: blend the inner pixels with a 3x3 smoothing (1s
    around a 5, over 13); the border rows and columns keep their values."""
    c, h, w = x.shape[-3:]
    if h <= 2 or w <= 2:
        return x
    a, b = 1.0 / 13.0, 5.0 / 13.0
    kernel = torch.tensor([[a, a, a], [a, b, a], [a, a, a]], dtype=x.dtype, device=x.device)
    blurred = F.conv2d(x, kernel.expand(c, 1, 3, 3), groups=c)
    g = (-m).view(-1, 1, 1, 1).to(x.dtype)  # 1 - factor, factor = 1 + m
    out = x.clone()
    inner = out[..., 1:-1, 1:-1]
    inner.addcmul_(blurred.sub_(inner), g)  # torchvision: add_(blurred - inner, alpha=g)
    return out.clamp_(0.0, 1.0)


def _posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    levels = torch.pow(2.0, m.round()).to(x.dtype).view(-1, 1, 1, 1)  # 1 << bits
    return x.mul(levels).floor_().clamp_min_(0.0).minimum(levels - 1).mul_(1.0 / levels)


def _solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    threshold = m.to(x.dtype).view(-1, 1, 1, 1)  # bound 1 for float images
    return torch.where(x >= threshold, 1.0 - x, x)


def _autocontrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return _v2().functional.autocontrast(x)


def _equalize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return _v2().functional.equalize(x)


def _invert(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return 1.0 - x


POINTWISE = {
    "Brightness": _brightness,
    "Color": _color,
    "Contrast": _contrast,
    "Sharpness": _sharpness,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
    "Invert": _invert,
}


def apply_ops(x: torch.Tensor, op: torch.Tensor, m: torch.Tensor, names: list[str]) -> torch.Tensor:
    """Images x (N, C, H, W) in [0, 1], sample i transformed by names[op[i]] with magnitude
    m[i] (signed, torchvision's units), op[i] = -1 for none. On the CPU, one call per op on
    the samples that drew it (:func:`grouped_ops`, one read-back of the group sizes); on a
    GPU, where that read-back would stall the queue every round, :func:`masked_ops`."""
    return masked_ops(x, op, m, names) if x.is_cuda else grouped_ops(x, op, m, names)


def _kinds(op: torch.Tensor, names: list[str]) -> torch.Tensor:
    """GEOMETRIC's index of each sample's op, -1 for the others (op -1 included)."""
    geo = torch.tensor(
        [GEOMETRIC.index(n) if n in GEOMETRIC else -1 for n in names] + [-1], device=op.device
    )
    return geo[op]  # op -1 indexes the trailing -1


def masked_ops(
    x: torch.Tensor, op: torch.Tensor, m: torch.Tensor, names: list[str]
) -> torch.Tensor:
    """:func:`grouped_ops` without a host sync: every op runs on the whole batch and each
    sample keeps the result of the op it drew (per-sample ops, so its values are the grouped
    path's). It costs one pass per op over the batch instead of over the samples that drew it:
    cheap on a GPU, where these small kernels are bound by their launches."""
    kind = _kinds(op, names)
    out = x
    if any(n in GEOMETRIC for n in names):
        out = torch.where((kind >= 0).view(-1, 1, 1, 1), _geometric(x, kind, m).to(x.dtype), x)
    for g, name in enumerate(names):
        if name == "Identity" or name in GEOMETRIC:
            continue
        drew = (op == g).view(-1, 1, 1, 1)
        out = torch.where(drew, POINTWISE[name](x, m).to(x.dtype), out)
    return out


def grouped_ops(
    x: torch.Tensor, op: torch.Tensor, m: torch.Tensor, names: list[str]
) -> torch.Tensor:
    """One call per op on the samples that drew it (all geometric ops together: one warp);
    one host sync for the group sizes."""
    kind = _kinds(op, names)
    group = torch.where(kind >= 0, len(names), op)  # geometric ops share one group
    order = torch.argsort(group, stable=True)
    sizes = torch.bincount(group + 1, minlength=len(names) + 2).tolist()
    out = x.clone()
    start = sizes[0]  # samples without an op come first
    for g in range(len(names) + 1):
        idx = order[start : start + sizes[g + 1]]
        start += sizes[g + 1]
        if idx.numel() == 0:
            continue
        if g == len(names):
            res = _geometric(out[idx], kind[idx], m[idx])
        elif names[g] == "Identity" or names[g] in GEOMETRIC:
            continue
        else:
            res = POINTWISE[names[g]](out[idx], m[idx])
        out.index_copy_(0, idx, res.to(out.dtype))
    return out


def magnitude_table(space: dict, names: list[str], bins: int, h: int, w: int) -> torch.Tensor:
    """(K, bins) float64 magnitudes of torchvision's space (zeros for ops without one)."""
    rows = []
    for n in names:
        values = space[n][0](bins, h, w)
        rows.append(torch.zeros(bins) if values is None else values.to(torch.float64))
    return torch.stack(rows).double()


def _signs(signed: torch.Tensor, op: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """-1 with probability 1/2 for signed ops (torchvision: ``torch.rand(()) <= 0.5``)."""
    flip = torch.rand(len(op), device=op.device, generator=gen) <= 0.5
    return torch.where(signed[op] & flip, -1.0, 1.0).double()


# ---------------------------------------------------------------------------------------------
# the policies


class PolicyAugment(Augment):
    """What the three policies share: the value bound, the channel check, the scaling."""

    dims = (2,)
    names: list[str] = []  # the op names of the policy's table, in torchvision's order

    def __init__(self) -> None:
        self.bound = 1.0

    def fit(self, x: torch.Tensor) -> None:
        check_image_channels(x, self.name)
        self.bound = image_bound(x, self.name)

    def draw(
        self, x: torch.Tensor, gen: torch.Generator
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per round, (N,) op indices into ``self.names`` (-1: none) and (N,) magnitudes."""
        raise NotImplementedError

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        check_image_channels(x, self.name)
        out = x / self.bound
        for op, m in self.draw(x, gen):
            out = apply_ops(out, op, m, self.names)
        return out * self.bound

    def v2_transform(self):
        raise NotImplementedError

    def transform(self):
        return scaled(self.v2_transform(), self.bound)


class RandAugment(PolicyAugment):
    """num_ops ops drawn uniformly (with replacement) per sample, all at one magnitude bin."""

    name = "randaugment"

    def __init__(self, num_ops: int, magnitude: int, num_magnitude_bins: int) -> None:
        super().__init__()
        self.num_ops, self.magnitude, self.bins = num_ops, magnitude, num_magnitude_bins
        self.space = _v2().RandAugment._AUGMENTATION_SPACE
        self.names = list(self.space)

    def draw(self, x, gen):
        h, w = x.shape[-2:]
        table = magnitude_table(self.space, self.names, self.bins, h, w).to(x.device)
        signed = torch.tensor([self.space[n][1] for n in self.names], device=x.device)
        rounds = []
        for _ in range(self.num_ops):
            op = torch.randint(len(self.names), (len(x),), device=x.device, generator=gen)
            rounds.append((op, table[op, self.magnitude] * _signs(signed, op, gen)))
        return rounds

    def v2_transform(self):
        v2 = _v2()
        return v2.RandAugment(
            self.num_ops,
            self.magnitude,
            self.bins,
            interpolation=v2.InterpolationMode.BILINEAR,
        )


class TrivialAugment(PolicyAugment):
    """TrivialAugment Wide: one op per sample, at a magnitude bin drawn uniformly per sample."""

    name = "trivialaugment"

    def __init__(self, num_magnitude_bins: int) -> None:
        super().__init__()
        self.bins = num_magnitude_bins
        self.space = _v2().TrivialAugmentWide._AUGMENTATION_SPACE
        self.names = list(self.space)

    def draw(self, x, gen):
        h, w = x.shape[-2:]
        table = magnitude_table(self.space, self.names, self.bins, h, w).to(x.device)
        signed = torch.tensor([self.space[n][1] for n in self.names], device=x.device)
        op = torch.randint(len(self.names), (len(x),), device=x.device, generator=gen)
        level = torch.randint(self.bins, (len(x),), device=x.device, generator=gen)
        return [(op, table[op, level] * _signs(signed, op, gen))]

    def v2_transform(self):
        v2 = _v2()
        return v2.TrivialAugmentWide(self.bins, interpolation=v2.InterpolationMode.BILINEAR)


class AutoAugment(PolicyAugment):
    """AutoAugment's learned policy: a sub-policy drawn uniformly per sample, then its two
    (op, probability, magnitude bin of 10) steps, each applied with its probability."""

    name = "autoaugment"

    def __init__(self, policy: str) -> None:
        super().__init__()
        v2 = _v2()
        self.policy = policy
        self.space = v2.AutoAugment._AUGMENTATION_SPACE
        self.names = list(self.space)
        self.subpolicies = v2.AutoAugment(v2.AutoAugmentPolicy(policy))._policies

    def draw(self, x, gen):
        h, w = x.shape[-2:]
        table = magnitude_table(self.space, self.names, 10, h, w)
        signed = torch.tensor([self.space[n][1] for n in self.names], device=x.device)
        ops = torch.tensor([[self.names.index(s[0]) for s in sub] for sub in self.subpolicies])
        probs = torch.tensor([[s[1] for s in sub] for sub in self.subpolicies])
        mags = torch.tensor(
            [
                [0.0 if s[2] is None else float(table[self.names.index(s[0]), s[2]]) for s in sub]
                for sub in self.subpolicies
            ],
            dtype=torch.float64,
        )
        ops, probs, mags = ops.to(x.device), probs.to(x.device), mags.to(x.device)
        pick = torch.randint(len(self.subpolicies), (len(x),), device=x.device, generator=gen)
        rounds = []
        for step in range(2):
            op = ops[pick, step]
            on = torch.rand(len(x), device=x.device, generator=gen) <= probs[pick, step]
            m = mags[pick, step] * _signs(signed, op, gen)
            rounds.append((torch.where(on, op, -1), m))
        return rounds

    def v2_transform(self):
        v2 = _v2()
        return v2.AutoAugment(
            v2.AutoAugmentPolicy(self.policy), interpolation=v2.InterpolationMode.BILINEAR
        )


@AUGMENTS.register("randaugment", moves_positions=True)
def randaugment(
    *,
    num_ops: NonNegativeInt = 2,
    magnitude: NonNegativeInt = 9,
    num_magnitude_bins: MagnitudeBins = 31,
) -> Augment:
    """RandAugment: num_ops random ops per sample at magnitude bin `magnitude` (torchvision's)."""
    if magnitude >= num_magnitude_bins:
        raise RecipeError(
            f"augment 'randaugment': magnitude={magnitude} must be below "
            f"num_magnitude_bins={num_magnitude_bins}"
        )
    return RandAugment(num_ops, magnitude, num_magnitude_bins)


@AUGMENTS.register("trivialaugment", moves_positions=True)
def trivialaugment(*, num_magnitude_bins: MagnitudeBins = 31) -> Augment:
    """TrivialAugment Wide: one random op per sample at a random magnitude (torchvision's)."""
    return TrivialAugment(num_magnitude_bins)


@AUGMENTS.register("autoaugment", moves_positions=True)
def autoaugment(*, policy: Literal["imagenet", "cifar10", "svhn"] = "imagenet") -> Augment:
    """AutoAugment: a random learned sub-policy of two ops per sample (torchvision's tables)."""
    return AutoAugment(policy)
