"""The range test's figure (trainlab.diagnosis.lr_finder.plot)."""

from __future__ import annotations

from pathlib import Path

from trainlab.diagnosis.lr_finder import plot_lr_sweep


def test_plot_writes_a_png(healthy, tmp_path: Path):
    path = plot_lr_sweep(healthy, tmp_path / "figs" / "lr_range.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.shape[0] >= 400 and img.shape[1] >= 700
