"""Transfer learning on the module level: which layers are the head, which blocks the backbone
is made of, and loading the tensors of a pretrained state dict that fit a new model.

Lecture 000 ("after training: model ensembles, transfer learning"): a network trained on one
task starts the next; the layers whose shapes still fit are copied, the classifier (whose
width is the old number of classes) is trained afresh, and the copied layers are frozen at first
or trained with a smaller learning rate. This module knows only modules and tensors; reading a
run folder and the training-time freezing live in :mod:`trainlab.engine.transfer`.

Why not ``model.load_state_dict(state, strict=False)``: it still raises on a shape mismatch
(the head of a new number of classes), and says nothing about what it did load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = [
    "Match",
    "head_module",
    "head_parameters",
    "backbone_blocks",
    "unwrap_state",
    "load_matching",
]


def head_module(model: nn.Module) -> str:
    """The name of the model's head: the last module, in registration order, that owns a
    weight of two or more dims (a Linear or a conv), where the classes come out.

    trainlab's mlp/convnet/resnet end in ``nn.Sequential(..., Linear)`` (name ``"N"``, the last
    index); torchvision registers its classifier last too (``fc`` of resnets, ``classifier.6``
    of VGG, ``heads.head`` of ViT); so does nearly every user class. ``""`` (the model itself)
    for a model that owns such a weight directly, e.g. a bare ``nn.Linear``.
    """
    last = None
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and weight.ndim >= 2:
            last = name
    if last is None:
        raise ValueError(f"{type(model).__name__} has no Linear or conv layer: no head to find")
    return last


def head_parameters(model: nn.Module) -> list[str]:
    """Names (as in ``model.named_parameters()``) of the head's parameters: weight and bias of
    :func:`head_module`."""
    head = head_module(model)
    prefix = f"{head}." if head else ""
    module = model.get_submodule(head)
    return [prefix + name for name, _ in module.named_parameters()]


def backbone_blocks(model: nn.Module, exclude: set[str]) -> list[list[str]]:
    """The backbone's blocks, input to output: for each top-level child module (descending
    through a model that is a single wrapper child), the names of its parameters not in
    ``exclude`` (the head and the new layers); children left without any are dropped.

    These are what gradual unfreezing counts (``model.freeze.unfreeze[].blocks``): torchvision
    resnets' ``conv1, bn1, layer1..layer4``; trainlab's Sequential models' layers (a Linear, a
    norm with weights, a residual block).
    """
    prefix, root = "", model
    while len(children := list(root.named_children())) == 1:
        prefix, root = f"{prefix}{children[0][0]}.", children[0][1]
    blocks = []
    for name, child in root.named_children():
        names = [f"{prefix}{name}.{p}" for p, _ in child.named_parameters()]
        names = [n for n in names if n not in exclude]
        if names:
            blocks.append(names)
    own = [f"{prefix}{p}" for p, _ in root.named_parameters(recurse=False)]
    own = [n for n in own if n not in exclude]
    return [own, *blocks] if own else blocks


@dataclass(frozen=True)
class Match:
    """What :func:`load_matching` did: tensor names loaded, those of the model left as they
    were (with the shapes that differed), and the source's names no tensor of the model has."""

    loaded: list[str]
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]  # name: (model, source)
    missing: list[str]
    unused: list[str]
    loaded_parameters: list[str] = field(default_factory=list)  # ``loaded`` less buffers

    def summary(
        self, total_params: int, loaded_params: int, absent: str = "not in the source"
    ) -> str:
        """One line: counts, the tensors kept fresh and why (``absent``: why for those the
        source does not have)."""
        fresh = len(self.mismatched) + len(self.missing)
        line = (
            f"loaded {len(self.loaded)} of {len(self.loaded) + fresh} tensors "
            f"({loaded_params:,} of {total_params:,} weights)"
        )
        if self.mismatched:
            shown = [
                f"{n} {list(a)} here, {list(b)} there" for n, (a, b) in self.mismatched.items()
            ]
            line += f"; freshly initialised, shapes differ: {_few(shown)}"
        if self.missing:
            line += f"; freshly initialised, {absent}: {_few(self.missing)}"
        if self.unused:
            line += f"; {len(self.unused)} source tensors unused (e.g. {self.unused[0]})"
        return line


def _few(names: list[str], limit: int = 4) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def unwrap_state(state: object) -> dict[str, torch.Tensor] | None:
    """The flat state dict inside what ``torch.load`` returned: as is, or under ``state_dict``
    / ``model`` / ``model_state_dict`` (common checkpoint layouts), with a prefix every key
    shares (``module.`` of DDP, ``model.`` of a trainlab run's safetensors, whose
    ``preprocess.`` tensors are left out) removed. None when there is no such dict."""
    if not isinstance(state, Mapping):
        return None
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = state.get(key)
            if isinstance(inner, Mapping):
                return unwrap_state(inner)
        return None
    tensors = {str(k): v for k, v in state.items()}
    if any(k.startswith("model.") for k in tensors):  # a trainlab run's weights
        tensors = {k: v for k, v in tensors.items() if not k.startswith("preprocess.")}
    for prefix in ("module.", "model."):
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


@torch.no_grad()
def load_matching(model: nn.Module, source: Mapping[str, torch.Tensor]) -> Match:
    """Copy into ``model`` every tensor of ``source`` whose name and shape match one of the
    model's state (parameters and buffers: batch norm's running statistics too); the others
    keep their values (the fresh init). Copied in place, cast to the model's dtype and device."""
    own = model.state_dict(keep_vars=True)
    params = {name for name, _ in model.named_parameters()}
    loaded, mismatched, missing = [], {}, []
    for name, tensor in own.items():
        if name not in source:
            missing.append(name)
        elif tuple(source[name].shape) != tuple(tensor.shape):
            mismatched[name] = (tuple(tensor.shape), tuple(source[name].shape))
        else:
            tensor.copy_(source[name])
            loaded.append(name)
    unused = [name for name in source if name not in own]
    return Match(loaded, mismatched, missing, unused, [n for n in loaded if n in params])
