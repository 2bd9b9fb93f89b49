"""The command center's figures: every run's learning curves on one figure, the validation metric
against each hyperparameter, and Optuna's parameter importances.

Lecture 002, step 6: "Losses may be noisy, use a scatter plot and also plot moving average to
see trends better", so the training loss of each run is drawn raw (thin, transparent) and as a
moving average (thick). With many runs a legend is unreadable, so the colour says the rank
instead (the best run strongest); the best run is always drawn on top in its own colour. All
figures are made with :mod:`trainlab.figures` (no pyplot, no backend change) and written
atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from trainlab.diagnosis.curves import smooth
from trainlab.figures import new_figure, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from trainlab.tuning.compare import Run

__all__ = [
    "AxisKind",
    "axis_kind",
    "category_label",
    "curves_figure",
    "importances_figure",
    "param_figure",
    "save",
]

AxisKind = Literal["log", "linear", "category"]

LEGEND_MAX = 10  # up to this many runs get distinct colours and a legend; more: rank colours
LOG_DECADES = 2.0  # plain run folders: a log x-axis when the values span this many decades
BEST_COLOUR = "#cf222e"
STAGE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")
LABEL_MAX = 24  # characters of a category shown under the axis
DPI = 100


def save(fig: Figure, path: Path) -> Path:
    """Write a figure of this page (tight layout, the page's resolution)."""
    fig.tight_layout()
    return save_figure(fig, path, dpi=DPI)


def _plain(text: str) -> str:
    """Text for matplotlib as it is: a ``$`` would otherwise start mathtext (and an odd number of
    them fails at draw time)."""
    return text.replace("$", r"\$")


def category_label(value: Any) -> str:
    """A hyperparameter value as a category: strings as they are, anything else as compact JSON
    (``None`` reads ``null``, a list ``[32,64]``), so equal values fall in one category."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def axis_kind(values: Sequence[Any], spec: dict[str, Any] | None = None) -> AxisKind:
    """How a hyperparameter's x-axis is drawn.

    With the search space's ``spec`` (a study): ``loguniform`` and ``int`` with ``log`` are log,
    ``choice`` and ``grid`` categories, the rest linear. Without one (plain run folders, where
    nobody said how the values were picked): numbers spanning >= ``LOG_DECADES`` decades are log
    (a learning rate 1e-4..1e-2 on a linear axis puts all but one point on top of each other),
    other numbers linear, anything else (strings, booleans, lists, null) categories.
    """
    if spec is not None:
        kind = spec.get("kind")
        if kind in ("choice", "grid"):
            return "category"
        if kind == "loguniform" or (kind == "int" and spec.get("log")):
            return "log"
        if kind in ("uniform", "int"):
            return "linear"
    if not values or not all(_is_number(v) for v in values):
        return "category"
    low, high = min(values), max(values)
    if low > 0 and math.log10(high / low) >= LOG_DECADES:
        return "log"
    return "linear"


def run_colours(runs: Sequence[Run], best: Run | None) -> list[Any]:
    """One colour per run (``runs`` are in rank order, best first): distinct colours while a
    legend can name them, else a ramp from pale (worst) to strong (best); the best run red."""
    from matplotlib import colormaps

    n = len(runs)
    if n <= LEGEND_MAX:
        cycle = [colormaps["tab10"](i) for i in range(10) if i != 3]  # 3 is red: the best's
        colours = [cycle[i % len(cycle)] for i in range(n)]
    else:
        ramp = colormaps["Blues"]
        colours = [ramp(0.95 - 0.6 * i / max(1, n - 1)) for i in range(n)]
    return [BEST_COLOUR if run is best else c for run, c in zip(runs, colours, strict=True)]


def curves_figure(runs: Sequence[Run], best: Run | None, window: int = 0) -> Figure:
    """Training loss per logged step (raw thin, moving average thick), validation loss and
    validation accuracy per epoch, every run on the same three axes. ``window``: the moving
    average's width in logged records (0: about a tenth of them, as the doctor draws it)."""
    fig, (ax_train, ax_vloss, ax_vacc) = new_figure(15, 4.6, ncols=3)
    colours = run_colours(runs, best)
    legend = len(runs) <= LEGEND_MAX
    # the worst first, so the better runs (and the best last of all) are drawn on top
    for run, colour in reversed(list(zip(runs, colours, strict=True))):
        top = run is best
        width, z = (3.2, 10) if top else (1.8, 3)
        label = _plain(run.name + (" (best)" if top else "")) if legend or top else None
        steps = np.array([s for s, _ in run.train], dtype=float)
        loss = np.array([v for _, v in run.train], dtype=float)
        ok = np.isfinite(loss)
        if ok.any():
            ax_train.plot(steps[ok], loss[ok], color=colour, lw=0.8, alpha=0.3, zorder=z - 1)
            mean = smooth(loss[ok], window or None)
            ax_train.plot(steps[ok], mean, color=colour, lw=width, zorder=z, label=label)
        for ax, key in ((ax_vloss, "val_loss"), (ax_vacc, "val_acc")):
            points = [(r["epoch"], r[key]) for r in run.val if _is_number(r.get(key))]
            if points:
                x, y = zip(*points, strict=True)
                ax.plot(x, y, "o-", color=colour, lw=width * 0.8, ms=4, zorder=z, label=label)
    titles = (
        ("training loss (thin: raw, thick: moving average)", "step"),
        ("validation loss", "epoch"),
        ("validation accuracy", "epoch"),
    )
    for ax, (title, xlabel) in zip((ax_train, ax_vloss, ax_vacc), titles, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "nothing logged", ha="center", va="center", transform=ax.transAxes)
    _log_loss_axis(ax_train)
    if legend and ax_vacc.lines:
        ax_vacc.legend(fontsize=7, loc="lower right")
    elif ax_train.lines:
        ax_train.legend(fontsize=8, title="colour: rank, darker = better", title_fontsize=8)
    return fig


def _log_loss_axis(ax: Any) -> None:
    """A log y-axis when the losses span more than 30x (a diverging run would flatten the rest)."""
    ys = np.concatenate([line.get_ydata() for line in ax.lines]) if ax.lines else np.array([])
    ys = ys[np.isfinite(ys)]
    if len(ys) and ys.min() > 0 and ys.max() / ys.min() > 30:
        ax.set_yscale("log")


def param_figure(
    name: str,
    points: Sequence[tuple[Any, float, str | None, str]],
    kind: AxisKind,
    metric: str,
    ranges: Sequence[tuple[str, dict[str, Any]]] = (),
    stages: Sequence[str] = (),
) -> Figure:
    """The validation metric against one hyperparameter: ``points`` are ``(value, metric,
    stage, state)``; ``ranges`` each stage's range of this parameter (drawn as a shaded band
    between two lines); points are coloured by stage when there are stages, pruned ones drawn
    as crosses (their value is an intermediate one)."""
    fig, ax = new_figure(5.2, 3.6)
    colour_of = {s: STAGE_COLOURS[i % len(STAGE_COLOURS)] for i, s in enumerate(stages)}
    categories: list[str] = []
    if kind == "category":
        categories = sorted({category_label(v) for v, *_ in points})
    for stage, spec in ranges:
        if kind != "category" and _is_number(spec.get("low")) and _is_number(spec.get("high")):
            colour = colour_of.get(stage, "grey")
            ax.axvspan(spec["low"], spec["high"], color=colour, alpha=0.1, lw=0)
            for edge in (spec["low"], spec["high"]):
                ax.axvline(edge, color=colour, ls="--", lw=1, alpha=0.8)
    for i, stage in enumerate([*stages] or [None]):
        dodge = (i - (max(1, len(stages)) - 1) / 2) * 0.08
        for pruned in (False, True):
            mine = [p for p in points if p[2] == stage and (p[3] == "pruned") == pruned]
            if not mine:
                continue
            xs = [
                categories.index(category_label(v)) + dodge if kind == "category" else v
                for v, *_ in mine
            ]
            label = _plain(stage or "runs") + (" (pruned)" if pruned else "")
            colour = colour_of.get(stage, "tab:blue") if stage else "tab:blue"
            marker = dict(marker="x") if pruned else dict(marker="o", edgecolors="black")
            ax.scatter(xs, [p[1] for p in mine], s=36, color=colour, lw=0.6, label=label, **marker)
    if kind == "log":
        ax.set_xscale("log")
    elif kind == "linear" and all(isinstance(v, int) for v, *_ in points):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs 2, 3: not 2.2, 2.4
    elif kind == "category":
        ax.set_xticks(range(len(categories)))
        short = [c if len(c) <= LABEL_MAX else c[: LABEL_MAX - 1] + "…" for c in categories]
        ax.set_xticklabels([_plain(c) for c in short], rotation=20 if len(categories) > 3 else 0)
        ax.set_xlim(-0.6, len(categories) - 0.4)
    ax.set_xlabel(_plain(name) + (" (log)" if kind == "log" else ""))
    ax.set_ylabel(_plain(metric))
    ax.set_title(_plain(f"{metric} vs {name}"), fontsize=10)
    ax.grid(alpha=0.3)
    if stages or any(p[3] == "pruned" for p in points):
        ax.legend(fontsize=7)
    return fig


def importances_figure(per_stage: dict[str, dict[str, float]]) -> Figure:
    """Optuna's parameter importances as horizontal bars, one panel per stage."""
    n = max(1, len(per_stage))
    rows = max((len(v) for v in per_stage.values()), default=1)
    fig, axes = new_figure(4.6 * n, 1.2 + 0.42 * rows, ncols=n, squeeze=False)
    for ax, (stage, importances) in zip(axes[0], per_stage.items(), strict=False):
        names = list(importances)[::-1]  # most important on top
        ax.barh(range(len(names)), [importances[k] for k in names], color="tab:blue")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([_plain(k) for k in names], fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance (fANOVA, sums to 1)")
        ax.set_title(_plain(f"stage {stage}"), fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    return fig
