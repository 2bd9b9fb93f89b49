"""The layers check's weights: gradient flow, the update/weight ratio, and symmetric units.

For every Linear/Conv weight: the gradient norm after ``loss.backward()``, the weight norm, the
*actual* relative change ``|w_after - w_before| / |w_before|`` of one optimiser step (the
classic course notes' "ratio of the updates to the values", healthy around 1e-3), and how much
its output units (rows) differ. The actual change is measured rather than ``lr * |grad| / |w|``
because that formula holds for plain SGD only: Adam's first step moves every weight by about
``lr`` whatever its gradient, momentum and weight decay add their own terms. The step is taken
on the real parameters and undone (weights and the optimiser's state restored), which is the
same as stepping a copy, without having to rebuild the optimiser's parameter groups for one.

A weight whose norm is zero has no update/weight ratio (None): an infinite ratio from a zero
norm says nothing about the learning rate. Such a weight is a case for :func:`check_symmetry`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from trainlab.diagnosis.activations import LR_STEP, Setting, fitting_init, layer_label, lr_fix
from trainlab.diagnosis.findings import Finding, Status
from trainlab.nn.init import WEIGHTED

__all__ = [
    "GradStats",
    "check_flow",
    "check_symmetry",
    "check_updates",
    "gradient_stats",
    "row_spread",
    "weight_layers",
]

# Gradient flow: each earlier layer's |grad| / |w| (how fast a step moves it) against the last
# layer's. The output layer always leads at init; healthy stacks keep the slowest earlier layer
# within 1e-2 of it (Kaiming + ReLU, depth 8: 0.011; Xavier + tanh: 0.04; the default convnet:
# 0.07). A saturated sigmoid stack (std-1 init) measures 2.5e-4: its hidden layers learn four
# thousand times slower than the output: warn below 1e-3; Xavier + sigmoid (x0.25 per layer)
# reaches 5e-7: fail below 1e-5. Exploding mirrors it (an earlier layer 1e3 x faster).
VANISH_WARN, VANISH_FAIL = 1e-3, 1e-5
# Update/weight ratio: around 1e-3 per the notes. Adam at lr 3e-3 (the default recipe) moves
# conv weights by 1e-2 to 4e-2 of their size on its first step, so the warn band is wide:
# median over layers outside [1e-5, 1e-1] warns (a learning rate far too low or too high); any
# layer moved by more than its own size in one step (ratio > 1) fails: that is divergence.
UPDATE_LOW, UPDATE_HIGH, UPDATE_FAIL = 1e-5, 1e-1, 1.0
# The ratio a suggested learning rate aims at: the lower edge of what the default recipe
# measures while it trains well (1e-2, above); lr scales the ratio linearly for SGD and Adam.
# From Adam at lr 1 on the digits convnet (median 12) it suggests 1e-3, lecture 002's advice.
UPDATE_TARGET = 1e-2
# Symmetric units: the largest difference between a layer's rows relative to its largest
# weight. Random inits measure 1 to 4; a constant or all-zero init exactly 0, and identical
# rows get identical gradients, so they stay identical (float rounding aside: below 1e-6; a
# constant-0.05 ReLU MLP after 10 SGD steps: 0). Told apart by dropout's per-unit masks (48
# Adam steps, p 0.2) it measures 0.6; a zero-initialised head after 10 steps: 1.0. Below 1e-2
# after the steps: still symmetric.
SYMMETRIC_INIT, SYMMETRIC_AFTER = 1e-6, 1e-2


@dataclass(frozen=True)
class GradStats:
    """One weight's gradient norm, weight norm, relative change in one optimiser step (None
    without an optimiser or for a zero weight) and the spread of its rows (:func:`row_spread`).
    ``name`` is the module's :func:`~trainlab.diagnosis.activations.layer_label`."""

    name: str
    grad_norm: float
    weight_norm: float
    update_ratio: float | None
    row_spread: float | None = None

    @property
    def relative_grad(self) -> float:
        return self.grad_norm / self.weight_norm if self.weight_norm > 0 else math.inf

    def to_json(self) -> dict:
        return {**asdict(self), "relative_grad": self.relative_grad}


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(label, module) of every trainable Linear/Conv layer, in module order."""
    return [
        (layer_label(n, m), m)
        for n, m in model.named_modules()
        if isinstance(m, WEIGHTED) and m.weight.requires_grad
    ]


@torch.no_grad()
def row_spread(weight: torch.Tensor) -> float | None:
    """How much the output units (rows) of ``weight`` differ: max |row - mean row| over the
    largest |w| (0 for an all-zero weight); None for a layer with one output unit."""
    rows = weight.detach().reshape(weight.shape[0], -1).double()
    if rows.shape[0] < 2:
        return None
    scale = float(rows.abs().max())
    if scale == 0.0 or not math.isfinite(scale):
        return 0.0 if scale == 0.0 else None
    return float((rows - rows.mean(dim=0)).abs().max()) / scale


def gradient_stats(
    model: nn.Module,
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
    closure: Callable[[], torch.Tensor] | None = None,
) -> list[GradStats]:
    """Back-propagate ``loss`` and measure every Linear/Conv weight, in module order.

    With ``optimizer`` (built over the model's parameters, at the learning rate to judge), one
    step is taken and undone to measure the actual update/weight ratio; a closure optimiser
    (L-BFGS) steps through ``closure``, which must recompute the loss and its gradients.
    Gradients are cleared afterwards; the model and the optimiser are left as they were.
    """
    weights = [(label, m.weight) for label, m in weight_layers(model)]
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = [float(w.grad.norm()) if w.grad is not None else 0.0 for _, w in weights]
    norms = [float(w.detach().norm()) for _, w in weights]
    spreads = [row_spread(w) for _, w in weights]
    ratios: list[float | None] = [None] * len(weights)
    if optimizer is not None:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        before = [p.detach().clone() for p in params]
        state = copy.deepcopy(optimizer.state_dict())
        weight_before = [w.detach().clone() for _, w in weights]
        optimizer.step() if closure is None else optimizer.step(closure)
        ratios = [
            float((w.detach() - b).norm()) / n if n > 0 else None
            for (_, w), b, n in zip(weights, weight_before, norms, strict=True)
        ]
        with torch.no_grad():
            for p, b in zip(params, before, strict=True):
                p.copy_(b)
        optimizer.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    return [
        GradStats(name, g, n, r, s)
        for (name, _), g, n, r, s in zip(weights, grads, norms, ratios, spreads, strict=True)
    ]


# ---------------------------------------------------------------------------------------------
# symmetric units


def check_symmetry(
    init: list[GradStats],
    after: list[GradStats] | None = None,
    kinds: list[str] | None = None,
    setting: Setting | None = None,
) -> Finding:
    """``layers.symmetry``: a weight layer whose output units are identical at init (all-zero
    or constant weights): its units compute the same thing and get the same gradient, so no
    step can tell them apart (lecture 000: "no symmetry breaking"). Cause init.symmetric; fix
    the random init that fits the activation.

    ``after`` (the same layers after training) separates three cases: still identical: fail;
    constant weights told apart only by noise (dropout's masks differ per unit): warn; all-zero
    weights that real gradients made differ (a zero-initialised head or residual branch, which
    lecture 000 recommends): ok. Without ``after`` any identical layer fails."""
    setting = setting or Setting()
    spread_after = {s.name: s.row_spread for s in after or []}
    measured = [s for s in init if s.row_spread is not None]
    identical = [s for s in measured if s.row_spread <= SYMMETRIC_INIT]
    stuck = [
        s
        for s in identical
        if after is None or (spread_after.get(s.name) or 0.0) <= SYMMETRIC_AFTER
    ]
    noisy = [s for s in identical if s not in stuck and s.weight_norm > 0]
    values: dict = {
        "symmetric": [s.name for s in stuck],
        "broken_by_noise": [s.name for s in noisy],
        "row_spread": {s.name: s.row_spread for s in measured},
        "row_spread_after": {k: v for k, v in spread_after.items() if v is not None},
    }
    check = "layers.symmetry"
    if not measured:
        return Finding(check, "ok", "no weight layer with more than one unit", values=values)
    if not stuck and not noisy:
        zero = [s.name for s in identical]
        summary = (
            f"zero-initialised {', '.join(zero)}: training made its units differ"
            if zero
            else f"every weight layer's units differ at init (least row spread "
            f"{min(s.row_spread for s in measured):.2g})"
        )
        return Finding(check, "ok", summary, values=values)
    init_name, rule = fitting_init(kinds or [])
    fix = setting.override("model.init", init_name)
    bad = stuck or noisy
    named = ", ".join(
        f"{s.name} ({'all zero' if s.weight_norm == 0 else 'identical rows'})" for s in bad
    )
    zero = all(s.weight_norm == 0 for s in bad)
    after_steps = "after the training steps" if stuck else "only by noise (dropout)"
    summary = (
        f"{len(bad)} of {len(measured)} weight layers have identical units at init, "
        f"{'still identical' if stuck else 'told apart'} {after_steps}: {named}"
    )
    advice = (
        f"{'all-zero' if zero else 'constant'} init: the units of a layer are symmetric, compute "
        "the same output and get the same gradient, so training cannot tell them apart; "
        f"use a random init, {rule}" + (f" (model.init={init_name})" if fix else "")
    )
    status: Status = "fail" if stuck else "warn"
    return Finding(check, status, summary, advice, values, cause="init.symmetric", fix=fix)


# ---------------------------------------------------------------------------------------------
# gradient flow


def _flow(stats: list[GradStats]) -> dict:
    """Slowest and fastest earlier layer's |grad|/|w| over the last layer's (zero weights,
    which have no |grad|/|w|, left out)."""
    stats = [s for s in stats if s.weight_norm > 0]
    if len(stats) < 2:
        return {}
    last = stats[-1]
    if not (math.isfinite(last.relative_grad) and last.relative_grad > 0):
        return {}
    slow = min(stats[:-1], key=lambda s: s.relative_grad)
    fast = max(stats[:-1], key=lambda s: s.relative_grad)
    return {
        "flow_ratio": slow.relative_grad / last.relative_grad,
        "burst_ratio": fast.relative_grad / last.relative_grad,
        "slowest": slow.name,
        "fastest": fast.name,
        "last": last.name,
        "last_relative_grad": last.relative_grad,
        "slowest_relative_grad": slow.relative_grad,
    }


def _flow_fix(verdict: str, kinds: list[str], setting: Setting) -> tuple[str, ...]:
    """The recipe change for vanishing (saturating units: ReLU + Kaiming; ReLU units: batch
    norm) or exploding gradients (the fitting init, or batch norm when the init fits)."""
    if verdict == "vanish" and fitting_init(kinds)[0] != "kaiming_normal":
        relu = setting.override("model.activation", "relu")
        return (*relu, *setting.override("model.init", "kaiming_normal")) if relu else ()
    if verdict == "explode" and not setting.fits(kinds):
        return setting.override("model.init", fitting_init(kinds)[0])
    return setting.override("model.norm", "batch")


def check_flow(
    init: list[GradStats],
    after: list[GradStats] | None = None,
    kinds: list[str] | None = None,
    setting: Setting | None = None,
) -> Finding:
    """``layers.gradients``: vanishing or exploding gradients at init (cause ``gradients``).

    Each earlier layer's |grad|/|w| against the last layer's: below 1e-3 warns, below 1e-5
    fails (above 1e3 / 1e5 likewise). After training steps only a non-finite gradient is
    judged (from a finite init it is the learning rate's doing): there the ratio to the last
    layer measures the steps, not the flow (a zero-initialised head, still small after ten
    steps, makes every earlier layer look 1000x slower)."""
    setting, kinds = setting or Setting(), kinds or []
    check = "layers.gradients"
    values: dict = {"init": {"layers": [s.to_json() for s in init]}}
    if after:
        values["after"] = {"layers": [s.to_json() for s in after]} | _flow(after)
    if not init:
        return Finding(check, "ok", "no Linear/Conv weights to measure", values=values)
    bad = next((s.name for s in init if not math.isfinite(s.grad_norm)), None)
    if bad is not None:
        fix = _flow_fix("explode", kinds, setting)
        text = "gradients overflow at init: check the init and the inputs"
        return Finding(check, "fail", f"at init: non-finite gradient in {bad}",
                       text + (f" ({', '.join(fix)})" if fix else ""), values,
                       cause="gradients", fix=fix)  # fmt: skip
    late = next((s.name for s in after or [] if not math.isfinite(s.grad_norm)), None)
    if late is not None:
        fix = lr_fix(setting, 1 / LR_STEP)
        return Finding(check, "fail", f"after training: non-finite gradient in {late}",
                       "gradients overflow during training from a finite init: lower the "
                       "learning rate", values, cause="lr.high", fix=fix)  # fmt: skip
    flow = _flow(init)
    values["init"] |= flow
    if not flow:
        why = ("one weight layer: no flow to compare" if len(init) < 2 else "no gradient reaches "
               "the last layer's inputs (a zero-initialised layer passes none back)")  # fmt: skip
        return Finding(check, "ok", f"at init: {why}", values=values)
    summary = (
        f"at init: |grad|/|w| slowest {flow['slowest_relative_grad']:.2g} ({flow['slowest']}), "
        f"last {flow['last_relative_grad']:.2g} ({flow['last']}), ratio {flow['flow_ratio']:.2g}"
    )
    if flow["flow_ratio"] < VANISH_WARN:
        verdict, status = "vanish", "fail" if flow["flow_ratio"] < VANISH_FAIL else "warn"
        ratio = flow["flow_ratio"]
        slower = f"{1 / ratio:.2g}x slower than the last layer" if ratio > 0 else "nothing"
        text = (
            f"gradients vanish on their way back to {flow['slowest']}: it learns {slower} "
            "(saturating or dead units, or a bad init)"
        )
    elif flow["burst_ratio"] > 1.0 / VANISH_WARN:
        verdict, status = "explode", "fail" if flow["burst_ratio"] > 1 / VANISH_FAIL else "warn"
        summary += f"; fastest {flow['fastest']}, ratio {flow['burst_ratio']:.2g}"
        text = (
            f"gradients explode towards {flow['fastest']}: it moves {flow['burst_ratio']:.2g}x "
            "faster than the last layer (its init's scale does not fit)"
        )
    else:
        return Finding(check, "ok", summary, values=values)
    fix = _flow_fix(verdict, kinds, setting)
    advice = text + (f" ({', '.join(fix)})" if fix else "")
    return Finding(check, status, summary, advice, values, cause="gradients", fix=fix)


# ---------------------------------------------------------------------------------------------
# update/weight ratio


def _ratios(stats: list[GradStats]) -> tuple[float, GradStats] | None:
    """(median ratio, the layer with the largest) over the weights with a ratio, or None."""
    measured = [s for s in stats if s.update_ratio is not None]
    if not measured:
        return None
    ordered = sorted(s.update_ratio for s in measured)
    top = max(measured, key=lambda s: s.update_ratio)
    return ordered[len(ordered) // 2], top


def check_updates(
    init: list[GradStats],
    after: list[GradStats] | None = None,
    setting: Setting | None = None,
    full_batch: bool = False,
) -> Finding:
    """``layers.updates``: the update/weight ratio of one step, on the init's weights and (if
    given) after training steps. Any layer above 1 fails and a median above 1e-1 in either
    pass warns (cause lr.high); a median below 1e-5 in every pass warns (lr.low). The fix
    scales the recipe's lr towards a ratio of :data:`UPDATE_TARGET`.

    ``full_batch``: L-BFGS takes a line-searched step of many iterations; the ratio's ~1e-3
    rule is for one stochastic step and does not apply (a one-line ok says so)."""
    setting = setting or Setting()
    check = "layers.updates"
    if full_batch:
        return Finding(check, "ok", "not applicable: the update/weight rule (~1e-3) is for "
                       "mini-batch steps, L-BFGS line-searches each full-batch step")  # fmt: skip
    passes = [(w, r) for w, s in (("at init", init), ("after training", after or []))
              if (r := _ratios(s)) is not None]  # fmt: skip
    if not passes:
        return Finding(check, "ok", "no nonzero weight with an update to measure")
    values = {
        ("init" if w == "at init" else "after"): {
            "median_update_ratio": m, "max_update_ratio": t.update_ratio, "max_layer": t.name,
        }
        for w, (m, t) in passes
    }  # fmt: skip
    summary = "; ".join(
        f"{w}: update/weight median {m:.2g}, max {t.update_ratio:.2g} ({t.name})"
        for w, (m, t) in passes
    )
    diverge = [(w, m, t) for w, (m, t) in passes if t.update_ratio > UPDATE_FAIL]
    high = [(w, m, t) for w, (m, t) in passes if m > UPDATE_HIGH]
    if diverge or high:
        when, median, top = (diverge or high)[0]
        factor = min(UPDATE_TARGET / median, UPDATE_HIGH / top.update_ratio, 1 / 3)
        fix = lr_fix(setting, factor)
        if diverge:
            what = f"one step changes {top.name} by more than its own size {when}"
        else:
            what = f"updates are large {when} (median {median:.2g})"
        advice = f"{what}: the learning rate is too high (aim for ~1e-3 to 1e-2)"
        advice += f"; try {fix[0]}" if fix else ""
        status: Status = "fail" if diverge else "warn"
        return Finding(check, status, summary, advice, values, cause="lr.high", fix=fix)
    if all(m < UPDATE_LOW for _, (m, _) in passes):
        median = max(m for _, (m, _) in passes)
        top = max(t.update_ratio for _, (_, t) in passes)
        # raise towards the target, but no layer beyond the "large" edge (UPDATE_HIGH)
        factor = min(UPDATE_TARGET / median, UPDATE_HIGH / top) if top > 0 else math.inf
        fix = lr_fix(setting, max(factor, 3.0))
        advice = f"updates are tiny (median {median:.2g}; aim for ~1e-3): raise the learning rate"
        advice += f"; try {fix[0]}" if fix else ""
        return Finding(check, "warn", summary, advice, values, cause="lr.low", fix=fix)
    return Finding(check, "ok", summary, values=values)
