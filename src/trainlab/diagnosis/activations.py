"""The layers check's activation statistics per layer (lecture 000's histograms, as numbers).

Forward hooks record, for every activation module (or, in a model with none, every Linear/Conv
output): mean, std, the fraction of dead units and the fraction of saturated values.

- A *unit* is a channel (dim 1: a Linear feature or a conv feature map). It is *dead* when it is
  never positive for any example of the batch (and any position): a ReLU that outputs 0 there,
  or a leaky/ELU/GELU-like unit stuck in its flat negative part, passes (almost) no gradient.
- A value is *saturated* when tanh's |y| > 0.99, or sigmoid's y is outside [0.01, 0.99]: the
  local gradient there is below 0.02 (tanh) or 0.01 (sigmoid).

The model runs as training sees it (batch norm in train mode, dropout off; see ``_measuring`` in
``trainlab.nn.init``), without gradients, and is left as it was.

Layers are named by :func:`layer_label` (``features.3 Conv2d(32->64)``) everywhere: summaries,
advice, values and the figure. Advice never repeats what the recipe already has: the checks are
given the recipe's :class:`Setting`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from trainlab.diagnosis import remedies
from trainlab.diagnosis.findings import CAUSES, Finding, Status, most_severe
from trainlab.nn.activations import Maxout, SwiGLU
from trainlab.nn.init import WEIGHTED, _measuring

if TYPE_CHECKING:
    from trainlab.recipe import Recipe

__all__ = [
    "LayerStats",
    "Setting",
    "activation_stats",
    "check_activations",
    "fitting_init",
    "layer_label",
    "lr_fix",
    "output_stats",
]

RELU_FAMILY = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish,
)  # fmt: skip
SATURATING = (nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardsigmoid)
ACTIVATION_MODULES = (*RELU_FAMILY, *SATURATING, nn.Softplus, nn.Softsign, SwiGLU, Maxout)
SATURATING_KINDS = ("Tanh", "Sigmoid", "Hardtanh", "Hardsigmoid", "Softsign")

# Per-layer std ratio (geometric mean of std_{l+1} / std_l over the layers): lecture 000's stacks
# measure 0.62 (normal 0.01 + tanh, width 4096), 0.71 (Xavier + ReLU: exactly 1/sqrt 2), 0.86
# (Xavier + tanh, which the lecture calls "just right") and 1.0 (Kaiming + ReLU). Below 0.8 the
# signal loses 20% per layer (11% left after 10 layers): warn. A last layer below 10% of the
# first (the brief's "collapse") or above 10x fails. Explosion mirrors it (1.25 per layer).
SHRINK_PER_LAYER = 0.8
GROW_PER_LAYER = 1.25
FAIL_OVERALL = 10.0
# ... and only once it has compounded: a first-to-last change under 4x is not judged, however
# few layers it took. PyTorch's own Linear init (std 1/sqrt(3 fan_in), 0.41 per ReLU layer)
# on a two-hidden-layer MLP measures 0.42 overall and trains digits to 97% like Kaiming; the
# same init over four layers (0.07) is the lecture's collapse.
WARN_OVERALL = 4.0
# Dead units / saturated values: a few are normal (a ReLU net at init has none on a batch of 64;
# after training some units specialise). Over 20% of a layer wastes capacity and slows learning:
# warn; over half of a layer is a layer that barely passes gradient: fail.
WARN_FRACTION = 0.2
FAIL_FRACTION = 0.5
# After the check's training steps from an init where they were fine: the digits convnet with
# group norm (seed 0, a healthy recipe) has 23% dead units in its last ReLU after 20 steps at
# lr 3e-3; at lr 1 it has 92%. Units that die while training are blamed on the learning rate
# only past half the layer (warn) or 80% (fail).
AFTER_WARN_FRACTION = 0.5
AFTER_FAIL_FRACTION = 0.8
# The learning rate a "too high" verdict suggests without a measured update ratio to scale by:
# ten times lower, the step of lecture 002's coarse grid (1e-1, 1e-2, 1e-3, 1e-4).
LR_STEP = 10.0


def layer_label(name: str, module: nn.Module) -> str:
    """How every layer check names a module: its path and short type, with in->out for Linear
    and Conv (``features.3 Conv2d(32->64)``, ``classifier.1 Linear(256->10)``, ``2 ReLU``), so
    a finding points at a layer a reader can find in ``print(model)``."""
    kind = type(module).__name__
    if isinstance(module, nn.Linear):
        kind += f"({module.in_features}->{module.out_features})"
    elif isinstance(module, nn.modules.conv._ConvNd):
        kind += f"({module.in_channels}->{module.out_channels})"
    return f"{name} {kind}" if name else kind


@dataclass(frozen=True)
class Setting:
    """What the recipe already has, so no advice recommends it; all None for a hand-built model
    (then every fix is offered). ``own_model``: trainlab's architecture, where ``model.norm``
    and ``model.activation`` apply (a torchvision or user class ignores them)."""

    init: str | None = None
    lr: float | None = None
    activation: str | None = None
    norm: str | None = None
    own_model: bool = True

    @classmethod
    def of(cls, recipe: Recipe) -> Setting:
        """The recipe's init (its default is already filled in: kaiming_normal for trainlab's
        models, keep for foreign ones), learning rate, activation and norm."""
        name = recipe.model.name
        return cls(
            init=recipe.model.init.name,
            lr=recipe.optimizer.lr,
            activation=recipe.model.activation.name,
            norm=recipe.model.norm.name,
            own_model=":" not in name and not name.startswith("tv."),
        )

    def fits(self, kinds: list[str]) -> bool:
        """Whether the recipe's init already keeps the signal's scale for these activations."""
        return self.init is not None and self.init in _FITTING[_family(kinds)]

    def override(self, key: str, value: str) -> tuple[str, ...]:
        """``("key=value",)``, or () when the recipe already has that value (or cannot use it)."""
        have = {"model.init": self.init, "model.activation": self.activation,
                "model.norm": self.norm}.get(key)  # fmt: skip
        if key in ("model.activation", "model.norm") and not self.own_model:
            return ()
        return () if have == value else (f"{key}={value}",)


def _family(kinds: list[str]) -> str:
    """``relu``, ``saturating`` or ``selu``: the model's most common activation's family."""
    kind = Counter(kinds).most_common(1)[0][0] if kinds else ""
    if kind in SATURATING_KINDS:
        return "saturating"
    return "selu" if kind == "SELU" else "relu"


# The inits that keep the scale per family (nn/init.py): Kaiming's "auto" gain follows the
# activation (5/3 for tanh, 1 for sigmoid, LeCun's for SELU), LSUV measures it; Glorot's and
# orthogonal (gain 1) halve the variance per ReLU layer (lecture 000's collapse), so fit
# saturating units only. keep/default (PyTorch's a=sqrt 5 uniform) fit nothing for certain.
_FITTING = {
    "relu": ("kaiming_normal", "kaiming_uniform", "lsuv"),
    "saturating": (
        "xavier_normal",
        "xavier_uniform",
        "lecun_normal",
        "kaiming_normal",
        "kaiming_uniform",
        "orthogonal",
        "lsuv",
    ),  # fmt: skip
    "selu": ("lecun_normal", "kaiming_normal", "kaiming_uniform", "lsuv"),
}


def fitting_init(kinds: list[str]) -> tuple[str, str]:
    """(init name, its rule as text) that keeps the signal's scale for the model's (most
    common) activation; the formulas are torch.nn.init's (gain 1 for Glorot)."""
    kind = Counter(kinds).most_common(1)[0][0] if kinds else "ReLU"
    conv = "fan_in = k*k*C_in for a k x k conv"
    family = _family(kinds)
    if family == "saturating":
        return "xavier_normal", (
            f"for {kind}, Glorot/Xavier: std = sqrt(2 / (fan_in + fan_out)), {conv}"
        )
    if family == "selu":
        return "lecun_normal", "for SELU, LeCun: std = 1/sqrt(fan_in)"
    if kind == "Linear":
        kind = "ReLU"  # no activation module: functional units, most likely ReLU
    return "kaiming_normal", f"for {kind}, Kaiming/He: std = sqrt(2 / fan_in), {conv}"


def lr_fix(setting: Setting, factor: float) -> tuple[str, ...]:
    """``optimizer.lr=`` the recipe's lr times ``factor`` (:func:`remedies.lr_fix`)."""
    return remedies.lr_fix(setting.lr, factor)


@dataclass(frozen=True)
class LayerStats:
    """What one layer's output looks like on one batch.

    ``name`` is the :func:`layer_label`; ``kind`` the module's class name (``ReLU``, ``Tanh``,
    ``Linear``); ``dead`` is None for units that cannot die (tanh, sigmoid), ``saturated`` None
    for units that cannot saturate.
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
    """One layer's statistics; ``name`` is its module path (labelled here)."""
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
    label = layer_label(name, module)
    return LayerStats(label, type(module).__name__, float(out.mean()), std, dead, saturated, units)


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


@dataclass(frozen=True)
class _Problem:
    """One symptom: its status, when it was seen (``init``/``after``), the cause it points to,
    the advice clause and the fix for it."""

    status: Status
    when: str
    cause: str
    text: str
    fix: tuple[str, ...] = ()


def _depth(stats: list[LayerStats]) -> tuple[str, dict]:
    """(``collapse``/``explode``/``nonfinite``/``ok``, values) for how the std changes with
    depth; the status follows from the values (see :data:`FAIL_OVERALL`)."""
    stds = [s.std for s in stats]
    values: dict = {"first_std": stds[0], "last_std": stds[-1], "layers_measured": len(stds)}
    if not all(math.isfinite(v) for v in stds):
        return "nonfinite", values
    if len(stds) < 2:
        return "ok", values
    overall = stds[-1] / stds[0] if stds[0] > 0 else (math.inf if stds[-1] > 0 else 1.0)
    per_layer = overall ** (1.0 / (len(stds) - 1)) if math.isfinite(overall) else math.inf
    values |= {"overall_ratio": overall, "per_layer_ratio": per_layer}
    if per_layer < SHRINK_PER_LAYER and overall < 1.0 / WARN_OVERALL:
        return "collapse", values
    if per_layer > GROW_PER_LAYER and overall > WARN_OVERALL:
        return "explode", values
    return "ok", values


def _depth_problem(
    stats: list[LayerStats], when: str, setting: Setting, healthy_init: bool
) -> tuple[_Problem | None, str, dict]:
    """The depth symptom of one pass (None when healthy), its summary and values.

    At init the init is to blame (and the fitting init is the fix, unless the recipe has it);
    after training from a healthy init, the steps broke the scale: the learning rate."""
    verdict, values = _depth(stats)
    stds = [s.std for s in stats]
    if verdict == "nonfinite":
        summary = f"{when}: non-finite activations"
    elif len(stds) < 2:
        summary = f"{when}: one layer, std {stds[0]:.3g}"
    else:
        summary = (
            f"{when}: std {stds[0]:.3g} ({stats[0].name}) -> {stds[-1]:.3g} ({stats[-1].name}) "
            f"over {len(stds)} layers, x{values['per_layer_ratio']:.2f} per layer"
        )
    key = "init" if when == "at init" else "after"
    if verdict == "ok" or (key == "after" and not healthy_init):
        return None, summary, values  # (a symptom already there at init is the init's note)
    if key == "after" and healthy_init:
        what = "activations went non-finite" if verdict == "nonfinite" else f"activations {verdict}"
        text = f"{what} during training from a healthy init: the steps are too large"
        return _Problem("fail", key, "lr.high", text, lr_fix(setting, 1 / LR_STEP)), summary, values
    if verdict == "nonfinite":
        text = "non-finite activations at init: look for NaN/inf inputs or weights"
        return _Problem("fail", key, "init.scale", text), summary, values
    overall = values["overall_ratio"]
    failing = overall < 1.0 / FAIL_OVERALL if verdict == "collapse" else overall > FAIL_OVERALL
    kinds = [s.kind for s in stats]
    init, rule = fitting_init(kinds)
    small = "too small" if verdict == "collapse" else "too large"
    if setting.fits(kinds):
        fix = setting.override("model.norm", "batch")
        text = (
            f"activations {verdict} with depth although the init ({setting.init}) fits the "
            "activation: the architecture does not keep the scale"
            + ("; add normalisation (model.norm=batch)" if fix else "")
        )
    else:
        fix = setting.override("model.init", init)
        text = f"activations {verdict} with depth: the init is {small}; {rule}"
        text += f" (model.init={init})" if fix else ""
    return _Problem("fail" if failing else "warn", key, "init.scale", text, fix), summary, values


def _unit_problems(
    stats: list[LayerStats], when: str, setting: Setting, healthy_init: dict[str, bool]
) -> tuple[list[_Problem], dict]:
    """Dead or saturated units in one pass: (problems, values). After training from an init
    where they were fine (``healthy_init[field]``), the learning rate killed them (lecture 000:
    a too high learning rate kills ReLUs); at init the init or the biases did."""
    problems: list[_Problem] = []
    values: dict = {}
    key = "init" if when == "at init" else "after"
    kinds = [s.kind for s in stats]
    for field, what in (("dead", "dead units"), ("saturated", "saturated values")):
        measured = [(getattr(s, field), s.name) for s in stats if getattr(s, field) is not None]
        if not measured:
            continue
        worst_value, worst_name = max(measured)
        values[f"max_{field}"] = worst_value
        values[f"max_{field}_layer"] = worst_name
        late = key == "after" and healthy_init.get(field, True)
        if key == "after" and not late:
            continue  # already there at init: the init's note says it
        warn, fail = (AFTER_WARN_FRACTION, AFTER_FAIL_FRACTION) if late else (
            WARN_FRACTION, FAIL_FRACTION)  # fmt: skip
        if worst_value <= warn:
            continue
        status: Status = "fail" if worst_value > fail else "warn"
        seen = f"{worst_value:.0%} {what} in {worst_name or 'the model'} {when}"
        if late:
            fix = lr_fix(setting, 1 / LR_STEP)
            problems.append(
                _Problem(status, key, "lr.high", f"{seen}: lower the learning rate", fix)
            )
        elif field == "dead":
            init, _ = fitting_init(kinds)
            if setting.fits(kinds):
                fix = setting.override("model.activation", "leaky_relu")
                hint = "negative biases or inputs" + (
                    "; a leaky unit cannot die (model.activation=leaky_relu)" if fix else ""
                )
            else:
                fix = setting.override("model.init", init)
                hint = f"re-initialise (model.init={init} also zeroes the biases)"
            problems.append(_Problem(status, key, "units.dead", f"{seen}: {hint}", fix))
        else:
            init, rule = fitting_init(kinds)
            if setting.fits(kinds):
                fix = setting.override("model.norm", "batch")
                hint = "the init fits; normalise before the unit (model.norm=batch)"
            else:
                fix = setting.override("model.init", init)
                hint = f"the init is too large; {rule} (model.init={init})"
            problems.append(_Problem(status, key, "units.saturated", f"{seen}: {hint}", fix))
    return problems, values


def _main(problems: list[_Problem]) -> _Problem | None:
    """The problem a finding is about: the most severe, then the earliest (init before after),
    then the most upstream cause."""
    order = {"ok": 0, "warn": 1, "fail": 2}
    return min(
        problems,
        key=lambda p: (-order[p.status], p.when != "init", CAUSES.get(p.cause, 99)),
        default=None,
    )


def check_activations(
    stats_init: list[LayerStats],
    stats_after: list[LayerStats] | None = None,
    setting: Setting | None = None,
) -> Finding:
    """``layers.activations``: the std collapsing or exploding with depth (cause init.scale,
    fix the init that fits the activation), dead units (units.dead) and saturated values
    (units.saturated) at init; a symptom that appears only after training steps from a healthy
    init blames the learning rate (lr.high). One cause per finding: the most severe symptom's,
    the others are named in the advice."""
    setting = setting or Setting()
    problems: list[_Problem] = []
    summaries, values = [], {}
    healthy_depth, healthy_units = True, {"dead": True, "saturated": True}
    for when, stats in (("at init", stats_init), ("after training", stats_after)):
        if not stats:
            continue
        key = "init" if when == "at init" else "after"
        depth, summary, v1 = _depth_problem(stats, when, setting, healthy_depth)
        units, v2 = _unit_problems(stats, when, setting, healthy_units)
        if key == "init":
            healthy_depth = depth is None
            healthy_units = {f: v2.get(f"max_{f}", 0.0) <= WARN_FRACTION for f in healthy_units}
        values[key] = {**v1, **v2, "layers": [s.to_json() for s in stats]}
        summaries.append(summary)
        problems += [p for p in (depth, *units) if p is not None]
    check = "layers.activations"
    if not summaries:
        return Finding(check, "ok", "no activation statistics to judge", values=values)
    main = _main(problems)
    if main is None:
        return Finding(check, "ok", "; ".join(summaries), values=values)
    status = most_severe(*(p.status for p in problems))
    advice = "; ".join([main.text] + [p.text for p in problems if p is not main])
    return Finding(
        check, status, "; ".join(summaries), advice, values, cause=main.cause, fix=main.fix
    )
