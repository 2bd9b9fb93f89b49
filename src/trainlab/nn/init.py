"""Weight initialisation by name (lecture 000), applied by layer type.

Every Linear and Conv weight gets the chosen init; biases start at zero; normalisation layers
start as the identity (weight 1, bias 0). Conv fan-in is k*k*C_in, which is what
``torch.nn.init`` computes from the weight's shape. Kaiming's gain follows the model's activation
unless the recipe names a ``nonlinearity``.

A data-dependent init (``lsuv``) is a :class:`DataDependentInit`: ``init_model`` applies its
per-weight part, then ``fit(model, sample)`` adjusts the weights on a batch of training inputs.
Such entries are registered with ``needs_sample=True`` so the model builder can ask for data.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import nn

from trainlab.registry import Registry
from trainlab.types import Positive, PositiveInt

FanMode = Literal["fan_in", "fan_out"]
Gain = Literal["auto", "linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]

__all__ = ["INITS", "DataDependentInit", "LSUV", "init_model", "lsuv_", "WEIGHTED"]

INITS = Registry("init", "weight initialisation schemes (model.init)")
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
WeightInit = Callable[[torch.Tensor], None]


@runtime_checkable
class DataDependentInit(Protocol):
    """A per-weight init (``__call__``) followed by a pass over data (``fit``)."""

    def __call__(self, weight: torch.Tensor) -> None: ...

    def fit(self, model: nn.Module, sample: torch.Tensor) -> dict[str, float]: ...


@INITS.register("keep")
def keep(*, activation: tuple[str, float]) -> WeightInit | None:
    """Keep the weights the constructor made (the default for your own and torchvision's models)."""
    return None


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


@dataclass(frozen=True)
class LSUV:
    """Layer-sequential unit-variance init (Mishkin and Matas 2016, "All you need is a good init").

    Step 1 (``__call__``, per weight): orthonormal weights (Saxe et al.). Step 2 (:meth:`fit`):
    :func:`lsuv_` rescales each layer, in forward order, to unit output variance on a batch.
    """

    tol: float = 0.1
    max_iter: int = 10

    def __call__(self, weight: torch.Tensor) -> None:
        nn.init.orthogonal_(weight)

    def fit(self, model: nn.Module, sample: torch.Tensor) -> dict[str, float]:
        return lsuv_(model, sample, tol=self.tol, max_iter=self.max_iter)


@INITS.register("lsuv", needs_sample=True)
def lsuv(*, tol: Positive = 0.1, max_iter: PositiveInt = 10, activation: tuple[str, float]) -> LSUV:
    """Orthonormal, then each layer rescaled to unit output variance on a data batch (LSUV)."""
    return LSUV(tol=tol, max_iter=max_iter)


class _Stop(Exception):
    """Raised by a measuring hook: the rest of the forward pass is not needed."""


def _forward_order(model: nn.Module, sample: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """Linear/Conv layers in the order a forward pass on ``sample`` first calls them."""
    names = {m: n for n, m in model.named_modules() if isinstance(m, WEIGHTED)}
    order: dict[nn.Module, str] = {}

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        order.setdefault(module, names[module])  # (a hook's return value would replace output)

    handles = [m.register_forward_hook(record) for m in names]
    try:
        model(sample)
    finally:
        for handle in handles:
            handle.remove()
    return [(name, module) for module, name in order.items()]


def _output_var(model: nn.Module, layer: nn.Module, sample: torch.Tensor) -> float:
    """Variance of ``layer``'s output over the whole batch (all units, positions, examples)."""
    seen: list[float] = []

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen.append(output.detach().double().var().item())
        raise _Stop

    handle = layer.register_forward_hook(hook)
    try:
        model(sample)
    except _Stop:
        pass
    finally:
        handle.remove()
    return seen[0]


@contextlib.contextmanager
def _measuring(model: nn.Module) -> Iterator[None]:
    """The network as training sees it on average, leaving no trace on the model.

    Batch norm runs in train mode, as in the paper (LSUV measures the pre-BN output, and the
    layers after a BN see batch-normalised inputs, as they will in training); its running
    statistics are restored afterwards, so these passes do not count as training data. Dropout,
    DropConnect, stochastic depth and fractional pooling run in eval mode: their noise would
    make each measured variance a random number.
    """
    modes = {m: m.training for m in model.modules()}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    model.eval()
    for m in model.modules():
        if isinstance(m, BATCH_NORMS):
            m.train()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode
        for name, b in model.named_buffers():
            b.copy_(buffers[name])


@torch.no_grad()
def lsuv_(
    model: nn.Module, sample: torch.Tensor, tol: float = 0.1, max_iter: int = 10
) -> dict[str, float]:
    """Rescale every Linear/Conv weight, in forward order, to unit output variance on ``sample``.

    The paper's loop: measure Var(output); while |Var - 1| >= tol (at most ``max_iter`` times),
    divide the weight by sqrt(Var) and measure again. Biases are zeroed, so the output scales
    exactly with the weight and one step usually suffices. Rescaling a layer changes every layer
    after it, hence the forward order. A layer whose output is constant (a zero-initialised
    residual branch) cannot be rescaled and is left as it is. Returns each layer's final variance.
    """
    if sample.shape[0] < 2:
        raise ValueError(f"LSUV needs a batch of at least 2 examples, got {tuple(sample.shape)}")
    variances: dict[str, float] = {}
    with _measuring(model):
        for name, layer in _forward_order(model, sample):
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
            var = _output_var(model, layer, sample)
            for _ in range(max_iter):
                if abs(var - 1.0) < tol or not math.isfinite(var) or var < 1e-12:
                    break
                layer.weight.div_(math.sqrt(var))
                var = _output_var(model, layer, sample)
            variances[name] = var
    return variances


@torch.no_grad()
def init_model(model: nn.Module, weight_init: WeightInit | None) -> None:
    """Apply ``weight_init`` to every Linear/Conv weight; zero biases; norms to identity.

    ``None`` (``keep``, ``default``) leaves the weights as the constructor made them.
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
