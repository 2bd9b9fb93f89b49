"""Input preprocessing (lectures 000 and 003), fitted on the training split only.

A preprocessor is an ``nn.Module`` whose statistics are buffers: ``fit`` on the training inputs,
then the same module transforms validation, test and any later input, and its ``state_dict`` is
saved beside the model weights so evaluation applies exactly what training used. For data that
lives on the device it is applied once to whole splits, so it costs nothing per step.

None of these is in torch or torchvision as a fitted transform (``Normalize`` needs the numbers
given), so the statistics are computed here: a mean, a std, or the eigen-decomposition of the
covariance for PCA/ZCA whitening (in float64, as the covariance of raw pixels is ill-conditioned).

The schema's default, ``auto``, is no preprocessor of its own: the builder replaces it by
``per_channel`` or ``standardize`` once the data's shape is known (:func:`resolve_preprocess_name`).
Entries registered with ``per_position_scale=True`` divide or rotate by statistics fitted per
input position; the recipe refuses them beside an augmentation that moves positions.
"""

from __future__ import annotations

import torch
from torch import nn

from trainlab.errors import RecipeError
from trainlab.registry import Registry

__all__ = [
    "AUTO",
    "PREPROCESSORS",
    "Preprocessor",
    "create_preprocessor",
    "resolve_preprocess_name",
]

PREPROCESSORS = Registry("preprocess", "input normalisation fitted on train (preprocess.name)")

AUTO = "auto"  # the schema's default: resolved from the data's shape by the builder
SPATIAL_DEFAULT, FLAT_DEFAULT = "per_channel", "standardize"


class Preprocessor(nn.Module):
    """Base: identity. Subclasses fill buffers in ``fit`` and use them in ``forward``."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def fit(self, x: torch.Tensor) -> Preprocessor:
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _set(self, **buffers: torch.Tensor) -> None:
        for name, value in buffers.items():
            self.register_buffer(name, value.float().contiguous())

    def init_buffers(self, in_shape: tuple[int, ...]) -> None:
        """Create zero buffers of the fitted shapes, so a saved state can be loaded into them."""
        self.fit(torch.zeros(2, *in_shape))


def _safe_scale(std: torch.Tensor, eps: float) -> torch.Tensor:
    """std, but 1 where a feature is (nearly) constant on train, as scikit-learn does: dividing
    by eps would blow up any test value that differs from the constant (image borders)."""
    return torch.where(std < eps, torch.ones_like(std), std)


class Standardize(Preprocessor):
    """(x - mean) / std per feature (every input position has its own statistics)."""

    center, scale = True, True

    def fit(self, x: torch.Tensor) -> Standardize:
        mean = x.mean(0, keepdim=True) if self.center else torch.zeros_like(x[:1])
        std = x.std(0, keepdim=True) if self.scale else torch.ones_like(x[:1])
        self._set(mean=mean, std=_safe_scale(std, self.eps))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ZeroCenter(Standardize):
    """x - mean per feature; on images this is AlexNet's mean-image subtraction."""

    scale = False


def _channel_axes(x: torch.Tensor) -> tuple[list[int], list[int]]:
    """The axes a per-channel statistic reduces over (N and every position) and the shape
    that broadcasts it back, (1, C, 1, ...)."""
    return [0, *range(2, x.ndim)], [1, x.shape[1]] + [1] * (x.ndim - 2)


class PerChannel(Preprocessor):
    """(x - mean_c) / std_c with one mean/std per channel (VGG/ResNet), over N and positions."""

    def fit(self, x: torch.Tensor) -> PerChannel:
        dims, shape = _channel_axes(x)
        mean = x.mean(dims).reshape(shape)
        std = _safe_scale(x.std(dims).reshape(shape), self.eps)
        self._set(mean=mean, std=std)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PerChannelMean(Preprocessor):
    """x - mean_c with one mean per channel over N and positions, no division: VGG's "subtract
    per-channel mean" (lecture 000), which keeps the raw scale for a net with batch norm."""

    def fit(self, x: torch.Tensor) -> PerChannelMean:
        dims, shape = _channel_axes(x)
        self._set(mean=x.mean(dims).reshape(shape))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.mean


class Whiten(Preprocessor):
    """PCA whitening: rotate onto the covariance eigenvectors, divide by sqrt(eigenvalue + eps).

    The result has identity covariance (on train). ``zca`` rotates back into input space, which
    keeps images looking like images (used for CIFAR); plain PCA leaves the decorrelated
    coordinates, reshaped to the input's shape so any model still accepts them.
    """

    zca = False

    def fit(self, x: torch.Tensor) -> Whiten:
        flat = x.reshape(len(x), -1).double()
        mean = flat.mean(0, keepdim=True)
        cov = (flat - mean).T @ (flat - mean) / max(1, len(flat) - 1)
        eigval, eigvec = torch.linalg.eigh(cov)
        eigval, eigvec = eigval.flip(0).clamp_min(0.0), eigvec.flip(1)  # largest first
        proj = eigvec / torch.sqrt(eigval + self.eps)
        if self.zca:
            proj = proj @ eigvec.T
        self._set(mean=mean, proj=proj)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)  # not reshape(len(x), -1): an exported graph keeps the batch free
        return ((flat - self.mean) @ self.proj).reshape(x.shape)


class ZcaWhiten(Whiten):
    """ZCA whitening: PCA whitening rotated back, W = U diag(1/sqrt(l + eps)) U^T."""

    zca = True


@PREPROCESSORS.register(
    AUTO,
    f"the default: {SPATIAL_DEFAULT} for (C, ...) images and sequences, {FLAT_DEFAULT} for "
    "(D,) feature vectors (picked from the data)",
)
def _auto(*, eps: float = 1e-5) -> Preprocessor:
    """Never built itself: :func:`resolve_preprocess_name` replaces it once the shape is known."""
    raise RecipeError(
        f"preprocess.name={AUTO}: chosen from the data's shape when the run is built; "
        "create_preprocessor needs in_shape to resolve it"
    )


PREPROCESSORS.add("none", lambda *, eps=1e-5: Preprocessor(eps), "leave inputs as they are")
PREPROCESSORS.add(
    "zero_center", lambda *, eps=1e-5: ZeroCenter(eps), "subtract the mean per feature"
)
PREPROCESSORS.add(
    "standardize",
    lambda *, eps=1e-5: Standardize(eps),
    "(x - mean) / std per feature",
    per_position_scale=True,
)
PREPROCESSORS.add(
    "per_channel", lambda *, eps=1e-5: PerChannel(eps), "mean/std per channel (VGG/ResNet)"
)
PREPROCESSORS.add(
    "per_channel_mean",
    lambda *, eps=1e-5: PerChannelMean(eps),
    "subtract the mean per channel only (VGG)",
)
PREPROCESSORS.add(
    "mean_image", lambda *, eps=1e-5: ZeroCenter(eps), "subtract the mean image (AlexNet)"
)
PREPROCESSORS.add(
    "pca",
    lambda *, eps=1e-5: Whiten(eps),
    "PCA whitening (decorrelate, unit variance)",
    per_position_scale=True,
)
PREPROCESSORS.add(
    "zca",
    lambda *, eps=1e-5: ZcaWhiten(eps),
    "ZCA whitening (PCA rotated back)",
    per_position_scale=True,
)


def resolve_preprocess_name(name: str, in_shape: tuple[int, ...]) -> str:
    """The concrete preprocessor for ``name`` on examples of shape ``in_shape`` (no batch dim).

    ``auto`` is per_channel when examples have spatial dimensions, (C, L) or (C, H, W):
    augmentation runs on raw inputs before preprocessing, so any shift, crop or flip moves
    values onto positions whose per-position std (standardize) can be tiny, and the
    preprocessed values then reach hundreds; one statistic per channel is the same at every
    position. Flat (D,) feature vectors have no positions to move and keep standardize, the
    per-feature scaling their features' different units need. Other names pass through.
    """
    if name != AUTO:
        return name
    return SPATIAL_DEFAULT if len(in_shape) >= 2 else FLAT_DEFAULT


def create_preprocessor(
    name: str, eps: float, in_shape: tuple[int, ...] | None = None
) -> Preprocessor:
    """The registered preprocessor ``name`` (unfitted); ``auto`` needs ``in_shape`` to pick one
    (see :func:`resolve_preprocess_name`)."""
    if in_shape is not None:
        name = resolve_preprocess_name(name, tuple(in_shape))
    return PREPROCESSORS.get(name).factory(eps=eps)
