"""trainlab.figures: plotting leaves the user's matplotlib backend alone, and figures are written
as valid PNGs, atomically (a failed save keeps the previous file and leaves no temporary one)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib
import pytest

from trainlab.evaluation.augment_preview import png_size
from trainlab.figures import blank_figure, new_figure, save_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Every public plot function on small real inputs, in a fresh interpreter whose backend the
# user chose (MPLBACKEND); prints the backend before and after and what is left in sys.modules.
PLOT_EVERYTHING = textwrap.dedent(
    """
    import json, math, sys
    from pathlib import Path

    import matplotlib

    before = matplotlib.get_backend()
    import numpy as np
    import torch

    import trainlab
    from trainlab.api import resolve_recipe
    from trainlab.data.datasets import load_splits
    from trainlab.diagnosis.activations import LayerStats
    from trainlab.diagnosis.curves import plot_curves
    from trainlab.diagnosis.data import plot_class_samples
    from trainlab.diagnosis.gradients import GradStats
    from trainlab.diagnosis.lab import init_stats, plot_init_stats
    from trainlab.diagnosis.layers_plot import plot_layers
    from trainlab.diagnosis.lr_finder import LRSweep, SeedSweep, plot_lr_sweep
    from trainlab.evaluation.augment_preview import (
        draw_augment_grid, render_augment_grid, sample_grid,
    )
    from trainlab.evaluation.plots import plot_confusion
    from trainlab.figures import new_figure, save_figure
    from trainlab.recipe import Recipe

    out = Path(sys.argv[1])
    fig, ax = new_figure(3, 2)
    ax.plot([0, 1], [1, 0])
    written = [save_figure(fig, out / "helper.png")]
    written.append(plot_confusion(torch.tensor([[5, 1], [2, 7]]), ["a", "b"], out / "conf.png"))
    init = [LayerStats(f"l{i}", "ReLU", 0.0, 1.0 / (i + 1), 0.1 * i, None, 8) for i in range(3)]
    grads = [GradStats(f"w{i}", 0.1 * (i + 1), 1.0, 1e-3) for i in range(3)]
    written.append(plot_layers(init, init, grads, out / "layers.png"))
    rows = init_stats("xavier_normal", "tanh", depth=2, width=16, batch=4, keep_values=True)
    written.append(plot_init_stats(rows, out / "init.png", "xavier tanh"))
    for name in ("digits", "spiral"):  # images, vectors
        splits = load_splits(Recipe.model_validate({"data": {"name": name}}).data)
        written.append(plot_class_samples(splits, out / f"samples_{name}.png", per_class=3))
    records = [{"step": s, "loss": 2.3 * math.exp(-s / 10), "acc": 1 - math.exp(-s / 8)}
               for s in range(1, 31)]
    records.append({"step": 30, "val_loss": 0.4, "val_acc": 0.8})
    written.append(plot_curves(records, out / "curves.png"))
    lrs = tuple(float(x) for x in np.geomspace(1e-5, 1.0, 30))
    losses = tuple(2.3 - 0.5 * math.log10(lr / 1e-5) / 5 for lr in lrs)
    seed = SeedSweep(0, lrs, losses, losses, losses, "end", losses[0], min(losses), 1e-2,
                     1e-3, (3e-4, 3e-3), 1e-3, 0.5, 0.02, 2.3)
    sweep = LRSweep((seed,), "ok", 1e-3, (3e-4, 3e-3), (1e-3, 1e-3), 0.0, 0.04, None, 100,
                    min_lr=1e-5, max_lr=1.0, steps=30, optimizer="sgd")
    written.append(plot_lr_sweep(sweep, out / "lr.png"))
    recipe = resolve_recipe(None, None)
    draw_augment_grid(sample_grid(recipe, n=2, seed=0, draws=1)).canvas.draw()
    written.append(Path(render_augment_grid(recipe, out / "aug.png", n=2, draws=1)["path"]))
    print(json.dumps({
        "before": before,
        "after": matplotlib.get_backend(),
        "pyplot_imported": "matplotlib.pyplot" in sys.modules,
        "written": [str(p) for p in written],
    }))
    """
)


def test_plotting_leaves_the_users_backend_alone(tmp_path: Path):
    import json

    env = {**os.environ, "MPLBACKEND": "svg"}  # a non-Agg backend that needs no display
    proc = subprocess.run(
        [sys.executable, "-c", PLOT_EVERYTHING, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["before"] == "svg"
    assert result["after"] == "svg"  # no matplotlib.use() anywhere
    assert not result["pyplot_imported"]  # no global figure state either
    assert len(result["written"]) == 9
    for path in map(Path, result["written"]):
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files


def test_new_figure_is_sized_and_laid_out_like_subplots():
    fig, axes = new_figure(4, 3, nrows=2, ncols=3, squeeze=False, sharey=True)
    assert tuple(fig.get_size_inches()) == (4, 3)
    assert fig.dpi == matplotlib.rcParams["figure.dpi"]
    assert axes.shape == (2, 3) and len(fig.axes) == 6
    _, row = new_figure(4, 3, ncols=2, dpi=50)
    assert row.shape == (2,)
    fig = blank_figure(2, 1, dpi=80)
    assert fig.axes == [] and fig.dpi == 80
    fig.canvas.draw()  # its own Agg canvas: drawable and measurable without any backend
    assert fig.canvas.get_renderer() is not None
    assert fig.canvas.get_width_height() == (160, 80)


def test_save_figure_writes_a_png_of_the_figures_size(tmp_path: Path):
    fig, ax = new_figure(3, 2, dpi=50)
    ax.plot([0, 1, 2], [0, 1, 0])
    out = tmp_path / "sub" / "plot.png"
    with matplotlib.rc_context({"savefig.dpi": 300}):  # the user's rc does not change the image
        assert save_figure(fig, out) == out
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert png_size(data) == (150, 100)
    save_figure(fig, out, dpi=100)  # an existing file is replaced
    assert png_size(out.read_bytes()) == (300, 200)
    assert [p.name for p in out.parent.iterdir()] == ["plot.png"]
    bare = tmp_path / "no_suffix"  # PNG by default, written at exactly that name
    save_figure(fig, bare)
    assert bare.read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_suffix", "sub"]


class _Boom(RuntimeError):
    pass


def _existing(tmp_path: Path) -> tuple[Path, bytes]:
    out = tmp_path / "figure.png"
    fig, ax = new_figure(2, 2, dpi=40)
    ax.plot([0, 1], [0, 1])
    save_figure(fig, out)
    return out, out.read_bytes()


def test_a_failing_draw_keeps_the_previous_file_and_no_temporary(tmp_path: Path):
    from matplotlib.artist import Artist

    class Exploding(Artist):
        def draw(self, renderer):
            raise _Boom("mid-draw")

    out, old = _existing(tmp_path)
    fig, ax = new_figure(2, 2)
    ax.add_artist(Exploding())
    with pytest.raises(_Boom):
        save_figure(fig, out)
    assert out.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_a_save_failing_half_way_keeps_the_previous_file_and_no_temporary(tmp_path: Path):
    out, old = _existing(tmp_path)
    fig, _ = new_figure(2, 2)
    seen = []

    def half_written(fname, **kwargs):  # half a PNG on disk, then the failure
        seen.append(Path(fname))
        Path(fname).write_bytes(PNG_SIGNATURE + b"\0" * 10)
        raise _Boom("disk full")

    fig.savefig = half_written
    with pytest.raises(_Boom):
        save_figure(fig, out)
    assert seen and seen[0] != out and seen[0].parent == out.parent  # a temporary beside it
    assert out.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_an_unwritable_target_raises_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "taken.png"
    target.mkdir()  # a folder where the PNG should go: the final rename fails
    (target / "keep").write_text("x")
    fig, _ = new_figure(2, 2)
    with pytest.raises(OSError):
        save_figure(fig, target)
    assert (target / "keep").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["taken.png"]
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(OSError):  # the parent cannot be created
        save_figure(fig, blocked / "x.png")
    assert blocked.read_text() == "not a folder"
