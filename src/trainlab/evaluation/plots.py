"""Figures for a run folder (matplotlib, written as PNG; no display needed)."""

from __future__ import annotations

from pathlib import Path

import torch

from trainlab.figures import new_figure, save_figure

__all__ = ["plot_confusion"]


def plot_confusion(conf: torch.Tensor, classes: list[str], path: Path) -> Path:
    """Row-normalised confusion matrix (true class in rows) with the counts written in."""
    counts = conf.numpy()
    rates = counts / counts.sum(1, keepdims=True).clip(min=1)
    n = len(classes)
    fig, ax = new_figure(1.0 + 0.55 * n, 0.8 + 0.5 * n)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45 if n > 6 else 0)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test confusion (accuracy {counts.trace() / max(counts.sum(), 1):.3f})")
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
