"""Weight initialisation by name (lecture 000), applied by layer type.

Every Linear and Conv weight gets the chosen init; biases start at zero; normalisation layers
start as the identity (weight 1, bias 0). Conv fan-in is k*k*C_in, which is what
``torch.nn.init`` computes from the weight's shape. Kaiming's gain follows the model's activation
unless the recipe names a ``nonlinearity``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from trainlab.registry import Registry
from trainlab.types import Positive

FanMode = Literal["fan_in", "fan_out"]
Gain = Literal["auto", "linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]

__all__ = ["INITS", "init_model", "WEIGHTED"]

INITS = Registry("init", "weight initialisation schemes (model.init)")
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
WeightInit = Callable[[torch.Tensor], None]


@INITS.register("default")
def default(*, activation: tuple[str, float]) -> WeightInit | None:
    """Leave PyTorch's own per-layer default (kaiming_uniform with a=sqrt(5)) untouched."""
    return None


@INITS.register("zeros")
def zeros(*, activation: tuple[str, float]) -> WeightInit:
    """All weights 0: every unit computes the same thing (the lecture's symmetry problem)."""
    return nn.init.zeros_


@INITS.register("normal")
def normal(*, std: Positive = 0.01, activation: tuple[str, float]) -> WeightInit:
    """Small gaussian, W = std * randn (the lecture's 0.01 * np.random.randn)."""
    return lambda w: nn.init.normal_(w, 0.0, std)


@INITS.register("xavier_normal")
def xavier_normal(*, gain: Positive = 1.0, activation: tuple[str, float]) -> WeightInit:
    """Glorot normal: std = gain * sqrt(2 / (fan_in + fan_out))."""
    return lambda w: nn.init.xavier_normal_(w, gain=gain)


@INITS.register("xavier_uniform")
def xavier_uniform(*, gain: Positive = 1.0, activation: tuple[str, float]) -> WeightInit:
    """Glorot uniform: bound = gain * sqrt(6 / (fan_in + fan_out))."""
    return lambda w: nn.init.xavier_uniform_(w, gain=gain)


@INITS.register("lecun_normal")
def lecun_normal(*, activation: tuple[str, float]) -> WeightInit:
    """The lecture's "Xavier": std = 1/sqrt(fan_in) (what SELU's self-normalisation assumes)."""
    return lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="linear")


def _kaiming(fn: Callable, mode: str, nonlinearity: str, activation: tuple[str, float]):
    if nonlinearity in ("auto", activation[0]):
        name, param = activation
    else:
        name, param = nonlinearity, 0.0
    return lambda w: fn(w, a=param, mode=mode, nonlinearity=name)


@INITS.register("kaiming_normal")
def kaiming_normal(
    *, mode: FanMode = "fan_in", nonlinearity: Gain = "auto", activation: tuple[str, float]
) -> WeightInit:
    """He normal: std = gain / sqrt(fan), gain sqrt(2) for ReLU (sqrt(2/(1+a^2)) for leaky)."""
    return _kaiming(nn.init.kaiming_normal_, mode, nonlinearity, activation)


@INITS.register("kaiming_uniform")
def kaiming_uniform(
    *, mode: FanMode = "fan_in", nonlinearity: Gain = "auto", activation: tuple[str, float]
) -> WeightInit:
    """He uniform: bound = gain * sqrt(3 / fan)."""
    return _kaiming(nn.init.kaiming_uniform_, mode, nonlinearity, activation)


@INITS.register("orthogonal")
def orthogonal(*, gain: Positive = 1.0, activation: tuple[str, float]) -> WeightInit:
    """(Semi-)orthogonal weights (Saxe et al., 2013), scaled by ``gain``."""
    return lambda w: nn.init.orthogonal_(w, gain=gain)


@torch.no_grad()
def init_model(model: nn.Module, weight_init: WeightInit | None) -> None:
    """Apply ``weight_init`` to every Linear/Conv weight; zero biases; norms to identity.

    ``None`` (the ``default`` init) keeps PyTorch's defaults everywhere.
    """
    if weight_init is None:
        return
    for module in model.modules():
        if isinstance(module, WEIGHTED):
            weight_init(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, NORM_LAYERS) and getattr(module, "weight", None) is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
