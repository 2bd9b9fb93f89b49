"""Lecture 000's initialisation experiment, runnable: ``trainlab lab init-stats``.

A stack of ``depth`` bias-free ``Linear(width, width)`` layers, each followed by the activation,
fed x ~ N(0, 1) of shape (batch, width), as on the lecture's slides (``dims = [4096] * 7``, batch
16). Each layer's output mean and std show what the init does to the signal with depth: with
``normal:0.01`` and tanh every layer shrinks it (the lecture's 0.49, 0.29, 0.18, 0.11, 0.07, 0.05),
``xavier`` keeps tanh's scale, collapses again under ReLU (std x 1/sqrt 2 per layer), and
``kaiming`` keeps ReLU's.

The init and the activation are the registered ones (``trainlab list init``), applied exactly as a
recipe would apply them, so the lab shows what ``model.init`` does in real models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from trainlab.errors import RecipeError
from trainlab.figures import new_figure, save_figure
from trainlab.nn.activations import kaiming_nonlinearity
from trainlab.nn.init import DataDependentInit, init_model
from trainlab.registry import closest

__all__ = ["init_stats", "parse_spec", "plot_init_stats", "ALIASES"]

ALIASES = {"xavier": "xavier_normal", "kaiming": "kaiming_normal", "he": "kaiming_normal"}


def parse_spec(kind: str, text: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:PARAM]`` -> (registered name, {first parameter: value}), checked like a recipe.

    The parameter after the colon is the factory's first recipe-settable parameter (``std`` for
    ``normal``, ``gain`` for ``xavier_normal``, ``mode`` for ``kaiming_normal``, ``alpha`` for
    ``leaky_relu``). An unknown name or a bad value is a one-line :class:`RecipeError`.
    """
    from trainlab.recipe import ActivationSpec, InitSpec, _registry

    name, _, param = text.partition(":")
    name = ALIASES.get(name, name) if kind == "init" else name
    registry = _registry(kind)
    if name not in registry:
        choices = registry.names() + (list(ALIASES) if kind == "init" else [])
        hint = closest(name, choices)
        did = f" did you mean {hint!r}?" if hint else ""
        flag = "--act" if kind == "activation" else "--init"
        raise RecipeError(f"{flag}: unknown {kind} {name!r};{did} valid: {', '.join(choices)}")
    raw: dict[str, Any] = {"name": name}
    if param:
        params = list(registry.get(name).params())
        if not params:
            raise RecipeError(f"{kind} {name!r} takes no parameter (got {param!r})")
        raw[params[0]] = param
    spec_cls = InitSpec if kind == "init" else ActivationSpec
    try:
        spec = spec_cls.model_validate(raw)
    except ValidationError as exc:
        msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise RecipeError(msg) from None
    return name, spec.params()


def _stack(init: str, act: str, depth: int, width: int, x: torch.Tensor) -> nn.Sequential:
    init_name, init_params = parse_spec("init", init)
    act_name, act_params = parse_spec("activation", act)
    from trainlab.nn.activations import ACTIVATIONS
    from trainlab.nn.init import INITS

    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width, bias=False), ACTIVATIONS.build(act_name, **act_params)]
    model = nn.Sequential(*layers)
    context = {"activation": kaiming_nonlinearity(act_name, act_params)}
    weight_init = INITS.build(init_name, context=context, **init_params)
    init_model(model, weight_init)
    if isinstance(weight_init, DataDependentInit):  # lsuv: rescale on the very input it sees
        weight_init.fit(model, x)
    return model


@torch.no_grad()
def init_stats(
    init: str = "normal:0.01",
    act: str = "tanh",
    depth: int = 6,
    width: int = 4096,
    batch: int = 16,
    seed: int = 0,
    keep_values: bool = False,
) -> list[dict[str, Any]]:
    """Each layer's activation mean and std (after the nonlinearity) at initialisation.

    Returns ``[{"layer": 1, "mean": ..., "std": ...}, ...]``; with ``keep_values`` each row also
    holds ``"values"``, the layer's activations as a flat float tensor (for histograms).
    """
    if depth < 1 or width < 1 or batch < 1:
        raise RecipeError(f"depth, width and batch must be >= 1 (got {depth}, {width}, {batch})")
    torch.manual_seed(seed)
    x = torch.randn(batch, width)
    model = _stack(init, act, depth, width, x)
    rows: list[dict[str, Any]] = []
    h = x
    for i, module in enumerate(model):
        h = module(h)
        if i % 2 == 1:  # after each activation
            row: dict[str, Any] = {
                "layer": len(rows) + 1,
                "mean": float(h.mean()),
                "std": float(h.std()),
            }
            if keep_values:
                row["values"] = h.detach().flatten().clone()
            rows.append(row)
    return rows


def plot_init_stats(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """One histogram per layer in a row (the lecture's figure), mean and std in each title."""
    n = len(rows)
    ncols = min(n, 6)
    nrows = (n + ncols - 1) // ncols
    fig, axes = new_figure(2.5 * ncols, 2.4 * nrows + 0.6, nrows=nrows, ncols=ncols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    # one x range for every layer, as on the lecture's slides: a collapse shows as a narrowing
    lo = min(float(r["values"].min()) for r in rows)
    hi = max(float(r["values"].max()) for r in rows)
    if not hi - lo > 1e-12:  # all equal (zero init) or not finite: a visible default range
        lo, hi = (lo - 0.5, hi + 0.5) if abs(lo) < float("inf") else (-1.0, 1.0)
    for ax, row in zip(axes.flat, rows, strict=False):
        values = row["values"].float().numpy()
        ax.hist(values, bins=60, range=(lo, hi), color="tab:blue")
        ax.set_title(
            f"layer {row['layer']}\nmean {row['mean']:+.2g}  std {row['std']:.2g}", fontsize=9
        )
        ax.set_xlabel("activation", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
    for r in range(nrows):
        axes[r, 0].set_ylabel("count", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
