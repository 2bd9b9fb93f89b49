"""The range test's figure: loss against lr per seed, the suggestion and the steepest range."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainlab.diagnosis.lr_finder.results import LRSweep
from trainlab.diagnosis.lr_finder.verdict import _fmt

__all__ = ["plot_lr_sweep"]


def plot_lr_sweep(sweep: LRSweep, path: str | Path) -> Path:
    """Loss vs lr (log x): raw losses faint, the smoothed curve per seed, the suggestion and
    the steepest range marked. Written as a PNG through :mod:`trainlab.figures` (no global
    backend or figure state, atomic)."""
    from trainlab.figures import new_figure, save_figure

    fig, ax = new_figure(7.5, 4.5, dpi=110)
    colours = [f"C{i}" for i in range(10)]
    tops, bottoms = [], []
    for i, s in enumerate(sweep.seeds):
        c = colours[i % 10]
        lrs, raw = np.asarray(s.lrs), np.asarray(s.losses)
        ok = np.isfinite(raw)
        ax.scatter(lrs[ok], raw[ok], s=7, color=c, alpha=0.25, linewidths=0)
        n = len(s.centred)
        if n:
            ax.plot(lrs[:n], s.centred, color=c, lw=2, label=f"seed {s.seed} (smoothed)")
            tops.append(max(s.start_loss, s.centred[0]))
            bottoms.append(min(s.centred))
        if s.stop != "end" and n:
            ax.plot(lrs[n - 1], s.centred[-1], "x", color=c, ms=8, mew=2)
    if sweep.steepest_range:
        ax.axvspan(*sweep.steepest_range, color="0.5", alpha=0.15, label="steepest descent")
    if sweep.suggestion:
        ax.axvline(
            sweep.suggestion, color="k", lw=1.5, label=f"suggested lr {_fmt(sweep.suggestion)}"
        )
    if sweep.rule_lr:
        ax.axvline(
            sweep.rule_lr,
            color="k",
            ls=":",
            lw=1.5,
            label=f"drops clearly within {sweep.rule_iters} steps: {_fmt(sweep.rule_lr)}",
        )
    if tops:
        top, bottom = max(tops), min(bottoms)
        pad = 0.1 * max(top - bottom, 1e-3)
        ax.set_ylim(bottom - pad, top + 4 * pad)
    ax.set_xscale("log")
    ax.set_xlim(sweep.min_lr, sweep.max_lr)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    title = {
        "ok": "LR range test",
        "no_descent": "LR range test: NO DESCENT",
        "diverges_at_once": "LR range test: DIVERGES AT ONCE",
        "too_noisy": "LR range test: TOO NOISY TO TRUST",
    }[sweep.shape]
    ax.set_title(f"{title} ({sweep.optimizer}, {len(sweep.seeds)} seeds, x = stopped)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.8)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.12, top=0.92)  # fixed: no tight_layout
    return save_figure(fig, path)
