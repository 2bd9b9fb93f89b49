"""A picture of what a recipe's augmentation does: originals beside augmented draws (PNG).

``trainlab augment RECIPE -o grid.png`` loads the recipe's training split, builds its
augmentation :class:`~trainlab.data.augment.Pipeline` exactly as training does (``from_specs``,
``check``, ``fit`` on the raw training inputs) and runs the device path on a batch of ``n``
training samples, ``draws`` times with one generator, so each draw is independent:
``Pipeline.batch`` and then, when the pipeline has mixers, ``Pipeline.mix`` (the mixed samples'
titles show the top two classes of their soft labels and the weights). It runs on the CPU: the
device path is the same code on any device.

- Images (C, H, W): one group per sample, the original (bold title, black frame) followed by its
  augmented draws. Raw values are shown relative to the data's range: divided by the value bound
  that photometric augmentations use (1 for [0, 1] data, else the maximum, e.g. 16 for digits),
  from 0 or the data's minimum if that is negative; one channel in gray, three as RGB.
- Sequences (C, L): one panel per sample, the original (black) and the draws (colours) overlaid
  on the training data's value range; several channels are stacked with an offset.

The samples are drawn with ``seed`` and spread over the classes (one of each class before a
second of any), so a small grid shows every class. Nothing but the PNG is written, atomically
(a temporary file in the same folder, then a rename).
"""

from __future__ import annotations

import math
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainlab.errors import TrainlabError, TrainlabWarning
from trainlab.figures import blank_figure, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from trainlab.data.augment import Pipeline
    from trainlab.recipe import Recipe

__all__ = [
    "AugmentGrid",
    "augment_draws",
    "draw_augment_grid",
    "pick_samples",
    "png_size",
    "render_augment_grid",
    "sample_grid",
]

MAX_SAMPLES = 64  # beyond this the figure stops being readable at a glance
DPI = 100
MAX_CHANNELS_SHOWN = 4  # sequences: channels stacked in one panel
ASPECT = 4 / 3  # width / height the image grid aims at


@dataclass
class AugmentGrid:
    """What the figure shows: raw originals, their augmented draws and the labels."""

    recipe_name: str
    data_name: str
    pipeline_text: str  # "hflip(p=0.5) -> random_crop(padding=4)"
    originals: torch.Tensor  # (n, C, ...) raw training inputs
    augmented: list[torch.Tensor]  # one (n, C, ...) tensor per draw
    soft: list[torch.Tensor | None]  # per draw: (n, classes) mixed targets, None when not mixed
    labels: list[int]
    indices: list[int]  # positions in the training split
    classes: list[str]
    low: float  # the data's value range, used to show the values
    high: float
    train_size: int
    seed: int
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "image" if self.originals.ndim == 4 else "signal"

    @property
    def mixed(self) -> bool:
        return any(s is not None for s in self.soft)


def pick_samples(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` training positions drawn with ``seed``, spread over the classes: the first of each
    class (in label order), then the second of each, and so on."""
    y = np.asarray(y)
    perm = np.random.default_rng(seed).permutation(len(y))
    labels = y[perm]
    rank = np.zeros(len(perm), dtype=np.int64)
    for c in np.unique(labels):
        mask = labels == c
        rank[mask] = np.arange(int(mask.sum()))
    return perm[np.lexsort((labels, rank))][:n]


def augment_draws(
    x: torch.Tensor, y: torch.Tensor, pipeline: Pipeline, draws: int, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """``draws`` independent augmentations of the batch x on the device path.

    One generator seeded with ``seed`` is used for every draw in turn, so the draws differ from
    each other and the whole grid is reproducible. Returns the augmented batches and, per draw,
    the soft targets (N, C) when the pipeline mixed them (None otherwise).
    """
    gen = torch.Generator(device=x.device).manual_seed(seed)
    out: list[torch.Tensor] = []
    soft: list[torch.Tensor | None] = []
    with torch.no_grad():
        for _ in range(draws):
            xa = pipeline.batch(x.clone(), gen)
            ya: torch.Tensor | None = None
            if pipeline.mixers:
                xa, ya = pipeline.mix(xa, y, gen)
            out.append(xa.detach().cpu())
            soft.append(None if ya is None else ya.detach().float().cpu())
    return out, soft


def _pipeline_text(recipe: Recipe) -> str:
    parts = []
    for spec in recipe.augment:
        params = ", ".join(f"{k}={v!r}" for k, v in spec.params().items())
        parts.append(f"{spec.name}({params})")
    return " -> ".join(parts)


def _fit_inputs(x: Any, seed: int) -> torch.Tensor:
    """The raw training inputs the pipeline is fitted on, as in training (a subset of streamed
    image files: decoding all of them would make a preview slow)."""
    from trainlab.engine.build import fit_sample

    return fit_sample(x, seed) if isinstance(x, np.ndarray) else fit_sample(x, seed, limit=2000)


def sample_grid(recipe: Recipe, n: int = 16, seed: int = 0, draws: int = 3) -> AugmentGrid:
    """Load the recipe's training split and augment ``n`` of its samples ``draws`` times."""
    from trainlab.data.augment import Pipeline
    from trainlab.data.augment.base import value_bound
    from trainlab.data.datasets import load_splits

    if not 1 <= n <= MAX_SAMPLES:
        raise TrainlabError(f"--n {n}: expected 1 to {MAX_SAMPLES} samples")
    splits = load_splits(recipe.data)
    pipeline = Pipeline.from_specs(recipe.augment, splits.num_classes)
    pipeline.check(splits.in_shape)
    if len(splits.in_shape) not in (2, 3):
        raise TrainlabError(
            f"recipe {recipe.name!r}: its data has examples of shape {tuple(splits.in_shape)}; "
            "augmentation previews show (C, L) sequences and (C, H, W) images"
        )
    notes: list[str] = []
    if not pipeline:
        notes.append(f"recipe {recipe.name!r} has no augmentation (augment: []): originals only")
        warnings.warn(notes[-1], TrainlabWarning, stacklevel=2)
        draws = 0
    fit_x = _fit_inputs(splits.x_train, recipe.seed).float()
    pipeline.fit(fit_x)
    picked = pick_samples(splits.y_train, n, seed)
    if len(picked) < n:
        notes.append(f"the training split has only {len(picked)} examples")
    x = splits.x_train
    if isinstance(x, np.ndarray):
        originals = torch.from_numpy(np.ascontiguousarray(x[picked])).float()
    else:  # streamed image files: decoded one by one
        originals = torch.stack([x[int(i)] for i in picked]).float()
    y = torch.from_numpy(np.asarray(splits.y_train)[picked]).long()
    if originals.ndim == 3 and originals.shape[1] > MAX_CHANNELS_SHOWN:
        notes.append(f"showing the first {MAX_CHANNELS_SHOWN} of {originals.shape[1]} channels")
    elif originals.ndim == 4 and originals.shape[1] not in (1, 3, 4):
        notes.append(f"showing channel 0 of {originals.shape[1]} in gray")
    augmented, soft = augment_draws(originals, y, pipeline, draws, seed)
    if originals.ndim == 4:
        low, high = min(0.0, float(fit_x.min())), value_bound(fit_x)
    else:
        low, high = float(fit_x.min()), float(fit_x.max())
    if high <= low:
        high = low + 1.0
    return AugmentGrid(
        recipe_name=recipe.name,
        data_name=recipe.data.name,
        pipeline_text=_pipeline_text(recipe),
        originals=originals,
        augmented=augmented,
        soft=soft,
        labels=y.tolist(),
        indices=[int(i) for i in picked],
        classes=list(splits.classes),
        low=low,
        high=high,
        train_size=len(splits.y_train),
        seed=seed,
        notes=notes,
    )


# ----------------------------------------------------------------------------------- drawing


def _class_name(grid: AugmentGrid, label: int, width: int = 12) -> str:
    name = grid.classes[label] if 0 <= label < len(grid.classes) else str(label)
    if len(name) > width:
        name = name[: width - 1] + "~"
    return name if name == str(label) else f"{name} ({label})"


def _short_name(grid: AugmentGrid, label: int, width: int = 10) -> str:
    name = grid.classes[label] if 0 <= label < len(grid.classes) else str(label)
    return name if len(name) <= width else name[: width - 1] + "~"


def _soft_text(grid: AugmentGrid, soft: torch.Tensor, sep: str = "\n") -> str:
    """The top two classes of a soft label with their weights (one when the other is ~0)."""
    weights, classes = soft.topk(min(2, len(soft)))
    parts = [
        f"{_short_name(grid, int(c))} {float(w):.2f}"
        for i, (w, c) in enumerate(zip(weights, classes, strict=True))
        if i == 0 or float(w) >= 0.005
    ]
    return sep.join(parts)


def _display_image(grid: AugmentGrid, x: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """(C, H, W) raw values -> what imshow takes, scaled to [0, 1] by the data's range."""
    scaled = ((x - grid.low) / (grid.high - grid.low)).clamp(0.0, 1.0)
    if scaled.shape[0] in (3, 4):
        return scaled[:3].permute(1, 2, 0).numpy(), None
    return scaled[0].numpy(), "gray"


def _wrapped(text: str, width_in: float, fontsize: float) -> list[str]:
    chars = max(20, int(width_in * 72 / (0.6 * fontsize)))
    return textwrap.wrap(text, chars, break_on_hyphens=False) or [""]


def _header(grid: AugmentGrid, width_in: float) -> tuple[str, list[str]]:
    """The suptitle (recipe) and the lines below it (pipeline, data, how to read the grid)."""
    shape = tuple(grid.originals.shape[1:])
    if grid.kind == "image":
        span = f"{grid.low:g}..{grid.high:g}"
        how = f"values {span} shown as black..white"
        if grid.augmented:
            how += f"; each group: the original (framed in blue) then {len(grid.augmented)} draws"
    else:
        how = f"y axis: the training data's range {grid.low:.3g}..{grid.high:.3g}"
        if grid.augmented:
            how += f"; original in black, {len(grid.augmented)} augmented draws in colour"
    path = ""
    if grid.augmented:
        path = f", device path (Pipeline.batch{' + Pipeline.mix' if grid.mixed else ''})"
    lines = _wrapped(f"augment: {grid.pipeline_text or '[] (none)'}", width_in, 9)
    lines += _wrapped(
        f"{len(grid.labels)} of {grid.train_size:,} {grid.data_name} training examples of "
        f"shape {shape}, "
        f"seed {grid.seed}{path}; {how}",
        width_in,
        8,
    )
    for note in grid.notes:
        lines += _wrapped(f"note: {note}", width_in, 8)
    return f"trainlab augment: recipe {grid.recipe_name!r}", lines


def _place_header(fig: Figure, grid: AugmentGrid, width_in: float, height_in: float) -> None:
    title, lines = _header(grid, width_in)
    top = 1.0 - 0.12 / height_in
    fig.suptitle(title, y=top, va="top", fontsize=12, fontweight="bold")
    fig.text(0.5, top - 0.3 / height_in, "\n".join(lines), ha="center", va="top", fontsize=8.5)


def _header_height(grid: AugmentGrid, width_in: float) -> float:
    _title, lines = _header(grid, width_in)
    return 0.55 + 0.17 * len(lines) + 0.1


def _draw_images(grid: AugmentGrid) -> Figure:
    n, draws = len(grid.labels), len(grid.augmented)
    per_group = 1 + draws
    side = 1.25 if grid.originals.shape[-1] <= 32 else 1.6  # inches per panel
    inner, gap, margin = 0.08, 0.4, 0.25
    title_h = 0.42 if grid.mixed else 0.26

    def layout(groups_per_row: int) -> tuple[float, float, float, float]:
        grid_w = groups_per_row * (per_group * side + (per_group - 1) * inner)
        grid_w += (groups_per_row - 1) * gap
        width = max(7.0, grid_w + 2 * margin)
        header = _header_height(grid, width)
        rows = math.ceil(n / groups_per_row)
        return grid_w, width, header, header + rows * (side + title_h) + 0.15

    # as many groups per row as make the page closest to a landscape 4:3 (rows stay short)
    groups_per_row = min(
        range(1, n + 1),
        key=lambda g: abs(math.log(layout(g)[1] / layout(g)[3] / ASPECT)),
    )
    grid_w, width, header, height = layout(groups_per_row)
    fig = blank_figure(width, height, dpi=DPI)
    _place_header(fig, grid, width, height)
    left0 = (width - grid_w) / 2
    for j in range(n):
        row, group = divmod(j, groups_per_row)
        top = height - header - row * (side + title_h) - title_h
        left = left0 + group * (per_group * side + (per_group - 1) * inner + gap)
        panels = [(grid.originals[j], None)] + [
            (grid.augmented[d][j], grid.soft[d]) for d in range(draws)
        ]
        for k, (img, soft) in enumerate(panels):
            x0 = left + k * (side + inner)
            ax = fig.add_axes((x0 / width, (top - side) / height, side / width, side / height))
            data, cmap = _display_image(grid, img)
            ax.imshow(data, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_title(
                    _class_name(grid, grid.labels[j]), fontsize=8, fontweight="bold", pad=3
                )
                for spine in ax.spines.values():
                    spine.set_color("C0")
                    spine.set_linewidth(2.5)
            else:
                for spine in ax.spines.values():
                    spine.set_color("0.6")
                if soft is not None:
                    ax.set_title(_soft_text(grid, soft[j]), fontsize=7, pad=3, color="C3")
    return fig


def _draw_signals(grid: AugmentGrid) -> Figure:
    from matplotlib.lines import Line2D

    n, draws = len(grid.labels), len(grid.augmented)
    cols = max(1, min(4, round(math.sqrt(n))))
    rows = math.ceil(n / cols)
    channels = min(grid.originals.shape[1], MAX_CHANNELS_SHOWN)
    pw, ph = 3.0, 1.3 + 0.5 * (channels - 1)
    title_h, gap_w, left_m, bottom_m = 0.3, 0.2, 0.55, 0.4
    grid_w = cols * pw + (cols - 1) * gap_w
    width = max(7.0, grid_w + left_m + 0.25)
    legend_h = 0.35 if draws else 0.0
    header = _header_height(grid, width) + legend_h
    height = header + rows * (ph + title_h) + bottom_m
    fig = blank_figure(width, height, dpi=DPI)
    _place_header(fig, grid, width, height)
    shown = [grid.originals[:, :channels], *(a[:, :channels] for a in grid.augmented)]
    low = min(grid.low, *(float(s.min()) for s in shown))
    high = max(grid.high, *(float(s.max()) for s in shown))
    span = high - low
    offsets = [(channels - 1 - c) * span * 1.1 for c in range(channels)]
    ylim = (low - 0.05 * span, high + offsets[0] + 0.05 * span)
    left0 = left_m + (width - left_m - 0.25 - grid_w) / 2
    length = grid.originals.shape[-1]
    for j in range(n):
        row, col = divmod(j, cols)
        top = height - header - row * (ph + title_h) - title_h
        x0 = left0 + col * (pw + gap_w)
        ax = fig.add_axes((x0 / width, (top - ph) / height, pw / width, ph / height))
        for c in range(channels):
            ax.plot(grid.originals[j, c] + offsets[c], color="black", lw=1.6, zorder=3)
            for d in range(draws):
                ax.plot(grid.augmented[d][j, c] + offsets[c], color=f"C{d}", lw=1.0, alpha=0.85)
        ax.set_xlim(0, length - 1)
        ax.set_ylim(*ylim)
        ax.tick_params(labelsize=6, length=2)
        if col != 0:
            ax.tick_params(labelleft=False)
        if j + cols < n:
            ax.tick_params(labelbottom=False)
        ax.set_title(_class_name(grid, grid.labels[j]), fontsize=8, fontweight="bold", pad=3)
        for line, (d, soft) in enumerate((d, s) for d, s in enumerate(grid.soft) if s is not None):
            ax.annotate(  # the mixed label of each draw, in the draw's colour
                _soft_text(grid, soft[j], sep=" / "),
                xy=(0.99, 0.97),
                xycoords="axes fraction",
                xytext=(0, -7.5 * line),
                textcoords="offset points",
                ha="right",
                va="top",
                fontsize=5.5,
                color=f"C{d}",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 0.5},
            )
    if draws:
        handles = [Line2D([], [], color="black", lw=1.6, label="original")]
        handles += [
            Line2D([], [], color=f"C{d}", lw=1.0, label=f"draw {d + 1}") for d in range(draws)
        ]
        fig.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, 1.0 - (header - legend_h) / height),
            ncol=len(handles),
            fontsize=7.5,
            frameon=False,
        )
    return fig


def draw_augment_grid(grid: AugmentGrid) -> Figure:
    """The matplotlib figure of a grid (:func:`trainlab.figures.blank_figure`: its own Agg
    canvas, the global backend untouched, nothing to close); the caller saves it."""
    return _draw_images(grid) if grid.kind == "image" else _draw_signals(grid)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _check_out(out_path: str | Path) -> Path:
    path = Path(out_path)
    if path.suffix.lower() != ".png":
        raise TrainlabError(f"{path}: the grid is written as PNG; give a path ending in .png")
    if path.is_dir():
        raise TrainlabError(f"{path}: is a folder; give the PNG file to write")
    return path


def render_augment_grid(
    recipe: Recipe, out_path: str | Path, n: int = 16, seed: int = 0, draws: int = 3
) -> dict[str, Any]:
    """Write the PNG of ``n`` training samples of ``recipe`` and ``draws`` augmentations of each.

    Returns what it wrote: the path, its pixel size and what the grid shows (JSON-ready).
    """
    path = _check_out(out_path)
    grid = sample_grid(recipe, n=n, seed=seed, draws=draws)
    fig = draw_augment_grid(grid)
    try:  # atomic: a failed write leaves neither a partial PNG nor a temporary file
        save_figure(fig, path, dpi=DPI)
        with open(path, "rb") as f:
            width, height = png_size(f.read(24))
    except OSError as exc:
        raise TrainlabError(f"{path}: cannot write the grid ({exc.strerror or exc})") from None
    return {
        "path": str(path),
        "recipe": grid.recipe_name,
        "kind": grid.kind,
        "augment": [{"name": s.name, **s.params()} for s in recipe.augment],
        "samples": len(grid.labels),
        "draws": len(grid.augmented),
        "mixed": grid.mixed,
        "indices": grid.indices,
        "labels": grid.labels,
        "value_range": [grid.low, grid.high],
        "seed": seed,
        "width": width,
        "height": height,
        "notes": grid.notes,
    }
