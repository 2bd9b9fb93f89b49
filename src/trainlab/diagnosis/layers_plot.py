"""One figure for the per-layer checks: activation std (init and after training steps), dead or
saturated fractions, gradient norm relative to weight norm, and the update/weight ratio. The x
axes are labelled with the layers' names (``features.3 Conv2d(32->64)``), as the findings name
them."""

from __future__ import annotations

import math
from pathlib import Path

from trainlab.diagnosis.activations import LayerStats
from trainlab.diagnosis.gradients import GradStats
from trainlab.figures import new_figure, save_figure

__all__ = ["plot_layers"]

# Past this many layers the names no longer fit under an axis: the ticks become numbers.
MAX_NAMED_TICKS = 24


def _finite(values: list[float | None]) -> list[float]:
    """Values a log axis can show: None, 0 and inf (a zero weight's ratios) become gaps."""
    return [v if v is not None and math.isfinite(v) and v > 0 else math.nan for v in values]


def _name_ticks(ax, names: list[str]) -> None:
    """Layer names under the axis (forward order), or integers when there are too many."""
    from matplotlib.ticker import MaxNLocator

    if names and len(names) <= MAX_NAMED_TICKS:
        ax.set_xticks(range(1, len(names) + 1))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_layers(
    init: list[LayerStats],
    after: list[LayerStats],
    grads: list[GradStats],
    path: str | Path,
    grads_init: list[GradStats] | None = None,
) -> Path:
    """Three panels, layers on the x axis in forward order; log scales where ratios live.
    ``grads`` are measured after the training steps, ``grads_init`` (if given) on the init."""
    fig, (ax_std, ax_frac, ax_grad) = new_figure(14, 4.8, ncols=3)
    for stats, label, style in ((init, "at init", "o-"), (after, "after training steps", "s--")):
        ax_std.plot(range(1, len(stats) + 1), [s.std for s in stats], style, label=label)
        frac = [(s.dead if s.dead is not None else s.saturated) or 0.0 for s in stats]
        ax_frac.plot(range(1, len(stats) + 1), frac, style, label=label)
    ax_std.set(title="activation std per layer", ylabel="std")
    stds = [s.std for s in init + after if math.isfinite(s.std)]
    if stds and max(stds) > 10 * max(min(stds), 1e-12):
        ax_std.set_yscale("log")  # collapse or explosion: log scale shows it
    ax_frac.set(
        title="dead (ReLU) or saturated (tanh/sigmoid) share",
        ylabel="fraction of units/values",
        ylim=(-0.02, 1.02),
    )
    x = range(1, len(grads) + 1)
    for stats, when, marker in ((grads_init, "init", "^:"), (grads, "after", "o-")):
        if not stats:
            continue
        ax_grad.plot(
            x, _finite([g.relative_grad for g in stats]), marker, label=f"|grad|/|w| {when}"
        )
        ratios = [g.update_ratio for g in stats]
        if any(r is not None for r in ratios):
            ax_grad.plot(x, _finite(ratios), "s" + marker[1:], label=f"update/weight {when}")
    ax_grad.axhline(1e-3, color="gray", ls=":", label="1e-3 (healthy update ratio)")
    ax_grad.set_yscale("log")
    ax_grad.set(title="gradients per weight layer")
    names = [s.name for s in (after or init)]
    _name_ticks(ax_std, names)
    _name_ticks(ax_frac, names)
    _name_ticks(ax_grad, [g.name for g in grads])
    for ax in (ax_std, ax_frac, ax_grad):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    # fixed margins (tight_layout costs a third of the figure's time and the layout is fixed);
    # the bottom one leaves room for the rotated layer names
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.24, top=0.93, wspace=0.22)
    return save_figure(fig, path, dpi=100)
