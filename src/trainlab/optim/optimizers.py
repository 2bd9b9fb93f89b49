"""Optimisers by name: torch.optim underneath, with explicit parameter groups.

Two kinds of weight penalty are kept apart, as lectures 001 and 004 insist:
- ``regularization.l2`` adds l2/2 * sum(w^2) to the loss (see ``train.regularizers``): its
  gradient goes through the optimiser, so under Adam it is rescaled per parameter;
- ``optimizer.weight_decay`` is decoupled (Loshchilov and Hutter): w <- w - lr * wd * w applied
  beside the update, never through the adaptive denominator. AdamW does this natively; for the
  other optimisers trainlab applies the same shrink before ``step`` (their own ``weight_decay``
  argument is the coupled L2 form, which would silently mean the other thing).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn

from trainlab.errors import RecipeError
from trainlab.registry import Registry
from trainlab.types import Fraction, Positive, PositiveInt

__all__ = ["OPTIMIZERS", "OptimInfo", "param_groups", "scaled_lr", "create_optimizer"]

OPTIMIZERS = Registry("optimizer", "parameter update rules (optimizer.name)")


@dataclass(frozen=True)
class OptimInfo:
    """How the trainer must drive an optimiser (timm's OptimInfo idea)."""

    needs_closure: bool = False  # L-BFGS re-evaluates the loss several times per step
    native_decoupled_decay: bool = False  # AdamW


def _register(name: str, summary: str, info: OptimInfo = OptimInfo()):
    return OPTIMIZERS.register(name, summary, optim=info)


@_register("sgd", "plain SGD: x -= lr * dx")
def sgd(params, lr: float):
    return torch.optim.SGD(params, lr=lr)


@_register("momentum", "SGD + momentum: v = rho v + dx; x -= lr v")
def momentum(params, lr: float, *, rho: Fraction = 0.9, dampening: Fraction = 0.0):
    return torch.optim.SGD(params, lr=lr, momentum=rho, dampening=dampening)


@_register("nesterov", "SGD + Nesterov momentum (look-ahead gradient)")
def nesterov(params, lr: float, *, rho: Fraction = 0.9):
    return torch.optim.SGD(params, lr=lr, momentum=rho, nesterov=True)


@_register("adagrad", "per-parameter lr scaled by the running sum of squared gradients")
def adagrad(params, lr: float, *, eps: Positive = 1e-10):
    return torch.optim.Adagrad(params, lr=lr, eps=eps)


@_register("rmsprop", "leaky AdaGrad: running mean of squared gradients")
def rmsprop(
    params, lr: float, *, decay_rate: Fraction = 0.99, eps: Positive = 1e-8, rho: Fraction = 0.0
):
    return torch.optim.RMSprop(params, lr=lr, alpha=decay_rate, eps=eps, momentum=rho)


@_register("adam", "Adam with bias correction (beta1 0.9, beta2 0.999)")
def adam(
    params, lr: float, *, beta1: Fraction = 0.9, beta2: Fraction = 0.999, eps: Positive = 1e-8
):
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps)


@_register("adamw", "Adam with decoupled weight decay", OptimInfo(native_decoupled_decay=True))
def adamw(
    params, lr: float, *, beta1: Fraction = 0.9, beta2: Fraction = 0.999, eps: Positive = 1e-8
):
    return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), eps=eps)


@_register("lbfgs", "full-batch L-BFGS with a closure", OptimInfo(needs_closure=True))
def lbfgs(params, lr: float, *, max_iter: PositiveInt = 20, history_size: PositiveInt = 100):
    return torch.optim.LBFGS(
        params, lr=lr, max_iter=max_iter, history_size=history_size, line_search_fn="strong_wolfe"
    )


def is_no_decay(name: str, param: nn.Parameter, module: nn.Module) -> bool:
    """Biases and normalisation parameters are not decayed (nanoGPT/timm convention)."""
    return param.ndim <= 1 or isinstance(
        module, nn.modules.batchnorm._NormBase | nn.LayerNorm | nn.GroupNorm
    )


def param_groups(
    model: nn.Module,
    decay_all: bool,
    pretrained: Collection[str] = (),
    lr_scale: float = 1.0,
) -> list[dict]:
    """Two groups, ``decay`` and ``no_decay``, each flagged so penalties know where they apply.

    With ``lr_scale`` != 1 (``optimizer.pretrained_lr_scale``, discriminative rates) each is
    split again: the parameters named in ``pretrained`` (loaded by ``model.from``) get
    ``lr_scale``, which :class:`~trainlab.engine.step.Step` multiplies into their lr.
    """
    scaled = set(pretrained) if lr_scale != 1.0 else set()
    found: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            decay = decay_all or not is_no_decay(name, param, module)
            full = f"{module_name}.{name}" if module_name else name
            found.setdefault((decay, full in scaled), []).append(param)
    groups = [{"params": found.get((True, False), []), "decay": True}]  # always there
    for decay, pre in ((False, False), (True, True), (False, True)):
        if found.get((decay, pre)):
            groups.append({"params": found[(decay, pre)], "decay": decay, "pre": pre})
    if scaled:  # only then: a run without discriminative rates has the groups it always had
        for group in groups:
            group["lr_scale"] = lr_scale if group.pop("pre", False) else 1.0
    else:
        for group in groups:
            group.pop("pre", None)
    return groups


def scaled_lr(lr: float, batch_size: int, base_batch_size: int | None, rule: str) -> float:
    """Goyal et al.'s rule: lr given for ``base_batch_size``, scaled linearly (or by sqrt)."""
    if rule == "none" or base_batch_size is None:
        return lr
    ratio = batch_size / base_batch_size
    return lr * (ratio if rule == "linear" else math.sqrt(ratio))


def create_optimizer(
    name: str,
    params: dict,
    model: nn.Module,
    lr: float,
    decay_all: bool,
    weight_decay: float,
    pretrained: Collection[str] = (),
    lr_scale: float = 1.0,
    fused: bool | str = False,
) -> torch.optim.Optimizer:
    """The registered optimiser over the model's parameter groups; decoupled decay set up;
    the ``pretrained`` parameters' groups at ``lr_scale`` times the lr (:func:`param_groups`);
    ``fused`` (True, or ``auto``: on CUDA where torch has the kernel) torch's fused update."""
    entry = OPTIMIZERS.get(name)
    groups = param_groups(model, decay_all, pretrained, lr_scale)
    if entry.info["optim"].needs_closure:  # torch's LBFGS takes a single parameter group
        if weight_decay:
            raise RecipeError(
                f"optimizer.weight_decay: {name} has no decoupled weight decay; "
                "use regularization.l2 (added to the loss) instead"
            )
        if len({g.get("lr_scale", 1.0) for g in groups}) > 1:
            raise RecipeError(
                f"optimizer.pretrained_lr_scale: {name} takes a single parameter group, so one "
                "lr for all; leave the scale at 1"
            )
        groups = [{"params": [p for g in groups for p in g["params"]], "decay": False}]
    if not weight_decay and len(groups) > 1:  # identical hyperparameters: one group per lr
        merged: dict[float, list[nn.Parameter]] = {}
        for g in groups:
            merged.setdefault(g.get("lr_scale", 1.0), []).extend(g["params"])
        groups = [{"params": ps, "decay": False} for ps in merged.values()]
        if len(merged) > 1:
            for group, scale in zip(groups, merged, strict=True):
                group["lr_scale"] = scale
    opt = entry.factory(groups, lr, **params)
    if fused is True or (fused == "auto" and _fusable(opt, cuda_only=True)):
        opt = _with_fused_kernel(opt, name)
    native = entry.info["optim"].native_decoupled_decay
    for group in opt.param_groups:
        wd = weight_decay if group["decay"] else 0.0
        group["weight_decay"] = wd if native else 0.0
        group["decoupled_wd"] = 0.0 if native else wd
    return opt


FUSED = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adagrad)


def _fusable(opt: torch.optim.Optimizer, cuda_only: bool) -> bool:
    params = [p for g in opt.param_groups for p in g["params"]]
    on_cuda = bool(params) and all(p.is_cuda for p in params)
    return type(opt) in FUSED and (on_cuda or not cuda_only)


def _with_fused_kernel(opt: torch.optim.Optimizer, name: str) -> torch.optim.Optimizer:
    """The same optimiser with ``fused=True``: one kernel a step over every weight. Built
    again from its groups (less their copies of the defaults), as torch checks it there."""
    if not _fusable(opt, cuda_only=False):
        raise RecipeError(
            f"optimizer.fused=true: {name} has no fused kernel here (sgd, momentum, nesterov, "
            "adagrad, adam and adamw have); leave optimizer.fused at auto"
        )
    groups = [{k: v for k, v in g.items() if k not in opt.defaults} for g in opt.param_groups]
    takes = inspect.signature(type(opt)).parameters  # AdamW's defaults hold more than it takes
    kwargs = {k: v for k, v in opt.defaults.items() if k in takes}
    return type(opt)(groups, **{**kwargs, "fused": True, "foreach": None})


@torch.no_grad()
def apply_decoupled_decay(opt: torch.optim.Optimizer) -> None:
    """w <- w * (1 - lr * wd) for optimisers without native decoupled decay (call before step)."""
    for group in opt.param_groups:
        wd = group.get("decoupled_wd", 0.0)
        if not wd:
            continue
        params = group["params"]
        if group.get("has_frozen"):  # model.freeze: a frozen weight is not updated, nor decayed
            params = [p for p in params if p.requires_grad]
        if params:
            torch._foreach_mul_(params, 1.0 - group["lr"] * wd)
