"""Geometric augmentations: flips, crops, rescaling crops and affine warps (see ``base``)."""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from trainlab.data.augment.base import AUGMENTS, Augment, affine_batch, uniform
from trainlab.errors import RecipeError
from trainlab.types import Fraction, NonNegativeInt, PositiveRange, Probability, UnitRange

Degrees = Annotated[float, Field(ge=0.0, le=180.0, allow_inf_nan=False)]
ShearDegrees = Annotated[float, Field(ge=0.0, lt=90.0, allow_inf_nan=False)]


class HorizontalFlip(Augment):
    """Mirror the last axis with probability p, independently per sample."""

    dims = (1, 2)

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

    The batched form draws offsets per sample (the batch is translated by up to ``padding`` in
    every direction independently) and reads every window with one ``gather`` over the
    flattened padded sample: 6x faster on the CPU than indexing with one index tensor per axis.
    """

    def __init__(self, padding: int) -> None:
        self.padding = padding

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        p, (n, c), spatial = self.padding, x.shape[:2], x.shape[2:]
        padded = F.pad(x, [p, p] * len(spatial))
        strides = padded.stride()[2:]  # of the padded spatial axes, contiguous
        start = torch.zeros(n, dtype=torch.long, device=x.device)
        window = torch.zeros((), dtype=torch.long, device=x.device)
        for size, stride in zip(spatial, strides, strict=True):
            offset = torch.randint(0, 2 * p + 1, (n,), device=x.device, generator=gen)
            start = start + offset * stride
            window = window[..., None] + torch.arange(size, device=x.device) * stride
        index = (start[:, None] + window.reshape(1, -1))[:, None, :].expand(n, c, -1)
        return padded.reshape(n, c, -1).gather(2, index).view(x.shape)

    def transform(self):
        return _Crop(self.padding)


class _PerSize:
    """A v2 transform that needs the output size, built once per input size and reused (building
    one per sample costs more than the crop). Picklable: DataLoader workers may be spawned."""

    def __init__(self) -> None:
        self._built: dict[tuple[int, ...], object] = {}

    def build(self, size: tuple[int, ...]):
        raise NotImplementedError

    def for_size(self, size: tuple[int, ...]):
        if size not in self._built:
            self._built[size] = self.build(size)
        return self._built[size]


class _Crop(_PerSize):
    """v2.RandomCrop of the input's own size after padding; a 1-D crop for (C, L) sequences."""

    def __init__(self, padding: int) -> None:
        super().__init__()
        self.padding = padding

    def build(self, size: tuple[int, ...]):
        from torchvision.transforms import v2

        return v2.RandomCrop(size, padding=self.padding)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim == 2:  # a (C, L) sequence: v2 transforms are for images
            p = self.padding
            offset = int(torch.randint(0, 2 * p + 1, ()))
            return F.pad(img, [p, p])[:, offset : offset + img.shape[-1]]
        return self.for_size(tuple(img.shape[-2:]))(img)


@AUGMENTS.register("hflip", moves_positions=True)
def hflip(*, p: Probability = 0.5) -> Augment:
    """Horizontal flip with probability p."""
    return HorizontalFlip(p)


@AUGMENTS.register("random_crop", moves_positions=True)
def random_crop(*, padding: NonNegativeInt = 4) -> Augment:
    """Random crop of the original size after zero padding (random translation by <= padding)."""
    return RandomCrop(padding)


# -- rescaling crops: a box per sample, resized back to the input size ---------------------------


def resized_crop_batch(
    x: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    height: torch.Tensor,
    width: torch.Tensor,
    clamp_to_box: bool = True,
) -> torch.Tensor:
    """Crop each image of x (N, C, H, W) to its own box and resize it back to (H, W), bilinear.

    The box (top, left, height, width), in pixels, is given per sample as (N,) tensors and may be
    fractional. One grid_sample call for the whole batch: output pixel u samples the input at
    ``left + (u + 0.5) * width / W - 0.5`` (half-pixel centres, as ``F.interpolate``), clamped
    into the box (``v2.functional.resized_crop``: crop, then resize the crop alone) or, with
    ``clamp_to_box=False``, into the image (resize the whole image, then crop it).
    """
    n, _, h, w = x.shape
    gy = _sample_positions(top, height, h, clamp_to_box)
    gx = _sample_positions(left, width, w, clamp_to_box)
    grid = torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], -1)
    return F.grid_sample(
        x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False
    )


def _sample_positions(
    start: torch.Tensor, length: torch.Tensor, size: int, clamp_to_box: bool
) -> torch.Tensor:
    """(N, size) normalised grid coordinates along one axis for boxes [start, start + length)."""
    u = torch.arange(size, device=start.device, dtype=start.dtype) + 0.5
    pos = start[:, None] + u * (length / size)[:, None] - 0.5  # pixel coordinates in the input
    if clamp_to_box:
        pos = torch.minimum(torch.maximum(pos, start[:, None]), (start + length - 1)[:, None])
    return (2 * pos + 1) / size - 1  # border padding clamps to the image otherwise


def randint_per_sample(room: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """(N,) whole numbers (as floats), each uniform in [0, room_i]: a per-sample ``randint``."""
    r = torch.rand(room.shape, device=room.device, generator=gen)
    return torch.minimum(torch.floor(r * (room + 1)), room)


class RandomResizedCrop(Augment):
    """Inception-style crop: a box of a random area fraction and aspect ratio, resized back.

    Sampling follows ``v2.RandomResizedCrop``: up to 10 tries of (area fraction ~ U(scale),
    log aspect ratio ~ U(log ratio)) with sides rounded to whole pixels, the first that fits is
    used, else the central crop with the aspect ratio clamped into ``ratio``. The batch draws
    all 10 tries of every sample at once and picks the first that fits with ``argmax``.
    The output keeps the input size.
    """

    dims = (2,)
    tries = 10

    def __init__(self, scale: tuple[float, float], ratio: tuple[float, float]) -> None:
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def sample(self, x: torch.Tensor, gen: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        """Per-sample boxes (top, left, height, width), (N,) float tensors of whole pixels."""
        n, (h, w), dev = len(x), x.shape[-2:], x.device
        (s0, s1), (r0, r1) = self.scale, (math.log(self.ratio[0]), math.log(self.ratio[1]))
        area = h * w * (s0 + (s1 - s0) * torch.rand(n, self.tries, device=dev, generator=gen))
        aspect = torch.exp(r0 + (r1 - r0) * torch.rand(n, self.tries, device=dev, generator=gen))
        cw, ch = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
        fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        first = fits.int().argmax(1, keepdim=True)  # the first try that fits (0 if none does)
        found = fits.any(1)
        fh, fw = self._fallback(h, w)
        cw = torch.where(found, cw.gather(1, first)[:, 0], float(fw))
        ch = torch.where(found, ch.gather(1, first)[:, 0], float(fh))
        top = torch.where(found, randint_per_sample(h - ch, gen), float((h - fh) // 2))
        left = torch.where(found, randint_per_sample(w - cw, gen), float((w - fw) // 2))
        return top, left, ch, cw

    def _fallback(self, h: int, w: int) -> tuple[int, int]:
        """The central crop v2 falls back to: the whole image, aspect ratio clamped."""
        in_ratio = w / h
        if in_ratio < min(self.ratio):
            return int(round(w / min(self.ratio))), w
        if in_ratio > max(self.ratio):
            return h, int(round(h * max(self.ratio)))
        return h, w

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return resized_crop_batch(x, *self.sample(x, gen))

    def transform(self):
        return _ResizedCrop(self.scale, self.ratio)


class _ResizedCrop(_PerSize):
    """v2.RandomResizedCrop back to the input's own size."""

    def __init__(self, scale: tuple[float, float], ratio: tuple[float, float]) -> None:
        super().__init__()
        self.scale, self.ratio = scale, ratio

    def build(self, size: tuple[int, ...]):
        from torchvision.transforms import v2

        return v2.RandomResizedCrop(size, scale=self.scale, ratio=self.ratio, antialias=True)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return self.for_size(tuple(img.shape[-2:]))(img)


class MultiScale(Augment):
    """Scale augmentation of VGG and ResNet (lecture 004, "multi-scale training").

    Draw S ~ U[s_min, s_max] (pixels), isotropically resize the image so that its short side is
    S (sides rounded to whole pixels, bilinear), then crop the original size at a uniformly random
    whole-pixel offset. The batch never builds the enlarged images: each sample's crop is the box
    (top, left, H, W) / k of the original image, k = resized / original size, resized back in one
    grid_sample call; the per-sample path resizes with v2 and slices, as the lecture describes.
    """

    dims = (2,)

    def __init__(self, short_side: tuple[float, float]) -> None:
        self.short_side = tuple(short_side)

    def _check(self, shape: tuple[int, ...]) -> None:
        short = min(shape[-2:])
        if self.short_side[0] < short:
            raise RecipeError(
                f"augment 'multiscale': short_side={list(self.short_side)} goes below the "
                f"images' short side {short}; the crop of the original size would not fit "
                f"(use short_side >= {short}, e.g. [{short}, {round(short * 1.25)}])"
            )

    def fit(self, x: torch.Tensor) -> None:
        if x.ndim == 4:
            self._check(tuple(x.shape))

    def sample(self, x: torch.Tensor, gen: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        """Per-sample (resized height, resized width, crop top, crop left), (N,) whole pixels."""
        self._check(tuple(x.shape))
        h, w = x.shape[-2:]
        k = uniform(x, *self.short_side, gen) / min(h, w)
        rh, rw = torch.round(h * k).clamp(min=h), torch.round(w * k).clamp(min=w)
        return rh, rw, randint_per_sample(rh - h, gen), randint_per_sample(rw - w, gen)

    def apply(self, x: torch.Tensor, rh, rw, top, left) -> torch.Tensor:
        """The crops at (top, left) of the images resized to (rh, rw), realised as boxes."""
        h, w = x.shape[-2:]
        box = top * h / rh, left * w / rw, h * h / rh, w * w / rw
        return resized_crop_batch(x, *box, clamp_to_box=False)

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.apply(x, *self.sample(x, gen))

    def transform(self):
        return _MultiScale(self)


class _MultiScale:
    """Per sample: draw as the batch does (global RNG), resize with v2, slice the crop."""

    def __init__(self, aug: MultiScale) -> None:
        self.aug = aug

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        rh, rw, top, left = (int(v) for v in self.aug.sample(img[None], None))
        h, w = img.shape[-2:]
        big = TF.resize(img, [rh, rw], antialias=True)
        return big[..., top : top + h, left : left + w]


# -- affine warps: one helper, v2.RandomAffine's parameters and conventions -----------------------


def affine_theta(
    angle: torch.Tensor,
    tx: torch.Tensor,
    ty: torch.Tensor,
    scale: torch.Tensor,
    shear: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """(N, 2, 3) ``affine_batch`` matrices for ``v2.functional.affine``'s parameters, per sample.

    torchvision's meaning, so both paths agree: about the image centre, rotate by ``angle``
    degrees clockwise as displayed (``affine``'s convention; ``rotate``'s is the opposite),
    scale by ``scale``, shear by ``shear`` degrees along x, then translate by (tx, ty) pixels
    (positive: right and down); output pixels sample the
    input through the inverse map (torchvision's ``_get_inverse_affine_matrix`` with no y
    shear), converted here from centred pixel units to affine_grid's normalised units.
    """
    h, w = size
    rot, sx = torch.deg2rad(angle), torch.deg2rad(shear)
    cos, sin, tan = torch.cos(rot), torch.sin(rot), torch.tan(sx)
    # forward rotation-scale-shear [[a, b], [c, d]] (det 1 before scaling); inverse below
    a, b = cos, -cos * tan - sin
    c, d = sin, -sin * tan + cos
    m00, m01, m10, m11 = d / scale, -b / scale, -c / scale, a / scale
    m02 = -(m00 * tx + m01 * ty)
    m12 = -(m10 * tx + m11 * ty)
    return torch.stack(
        [
            torch.stack([m00, m01 * h / w, m02 * 2 / w], 1),
            torch.stack([m10 * w / h, m11, m12 * 2 / h], 1),
        ],
        1,
    )


class RandomAffine(Augment):
    """Random affine warp with its own parameters per sample, as ``v2.RandomAffine`` draws them.

    angle ~ U(-degrees, degrees); (tx, ty) ~ U(-translate W, translate W) x U(-translate H,
    translate H), rounded to whole pixels; scale ~ U(scale); x-shear ~ U(-shear, shear) degrees.
    Bilinear, zero fill outside the image. rotate, translate, shear, scale and affine are this
    class with one or all of the ranges open.
    """

    dims = (2,)

    def __init__(
        self,
        degrees: float = 0.0,
        translate: float = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        shear: float = 0.0,
    ) -> None:
        self.degrees, self.translate, self.shear = degrees, translate, shear
        self.scale = tuple(scale)

    def sample(self, x: torch.Tensor, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
        """Per-sample parameters (N,) of ``affine_theta`` (closed ranges are not drawn)."""
        h, w = x.shape[-2:]
        zeros = torch.zeros(len(x), device=x.device)
        angle = uniform(x, -self.degrees, self.degrees, gen) if self.degrees else zeros
        tx = ty = zeros
        if self.translate:
            tx = torch.round(uniform(x, -self.translate * w, self.translate * w, gen))
            ty = torch.round(uniform(x, -self.translate * h, self.translate * h, gen))
        scale = uniform(x, *self.scale, gen) if self.scale != (1.0, 1.0) else zeros + 1.0
        shear = uniform(x, -self.shear, self.shear, gen) if self.shear else zeros
        return {"angle": angle, "tx": tx, "ty": ty, "scale": scale, "shear": shear}

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return affine_batch(x, affine_theta(**params, size=tuple(x.shape[-2:])))

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.sample(x, gen))

    def transform(self):
        from torchvision.transforms import v2

        return v2.RandomAffine(
            degrees=self.degrees,
            translate=(self.translate, self.translate) if self.translate else None,
            scale=self.scale if self.scale != (1.0, 1.0) else None,
            shear=self.shear or None,
            interpolation=v2.InterpolationMode.BILINEAR,
            fill=None,  # zero padding, as affine_batch (fill=0 would also scale the edge pixels)
        )


ROTATE_DEGREES, TRANSLATE_FRACTION, SCALE_RANGE, SHEAR_DEGREES = 15.0, 0.1, (0.9, 1.1), 10.0


@AUGMENTS.register("random_resized_crop", moves_positions=True)
def random_resized_crop(
    *, scale: UnitRange = (0.08, 1.0), ratio: PositiveRange = (3 / 4, 4 / 3)
) -> Augment:
    """Crop a random area fraction (scale) and aspect ratio (ratio), resize back (Inception)."""
    return RandomResizedCrop(scale, ratio)


@AUGMENTS.register("multiscale", moves_positions=True)
def multiscale(*, short_side: PositiveRange = (32.0, 40.0)) -> Augment:
    """Resize so the short side is S ~ U(short_side) pixels, crop the original size (VGG/ResNet).

    short_side must start at or above the images' short side (32 for CIFAR; the lecture's
    ImageNet setting is [256, 480] with 224 crops).
    """
    return MultiScale(short_side)


@AUGMENTS.register("rotate", moves_positions=True)
def rotate(*, degrees: Degrees = ROTATE_DEGREES) -> Augment:
    """Rotate by a random angle in [-degrees, degrees] about the centre (zero fill)."""
    return RandomAffine(degrees=degrees)


@AUGMENTS.register("translate", moves_positions=True)
def translate(*, fraction: Fraction = TRANSLATE_FRACTION) -> Augment:
    """Translate by up to fraction of the width and of the height, whole pixels (zero fill)."""
    return RandomAffine(translate=fraction)


@AUGMENTS.register("shear", moves_positions=True)
def shear(*, degrees: ShearDegrees = SHEAR_DEGREES) -> Augment:
    """Shear along x by a random angle in [-degrees, degrees] about the centre (zero fill)."""
    return RandomAffine(shear=degrees)


@AUGMENTS.register("scale", moves_positions=True)
def scale(*, factor: PositiveRange = SCALE_RANGE) -> Augment:
    """Zoom by a random factor in [low, high] about the centre (zero fill outside)."""
    return RandomAffine(scale=factor)


@AUGMENTS.register("affine", moves_positions=True)
def affine(
    *,
    degrees: Degrees = ROTATE_DEGREES,
    translate: Fraction = TRANSLATE_FRACTION,
    scale: PositiveRange = SCALE_RANGE,
    shear: ShearDegrees = SHEAR_DEGREES,
) -> Augment:
    """Rotation, translation, scale and x-shear in one warp (v2.RandomAffine's parameters)."""
    return RandomAffine(degrees, translate, scale, shear)
