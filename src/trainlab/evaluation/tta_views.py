"""Test-time augmentation policies: named, deterministic sets of weighted views of a raw batch
(see :mod:`trainlab.evaluation.tta` for the policies, how their probabilities are averaged, and
why views are made from raw inputs at the model's input size)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.errors import TrainlabError
from trainlab.nn.regularizers import FractionalMaxPool, is_stochastic

if TYPE_CHECKING:
    from trainlab.recipe import Recipe

__all__ = [
    "POLICIES",
    "TTAPolicy",
    "ViewParams",
    "View",
    "ten_crops",
    "shift",
    "input_kind",
    "allowed",
    "resolve_policies",
    "has_sampling",
    "samples",
    "SCALES",
    "SHIFTS",
    "FMP_DRAWS",
]

SCALES = (1.0, 1.25, 1.5)  # multiscale: He et al.'s {224..640}/224 is too far for 8x8 images
SHIFTS = (-2, -1, 0, 1, 2)  # 1-D shifts, in samples
FMP_DRAWS = 12  # Graham 2014 reports test error against 1..12 repetitions
KINDS = {1: "features", 2: "signals", 3: "images"}

View = tuple[float, torch.Tensor]  # (weight, raw batch the model takes)


@dataclass(frozen=True)
class ViewParams:
    """What the views depend on, from the run's recipe: the padding of its ``random_crop``
    (default 1 pixel) and the padding mode of its ``shift`` augmentation (default circular,
    MNIST-1D's own translation)."""

    pad: int = 1
    shift_mode: str = "circular"

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> ViewParams:
        pad, mode = 1, "circular"
        for aug in recipe.augment:
            params = aug.model_dump()
            if params.get("name") == "random_crop" and params.get("padding"):
                pad = int(params["padding"])
            if params.get("name") == "shift":
                mode = str(params.get("mode", mode))
        return cls(pad, mode)


@dataclass(frozen=True)
class TTAPolicy:
    """A named set of deterministic views (``views(x, params)`` for a raw batch ``x``), the
    input kinds it applies to, and how many draws of the fractional pooling to average."""

    name: str
    kinds: frozenset[str]
    views: Callable[[torch.Tensor, ViewParams], Iterator[View]]
    count: int  # views per example (forward passes per MC pass, draws included)
    description: str
    pool_draws: int = 0  # > 0: fractional max pooling in its random mode, this many draws


def ten_crops(x: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """The 10 crops of the input's size from ``x`` (N, C, H, W) zero-padded by ``pad``:
    torchvision's ``ten_crop`` order (top-left, top-right, bottom-left, bottom-right, centre,
    then the same five of the horizontally flipped image, i.e. the flips of top-right,
    top-left, bottom-right, bottom-left, centre)."""
    from torchvision.transforms.v2 import functional as TF

    size = list(x.shape[-2:])
    padded = F.pad(x, [pad] * 4) if pad else x
    return list(TF.ten_crop(padded, size))


def _identity(x: torch.Tensor, params: ViewParams) -> Iterator[View]:
    yield 1.0, x


def _flip(x: torch.Tensor, params: ViewParams) -> Iterator[View]:
    yield 0.5, x
    yield 0.5, x.flip(-1)


def _crops(x: torch.Tensor, params: ViewParams) -> Iterator[View]:
    for crop in ten_crops(x, params.pad):
        yield 0.1, crop


def _five_crops(x: torch.Tensor, params: ViewParams) -> Iterator[View]:
    for crop in ten_crops(x, params.pad)[:5]:
        yield 0.2, crop


def _multiscale(x: torch.Tensor, params: ViewParams) -> Iterator[View]:
    from torchvision.transforms.v2 import functional as TF

    h, w = x.shape[-2:]
    for scale in SCALES:
        size = [round(h * scale), round(w * scale)]
        big = x if scale == 1.0 else TF.resize(x, size, antialias=True)
        for crop in TF.ten_crop(F.pad(big, [params.pad] * 4) if params.pad else big, [h, w]):
            yield 0.1 / len(SCALES), crop


def _translated(x: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """x translated by (+pad, +pad) and (-pad, -pad), reflect-padded (airbench)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, [pad] * 4, mode="reflect")
    return [padded[..., :h, :w], padded[..., 2 * pad :, 2 * pad :]]


def _translate(x: torch.Tensor, params: ViewParams) -> Iterator[View]:
    yield 0.5, x
    for moved in _translated(x, 1):  # airbench's 1 pixel, whatever the training crops
        yield 0.25, moved


def _flip_translate(x: torch.Tensor, params: ViewParams) -> Iterator[View]:
    for weight, view in _translate(x, params):
        yield weight / 2, view
        yield weight / 2, view.flip(-1)


def shift(x: torch.Tensor, k: int, mode: str) -> torch.Tensor:
    """``out[t] = x[t - k]`` along the last axis: wrapped around, or zeros where t - k is
    outside (the convention of the ``shift`` augmentation)."""
    if mode == "circular":
        return torch.roll(x, k, dims=-1)
    out = torch.zeros_like(x)
    length = x.shape[-1]
    if k >= 0:
        out[..., k:] = x[..., : length - k]
    else:
        out[..., : length + k] = x[..., -k:]
    return out


def _shifts(x: torch.Tensor, params: ViewParams) -> Iterator[View]:
    for k in SHIFTS:
        yield 1.0 / len(SHIFTS), shift(x, k, params.shift_mode)


_ANY = frozenset(KINDS.values())
_IMAGES = frozenset({"images"})

POLICIES: dict[str, TTAPolicy] = {
    p.name: p
    for p in (
        TTAPolicy("identity", _ANY, _identity, 1, "the input alone (plain evaluation)"),
        TTAPolicy("flip", _IMAGES, _flip, 2, "input + horizontal flip"),
        TTAPolicy("crops", _IMAGES, _crops, 10, "4 corners + centre (padded), and their flips"),
        TTAPolicy("five_crops", _IMAGES, _five_crops, 5, "4 corners + centre (padded), no flips"),
        TTAPolicy(
            "multiscale", _IMAGES, _multiscale, 10 * len(SCALES),
            f"the 10 crops at scales {', '.join(f'{s:g}' for s in SCALES)}",
        ),
        TTAPolicy("translate", _IMAGES, _translate, 3, "input + 2 translations (airbench)"),
        TTAPolicy("flip_translate", _IMAGES, _flip_translate, 6, "translate, each + its flip"),
        TTAPolicy("shifts", frozenset({"signals"}), _shifts, len(SHIFTS), "shifts by -2..2"),
        TTAPolicy(
            "fmp", _ANY, _identity, FMP_DRAWS, f"{FMP_DRAWS} fractional-pooling draws",
            pool_draws=FMP_DRAWS,
        ),
    )
}  # fmt: skip


def input_kind(in_shape: Sequence[int]) -> str:
    """features (F,), signals (C, L) or images (C, H, W)."""
    return KINDS.get(len(in_shape), "features")


def has_sampling(model: nn.Module, pool: bool) -> bool:
    return any(samples(m, pool) for m in model.modules())


def samples(module: nn.Module, pool: bool) -> bool:
    """Fractional pooling (``pool``) or a dropout-like layer (dropout, DropConnect, stochastic
    depth; a p=0 dropout counts: it is still the layer MC dropout samples)."""
    return is_stochastic(module) and isinstance(module, FractionalMaxPool) == pool


def allowed(in_shape: Sequence[int], model: nn.Module) -> list[str]:
    """The policies that apply to this run's inputs and model."""
    kind = input_kind(in_shape)
    return [
        name
        for name, p in POLICIES.items()
        if kind in p.kinds and (not p.pool_draws or has_sampling(model, pool=True))
    ]


def resolve_policies(
    spec: str | Sequence[str] | None, in_shape: Sequence[int], model: nn.Module
) -> list[TTAPolicy]:
    """The policies named by ``spec`` (``"flip,crops"`` or a list), checked against the run:
    a one-line error naming ``--tta`` and the values allowed for this run otherwise."""
    if spec is None:
        return []
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else list(spec)
    ok = allowed(in_shape, model)
    kind = input_kind(in_shape)
    shape = f"{kind} of shape {tuple(in_shape)}"
    out = []
    for name in names:
        if name not in POLICIES:
            raise TrainlabError(
                f"--tta {name!r}: unknown policy; expected one of {', '.join(POLICIES)} "
                f"(for this run's {shape}: {', '.join(ok)})"
            )
        if name not in ok:
            why = (
                "the model has no fractional max pooling (model.pool=fractional)"
                if POLICIES[name].pool_draws
                else f"it applies to {' or '.join(sorted(POLICIES[name].kinds))}"
            )
            raise TrainlabError(
                f"--tta {name!r}: {why}; this run takes {shape}: use one of {', '.join(ok)}"
            )
        if POLICIES[name] not in out:
            out.append(POLICIES[name])
    return out
