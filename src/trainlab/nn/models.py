"""Model families, each built from the recipe's activation, norm, regularisers and init.

``create_model(cfg, in_shape, num_outputs, sample=None)`` is the one entry point. ``in_shape`` is
one example's shape without the batch: (D,) for feature vectors, (C, L) for sequences, (C, H, W)
for images; conv models pick 1-D or 2-D layers from it, so the same recipe trains MNIST-1D and
CIFAR-10. ``sample`` is a batch of training inputs for data-dependent inits (``lsuv``).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import torch
from pydantic import Field
from torch import nn

from trainlab.errors import RecipeError
from trainlab.nn.activations import ACTIVATIONS, kaiming_nonlinearity, width_expansion
from trainlab.nn.init import INITS, DataDependentInit, init_model
from trainlab.nn.norms import NORMS
from trainlab.nn.regularizers import (
    BranchDrop,
    DropConnectConv1d,
    DropConnectConv2d,
    DropConnectLinear,
    FractionalMaxPool,
    survival_probabilities,
)
from trainlab.registry import Registry
from trainlab.types import PositiveInt

if TYPE_CHECKING:
    from trainlab.recipe import ModelConfig

__all__ = ["MODELS", "create_model", "Layers"]

MODELS = Registry("model", "architectures (model.name); also tv.NAME and package.module:Class")


@dataclass(frozen=True)
class Layers:
    """The recipe's per-layer choices, as factories the architectures call for each layer.

    ``expansion`` is how many channels the activation consumes per channel it returns (2 for
    SwiGLU, k for Maxout, 1 for elementwise units): a layer followed by the activation produces
    ``expansion`` times its nominal width, and its norm normalises that wider output.
    ``dropconnect`` > 0 makes every Linear/Conv a DropConnect layer with that drop probability.
    """

    act: Callable[[], nn.Module]
    norm: Callable[[int, int], nn.Module]  # (channels, dims) -> module
    dropout: float
    kernel_size: int
    has_norm: bool
    expansion: int = 1
    dropconnect: float = 0.0

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> Layers:
        act_spec, norm_spec = cfg.activation, cfg.norm
        probe = ACTIVATIONS.build(act_spec.name, **act_spec.params())  # fail early on bad params

        def act() -> nn.Module:
            return ACTIVATIONS.build(act_spec.name, **act_spec.params())

        def norm(channels: int, dims: int) -> nn.Module:
            return NORMS.build(
                norm_spec.name, context={"channels": channels, "dims": dims}, **norm_spec.params()
            )

        has_norm = norm_spec.name != "none"
        expansion = width_expansion(probe)
        return cls(act, norm, cfg.dropout, cfg.kernel_size, has_norm, expansion, cfg.dropconnect)

    def linear(self, d_in: int, d_out: int) -> nn.Linear:
        if self.dropconnect > 0:
            return DropConnectLinear(d_in, d_out, p=self.dropconnect)
        return nn.Linear(d_in, d_out)

    def conv(self, dims: int, c_in: int, c_out: int, stride: int = 1, k: int | None = None):
        k = self.kernel_size if k is None else k
        args = (c_in, c_out, k)
        kwargs: dict[str, Any] = {"stride": stride, "padding": k // 2, "bias": not self.has_norm}
        if self.dropconnect > 0:
            cls = DropConnectConv2d if dims == 2 else DropConnectConv1d
            return cls(*args, p=self.dropconnect, **kwargs)
        return (nn.Conv2d if dims == 2 else nn.Conv1d)(*args, **kwargs)

    def conv_unit(self, dims: int, c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
        """conv -> norm -> activation, the unit every conv model stacks (c_out channels out)."""
        wide = c_out * self.expansion
        return [self.conv(dims, c_in, wide, stride), self.norm(wide, dims), self.act()]

    def head(self, width: int, hidden: list[int], num_outputs: int) -> list[nn.Module]:
        """Fully connected layers with dropout before each (where the lecture applies it).

        Like VGG's and ResNet's heads they have no normalisation (instance or group norm over a
        feature vector would not be defined).
        """
        layers: list[nn.Module] = []
        for w in hidden:
            layers += [self.dropout_layer(), self.linear(width, w * self.expansion), self.act()]
            width = w
        return [*layers, self.dropout_layer(), self.linear(width, num_outputs)]

    def dropout_layer(self) -> nn.Module:
        return nn.Dropout(self.dropout) if self.dropout > 0 else nn.Identity()


def _spatial_dims(name: str, in_shape: tuple[int, ...]) -> int:
    if len(in_shape) not in (2, 3):
        raise RecipeError(
            f"model.name={name!r} needs (C, L) sequences or (C, H, W) images; "
            f"the data has examples of shape {tuple(in_shape)}: use model.name=mlp"
        )
    return len(in_shape) - 1


# The architectures' keyword parameters with a default are the model-section keys each one
# reads (``trainlab list model`` shows them; create_model passes each only those it declares).
# Their defaults repeat the schema's (trainlab.recipe.ModelConfig, the one place a recipe's
# defaults are stated), which nn cannot import: the schema imports every component to check
# names. tests/test_registry_params.py asserts that every one of them equals the schema's.
# ``layers``, ``in_shape`` and ``num_outputs`` have no default: create_model supplies them.


@MODELS.register("mlp")
def mlp(
    *,
    widths: Sequence[PositiveInt] = (128,),
    layers: Layers,
    in_shape: tuple[int, ...],
    num_outputs: int,
) -> nn.Module:
    """Fully connected net: (Linear -> norm -> act -> dropout) for each of ``widths``."""
    width = int(torch.tensor(in_shape).prod())
    body: list[nn.Module] = [nn.Flatten()]
    for w in widths:
        wide = w * layers.expansion
        body += [layers.linear(width, wide), layers.norm(wide, 0), layers.act()]
        body.append(layers.dropout_layer())
        width = w
    return nn.Sequential(*body, layers.linear(width, num_outputs))


PoolRatio = Annotated[float, Field(ge=0.5, lt=1.0, allow_inf_nan=False)]


def _pool(pool: str, pool_ratio: float, dims: int) -> tuple[nn.Module, float]:
    """The convnet's downsampling layer (``model.pool``) and the factor it shrinks sizes by.

    ``fractional`` shrinks by ``model.pool_ratio`` (1/sqrt 2 by default, Graham's alpha = sqrt 2)
    rather than 2: the convnet ends in global average pooling, so any ratio fits the head, and a
    gentler reduction keeps more positions for the later stages. At exactly 0.5 torch's windows
    land on a fixed grid for even sizes (no randomness left), hence the paper's ratio.
    """
    if pool == "fractional":
        return FractionalMaxPool(pool_ratio, dims), pool_ratio
    classes = {"max": (nn.MaxPool1d, nn.MaxPool2d), "avg": (nn.AvgPool1d, nn.AvgPool2d)}
    return classes[pool][dims - 1](2), 0.5


@MODELS.register("convnet")
def convnet(
    *,
    channels: Sequence[PositiveInt] = (32, 64),
    depth: PositiveInt = 2,
    pool: Literal["max", "avg", "fractional"] = "max",
    pool_ratio: PoolRatio = 2**-0.5,
    widths: Sequence[PositiveInt] = (128,),
    layers: Layers,
    in_shape: tuple[int, ...],
    num_outputs: int,
) -> nn.Module:
    """VGG-style stages of ``depth`` 3x3 conv units, each stage ending in pooling (model.pool)."""
    dims = _spatial_dims("convnet", in_shape)
    size, c_in = min(in_shape[1:]), in_shape[0]
    body: list[nn.Module] = []
    for c_out in channels:
        for _ in range(depth):
            body += layers.conv_unit(dims, c_in, c_out)
            c_in = c_out
        if size >= 2:
            downsample, ratio = _pool(pool, pool_ratio, dims)
            body.append(downsample)
            size = int(size * ratio)
    gap = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool1d(1)
    return nn.Sequential(*body, gap, nn.Flatten(), *layers.head(c_in, list(widths), num_outputs))


class BasicBlock(nn.Module):
    """ResNet basic block: two conv units, identity (or 1x1 projection) shortcut, act after add.

    With a width-reducing unit (SwiGLU, Maxout) conv1 is widened for act1, but there is no
    activation after the add: applying one would need ``expansion`` times the residual stream
    and a projection on every shortcut. The sum is passed on as is, the identity mapping of He
    et al. (2016, "Identity mappings in deep residual networks") and of transformer blocks with
    SwiGLU. ``drop_path`` (stochastic depth) drops the branch before the add.
    """

    def __init__(self, layers: Layers, dims: int, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        wide = c_out * layers.expansion
        self.conv1 = layers.conv(dims, c_in, wide, stride)
        self.norm1 = layers.norm(wide, dims)
        self.act1 = layers.act()
        self.conv2 = layers.conv(dims, c_out, c_out)
        self.norm2 = layers.norm(c_out, dims)
        self.drop_path: nn.Module = nn.Identity()
        self.act2 = layers.act() if layers.expansion == 1 else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                layers.conv(dims, c_in, c_out, stride, k=1), layers.norm(c_out, dims)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        branch = self.drop_path(self.norm2(self.conv2(out)))
        return self.act2(branch + self.shortcut(x))


@MODELS.register("resnet")
def resnet(
    *,
    channels: Sequence[PositiveInt] = (32, 64),
    depth: PositiveInt = 2,
    widths: Sequence[PositiveInt] = (128,),
    layers: Layers,
    in_shape: tuple[int, ...],
    num_outputs: int,
) -> nn.Module:
    """ResNet of basic blocks: a conv stem, ``depth`` blocks per stage, stride 2 between stages."""
    dims = _spatial_dims("resnet", in_shape)
    body: list[nn.Module] = layers.conv_unit(dims, in_shape[0], channels[0])
    c_in = channels[0]
    for i, c_out in enumerate(channels):
        for j in range(depth):
            stride = 2 if (i > 0 and j == 0) else 1
            body.append(BasicBlock(layers, dims, c_in, c_out, stride))
            c_in = c_out
    gap = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool1d(1)
    return nn.Sequential(*body, gap, nn.Flatten(), *layers.head(c_in, list(widths), num_outputs))


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


def create_model(
    cfg: ModelConfig,
    in_shape: tuple[int, ...],
    num_outputs: int,
    sample: torch.Tensor | None = None,
    module: nn.Module | None = None,
) -> nn.Module:
    """Build, regularise and initialise the recipe's model (or ``module``, an instance the
    caller made: regularised and initialised the same way; ``model.init=keep``, the default for
    a user's class, leaves its weights as they are).

    ``sample`` is a batch of preprocessed training inputs, shape (B, *in_shape) with B >= 2 (the
    trainer passes up to 256), used only by data-dependent inits (``model.init=lsuv``, which
    refuses to run without one). The model is then moved to ``sample``'s device, so LSUV's
    forward passes run where training will.
    """
    layers = Layers.from_config(cfg)
    _check_applicable(cfg, layers, tuple(in_shape), sample)
    if module is not None:
        model = module
    elif cfg.name.startswith("tv."):
        model = _torchvision(cfg, layers, num_outputs)
    elif ":" in cfg.name:
        model = _user_class(cfg, in_shape, num_outputs)
    else:
        entry = MODELS.get(cfg.name)
        recipe_keys = {key: getattr(cfg, key) for key in entry.params()}  # what it declares
        model = entry.factory(
            **recipe_keys, layers=layers, in_shape=tuple(in_shape), num_outputs=num_outputs
        )
    if cfg.stochastic_depth > 0:
        _add_stochastic_depth(model, cfg.name, cfg.stochastic_depth)
    _initialise(model, cfg, sample)
    return model


def _check_applicable(
    cfg: ModelConfig, layers: Layers, in_shape: tuple[int, ...], sample: torch.Tensor | None
) -> None:
    """Refuse, in one line, recipe choices that the chosen model cannot honour."""
    foreign = cfg.name.startswith("tv.") or ":" in cfg.name
    for key, value in (("dropout", cfg.dropout), ("dropconnect", cfg.dropconnect)):
        if value and foreign:
            raise RecipeError(
                f"model.{key} applies to trainlab's own models (mlp, convnet, resnet); "
                f"{cfg.name!r} sets its own (pass it in model.kwargs if its constructor takes one)"
            )
    if layers.expansion > 1 and cfg.name.startswith("tv."):
        raise RecipeError(
            f"model.activation={cfg.activation.name} changes the width of the layer before it; "
            f"it needs trainlab's own models (mlp, convnet, resnet), not {cfg.name!r}"
        )
    pooling = [entry.name for entry in MODELS if "pool" in entry.params()]
    if cfg.pool != "max" and cfg.name not in pooling:
        raise RecipeError(
            f"model.pool={cfg.pool} applies to model.name={'/'.join(pooling)}; "
            f"{cfg.name!r} does not pool"
        )
    if not INITS.get(cfg.init.name).info.get("needs_sample"):
        return
    if sample is None:
        raise RecipeError(
            f"model.init={cfg.init.name} is data-dependent and needs a batch of training inputs "
            "(create_model(..., sample=batch); trainlab's trainer passes one)"
        )
    if tuple(sample.shape[1:]) != in_shape or sample.shape[0] < 2:
        raise ValueError(
            f"create_model: sample must be a batch of shape (B >= 2, *{in_shape}), "
            f"got {tuple(sample.shape)}"
        )


def _initialise(model: nn.Module, cfg: ModelConfig, sample: torch.Tensor | None) -> None:
    """The recipe's init, then the zero-init of residual branches, then any data-dependent step.

    Zero-init comes before LSUV so that LSUV measures the network that training starts from
    (it leaves a zeroed branch alone: a constant output cannot be rescaled).
    """
    act = kaiming_nonlinearity(cfg.activation.name, cfg.activation.params())
    weight_init = INITS.build(cfg.init.name, context={"activation": act}, **cfg.init.params())
    init_model(model, weight_init)
    if cfg.zero_init_residual:
        _zero_init_residuals(model, cfg.name)
    if isinstance(weight_init, DataDependentInit) and sample is not None:
        weight_init.fit(model.to(sample.device), sample)


def _residual_blocks(model: nn.Module) -> list[tuple[nn.Module, nn.Module, nn.Module]]:
    """(block, last conv, last norm) of each residual branch, in forward order.

    Ours (:class:`BasicBlock`) and torchvision's ``BasicBlock``/``Bottleneck`` (every resnet,
    resnext and wide_resnet). The last norm is an ``nn.Identity`` when ``model.norm=none``.
    """
    # torchvision's blocks exist only if their module was imported: looking it up instead of
    # importing it keeps torchvision (and torch._dynamo, 1.5 s) out of our own models' start
    tv = sys.modules.get("torchvision.models.resnet")
    blocks = []
    for m in model.modules():
        if isinstance(m, BasicBlock):
            blocks.append((m, m.conv2, m.norm2))
        elif tv is not None and isinstance(m, tv.BasicBlock):
            blocks.append((m, m.conv2, m.bn2))
        elif tv is not None and isinstance(m, tv.Bottleneck):
            blocks.append((m, m.conv3, m.bn3))
    return blocks


@torch.no_grad()
def _zero_init_residuals(model: nn.Module, name: str) -> None:
    """Zero the end of every residual branch, so each block starts as the identity (lecture 000).

    Var(F(x) + x) = Var(x): the branch's last norm weight is zeroed, or its last conv's weight
    where there is no norm (``model.norm=none``, ours and torchvision's alike).
    """
    blocks = _residual_blocks(model)
    if not blocks:
        raise RecipeError(f"model.zero_init_residual: {name!r} has no residual blocks")
    for _, conv, norm in blocks:
        weight = getattr(norm, "weight", None)
        nn.init.zeros_(weight if weight is not None else conv.weight)


def _add_stochastic_depth(model: nn.Module, name: str, last_drop: float) -> None:
    """Drop block l's residual branch with probability 1 - p_l, p_l = 1 - l/L (1 - p_L).

    Ours: the block's ``drop_path``. torchvision's: a :class:`BranchDrop` child of the block
    (so train/eval reach it), applied as a forward hook on the branch's last norm.
    """
    blocks = _residual_blocks(model)
    if not blocks:
        raise RecipeError(
            f"model.stochastic_depth={last_drop} drops residual branches; {name!r} has no "
            "residual blocks (use model.name=resnet or a tv.resnet*)"
        )
    for (block, _, norm), survival in zip(
        blocks, survival_probabilities(len(blocks), last_drop), strict=True
    ):
        drop = BranchDrop(round(1.0 - survival, 12))  # 0.2, not 0.19999999999999996
        if isinstance(block, BasicBlock):
            block.drop_path = drop
        else:
            block.stochastic_depth = drop
            norm.register_forward_hook(drop.hook)
