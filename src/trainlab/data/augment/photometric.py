"""Photometric augmentations (lecture 000, "Color Jitter"): colour jitter and PCA lighting.

Both work relative to the raw value range: ``fit(x)`` reads its top with ``value_bound`` (1 for
images from uint8 sources, 16 for scikit-learn's digits), images are divided by it, transformed
as torchvision would transform an image in [0, 1], and multiplied back.

- ``color_jitter``: torchvision's ``v2.ColorJitter`` (brightness, contrast, saturation) on the
  CPU path; the device path draws the same factors and the same random order of the three ops
  per sample and applies torchvision's blend formulas to the whole batch at once.
- ``pca_lighting``: AlexNet's "fancy PCA" lighting, written by hand (torchvision has none).
"""

from __future__ import annotations

import torch

from trainlab.data.augment.base import AUGMENTS, Augment, uniform, value_bound, view_per_sample
from trainlab.errors import RecipeError
from trainlab.types import NonNegative

__all__ = [
    "ColorJitter",
    "PCALighting",
    "Scaled",
    "blend",
    "check_image_channels",
    "grayscale",
    "scaled",
]


def check_image_channels(x: torch.Tensor, name: str, channels: tuple[int, ...] = (1, 3)) -> None:
    """Refuse, as a one-line RecipeError, images whose channel count the op is not defined for."""
    if x.ndim not in (3, 4) or x.shape[-3] not in channels:
        kinds = " or ".join(str(c) for c in channels)
        raise RecipeError(
            f"augment {name!r} needs images with {kinds} channels (C, H, W); the data has "
            f"examples of shape {tuple(x.shape[1:] if x.ndim == 4 else x.shape)}"
        )


def image_bound(x: torch.Tensor, name: str) -> float:
    """The raw images' value range top (see ``value_bound``); photometric ops clamp to
    [0, bound], so data that is already standardised (negative values) is refused rather than
    silently clipped."""
    low = float(x.min()) if x.numel() else 0.0
    if low < 0:
        raise RecipeError(
            f"augment {name!r} works on raw image values in [0, max]; the training inputs have "
            f"negative values (min {low:.3g}): store raw pixels and let preprocess normalise them"
        )
    return value_bound(x)


def pixel_covariance(x: torch.Tensor, bound: float, chunk: int = 1024) -> torch.Tensor:
    """3x3 covariance (unbiased, float64) of all RGB pixels of x (N, 3, H, W) / bound, from
    moments accumulated over chunks of images: no copy of the whole split is made."""
    total, outer, count = (
        torch.zeros(3, dtype=torch.float64),
        torch.zeros(3, 3, dtype=torch.float64),
        0,
    )
    for part in x.detach().split(chunk):
        pixels = part.to("cpu", torch.float64).transpose(0, 1).reshape(3, -1) / bound
        total += pixels.sum(1)
        outer += pixels @ pixels.T
        count += pixels.shape[1]
    mean = total / count
    return (outer - count * torch.outer(mean, mean)) / (count - 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma of RGB images, torchvision's own weights (0.2989, 0.587, 0.114) so
    that the blends below match ``v2.functional`` to rounding; one-channel images as they are."""
    if x.shape[-3] == 1:
        return x
    from torchvision.transforms.v2 import functional as TF

    return TF.rgb_to_grayscale(x)


def blend(x: torch.Tensor, target: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_blend`` with one ratio per sample: f x + (1 - f) target, clamped to
    [0, 1]. (1 - f) is formed in float64 and rounded once, as torchvision does with its
    Python-float ratio."""
    f = view_per_sample(factor.to(x.dtype), x)
    g = view_per_sample((1.0 - factor.double()).to(x.dtype), x)
    return x.mul(f).addcmul_(target, g).clamp_(0.0, 1.0)  # x f + target g, one rounding


def _scale_to_unit(x: torch.Tensor, bound: float) -> torch.Tensor:
    return x if bound == 1.0 else x / bound


def _scale_from_unit(x: torch.Tensor, bound: float) -> torch.Tensor:
    return x if bound == 1.0 else x * bound


class Scaled:
    """Run a [0, 1] image transform (torchvision's) on an image whose range tops at ``bound``:
    x / bound -> op -> * bound. A plain class so DataLoader workers can pickle it."""

    def __init__(self, op, bound: float) -> None:
        self.op, self.bound = op, bound

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return self.op(img / self.bound) * self.bound

    def __repr__(self) -> str:
        return f"Scaled({self.op!r}, bound={self.bound})"


def scaled(op, bound: float):
    """``op`` itself on [0, 1] data (then the CPU path is exactly the torchvision transform),
    else the :class:`Scaled` wrapper."""
    return op if bound == 1.0 else Scaled(op, bound)


# ---------------------------------------------------------------------------------------------
# colour jitter

BRIGHTNESS, CONTRAST, SATURATION = 0, 1, 2


class ColorJitter(Augment):
    """Brightness, contrast and saturation jitter, torchvision's ``v2.ColorJitter`` on both paths.

    Each factor is drawn uniformly from [max(0, 1 - s), 1 + s] for strength s. The ops are
    applied in a random order: ``v2.ColorJitter`` draws a permutation per call, and the device
    path draws one per sample (``argsort`` of uniform noise), so both paths sample the same
    distribution. The formulas are torchvision's, on images in [0, 1]:

    - brightness: f x;
    - contrast: f x + (1 - f) mean(gray(x)), the mean over the whole image;
    - saturation: f x + (1 - f) gray(x) (one-channel images are left as they are);

    each clamped to [0, 1]; gray() uses torchvision's weights 0.2989, 0.587, 0.114.
    """

    dims = (2,)
    name = "color_jitter"

    def __init__(self, brightness: float, contrast: float, saturation: float) -> None:
        self.strengths = (brightness, contrast, saturation)
        self.bound = 1.0

    def fit(self, x: torch.Tensor) -> None:
        check_image_channels(x, self.name)
        self.bound = image_bound(x, self.name)

    def ranges(self) -> list[tuple[float, float]]:
        return [(max(0.0, 1.0 - s), 1.0 + s) for s in self.strengths]

    def draw(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3) factors (brightness, contrast, saturation) and (N, 3) orders of the ops."""
        factors = torch.stack([uniform(x, lo, hi, gen) for lo, hi in self.ranges()], 1)
        order = torch.rand(len(x), 3, device=x.device, generator=gen).argsort(1)
        return factors, order

    @staticmethod
    def apply(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """Images x in [0, 1] jittered by per-sample factors, op order[i, k] as step k.

        Each op is a blend towards a target (0 for brightness, the mean gray for contrast, the
        gray image for saturation), so one step is one blend for the whole batch whatever op
        each sample takes there: no per-sample Python and no host synchronisation.
        """
        if x.shape[-3] == 1:  # saturation leaves one-channel images as they are (torchvision)
            factors = factors.clone()
            factors[:, SATURATION] = 1.0
        for step in range(3):
            op = order[:, step]
            f = factors.gather(1, op[:, None]).squeeze(1)
            gray = grayscale(x)
            mean = gray.mean(dim=(-3, -2, -1), keepdim=True)
            which = view_per_sample(op, x)
            target = torch.where(
                which == BRIGHTNESS, 0.0, torch.where(which == CONTRAST, mean, gray)
            )
            x = blend(x, target, f)
        return x

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        check_image_channels(x, self.name)
        factors, order = self.draw(x, gen)
        out = self.apply(_scale_to_unit(x, self.bound), factors, order)
        return _scale_from_unit(out, self.bound)

    def transform(self):
        from torchvision.transforms import v2

        return scaled(v2.ColorJitter(*self.strengths), self.bound)


# ---------------------------------------------------------------------------------------------
# PCA lighting


class PCALighting(Augment):
    """AlexNet's "fancy PCA" lighting (lecture 000; Krizhevsky et al. 2012, section 4.1).

    ``fit(x)``: the 3x3 covariance of all RGB pixels of the training sample (``torch.cov``,
    unbiased like ``numpy.cov``), its eigenvalues lambda_i and eigenvectors p_i (``eigh``,
    ascending). Per image: alpha_i ~ N(0, sigma^2), and every pixel gets the same offset

        [p1 p2 p3] [alpha_1 lambda_1, alpha_2 lambda_2, alpha_3 lambda_3]^T,

    the paper's formula with lambda_i itself, not sqrt(lambda_i) as some implementations
    (fb.resnet.torch, timm's ``Lighting``) use: with pixels in [0, 1] the shift is small
    (sigma lambda_1 is about 0.005 on natural images); raise sigma for more. Pixels are measured
    in units of the value bound (x / bound), so a sigma means the same on 0..1 and 0..255 data;
    the offset is added without clamping, as in the paper.

    Used before ``fit`` (the trainer always fits first), the first input seen is the sample.
    """

    dims = (2,)
    name = "pca_lighting"

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma
        self.bound = 1.0
        self.eigenvalues: torch.Tensor | None = None  # (3,) ascending
        self.eigenvectors: torch.Tensor | None = None  # (3, 3), columns p_i

    def fit(self, x: torch.Tensor) -> None:
        check_image_channels(x, self.name, channels=(3,))
        self.bound = image_bound(x, self.name)
        lam, vec = torch.linalg.eigh(pixel_covariance(x, self.bound))
        self.eigenvalues, self.eigenvectors = lam.float(), vec.float()

    def _fitted(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.eigenvalues is None or self.eigenvectors is None:
            self.fit(x if x.ndim == 4 else x[None])
        assert self.eigenvalues is not None and self.eigenvectors is not None
        return self.eigenvalues, self.eigenvectors

    def offsets(self, alpha: torch.Tensor) -> torch.Tensor:
        """(N, 3) offsets sum_i alpha_i lambda_i p_i (in raw units) for alphas (N, 3)."""
        lam, vec = self.eigenvalues, self.eigenvectors
        assert lam is not None and vec is not None
        lam, vec = lam.to(alpha.device, alpha.dtype), vec.to(alpha.device, alpha.dtype)
        return (alpha * lam) @ vec.T * self.bound

    def batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        check_image_channels(x, self.name, channels=(3,))
        self._fitted(x)
        alpha = self.sigma * torch.randn(len(x), 3, device=x.device, generator=gen)
        return x + self.offsets(alpha).to(x.dtype)[:, :, None, None]

    def transform(self):
        return _Lighting(self)


class _Lighting:
    """The CPU path: the same fitted eigenpairs, alphas from the global RNG (which the
    DataLoader seeds per sample)."""

    def __init__(self, aug: PCALighting) -> None:
        self.aug = aug

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        check_image_channels(img[None], self.aug.name, channels=(3,))
        self.aug._fitted(img)
        alpha = self.aug.sigma * torch.randn(1, 3)
        return img + self.aug.offsets(alpha).to(img.dtype).view(3, 1, 1)

    def __repr__(self) -> str:
        return f"PCALighting(sigma={self.aug.sigma})"


@AUGMENTS.register("color_jitter", moves_positions=False)
def color_jitter(
    *, brightness: NonNegative = 0.4, contrast: NonNegative = 0.4, saturation: NonNegative = 0.4
) -> Augment:
    """Brightness/contrast/saturation jitter: factors ~ U(max(0, 1-s), 1+s), random op order."""
    return ColorJitter(brightness, contrast, saturation)


@AUGMENTS.register("pca_lighting", moves_positions=False)
def pca_lighting(*, sigma: NonNegative = 0.1) -> Augment:
    """AlexNet PCA lighting: add sum_i alpha_i lambda_i p_i, alpha_i ~ N(0, sigma), per image."""
    return PCALighting(sigma)
