"""Activation functions by name (lecture 000): each factory returns a fresh ``nn.Module``.

All are torch's own modules; the lecture's constants (SELU's alpha and lambda, GELU's erf form and
its tanh approximation) are torch's, checked in the tests against the lecture's formulas.
"""

from __future__ import annotations

from torch import nn

from trainlab.registry import Registry
from trainlab.types import NonNegative, Positive

__all__ = ["ACTIVATIONS", "kaiming_nonlinearity"]

ACTIVATIONS = Registry("activation", "elementwise nonlinearities (model.activation)")


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
    return "linear", 0.0
