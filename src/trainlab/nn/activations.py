"""Activation functions by name (lecture 000): each factory returns a fresh ``nn.Module``.

The elementwise ones are torch's own modules; the lecture's constants (SELU's alpha and lambda,
GELU's erf form and its tanh approximation) are torch's, checked in the tests against the
lecture's formulas. SwiGLU and Maxout are written here (torch has neither as a module): they are
not elementwise but map ``expansion * w`` channels to ``w``, so the layer before them is widened
by :func:`width_expansion` of the unit (see ``Layers`` in ``models.py``).
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from trainlab.registry import Registry
from trainlab.types import NonNegative, Positive

__all__ = ["ACTIVATIONS", "Maxout", "SwiGLU", "kaiming_nonlinearity", "width_expansion"]

Pieces = Annotated[int, Field(ge=2)]

ACTIVATIONS = Registry(
    "activation", "nonlinearities (model.activation); swiglu and maxout widen the layer before"
)


@ACTIVATIONS.register("sigmoid")
def sigmoid() -> nn.Module:
    """1 / (1 + exp(-x)): saturates and is not zero-centred (lecture 000)."""
    return nn.Sigmoid()


@ACTIVATIONS.register("tanh")
def tanh() -> nn.Module:
    """tanh(x): zero-centred, still saturates."""
    return nn.Tanh()


@ACTIVATIONS.register("relu")
def relu() -> nn.Module:
    """max(0, x): the default choice; units can die."""
    return nn.ReLU()


@ACTIVATIONS.register("leaky_relu")
def leaky_relu(*, alpha: NonNegative = 0.01) -> nn.Module:
    """max(alpha*x, x) with a fixed slope alpha (the lecture suggests 0.1)."""
    return nn.LeakyReLU(negative_slope=alpha)


@ACTIVATIONS.register("prelu")
def prelu(*, init: NonNegative = 0.25) -> nn.Module:
    """max(alpha*x, x) with alpha learned by backprop (one alpha per layer)."""
    return nn.PReLU(init=init)


@ACTIVATIONS.register("elu")
def elu(*, alpha: Positive = 1.0) -> nn.Module:
    """x if x > 0 else alpha*(exp(x) - 1)."""
    return nn.ELU(alpha=alpha)


@ACTIVATIONS.register("selu")
def selu() -> nn.Module:
    """lambda * elu(x, alpha) with the self-normalising constants (1.0507..., 1.6732...)."""
    return nn.SELU()


@ACTIVATIONS.register("gelu")
def gelu() -> nn.Module:
    """x * Phi(x) = x/2 * (1 + erf(x / sqrt 2)), exact."""
    return nn.GELU(approximate="none")


@ACTIVATIONS.register("gelu_tanh")
def gelu_tanh() -> nn.Module:
    """GELU with the tanh approximation used by BERT/GPT-2."""
    return nn.GELU(approximate="tanh")


@ACTIVATIONS.register("silu")
def silu() -> nn.Module:
    """x * sigmoid(x) (Ramachandran et al.'s swish with beta = 1)."""
    return nn.SiLU()


@ACTIVATIONS.register("swish")
def swish() -> nn.Module:
    """Alias of silu: x * sigmoid(x)."""
    return nn.SiLU()


class SwiGLU(nn.Module):
    """SwiGLU(a, b) = silu(a) * b on the two halves of ``dim`` (Shazeer 2020, arXiv 2002.05202).

    The paper's ``Swish(xW) * (xV)`` with both projections fused into the layer before, which
    produces ``2 w`` channels: ``a`` is the first half (gate), ``b`` the second (value).
    """

    expansion = 2

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=self.dim)
        return F.silu(a) * b

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Maxout(nn.Module):
    """Maxout (Goodfellow et al. 2013): the max over ``k`` pieces of each unit.

    The layer before produces ``k w`` channels; unit ``i`` is the max over the consecutive
    channels ``i k .. i k + k - 1`` (pylearn2's grouping; any fixed grouping is equivalent since
    the layer before is learned). Channel-wise for conv maps: spatial positions stay separate.
    """

    def __init__(self, k: int = 2, dim: int = 1) -> None:
        super().__init__()
        self.k, self.dim = k, dim
        self.expansion = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.dim % x.ndim
        channels = x.shape[dim]
        if channels % self.k:
            raise ValueError(f"maxout: {channels} channels are not a multiple of k={self.k}")
        pieces = x.unflatten(dim, (channels // self.k, self.k))
        return pieces.amax(dim=dim + 1)

    def extra_repr(self) -> str:
        return f"k={self.k}, dim={self.dim}"


@ACTIVATIONS.register("swiglu")
def swiglu() -> nn.Module:
    """silu(a) * b over channel halves: the layer before is widened 2x (Shazeer 2020)."""
    return SwiGLU()


@ACTIVATIONS.register("maxout")
def maxout(*, k: Pieces = 2) -> nn.Module:
    """Max over k linear pieces per unit: the layer before is widened k x (Goodfellow 2013)."""
    return Maxout(k)


def width_expansion(unit: nn.Module) -> int:
    """How many channels per output channel ``unit`` consumes (1 for elementwise units)."""
    return int(getattr(unit, "expansion", 1))


# g with g^2 E[silu(g z)^2] = 1 for z ~ N(0, 1): a Kaiming-scaled Linear (std g / sqrt(fan_in))
# followed by SwiGLU keeps a unit second moment at one. Solved by quadrature and bisection;
# tests/nn/test_activations.py re-derives it. SwiGLU is quadratic in its input, so no gain is
# scale-free: this is the fixed point at unit variance (the scale that preprocessing gives).
SWIGLU_GAIN = 1.2688162613512


def _maxout_gain(k: int) -> float:
    """1 / sqrt(E[max of k iid N(0, 1)]^2): the gain that keeps He's second moment at one.

    E[max^2] is 1 for k = 2 (max and -min have the same law), and grows with k; computed by
    quadrature of z^2 times the max's density k phi(z) Phi(z)^(k-1).
    """
    z = torch.linspace(-12.0, 12.0, 24001, dtype=torch.float64)
    phi = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    density = k * phi * torch.special.ndtr(z) ** (k - 1)
    second_moment = float((z * z * density).sum() * (z[1] - z[0]))
    return 1.0 / math.sqrt(second_moment)


def _as_leaky_slope(gain: float) -> float:
    """The slope ``a`` whose leaky-ReLU gain sqrt(2 / (1 + a^2)) is ``gain``.

    ``nn.init.calculate_gain`` knows no gated or maxout unit; this expresses their gain in a form
    that ``kaiming_*_`` accepts, so the init code needs no special case.
    """
    return math.sqrt(2.0 / gain**2 - 1.0)


def kaiming_nonlinearity(activation: str, params: dict) -> tuple[str, float]:
    """(nonlinearity, param) for ``nn.init.calculate_gain`` that matches a recipe activation.

    Kaiming's gain depends on the activation that follows the layer; picking it automatically
    avoids the lecture's "Xavier + ReLU collapses" mistake when a user switches activations.
    """
    if activation in {"leaky_relu"}:
        return "leaky_relu", float(params.get("alpha", 0.01))
    if activation == "prelu":
        return "leaky_relu", float(params.get("init", 0.25))
    if activation in {"tanh", "sigmoid"}:
        return activation, 0.0
    if activation == "selu":  # self-normalisation assumes LeCun's std = 1/sqrt(fan_in)
        return "linear", 0.0
    if activation in {"relu", "elu", "gelu", "gelu_tanh", "silu", "swish"}:
        return "relu", 0.0
    if activation == "swiglu":
        return "leaky_relu", _as_leaky_slope(SWIGLU_GAIN)
    if activation == "maxout":
        return "leaky_relu", _as_leaky_slope(_maxout_gain(int(params.get("k", 2))))
    return "linear", 0.0
