"""One figure for the per-layer checks: activation std (init and after training steps), dead or
saturated fractions, gradient norm relative to weight norm, and the update/weight ratio."""

from __future__ import annotations

from pathlib import Path

from trainlab.diagnosis.activations import LayerStats
from trainlab.diagnosis.gradients import GradStats
from trainlab.figures import new_figure, save_figure

__all__ = ["plot_layers"]


def plot_layers(
    init: list[LayerStats], after: list[LayerStats], grads: list[GradStats], path: str | Path
) -> Path:
    """Three panels, layers on the x axis in forward order; log scales where ratios live."""
    fig, (ax_std, ax_frac, ax_grad) = new_figure(14, 4.2, ncols=3)
    for stats, label, style in ((init, "at init", "o-"), (after, "after training steps", "s--")):
        ax_std.plot(range(1, len(stats) + 1), [s.std for s in stats], style, label=label)
        frac = [(s.dead if s.dead is not None else s.saturated) or 0.0 for s in stats]
        ax_frac.plot(range(1, len(stats) + 1), frac, style, label=label)
    ax_std.set(title="activation std per layer", xlabel="layer (forward order)", ylabel="std")
    if max(s.std for s in init + after) > 10 * max(min(s.std for s in init + after), 1e-12):
        ax_std.set_yscale("log")  # collapse or explosion: log scale shows it
    ax_frac.set(
        title="dead (ReLU) or saturated (tanh/sigmoid) share",
        xlabel="layer",
        ylabel="fraction of units/values",
        ylim=(-0.02, 1.02),
    )
    x = range(1, len(grads) + 1)
    ax_grad.plot(x, [g.relative_grad for g in grads], "o-", label="|grad| / |w|")
    ratios = [g.update_ratio for g in grads]
    if all(r is not None for r in ratios):
        ax_grad.plot(x, ratios, "s-", label="update / weight (one step)")
    ax_grad.axhline(1e-3, color="gray", ls=":", label="1e-3 (healthy update ratio)")
    ax_grad.set_yscale("log")
    ax_grad.set(title="gradients per weight layer", xlabel="weight layer (forward order)")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_std, ax_frac, ax_grad):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    # fixed margins (tight_layout costs a third of the figure's time and the layout is fixed)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.12, top=0.92, wspace=0.22)
    return save_figure(fig, path, dpi=100)
