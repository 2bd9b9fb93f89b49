"""Check 7, the data: class balance, input statistics, leaks between splits, a look at samples.

Lecture 004's first step is "become one with the data": collect statistics, and look at it.
:func:`check_data` returns three findings on a :class:`~trainlab.data.datasets.Splits`:

- ``data.balance``: training examples per class. Warn when the smallest class has fewer than
  ``IMBALANCE_RATIO`` (1/5) of the largest: past that, accuracy stops meaning much (always
  answering the big class of a 1:5 pair scores 83%) and the small class is seen rarely per epoch;
  fail when a class has no training example at all (the model cannot learn it).
- ``data.inputs``: mean and std per channel for images (N, C, H, W) and sequences (N, C, L), a
  per-feature summary for vectors (N, D). Warn on constant inputs (a feature, or a whole channel,
  with std 0 over train: it carries nothing, and standardising divides by zero), on scales more
  than ``SCALE_RATIO`` (100x) apart between features or channels (one dominates the distances
  and the gradients until standardised), and on test inputs whose mean sits more than
  ``SHIFT_STD`` (0.5) training standard deviations from train's (the test set is not drawn from
  the training distribution). Per-pixel constancy is not a problem for images (digit corners are
  always 0), so images are judged per channel. NaN cannot occur: loading refuses it.
- ``data.duplicates``: exact duplicates found by hashing each example's bytes (the float32 array
  row; for streamed image folders the file's bytes). Warn when any test or validation example
  also appears in train (the score on it is memory, not generalisation), or when identical
  training inputs carry different labels; duplicates within train alone are reported only.

Streamed image folders (:class:`~trainlab.data.formats.ImageFiles`) are summarised from a seeded
sample of ``STATS_SAMPLE`` decoded images; decoding them all would make the check slow.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.diagnosis.checks import CHECK_REGISTRY, Context
from trainlab.diagnosis.findings import Finding
from trainlab.figures import new_figure, save_figure

if TYPE_CHECKING:
    from trainlab.data.datasets import Splits

__all__ = ["check_data", "plot_class_samples", "example_hashes"]

IMBALANCE_RATIO = 0.2
SCALE_RATIO = 100.0
SHIFT_STD = 0.5
STATS_SAMPLE = 2000
MAX_CLASSES_SHOWN = 20  # rows of the sample grid; beyond this it is unreadable at a glance
PCA_SAMPLE = 5000


def _names(splits: Splits) -> list[str]:
    return [str(c) for c in splits.classes]


def _take(x: Any, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of an array or of streamed image files, as one float array."""
    if isinstance(x, np.ndarray):
        return x[idx]
    rows = [np.asarray(x[int(i)]) for i in idx]
    return np.stack(rows) if rows else np.zeros((0, *x.shape[1:]), np.float32)


def _sample(x: Any, seed: int = 0) -> np.ndarray:
    """All of an array; a seeded sample of ``STATS_SAMPLE`` rows of streamed files."""
    if isinstance(x, np.ndarray) or len(x) <= STATS_SAMPLE:
        return _take(x, np.arange(len(x)))
    idx = np.sort(np.random.default_rng(seed).choice(len(x), STATS_SAMPLE, replace=False))
    return _take(x, idx)


def example_hashes(x: Any) -> list[bytes]:
    """A 16-byte digest per example: of the array row's bytes, or of the image file's bytes."""
    if isinstance(x, np.ndarray):
        rows = np.ascontiguousarray(x).reshape(len(x), int(np.prod(x.shape[1:])))
        return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]
    return [hashlib.blake2b(Path(p).read_bytes(), digest_size=16).digest() for p in x.paths]


def check_balance(splits: Splits) -> Finding:
    names = _names(splits)
    counts = np.bincount(splits.y_train, minlength=len(names)).astype(int)
    per_class = {n: int(c) for n, c in zip(names, counts, strict=True)}
    lo, hi = int(np.argmin(counts)), int(np.argmax(counts))
    ratio = counts[lo] / counts[hi] if counts[hi] else 0.0
    values = {"train_counts": per_class, "ratio": round(float(ratio), 4)}
    missing = [n for n, c in per_class.items() if c == 0]
    if missing:
        return Finding(
            "data.balance",
            "fail",
            f"{len(missing)} class(es) have no training example: {', '.join(missing[:10])}",
            "add examples of these classes or drop them from the class list",
            values,
        )
    text = (
        f"{len(names)} classes, {counts.sum()} training examples; smallest class "
        f"'{names[lo]}' {counts[lo]}, largest '{names[hi]}' {counts[hi]} (ratio {ratio:.2f})"
    )
    if ratio < IMBALANCE_RATIO:
        return Finding(
            "data.balance",
            "warn",
            f"imbalanced: {text}, below {IMBALANCE_RATIO:.2f}",
            "accuracy will flatter a model that favours the big classes: read the per-class "
            "results (confusion matrix), weight the loss by class or resample the small classes",
            values,
        )
    return Finding("data.balance", "ok", text, "", values)


def check_inputs(splits: Splits) -> Finding:
    x = _sample(splits.x_train).astype(np.float64)
    xt = _sample(splits.x_test).astype(np.float64)
    kind = {2: "vector", 3: "sequence"}.get(x.ndim, "image")
    if x.ndim == 2:  # per feature
        mean, std = x.mean(0), x.std(0)
        tmean = xt.mean(0) if len(xt) else mean
        unit = "feature"
    else:  # per channel: over examples and positions
        axes = (0, *range(2, x.ndim))
        mean, std = x.mean(axes), x.std(axes)
        tmean = xt.mean(axes) if len(xt) else mean
        unit = "channel"
    n = len(mean)
    constant = np.flatnonzero(std == 0)
    live = std[std > 0]
    scale = float(live.max() / live.min()) if live.size else 1.0
    shift = np.abs(tmean - mean) / np.where(std > 0, std, np.inf)
    shifted = np.flatnonzero(shift > SHIFT_STD)
    values: dict[str, Any] = {
        "kind": kind,
        unit + "s": n,
        "min": round(float(x.min()), 6),
        "max": round(float(x.max()), 6),
        "constant": [int(i) for i in constant[:50]],
        "scale_ratio": round(scale, 3),
        "max_test_shift_std": round(float(shift.max()) if n else 0.0, 4),
    }
    if x.ndim > 2 or n <= 16:
        values["mean"] = [round(float(v), 6) for v in mean]
        values["std"] = [round(float(v), 6) for v in std]
    if x.ndim > 2:
        stats = ", ".join(f"{m:.3g}/{s:.3g}" for m, s in zip(mean[:4], std[:4], strict=True))
        more = f" (+{n - 4} more)" if n > 4 else ""
        text = f"{kind}s {tuple(x.shape[1:])}: mean/std per channel {stats}{more}"
    else:
        text = (
            f"{n} features: means {mean.min():.3g}..{mean.max():.3g}, "
            f"stds {std.min():.3g}..{std.max():.3g}"
        )
    text += f", values in [{x.min():.3g}, {x.max():.3g}]"
    problems, advice = [], []
    if constant.size:
        which = ", ".join(str(i) for i in constant[:8]) + (" ..." if constant.size > 8 else "")
        problems.append(f"{constant.size} constant {unit}(s) ({which})")
        advice.append(f"drop the constant {unit}s: they carry no information")
    if scale > SCALE_RATIO:
        problems.append(f"{unit} scales {scale:.0f}x apart")
        advice.append("standardise the inputs (preprocess: standardize or per_channel)")
    if shifted.size:
        problems.append(
            f"test mean is {shift.max():.2f} train stds from train's in {shifted.size} {unit}(s)"
        )
        advice.append("check that train and test come from the same source and preprocessing")
    if problems:
        return Finding(
            "data.inputs", "warn", f"{'; '.join(problems)}: {text}", "; ".join(advice), values
        )
    return Finding("data.inputs", "ok", text, "", values)


def check_duplicates(splits: Splits) -> Finding:
    train = example_hashes(splits.x_train)
    first_label: dict[bytes, int] = {}
    conflicts = 0
    for h, y in zip(train, splits.y_train.tolist(), strict=True):
        if first_label.setdefault(h, y) != y:
            conflicts += 1
    within = len(train) - len(first_label)
    seen = set(first_label)
    test = example_hashes(splits.x_test)
    val = example_hashes(splits.x_val)
    in_test = sum(h in seen for h in test)
    in_val = sum(h in seen for h in val)
    values = {
        "test_in_train": in_test,
        "test_in_train_fraction": round(in_test / max(len(test), 1), 6),
        "val_in_train": in_val,
        "val_in_train_fraction": round(in_val / max(len(val), 1), 6),
        "within_train": within,
        "conflicting_labels": conflicts,
    }
    val_text = f" and {in_val} of {len(val)} validation examples" if val else ""
    counts = (
        f"{in_test} of {len(test)} test examples ({values['test_in_train_fraction']:.1%})"
        f"{val_text} are exact copies of training examples; {within} duplicates within train"
    )
    problems, advice = [], []
    if in_test or in_val:
        problems.append("leak between splits")
        advice.append(
            "remove the copies from the test/validation split (they measure memory, not "
            "generalisation)"
        )
    if conflicts:
        problems.append(f"{conflicts} identical training inputs with different labels")
        advice.append("fix the labels of the conflicting copies")
    if problems:
        return Finding(
            "data.duplicates", "warn", f"{', '.join(problems)}: {counts}", "; ".join(advice), values
        )
    return Finding("data.duplicates", "ok", counts, "", values)


def check_data(splits: Splits, figure: str | None = None) -> list[Finding]:
    """Class balance, input statistics and duplicates (see the module docstring).

    ``figure`` (a PNG name relative to the report folder, from :func:`plot_class_samples`) is
    attached to the balance finding.
    """
    balance = check_balance(splits)
    if figure:
        balance = replace(balance, figures=(figure,))
    return [balance, check_inputs(splits), check_duplicates(splits)]


def _per_class(y: np.ndarray, classes: list[int], per_class: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        out.append(np.sort(rng.choice(idx, min(per_class, len(idx)), replace=False)))
    return out


def plot_class_samples(splits: Splits, path: str | Path, per_class: int = 8, seed: int = 0) -> Path:
    """A figure of training samples per class: images as images (one row per class), sequences
    as overlaid line plots (one panel per class), vectors as a scatter of their first two
    principal components coloured by class (the features themselves when there are two)."""
    names = _names(splits)
    y = splits.y_train
    present = [c for c in range(len(names)) if (y == c).any()]
    shown = present[:MAX_CLASSES_SHOWN]
    note = f" (first {len(shown)} of {len(present)} classes)" if len(present) > len(shown) else ""
    ndim = len(splits.x_train.shape)
    if ndim >= 4:
        fig = _image_grid(splits, names, shown, per_class, seed)
    elif ndim == 3:
        fig = _sequence_panels(splits, names, shown, per_class, seed)
    else:
        fig = _vector_scatter(splits, names, shown, seed)
    fig.suptitle(f"{splits.source}: training samples per class{note}", fontsize=11)
    return save_figure(fig, path, dpi=100)


def _image_grid(splits, names, shown, per_class, seed):  # type: ignore[no-untyped-def]
    """One mosaic (a row per class, one-pixel gaps) drawn as a single image: one axes instead
    of one per sample, which made this figure cost more than the checks (0.7 s for 80 axes)."""
    picks = _per_class(splits.y_train, shown, per_class, seed)
    cols = max(len(p) for p in picks)
    images = [_take(splits.x_train, p) for p in picks]
    flat = np.concatenate([im.reshape(-1) for im in images if im.size])
    low = min(0.0, float(flat.min()))
    high = float(flat.max()) if flat.max() > low else low + 1.0
    rgb = splits.x_train.shape[1] in (3, 4)
    h, w = splits.x_train.shape[-2:]
    gap = max(1, min(h, w) // 8)
    mosaic = np.ones(((h + gap) * len(shown) - gap, (w + gap) * cols - gap, 3))
    for r, ims in enumerate(images):
        for k, im in enumerate(ims):
            cell = np.clip((im - low) / (high - low), 0, 1)
            cell = cell[:3].transpose(1, 2, 0) if rgb else np.repeat(cell[0][..., None], 3, 2)
            mosaic[r * (h + gap) : r * (h + gap) + h, k * (w + gap) : k * (w + gap) + w] = cell
    size = 0.9
    fig, ax = new_figure(1.4 + size * cols, 0.5 + size * len(shown))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks(
        [r * (h + gap) + (h - 1) / 2 for r in range(len(shown))],
        [names[c] if len(names[c]) <= 14 else names[c][:13] + "~" for c in shown],
        fontsize=9,
    )
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.subplots_adjust(
        left=1.2 / (1.4 + size * cols), right=0.98, top=1 - 0.45 / fig.get_figheight(), bottom=0.02
    )
    return fig


def _sequence_panels(splits, names, shown, per_class, seed):  # type: ignore[no-untyped-def]
    import matplotlib

    picks = _per_class(splits.y_train, shown, per_class, seed)
    ncols = min(5, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    fig, axes = new_figure(
        2.6 * ncols, 1.9 * nrows + 0.5, nrows=nrows, ncols=ncols, squeeze=False, sharey=True
    )
    colors = matplotlib.colormaps["tab10"]
    for i, (c, p) in enumerate(zip(shown, picks, strict=True)):
        ax = axes[i // ncols, i % ncols]
        seqs = _take(splits.x_train, p)
        for k, s in enumerate(seqs):
            ax.plot(s[0], lw=1, alpha=0.8, color=colors(k % 10))
        channels = splits.x_train.shape[1]
        extra = f" (channel 0 of {channels})" if channels > 1 else ""
        ax.set_title(f"{names[c]}{extra}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for j in range(len(shown), nrows * ncols):
        axes[j // ncols, j % ncols].axis("off")
    # fixed margins: tight_layout measured every label of every panel (0.2 s of 0.5)
    height = fig.get_figheight()
    fig.subplots_adjust(
        left=0.7 / fig.get_figwidth(), right=0.99, bottom=0.35 / height,
        top=1 - 0.75 / height, wspace=0.12, hspace=0.6,  # room for each panel's title
    )  # fmt: skip
    return fig


def _vector_scatter(splits, names, shown, seed):  # type: ignore[no-untyped-def]
    import matplotlib

    x = np.asarray(splits.x_train, dtype=np.float64).reshape(len(splits.x_train), -1)
    y = splits.y_train
    if len(x) > PCA_SAMPLE:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), PCA_SAMPLE, replace=False))
        x, y = x[keep], y[keep]
    if x.shape[1] == 2:
        pts, xlabel, ylabel = x, "feature 0", "feature 1"
    elif x.shape[1] == 1:
        jitter = np.random.default_rng(seed).uniform(-0.3, 0.3, len(x))
        pts, xlabel, ylabel = np.stack([x[:, 0], y + jitter], 1), "feature 0", "class (jittered)"
    else:  # PCA on standardised features (so one big-scaled feature does not own the picture)
        std = x.std(0)
        z = (x - x.mean(0)) / np.where(std > 0, std, 1.0)
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        pts = z @ vt[:2].T
        share = s[:2] ** 2 / max(float((s**2).sum()), 1e-12)
        xlabel, ylabel = f"PC 1 ({share[0]:.0%} of variance)", f"PC 2 ({share[1]:.0%})"
    fig, ax = new_figure(6.5, 5.2)
    cmap = matplotlib.colormaps["tab10" if len(shown) <= 10 else "tab20"]
    for i, c in enumerate(shown):
        m = y == c
        ax.scatter(pts[m, 0], pts[m, 1], s=8, alpha=0.6, color=cmap(i % cmap.N), label=names[c])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, markerscale=2, loc="best", title="class")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


@CHECK_REGISTRY.register("data")
def _check(ctx: Context) -> list[Finding]:
    """Look at the data: class balance, input statistics, leaks between splits; a sample grid."""
    plot_class_samples(ctx.parts.splits, ctx.out / "data.png", seed=ctx.recipe.seed)
    return check_data(ctx.parts.splits, figure="data.png")
