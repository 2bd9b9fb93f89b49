"""Check 4 of the doctor: activation statistics per layer (lecture 000's histograms, as numbers).

Forward hooks record, for every activation module (or, in a model with none, every Linear/Conv
output): mean, std, the fraction of dead units and the fraction of saturated values.

- A *unit* is a channel (dim 1: a Linear feature or a conv feature map). It is *dead* when it is
  never positive for any example of the batch (and any position): a ReLU that outputs 0 there,
  or a leaky/ELU/GELU-like unit stuck in its flat negative part, passes (almost) no gradient.
- A value is *saturated* when tanh's |y| > 0.99, or sigmoid's y is outside [0.01, 0.99]: the
  local gradient there is below 0.02 (tanh) or 0.01 (sigmoid).

The model runs as training sees it (batch norm in train mode, dropout off; see ``_measuring`` in
``trainlab.nn.init``), without gradients, and is left as it was.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass

import torch
from torch import nn

from trainlab.diagnosis.findings import Finding, most_severe
from trainlab.nn.activations import Maxout, SwiGLU
from trainlab.nn.init import WEIGHTED, _measuring

__all__ = ["LayerStats", "activation_stats", "check_activations", "output_stats"]

RELU_FAMILY = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish,
)  # fmt: skip
SATURATING = (nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardsigmoid)
ACTIVATION_MODULES = (*RELU_FAMILY, *SATURATING, nn.Softplus, nn.Softsign, SwiGLU, Maxout)

# Per-layer std ratio (geometric mean of std_{l+1} / std_l over the layers): lecture 000's stacks
# measure 0.62 (normal 0.01 + tanh, width 4096), 0.71 (Xavier + ReLU: exactly 1/sqrt 2), 0.86
# (Xavier + tanh, which the lecture calls "just right") and 1.0 (Kaiming + ReLU). Below 0.8 the
# signal loses 20% per layer (11% left after 10 layers): warn. A last layer below 10% of the
# first (the brief's "collapse") or above 10x fails. Explosion mirrors it (1.25 per layer).
SHRINK_PER_LAYER = 0.8
GROW_PER_LAYER = 1.25
FAIL_OVERALL = 10.0
# Dead units / saturated values: a few are normal (a ReLU net at init has none on a batch of 64;
# after training some units specialise). Over 20% of a layer wastes capacity and slows learning:
# warn; over half of a layer is a layer that barely passes gradient: fail.
WARN_FRACTION = 0.2
FAIL_FRACTION = 0.5


@dataclass(frozen=True)
class LayerStats:
    """What one layer's output looks like on one batch.

    ``kind`` is the module's class name (``ReLU``, ``Tanh``, ``Linear``); ``dead`` is None for
    units that cannot die (tanh, sigmoid), ``saturated`` None for units that cannot saturate.
    """

    name: str
    kind: str
    mean: float
    std: float
    dead: float | None
    saturated: float | None
    units: int

    def to_json(self) -> dict:
        return asdict(self)


def output_stats(name: str, module: nn.Module, out: torch.Tensor) -> LayerStats:
    out = out.detach().float()
    units = out.shape[1] if out.ndim > 1 else 1
    dead = saturated = None
    if isinstance(module, RELU_FAMILY) and out.ndim > 1:
        per_unit = out.transpose(0, 1).reshape(units, -1)  # (units, examples * positions)
        dead = float((per_unit <= 0).all(dim=1).float().mean())
    if isinstance(module, (nn.Tanh, nn.Hardtanh)):
        saturated = float((out.abs() > 0.99).float().mean())
    elif isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        saturated = float(((out < 0.01) | (out > 0.99)).float().mean())
    std = float(out.std()) if out.numel() > 1 else 0.0
    return LayerStats(name, type(module).__name__, float(out.mean()), std, dead, saturated, units)


@torch.no_grad()
def activation_stats(model: nn.Module, x: torch.Tensor) -> list[LayerStats]:
    """Per-layer output statistics of ``model`` on the batch ``x``, in forward order.

    Activation modules are hooked; a model without any (functional activations) has its
    Linear/Conv outputs hooked instead. A module called twice gives two rows.
    """
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, ACTIVATION_MODULES)]
    if not named:
        named = [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHTED)]
    rows: list[LayerStats] = []

    def hook_for(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if isinstance(output, torch.Tensor):
                rows.append(output_stats(name, module, output))

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in named]
    try:
        with _measuring(model):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return rows


def _fitting_init(kinds: list[str]) -> str:
    """The init that keeps the signal's scale for the model's (most common) activation."""
    kind = Counter(kinds).most_common(1)[0][0] if kinds else ""
    if kind in ("Tanh", "Sigmoid", "Hardtanh", "Hardsigmoid", "Softsign"):
        return (
            f"for {kind}, Xavier: model.init=xavier_normal (std = 1/sqrt(fan_in), "
            "fan_in = k*k*C_in for a conv)"
        )
    if kind == "SELU":
        return "for SELU, LeCun: model.init=lecun_normal (std = 1/sqrt(fan_in))"
    return (
        f"for {kind or 'ReLU'}, Kaiming: model.init=kaiming_normal (std = sqrt(2 / fan_in), "
        "fan_in = k*k*C_in for a conv)"
    )


def _depth_verdict(stats: list[LayerStats], when: str) -> tuple[str, str, str, dict]:
    """(status, summary, advice, values) for how the std changes from first to last layer."""
    stds = [s.std for s in stats]
    values: dict = {"first_std": stds[0], "last_std": stds[-1]}
    if len(stds) < 2:
        return "ok", f"{when}: one layer, std {stds[0]:.3g}", "", values
    if not all(math.isfinite(v) for v in stds):
        return (
            "fail",
            f"{when}: non-finite activations",
            "look for NaN/inf inputs or weights",
            values,
        )
    overall = stds[-1] / stds[0] if stds[0] > 0 else (math.inf if stds[-1] > 0 else 1.0)
    per_layer = overall ** (1.0 / (len(stds) - 1)) if math.isfinite(overall) else math.inf
    values |= {"overall_ratio": overall, "per_layer_ratio": per_layer}
    summary = (
        f"{when}: std {stds[0]:.3g} (first) -> {stds[-1]:.3g} (last) over {len(stds)} layers, "
        f"x{per_layer:.2f} per layer"
    )
    init = _fitting_init([s.kind for s in stats])
    if per_layer < SHRINK_PER_LAYER:
        status = "fail" if overall < 1.0 / FAIL_OVERALL else "warn"
        return (
            status,
            summary,
            f"activations collapse with depth: the init is too small; {init}",
            values,
        )  # noqa: E501
    if per_layer > GROW_PER_LAYER:
        status = "fail" if overall > FAIL_OVERALL else "warn"
        return (
            status,
            summary,
            f"activations explode with depth: the init is too large; {init}",
            values,
        )  # noqa: E501
    return "ok", summary, "", values


def _unit_verdict(stats: list[LayerStats], when: str) -> tuple[str, list[str], dict]:
    status, notes, values = "ok", [], {}
    for field, what, fix in (
        ("dead", "dead units", "lower the learning rate, use leaky_relu, or check the init/bias"),
        ("saturated", "saturated values", "a smaller init (Xavier) or a non-saturating activation"),
    ):
        measured = [(getattr(s, field), s.name) for s in stats if getattr(s, field) is not None]
        if not measured:
            continue
        worst_value, worst_name = max(measured)
        values[f"max_{field}"] = worst_value
        if worst_value > WARN_FRACTION:
            if worst_value > FAIL_FRACTION:
                status = "fail"
            elif status == "ok":
                status = "warn"
            notes.append(f"{when}: {worst_value:.0%} {what} in {worst_name or 'the model'} ({fix})")
    return status, notes, values


def check_activations(
    stats_init: list[LayerStats], stats_after: list[LayerStats] | None = None
) -> Finding:
    """Verdict on activation statistics at init (and, if given, after some training steps).

    Fails or warns when the std collapses or explodes with depth (naming the init that fits the
    activation) and when a layer has too many dead units or saturated values.
    """
    status, summaries, advice, values = "ok", [], [], {}
    for when, stats in (("at init", stats_init), ("after training", stats_after)):
        if not stats:
            continue
        key = "init" if when == "at init" else "after"
        s1, summary, adv, v1 = _depth_verdict(stats, when)
        s2, notes, v2 = _unit_verdict(stats, when)
        values[key] = {**v1, **v2, "layers": [s.to_json() for s in stats]}
        summaries.append(summary)
        advice += [a for a in (adv, *notes) if a]
        status = most_severe(status, s1, s2)
    if not summaries:
        return Finding("activations", "ok", "no activation statistics to judge", values=values)
    return Finding("activations", status, "; ".join(summaries), "; ".join(advice), values)
