"""Input preprocessing (lectures 000 and 003), fitted on the training split only.

A preprocessor is an ``nn.Module`` whose statistics are buffers: ``fit`` on the training inputs,
then the same module transforms validation, test and any later input, and its ``state_dict`` is
saved beside the model weights so evaluation applies exactly what training used. For data that
lives on the device it is applied once to whole splits, so it costs nothing per step.

None of these is in torch or torchvision as a fitted transform (``Normalize`` needs the numbers
given), so the statistics are computed here: a mean, a std, or the eigen-decomposition of the
covariance for PCA/ZCA whitening (in float64, as the covariance of raw pixels is ill-conditioned).
"""

from __future__ import annotations

import torch
from torch import nn

from trainlab.registry import Registry

__all__ = ["PREPROCESSORS", "Preprocessor", "create_preprocessor"]

PREPROCESSORS = Registry("preprocess", "input normalisation fitted on train (preprocess.name)")


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


class PerChannel(Preprocessor):
    """(x - mean_c) / std_c with one mean/std per channel (VGG/ResNet), over N and positions."""

    def fit(self, x: torch.Tensor) -> PerChannel:
        dims = [0, *range(2, x.ndim)]
        shape = [1, x.shape[1]] + [1] * (x.ndim - 2)
        mean = x.mean(dims).reshape(shape)
        std = _safe_scale(x.std(dims).reshape(shape), self.eps)
        self._set(mean=mean, std=std)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


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


PREPROCESSORS.add("none", lambda *, eps=1e-5: Preprocessor(eps), "leave inputs as they are")
PREPROCESSORS.add(
    "zero_center", lambda *, eps=1e-5: ZeroCenter(eps), "subtract the mean per feature"
)
PREPROCESSORS.add(
    "standardize", lambda *, eps=1e-5: Standardize(eps), "(x - mean) / std per feature"
)
PREPROCESSORS.add(
    "per_channel", lambda *, eps=1e-5: PerChannel(eps), "mean/std per channel (VGG/ResNet)"
)
PREPROCESSORS.add(
    "mean_image", lambda *, eps=1e-5: ZeroCenter(eps), "subtract the mean image (AlexNet)"
)
PREPROCESSORS.add(
    "pca", lambda *, eps=1e-5: Whiten(eps), "PCA whitening (decorrelate, unit variance)"
)
PREPROCESSORS.add("zca", lambda *, eps=1e-5: ZcaWhiten(eps), "ZCA whitening (PCA rotated back)")


def create_preprocessor(name: str, eps: float) -> Preprocessor:
    """The registered preprocessor ``name`` (unfitted)."""
    return PREPROCESSORS.get(name).factory(eps=eps)
