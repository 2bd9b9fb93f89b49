"""Check 7, the data: class balance, the splits, input statistics as the model sees them, what
the training pipeline does to them, leaks between splits, a look at samples.

Lecture 004's first step is "become one with the data": collect statistics, and look at it.
:func:`check_data` returns these findings on a :class:`~trainlab.data.datasets.Splits` (and,
given :class:`Seen`, on what preprocessing and augmentation make of it):

- ``data.balance``: training examples per class. Warn when the smallest class has fewer than
  ``IMBALANCE_RATIO`` (1/5) of the largest: past that, accuracy stops meaning much (always
  answering the big class of a 1:5 pair scores 83%) and the small class is seen rarely per epoch;
  fail when a class has no training example at all (the model cannot learn it).
- ``data.split``: the validation split's size and classes. Warn when it is too small to judge
  over/underfitting from (:func:`validation_too_small`) or when a class has no validation example
  left (its accuracy is never measured), with a ``data.val_fraction`` that would do.
- ``data.inputs``: mean and std per channel for images (N, C, H, W) and sequences (N, C, L), a
  per-feature summary for vectors (N, D). Scale and centring are judged on the preprocessed
  inputs, what the model sees: raw features 100x apart are fine when the recipe standardises
  them. Warn on unnormalised inputs (scales more than ``SCALE_RATIO`` (100x) apart between
  features or channels, an RMS outside ``1/MAGNITUDE..MAGNITUDE`` (1/4..4), or a mean more than
  ``OFFSET_STD`` stds from zero), fixed by ``preprocess.name`` when the recipe's preprocessing
  does not already do it; on constant inputs (a feature, or a whole channel, with std 0 over
  train: it carries nothing, and standardising divides by zero); and on test inputs whose mean
  sits more than ``SHIFT_STD`` (0.5) training standard deviations from train's (the test set is
  not drawn from the training distribution). Per-pixel constancy is not a problem for images
  (digit corners are always 0), so images are judged per channel. NaN cannot occur: loading
  refuses it.
- ``data.pipeline``: the training batches exactly as the trainer makes them (augmented, mixed,
  preprocessed) beside the preprocessed un-augmented inputs. Values far outside that range fail,
  naming the preprocessing/augmentation pair: per-position statistics (``standardize``) beside
  an augmentation that moves positions (``random_crop``) divide moved ink by a border pixel's
  std of almost zero, and digits' training values reach 540 against 36 un-augmented.
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
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainlab.diagnosis.checks import CHECK_REGISTRY, Context, training_batches
from trainlab.diagnosis.findings import Finding
from trainlab.figures import new_figure, save_figure

if TYPE_CHECKING:
    from trainlab.data.datasets import Splits
    from trainlab.engine.build import Parts
    from trainlab.recipe import DataConfig

__all__ = [
    "Seen",
    "check_data",
    "check_inputs",
    "check_pipeline",
    "check_split",
    "example_hashes",
    "plot_class_samples",
    "seen_from_parts",
    "validation_too_small",
]

IMBALANCE_RATIO = 0.2
SCALE_RATIO = 100.0
SHIFT_STD = 0.5
# The inits (Kaiming, Xavier, LeCun) assume unit-variance inputs: an input RMS 4x off scales the
# first layer's pre-activation variance 16x, and without normalisation layers every later
# layer's and the initial scores with it (ReLU networks are positively homogeneous). Digits' raw
# pixels (0..16, RMS 7.7) are flagged; pixels scaled to [0, 1] (MNIST: RMS 0.33) pass.
MAGNITUDE = 4.0
# A feature whose mean sits more than 3 of its stds from zero is all one sign: every weight of a
# unit then gets a gradient of the same sign (lecture 000's zig-zag argument for centring).
# Raw MNIST pixels in [0, 1] sit at 0.4 stds, digits' at 0.8.
OFFSET_STD = 3.0
# data.pipeline: training batches against the preprocessed un-augmented inputs. Measured on the
# default digits recipe with standardize + random_crop: std 17x, max |value| 15x; the shipped
# recipes and their variants (per_channel with crop, shift, mixup, cutmix) measure <= 1.0x on
# both (mixing averages inputs, so it only shrinks them). 3x / 5x leave room for photometric
# augmentation (brightness 1.4x moves the max by about that much) and fail the planted fault.
PIPELINE_STD_RATIO = 3.0
PIPELINE_MAX_RATIO = 5.0
PIPELINE_BATCHES = 5  # the first batches of epoch 0, as the initial-loss check takes them
STATS_SAMPLE = 2000
ARRAY_SAMPLE = 20_000  # rows of an in-memory split the statistics are computed on
MAX_CLASSES_SHOWN = 20  # rows of the sample grid; beyond this it is unreadable at a glance
PCA_SAMPLE = 5000
# The standard error of an accuracy near p measured on n examples is sqrt(p(1-p)/n): at p=0.5
# and n=30 it is 0.091, a 95% interval of +-18 points, so a train/validation gap smaller than
# that is noise; below 30 examples no gap a user would act on can be told from chance.
MIN_VAL_EXAMPLES = 30
# With fewer than 5 validation examples of a class on average, one example moves that class's
# recall by 20 points or more, and a class can easily end up with none (digits: 144 over 10, 14).
MIN_VAL_PER_CLASS = 5
VAL_FRACTIONS = (0.1, 0.15, 0.2, 0.25, 0.3)  # what data.split proposes, smallest that suffices
SCALING = {"standardize", "per_channel", "pca", "zca"}  # preprocessors that scale to unit std


def _names(splits: Splits) -> list[str]:
    return [str(c) for c in splits.classes]


def _take(x: Any, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of an array or of streamed image files, as one float array."""
    if isinstance(x, np.ndarray):
        return x[idx]
    rows = [np.asarray(x[int(i)]) for i in idx]
    return np.stack(rows) if rows else np.zeros((0, *x.shape[1:]), np.float32)


def _sample(x: Any, seed: int = 0) -> np.ndarray:
    """An array (a seeded sample of ``ARRAY_SAMPLE`` rows when larger); a seeded sample of
    ``STATS_SAMPLE`` rows of streamed files."""
    limit = ARRAY_SAMPLE if isinstance(x, np.ndarray) else STATS_SAMPLE
    if len(x) <= limit:
        return _take(x, np.arange(len(x)))
    idx = np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False))
    return _take(x, idx)


def example_hashes(x: Any) -> list[bytes]:
    """A 16-byte digest per example: of the array row's bytes, or of the image file's bytes."""
    if isinstance(x, np.ndarray):
        rows = np.ascontiguousarray(x).reshape(len(x), int(np.prod(x.shape[1:])))
        return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]
    return [hashlib.blake2b(Path(p).read_bytes(), digest_size=16).digest() for p in x.paths]


def validation_too_small(n: int, num_classes: int) -> str | None:
    """Why a validation split of ``n`` examples over ``num_classes`` classes is too small to
    judge over/underfitting from (see ``MIN_VAL_EXAMPLES``), or None when it is big enough."""
    if n == 0:
        return "no validation split: over- and underfitting cannot be told apart without one"
    if n < MIN_VAL_EXAMPLES:
        se = math.sqrt(0.25 / n)
        return (
            f"{n} validation examples (under {MIN_VAL_EXAMPLES}): an accuracy near 50% on them "
            f"has a standard error sqrt(p(1-p)/n) = {se:.0%}"
        )
    if num_classes > 0 and n < MIN_VAL_PER_CLASS * num_classes:
        return (
            f"{n} validation examples over {num_classes} classes ({n / num_classes:.1f} per "
            f"class, under {MIN_VAL_PER_CLASS}): one example moves a class's recall by "
            f"{num_classes / n:.0%} or more"
        )
    return None


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


def _val_fraction_fix(splits: Splits, data: DataConfig | None) -> tuple[str, ...]:
    """The smallest of ``VAL_FRACTIONS`` above the recipe's that gives a validation split big
    enough to judge, as an override (none when no such fraction exists or the recipe is unknown).
    The validation split is carved out of the training pool (train + validation here)."""
    if data is None:
        return ()
    pool = len(splits.y_train) + len(splits.y_val)
    for fraction in VAL_FRACTIONS:
        n = int(fraction * pool)
        if fraction > data.val_fraction and validation_too_small(n, splits.num_classes) is None:
            return (f"data.val_fraction={fraction:g}",)
    return ()


def check_split(splits: Splits, data: DataConfig | None = None) -> Finding:
    """The validation split: its size against :func:`validation_too_small`, and the classes left
    without a validation example. ``data`` (the recipe's data section) lets the finding propose
    a ``data.val_fraction`` or ``data.stratify`` that would do; never the recipe's own value."""
    names = _names(splits)
    n_val, c = len(splits.y_val), len(names)
    counts = np.bincount(splits.y_val, minlength=c).astype(int) if n_val else np.zeros(c, int)
    in_train = np.bincount(splits.y_train, minlength=c) > 0
    missing = [names[k] for k in range(c) if n_val and counts[k] == 0 and in_train[k]]
    small = validation_too_small(n_val, c)
    values: dict[str, Any] = {
        "val_examples": n_val,
        "test_examples": len(splits.y_test),
        "val_min_per_class": int(counts.min()) if c else 0,
        "val_missing_classes": missing,
        "too_small": small is not None,
    }
    text = (
        f"validation {n_val} examples ({c} classes, {counts.min()}..{counts.max()} per class), "
        f"test {len(splits.y_test)}"
    )
    problems, advice, fix = [], [], _val_fraction_fix(splits, data)
    if small:
        problems.append(f"too small to judge over/underfitting from: {small}")
        advice.append("read the train/validation gap as noise")
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        problems.append(f"{len(missing)} class(es) have no validation example ({shown})")
        advice.append("their accuracy is never measured on validation")
        if data is not None and not data.stratify:
            fix = ("data.stratify=true", *fix)
    if not problems:
        return Finding("data.split", "ok", text, "", values)
    if fix:
        advice.append(f"carve a bigger or stratified split ({', '.join(fix)})")
    return Finding(
        "data.split", "warn", f"{'; '.join(problems)}: {text}", "; ".join(advice), values, fix=fix
    )


def _preprocessed(preprocess: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray) -> np.ndarray:
    """``preprocess`` applied to the float array ``x`` on the preprocessor's device, in float64."""
    buffers = list(preprocess.buffers()) if isinstance(preprocess, torch.nn.Module) else []
    device = buffers[0].device if buffers else torch.device("cpu")
    with torch.no_grad():
        out = preprocess(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device))
    return out.float().cpu().numpy().astype(np.float64)


def _unit_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per feature (vectors) or per channel (over examples and positions)."""
    axes = (0,) if x.ndim == 2 else (0, *range(2, x.ndim))
    return x.mean(axes), x.std(axes)


def check_inputs(
    splits: Splits,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    preprocess_name: str = "none",
) -> Finding:
    """Input statistics (see the module docstring): constancy on the raw inputs, scale and
    centring on ``preprocess``'s output (what the model sees; the raw inputs when None), with
    ``preprocess.name`` advised only when it is not ``preprocess_name`` (the recipe's)."""
    raw = _sample(splits.x_train).astype(np.float64)
    raw_test = _sample(splits.x_test).astype(np.float64)
    kind = {2: "vector", 3: "sequence"}.get(raw.ndim, "image")
    unit = "feature" if raw.ndim == 2 else "channel"
    x = raw if preprocess is None else _preprocessed(preprocess, raw)
    xt = (
        raw_test if preprocess is None or not len(raw_test) else _preprocessed(preprocess, raw_test)
    )
    raw_mean, raw_std = _unit_stats(raw)
    mean, std = _unit_stats(x)
    tmean = _unit_stats(xt)[0] if len(xt) else mean
    n = len(mean)
    constant = np.flatnonzero(raw_std == 0)
    live = std[(std > 0) & (raw_std > 0)]
    scale = float(live.max() / live.min()) if live.size else 1.0
    raw_live = raw_std[raw_std > 0]
    raw_scale = float(raw_live.max() / raw_live.min()) if raw_live.size else 1.0
    rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    offset = np.abs(mean) / np.where(std > 0, std, np.inf)
    shift = np.abs(tmean - mean) / np.where(std > 0, std, np.inf)
    shifted = np.flatnonzero(shift > SHIFT_STD)
    values: dict[str, Any] = {
        "kind": kind,
        unit + "s": n,
        "preprocess": preprocess_name if preprocess is not None else "none",
        "min": round(float(raw.min()), 6),
        "max": round(float(raw.max()), 6),
        "constant": [int(i) for i in constant[:50]],
        "scale_ratio": round(scale, 3),  # on the preprocessed inputs
        "raw_scale_ratio": round(raw_scale, 3),
        "rms": round(rms, 6),
        "max_offset_std": round(float(offset.max()) if n else 0.0, 4),
        "max_test_shift_std": round(float(shift.max()) if n else 0.0, 4),
    }
    if raw.ndim > 2 or n <= 16:
        values["mean"] = [round(float(v), 6) for v in raw_mean]
        values["std"] = [round(float(v), 6) for v in raw_std]
    if raw.ndim > 2:
        pairs = zip(raw_mean[:4], raw_std[:4], strict=True)
        stats = ", ".join(f"{m:.3g}/{s:.3g}" for m, s in pairs)
        more = f" (+{n - 4} more)" if n > 4 else ""
        text = f"{kind}s {tuple(raw.shape[1:])}: raw mean/std per channel {stats}{more}"
    else:
        text = (
            f"{n} features: raw means {raw_mean.min():.3g}..{raw_mean.max():.3g}, "
            f"stds {raw_std.min():.3g}..{raw_std.max():.3g}"
        )
    text += f", values in [{raw.min():.3g}, {raw.max():.3g}]"
    if preprocess is not None:
        text += f"; after {preprocess_name}: RMS {rms:.3g}, {unit} scales {scale:.3g}x apart"
    problems, advice, fix, cause = [], [], (), ""
    if constant.size:
        which = ", ".join(str(i) for i in constant[:8]) + (" ..." if constant.size > 8 else "")
        problems.append(f"{constant.size} constant {unit}(s) ({which})")
        advice.append(f"drop the constant {unit}s: they carry no information")
    unnormalised = []
    if scale > SCALE_RATIO:
        unnormalised.append(f"{unit} scales {scale:.0f}x apart")
    if not 1 / MAGNITUDE <= rms <= MAGNITUDE:
        unnormalised.append(f"RMS {rms:.3g}, not near 1")
    if n and offset.max() > OFFSET_STD:
        unnormalised.append(f"a {unit} mean {offset.max():.1f} stds from zero")
    if unnormalised:
        seen = "the model sees" if preprocess is None else f"after preprocess {preprocess_name}"
        problems.append(f"unnormalised inputs ({', '.join(unnormalised)}, {seen})")
        cause = "data.scale"
        wanted = "standardize" if raw.ndim == 2 else "per_channel"
        if wanted != preprocess_name:
            fix = (f"preprocess.name={wanted}",)
            advice.append(f"centre and scale the inputs (preprocess.name={wanted})")
        else:
            advice.append(
                f"preprocess.name={wanted} leaves them unnormalised: look at the {unit}s' units"
            )
    if shifted.size:
        problems.append(
            f"test mean is {shift.max():.2f} train stds from train's in {shifted.size} {unit}(s)"
        )
        advice.append("check that train and test come from the same source and preprocessing")
    if problems:
        return Finding(
            "data.inputs",
            "warn",
            f"{'; '.join(problems)}: {text}",
            "; ".join(advice),
            values,
            cause=cause,
            fix=fix,
        )
    return Finding("data.inputs", "ok", text, "", values)


@dataclass(frozen=True)
class Seen:
    """What the model sees in training, beside what it would see without augmentation.

    ``training``: the inputs of the first training batches exactly as the trainer makes them
    (augmented, mixed, preprocessed); ``reference``: preprocessed un-augmented training inputs;
    ``preprocess`` and its name (resolved: never ``auto``); ``augment``: the recipe's
    augmentations as ``augment[i] NAME``, ``moving`` those that move input positions.
    """

    preprocess: Callable[[torch.Tensor], torch.Tensor]
    preprocess_name: str
    training: torch.Tensor
    reference: torch.Tensor
    augment: tuple[str, ...] = ()
    moving: tuple[str, ...] = ()


def seen_from_parts(parts: Parts, batches: int = PIPELINE_BATCHES, seed: int = 0) -> Seen:
    """:class:`Seen` for a built run: ``batches`` training batches (:func:`training_batches`)
    and a seeded sample of ``STATS_SAMPLE`` preprocessed training inputs."""
    from trainlab.data.augment import AUGMENTS

    recipe = parts.recipe
    training = torch.cat([x.float().cpu() for x, _ in training_batches(parts, batches)])
    raw = parts.raw_sample
    if len(raw) > STATS_SAMPLE:
        idx = np.sort(np.random.default_rng(seed).choice(len(raw), STATS_SAMPLE, replace=False))
        raw = raw[torch.from_numpy(idx)]
    with torch.no_grad():
        reference = parts.preprocess(raw.to(parts.device)).float().cpu()
    augment = tuple(f"augment[{i}] {a.name}" for i, a in enumerate(recipe.augment))
    moving = tuple(
        f"augment[{i}] {a.name}"
        for i, a in enumerate(recipe.augment)
        if AUGMENTS.get(a.name).info.get("moves_positions")
    )
    return Seen(parts.preprocess, recipe.preprocess.name, training, reference, augment, moving)


def check_pipeline(seen: Seen) -> Finding:
    """The training batches against the preprocessed un-augmented inputs: fail when their std
    or max |value| is ``PIPELINE_STD_RATIO``/``PIPELINE_MAX_RATIO`` times larger, naming the
    preprocessing and the augmentations (the moving ones first) and the fix."""
    train, ref = seen.training.double(), seen.reference.double()
    t_max, r_max = float(train.abs().max()), float(ref.abs().max())
    t_std, r_std = float(train.std()), float(ref.std())
    std_ratio = t_std / max(r_std, 1e-12)
    max_ratio = t_max / max(r_max, 1e-12)
    values = {
        "train_max_abs": round(t_max, 6),
        "train_std": round(t_std, 6),
        "reference_max_abs": round(r_max, 6),
        "reference_std": round(r_std, 6),
        "std_ratio": round(std_ratio, 4),
        "max_ratio": round(max_ratio, 4),
        "preprocess": seen.preprocess_name,
        "augment": list(seen.augment),
        "examples": int(train.shape[0]),
    }
    text = (
        f"training batches (augmented, preprocessed) max |x| {t_max:.3g}, std {t_std:.3g}; "
        f"un-augmented {r_max:.3g}, {r_std:.3g} (ratios {max_ratio:.2f}, {std_ratio:.2f})"
    )
    if std_ratio <= PIPELINE_STD_RATIO and max_ratio <= PIPELINE_MAX_RATIO:
        return Finding("data.pipeline", "ok", text, "", values)
    from trainlab.data.preprocess import PREPROCESSORS

    suspects = seen.moving or seen.augment
    pair = f"preprocess.name={seen.preprocess_name}"
    if suspects:
        pair += f" with {', '.join(suspects)}"
    per_position = PREPROCESSORS.get(seen.preprocess_name).info.get("per_position_scale")
    fix: tuple[str, ...] = ()
    if per_position and seen.moving and seen.preprocess_name != "per_channel":
        fix = ("preprocess.name=per_channel",)
        advice = (
            "per-position statistics are wrong on moved inputs (augmentation runs before "
            "preprocessing): use one statistic per channel (preprocess.name=per_channel)"
        )
    else:
        advice = (
            "the augmentation makes values unlike the data: check its parameters (they are in "
            "raw input units, applied before preprocessing)"
        )
    return Finding(
        "data.pipeline",
        "fail",
        f"training inputs far outside the un-augmented range ({pair}): {text}",
        advice,
        values,
        cause="data.pipeline",
        fix=fix,
    )


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


def check_data(
    splits: Splits,
    figure: str | None = None,
    *,
    seen: Seen | None = None,
    data: DataConfig | None = None,
) -> list[Finding]:
    """Class balance, the validation split, input statistics, the training pipeline (given
    ``seen``) and duplicates (see the module docstring). ``data``, the recipe's data section,
    lets the split finding propose overrides.

    ``figure`` (a PNG name relative to the report folder, from :func:`plot_class_samples`) is
    attached to the balance finding.
    """
    balance = check_balance(splits)
    if figure:
        balance = replace(balance, figures=(figure,))
    if seen is None:
        inputs = [check_inputs(splits)]
    else:
        inputs = [check_inputs(splits, seen.preprocess, seen.preprocess_name), check_pipeline(seen)]
    return [balance, check_split(splits, data), *inputs, check_duplicates(splits)]


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
    """Look at the data as training sees it: class balance, the splits, input statistics after
    preprocessing, the augmented training batches, leaks between splits; a sample grid."""
    parts = ctx.parts
    plot_class_samples(parts.splits, ctx.out / "data.png", seed=ctx.recipe.seed)
    seen = seen_from_parts(parts, seed=ctx.recipe.seed)
    return check_data(parts.splits, figure="data.png", seen=seen, data=parts.recipe.data)
