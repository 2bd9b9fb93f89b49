"""Model families, each built from the recipe's activation, norm, dropout and init.

``create_model(cfg, in_shape, num_outputs)`` is the one entry point. ``in_shape`` is one example's
shape without the batch: (D,) for feature vectors, (C, L) for sequences, (C, H, W) for images; conv
models pick 1-D or 2-D layers from it, so the same recipe trains MNIST-1D and CIFAR-10.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainlab.errors import RecipeError
from trainlab.nn.activations import ACTIVATIONS, kaiming_nonlinearity
from trainlab.nn.init import INITS, init_model
from trainlab.nn.norms import NORMS
from trainlab.registry import Registry

if TYPE_CHECKING:
    from trainlab.recipe import ModelConfig

__all__ = ["MODELS", "create_model", "Layers"]

MODELS = Registry("model", "architectures (model.name); also tv.NAME and package.module:Class")


@dataclass(frozen=True)
class Layers:
    """The recipe's per-layer choices, as factories the architectures call for each layer."""

    act: Callable[[], nn.Module]
    norm: Callable[[int, int], nn.Module]  # (channels, dims) -> module
    dropout: float
    kernel_size: int
    has_norm: bool

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> Layers:
        act_spec, norm_spec = cfg.activation, cfg.norm
        ACTIVATIONS.build(act_spec.name, **act_spec.params())  # fail early on bad params

        def act() -> nn.Module:
            return ACTIVATIONS.build(act_spec.name, **act_spec.params())

        def norm(channels: int, dims: int) -> nn.Module:
            return NORMS.build(
                norm_spec.name, context={"channels": channels, "dims": dims}, **norm_spec.params()
            )

        return cls(act, norm, cfg.dropout, cfg.kernel_size, norm_spec.name != "none")

    def conv(self, dims: int, c_in: int, c_out: int, stride: int = 1, k: int | None = None):
        k = self.kernel_size if k is None else k
        cls = nn.Conv2d if dims == 2 else nn.Conv1d
        return cls(c_in, c_out, k, stride=stride, padding=k // 2, bias=not self.has_norm)

    def conv_unit(self, dims: int, c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
        """conv -> norm -> activation, the unit every conv model stacks."""
        return [self.conv(dims, c_in, c_out, stride), self.norm(c_out, dims), self.act()]

    def head(self, width: int, hidden: list[int], num_outputs: int) -> list[nn.Module]:
        """Fully connected layers with dropout before each (where the lecture applies it).

        Like VGG's and ResNet's heads they have no normalisation (instance or group norm over a
        feature vector would not be defined).
        """
        layers: list[nn.Module] = []
        for w in hidden:
            layers += [self.dropout_layer(), nn.Linear(width, w), self.act()]
            width = w
        return [*layers, self.dropout_layer(), nn.Linear(width, num_outputs)]

    def dropout_layer(self) -> nn.Module:
        return nn.Dropout(self.dropout) if self.dropout > 0 else nn.Identity()


def _spatial_dims(name: str, in_shape: tuple[int, ...]) -> int:
    if len(in_shape) not in (2, 3):
        raise RecipeError(
            f"model.name={name!r} needs (C, L) sequences or (C, H, W) images; "
            f"the data has examples of shape {tuple(in_shape)}: use model.name=mlp"
        )
    return len(in_shape) - 1


@MODELS.register("mlp")
def mlp(cfg: ModelConfig, layers: Layers, in_shape: tuple[int, ...], num_outputs: int):
    """Fully connected net: (Linear -> norm -> act -> dropout) for each of ``widths``."""
    width = int(torch.tensor(in_shape).prod())
    body: list[nn.Module] = [nn.Flatten()]
    for w in cfg.widths:
        body += [nn.Linear(width, w), layers.norm(w, 0), layers.act(), layers.dropout_layer()]
        width = w
    return nn.Sequential(*body, nn.Linear(width, num_outputs))


@MODELS.register("convnet")
def convnet(cfg: ModelConfig, layers: Layers, in_shape: tuple[int, ...], num_outputs: int):
    """VGG-style stages of ``depth`` 3x3 conv units, each stage ending in 2x max-pooling."""
    dims = _spatial_dims(cfg.name, in_shape)
    pool = nn.MaxPool2d if dims == 2 else nn.MaxPool1d
    size, c_in = min(in_shape[1:]), in_shape[0]
    body: list[nn.Module] = []
    for c_out in cfg.channels:
        for _ in range(cfg.depth):
            body += layers.conv_unit(dims, c_in, c_out)
            c_in = c_out
        if size >= 2:
            body.append(pool(2))
            size //= 2
    gap = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool1d(1)
    return nn.Sequential(*body, gap, nn.Flatten(), *layers.head(c_in, cfg.widths, num_outputs))


class BasicBlock(nn.Module):
    """ResNet basic block: two conv units, identity (or 1x1 projection) shortcut, act after add."""

    def __init__(self, layers: Layers, dims: int, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = layers.conv(dims, c_in, c_out, stride)
        self.norm1 = layers.norm(c_out, dims)
        self.act1 = layers.act()
        self.conv2 = layers.conv(dims, c_out, c_out)
        self.norm2 = layers.norm(c_out, dims)
        self.act2 = layers.act()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                layers.conv(dims, c_in, c_out, stride, k=1), layers.norm(c_out, dims)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        return self.act2(self.norm2(self.conv2(out)) + self.shortcut(x))

    @torch.no_grad()
    def zero_init_residual(self) -> None:
        """Make the block start as the identity: Var(F(x) + x) = Var(x) (lecture 000)."""
        weight = getattr(self.norm2, "weight", None)
        nn.init.zeros_(weight if weight is not None else self.conv2.weight)


@MODELS.register("resnet")
def resnet(cfg: ModelConfig, layers: Layers, in_shape: tuple[int, ...], num_outputs: int):
    """ResNet of basic blocks: a conv stem, ``depth`` blocks per stage, stride 2 between stages."""
    dims = _spatial_dims(cfg.name, in_shape)
    body: list[nn.Module] = layers.conv_unit(dims, in_shape[0], cfg.channels[0])
    c_in = cfg.channels[0]
    for i, c_out in enumerate(cfg.channels):
        for j in range(cfg.depth):
            stride = 2 if (i > 0 and j == 0) else 1
            body.append(BasicBlock(layers, dims, c_in, c_out, stride))
            c_in = c_out
    gap = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool1d(1)
    return nn.Sequential(*body, gap, nn.Flatten(), *layers.head(c_in, cfg.widths, num_outputs))


def _torchvision(cfg: ModelConfig, layers: Layers, num_outputs: int) -> nn.Module:
    import torchvision

    name = cfg.name.removeprefix("tv.")
    if name not in torchvision.models.list_models():
        raise RecipeError(f"model.name={cfg.name!r}: torchvision has no model {name!r}")
    model = torchvision.models.get_model(name, weights=None, num_classes=num_outputs, **cfg.kwargs)
    _swap(model, nn.ReLU, layers.act)
    if cfg.norm.name != "batch":
        _swap(model, nn.BatchNorm2d, lambda m: layers.norm(m.num_features, 2), pass_module=True)
    return model


def _swap(model: nn.Module, cls: type, make: Callable, pass_module: bool = False) -> None:
    """Replace every submodule of type ``cls`` (torchvision hard-codes ReLU and BatchNorm)."""
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if type(child) is cls:
                setattr(parent, child_name, make(child) if pass_module else make())


def _user_class(cfg: ModelConfig, in_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    module_name, _, cls_name = cfg.name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise RecipeError(f"model.name={cfg.name!r}: cannot import ({exc})") from None
    accepted = inspect.signature(cls).parameters
    extra: dict[str, Any] = {}
    if "num_classes" in accepted:
        extra["num_classes"] = num_outputs
    if "in_shape" in accepted:
        extra["in_shape"] = tuple(in_shape)
    model = cls(**extra, **cfg.kwargs)
    if not isinstance(model, nn.Module):
        raise RecipeError(f"model.name={cfg.name!r}: {cls_name} is not a torch.nn.Module")
    return model


def create_model(cfg: ModelConfig, in_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """Build, initialise and (if asked) zero-init the residual branches of the recipe's model."""
    layers = Layers.from_config(cfg)
    if cfg.dropout and (cfg.name.startswith("tv.") or ":" in cfg.name):
        raise RecipeError(
            f"model.dropout applies to trainlab's own models; {cfg.name!r} sets its own dropout "
            "(pass it in model.kwargs if its constructor takes one)"
        )
    if cfg.name.startswith("tv."):
        model = _torchvision(cfg, layers, num_outputs)
    elif ":" in cfg.name:
        model = _user_class(cfg, in_shape, num_outputs)
    else:
        model = MODELS.get(cfg.name).factory(cfg, layers, tuple(in_shape), num_outputs)
    act = kaiming_nonlinearity(cfg.activation.name, cfg.activation.params())
    init_model(model, INITS.build(cfg.init.name, context={"activation": act}, **cfg.init.params()))
    if cfg.zero_init_residual:
        _zero_init_residuals(model, cfg.name)
    return model


@torch.no_grad()
def _zero_init_residuals(model: nn.Module, name: str) -> None:
    """Zero the last norm of every residual branch (ours, or torchvision's bn2/bn3)."""
    from torchvision.models.resnet import BasicBlock as TvBasic
    from torchvision.models.resnet import Bottleneck as TvBottleneck

    found = 0
    for m in model.modules():
        if isinstance(m, BasicBlock):
            m.zero_init_residual()
        elif isinstance(m, TvBasic | TvBottleneck):
            last = m.bn3 if isinstance(m, TvBottleneck) else m.bn2
            nn.init.zeros_(last.weight) if getattr(last, "weight", None) is not None else None
        else:
            continue
        found += 1
    if not found:
        raise RecipeError(f"model.zero_init_residual: {name!r} has no residual blocks")
