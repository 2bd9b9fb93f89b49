"""Datasets by name, each with a fixed test split and a validation split carved from train.

A dataset factory returns :class:`RawData` (numpy arrays, with a test split when the source has
one, and the class names when the source has them). :func:`load_splits` then checks the labels,
settles the classes (:func:`check_classes`: every class has training examples, every test label
is a class training has seen), carves the test split when the source has none
(``data.test_fraction``) and the validation split from train (``data.val_fraction``), both
stratified by class (``data.stratify``) and drawn with ``data.split_seed``, so the recipe's
``seed`` never changes which examples are tested.

The number of classes C is what the recipe declares (``data.num_classes``, or the count of
``data.classes``), else what the source names (an .npz's ``classes``, a CSV's label names, class
folders), else one more than the largest training label; then a class without training examples
is an error, since the model would get an output it can never learn (labels 1..K, or one stray
label far above the rest). Declared classes may be empty: that is reported in ``Splits.notes``.

Built-in datasets:
- ``digits``: scikit-learn's 1,797 8x8 digits as (1, 8, 8) images in [0, 16]; test = a fixed
  20% (359 examples) drawn with seed 0, the rest (1,438) train.
- ``mnist1d``: ``mnist1d.data.make_dataset`` with its default arguments: 4,000 train / 1,000 test
  sequences of length 40, as (1, 40).
- ``spiral``: cs231n's 3-class spiral in 2-D, 1,000 points per class, noise 0.2, generated with
  seed 0; test = a fixed 20%.
"""

from __future__ import annotations

import functools
import importlib.util
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainlab.errors import DataError
from trainlab.registry import Registry

if TYPE_CHECKING:
    from trainlab.recipe import DataConfig

__all__ = [
    "DATASETS",
    "RawData",
    "Splits",
    "load_splits",
    "keep_classes",
    "read_raw",
    "check_labels",
    "check_classes",
    "check_features",
    "features_as_float",
]

DATASETS = Registry("dataset", "data sources (data.name)")


@dataclass
class RawData:
    """Arrays as read from the source: x (N, ...) float or uint8, y (N,) integer labels.

    ``classes`` is None when the source names no classes (bare labels): load_splits then takes
    C from the recipe or the labels. ``test_source`` names a test split kept in another file,
    and ``train_lines``/``test_lines`` give each row's line in a text file, so that label errors
    point where an editor would.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: list[str] | None
    source: str
    notes: list[str] = field(default_factory=list)
    test_source: str | None = None
    train_lines: list[int] | None = None
    test_lines: list[int] | None = None


@dataclass
class Splits:
    """Train / validation / test arrays, ready for preprocessing (x float32, y int64)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    source: str
    notes: list[str] = field(default_factory=list)  # what the reader and the splits did

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _where(rows: np.ndarray, lines: list[int] | None = None, limit: int = 3) -> str:
    """'row 7', 'rows 12, 40' or 'lines 14, 42, 50, ...': the first rows, as a file shows them."""
    word = "row" if lines is None else "line"
    shown = [str(i if lines is None else lines[i]) for i in rows[:limit].tolist()]
    more = ", ..." if len(rows) > limit else ""
    return f"{word}{'s' if len(rows) > 1 else ''} {', '.join(shown)}{more}"


def check_labels(
    y: np.ndarray, source: str, num_classes: int | None = None, lines: list[int] | None = None
) -> np.ndarray:
    """Labels must be integers in [0, C); the first bad row (or CSV line) is named."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{source}: labels must be one-dimensional, got shape {y.shape}")
    if y.dtype == object or y.dtype.kind not in "iufb":
        raise DataError(f"{source}: labels must be integers, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise DataError(
                f"{source}: {_where(bad[:1], lines)}: label {y[bad[0]]} is not an integer"
            )
    y = y.astype(np.int64)
    negative = np.flatnonzero(y < 0)
    if negative.size:
        raise DataError(
            f"{source}: {_where(negative[:1], lines)}: label {y[negative[0]]} is negative"
        )
    if num_classes is not None:
        over = np.flatnonzero(y >= num_classes)
        if over.size:
            raise DataError(
                f"{source}: {_where(over[:1], lines)}: label {y[over[0]]} is out of range "
                f"[0, {num_classes})"
            )
    return y


# ----------------------------------------------------------------------------- the classes


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Sorted integers as (first, last) runs: [0, 1, 2, 7] -> [(0, 2), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _runs_text(runs: list[tuple[int, int]], limit: int = 4) -> str:
    """'0..2, 7, 9..10' (the first ``limit`` runs, then '...')."""
    text = [f"{a}" if a == b else f"{a}..{b}" for a, b in runs[:limit]]
    return ", ".join(text) + (", ..." if len(runs) > limit else "")


def _spans(values: list[int]) -> str:
    """Sorted integers as runs: [0, 1, 2, 7, 9, 10] -> '0..2, 7, 9..10'."""
    return _runs_text(_runs(values))


def _gaps(present: np.ndarray, num_classes: int) -> list[tuple[int, int]]:
    """The runs of classes in [0, C) that ``present`` (sorted, unique labels) lacks.

    Computed from the labels, never by listing [0, C): a stray label of 65535000 costs one run,
    not 65 million numbers.
    """
    gaps: list[tuple[int, int]] = []
    previous = -1
    for value in [*present.tolist(), num_classes]:
        if value > previous + 1:
            gaps.append((previous + 1, value - 1))
        previous = value
    return gaps


def _classes_phrase(missing: list[tuple[int, int]], count: int) -> str:
    """'class 0 has' or 'classes 3..6 have' (``count`` classes in all)."""
    return f"class {missing[0][0]} has" if count == 1 else f"classes {_runs_text(missing)} have"


def _out_of_range(
    y: np.ndarray, num_classes: int, source: str, declared_by: str, lines: list[int] | None
) -> None:
    """Labels at or above a declared C: the first such label, its first rows and its count."""
    over = np.flatnonzero(y >= num_classes)
    if not over.size:
        return
    label = int(y[over[0]])
    rows = np.flatnonzero(y == label)
    raise DataError(
        f"{source}: label {label} ({_where(rows, lines)}; {len(rows)} of {len(y)} rows) is out "
        f"of range [0, {num_classes}): {declared_by}"
    )


def _empty_class_error(
    y: np.ndarray, present: np.ndarray, counts: np.ndarray, source: str, lines: list[int] | None
) -> DataError:
    """Why inferred classes are empty, in the words of the likely cause.

    Labels that start above 0 ("labels are 1..3") suggest relabelling; a few rows whose labels
    sit above a gap (a stray 7 among 0..2) are named with their rows, since fixing those rows
    is the likely cure; other gaps are listed as they are.
    """
    top = int(present[-1]) + 1
    missing = _gaps(present, top)
    count = top - len(present)
    first_gap = missing[0][0]
    above = present > first_gap
    stray_rows = int(counts[above].sum())
    labels = f"labels are {_spans(present.tolist())}"
    if first_gap == 0 and count == int(present[0]):
        return DataError(
            f"{source}: {_classes_phrase(missing, count)} no training examples ({labels}); "
            "declare data.num_classes or relabel from 0"
        )
    few = stray_rows * 10 < len(y) or (count > len(present) and stray_rows * 2 < len(y))
    if few:  # a few rows far above the rest: a typo or a sentinel such as 65535
        stray = present[above].tolist()
        named = [f"{v} ({_where(np.flatnonzero(y == v), lines)})" for v in stray[:3]]
        more = ", ..." if len(stray) > 3 else ""
        verb = "appears" if len(stray) == 1 else "appear"
        declare = f": {top} to train {top} classes" if top <= 10 * len(present) else ""
        return DataError(
            f"{source}: label{'s' if len(stray) > 1 else ''} {', '.join(named)}{more} {verb} in "
            f"{stray_rows} of {len(y)} rows, so {_classes_phrase(missing, count)} no training "
            f"examples; fix those rows, or declare data.num_classes{declare}"
        )
    return DataError(
        f"{source}: {_classes_phrase(missing, count)} no training examples ({labels}); "
        "declare data.num_classes or relabel without gaps"
    )


def check_classes(
    y_train: np.ndarray,
    y_test: np.ndarray | None = None,
    num_classes: int | None = None,
    *,
    source: str = "labels",
    test_source: str | None = None,
    declared_by: str = "",
    lines: list[int] | None = None,
    test_lines: list[int] | None = None,
) -> tuple[int, list[str]]:
    """The one check of what the labels say about the classes: (C, notes).

    ``num_classes`` is C when the recipe or the source declares it (``declared_by`` says who);
    labels outside [0, C) are then errors, and a class without training examples is a note (the
    model still has C outputs). Without it, C is the largest training label + 1 and every class
    must have training examples, as scikit-learn's classifiers and PyTorch's cross-entropy
    assume: labels 1..K or one stray label would otherwise add outputs that are never trained.
    Fewer than two trained classes, or a test label that training has never seen (unless
    declared), is refused: the test figures would be meaningless.
    """
    test_source = test_source or f"{source} (test)"
    if len(y_train) == 0:
        raise DataError(f"{source}: no training examples")
    if num_classes is not None:
        _out_of_range(y_train, num_classes, source, declared_by, lines)
    present, counts = np.unique(y_train, return_counts=True)
    if len(present) < 2:
        raise DataError(
            f"{source}: every training label is {int(present[0])} (one class only); "
            "a classifier needs examples of at least 2 classes"
        )
    notes: list[str] = []
    top = num_classes if num_classes is not None else int(present[-1]) + 1
    if top > len(present):
        if num_classes is None:
            raise _empty_class_error(y_train, present, counts, source, lines)
        missing = _gaps(present, top)
        notes.append(
            f"{_classes_phrase(missing, top - len(present))} no training examples "
            f"({declared_by}; the model has {top} outputs)"
        )
    if y_test is not None:
        if num_classes is not None:
            _out_of_range(y_test, num_classes, test_source, declared_by, test_lines)
        unseen = np.setdiff1d(np.unique(y_test), present)
        if unseen.size and num_classes is None:
            label = int(unseen[0])
            rows = np.flatnonzero(y_test == label)
            raise DataError(
                f"{test_source}: label {label} ({_where(rows, test_lines)}) never occurs in "
                f"training (training labels: {_spans(present.tolist())}); fix the test labels, "
                "or declare data.num_classes"
            )
        if unseen.size:
            one = unseen.size == 1
            notes.append(
                f"test label{'' if one else 's'} {_spans(unseen.tolist())} "
                f"{'has' if one else 'have'} no training examples ({declared_by}): the model "
                f"never saw {'it' if one else 'them'}"
            )
    return top, notes


def _named(index: int, classes: list[str]) -> str:
    """'class 3', or "class 3 ('fox')" when the class has a name other than its number."""
    name = classes[index]
    return f"class {index}" if name == str(index) else f"class {index} ({name!r})"


def _declared(cfg: DataConfig, raw: RawData) -> tuple[list[str] | None, np.ndarray | None, str]:
    """(class names or None, label remap or None, who declared them) from recipe and source.

    The recipe wins: ``data.classes`` gives the names (a source that names its classes is
    mapped onto them by name, so the order of the recipe's list is the label order);
    ``data.num_classes`` alone must match what the source names. None: C comes from the labels.
    """
    wanted = list(cfg.classes) if cfg.classes is not None else None
    count = len(wanted) if wanted is not None else cfg.num_classes
    key = "data.classes" if wanted is not None else "data.num_classes"
    if raw.classes is None:
        if count is None:
            return None, None, ""
        names = wanted if wanted is not None else [str(i) for i in range(count)]
        return names, None, f"{key} declares {count} classes"
    if wanted is None:
        if count is not None and count != len(raw.classes):
            raise DataError(
                f"{raw.source}: data.num_classes is {count} but the data names "
                f"{len(raw.classes)} classes ({', '.join(raw.classes[:10])}); "
                f"list all {count} in data.classes"
            )
        return list(raw.classes), None, f"the data names {len(raw.classes)} classes"
    index = {name: i for i, name in enumerate(wanted)}
    unknown = [name for name in raw.classes if name not in index]
    if unknown:
        raise DataError(
            f"{raw.source}: class {unknown[0]!r} of the data is not in data.classes "
            f"({', '.join(wanted[:10])})"
        )
    remap = np.array([index[name] for name in raw.classes], dtype=np.int64)
    return wanted, remap, f"{key} declares {count} classes"


def _settle_classes(
    cfg: DataConfig, raw: RawData, y_train: np.ndarray, y_test: np.ndarray | None
) -> tuple[list[str], np.ndarray, np.ndarray | None, list[str]]:
    """Class names, train and test labels in their final numbering, and notes on the classes."""
    test_source = raw.test_source or f"{raw.source} (test)"
    names, remap, declared_by = _declared(cfg, raw)
    if remap is not None:  # labels index the source's names: check them there, then map
        by_source = f"the data names {len(remap)} classes"
        _out_of_range(y_train, len(remap), raw.source, by_source, raw.train_lines)
        y_train = remap[y_train]
        if y_test is not None:
            _out_of_range(y_test, len(remap), test_source, by_source, raw.test_lines)
            y_test = remap[y_test]
    count, notes = check_classes(
        y_train,
        y_test,
        None if names is None else len(names),
        source=raw.source,
        test_source=test_source,
        declared_by=declared_by,
        lines=raw.train_lines,
        test_lines=raw.test_lines,
    )
    return names or [str(i) for i in range(count)], y_train, y_test, notes


def check_features(x: np.ndarray, y: np.ndarray, source: str) -> np.ndarray:
    """Numeric, finite features with one row per label; returns float32 (uint8 scaled to [0,1])."""
    if hasattr(x, "decode"):  # streamed image files: decoded (and checked) when read
        if len(x) != len(y):
            raise DataError(f"{source}: {len(x)} images but {len(y)} labels")
        return x
    x = np.asarray(x)
    if x.ndim < 2:
        raise DataError(f"{source}: features must have shape (N, ...), got {x.shape}")
    if len(x) != len(y):
        raise DataError(f"{source}: {len(x)} feature rows but {len(y)} labels")
    return features_as_float(x, source)


def features_as_float(x: np.ndarray, source: str) -> np.ndarray:
    """Features as float32, uint8 (8-bit images) scaled to [0, 1]: the one conversion training
    and prediction share. A row with NaN or infinity is a DataError naming it."""
    if x.dtype == object or x.dtype.kind not in "iufb":
        raise DataError(f"{source}: features must be numeric, got dtype {x.dtype}")
    out = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(out.reshape(max(len(out), 1), -1)).all(axis=1))
    if bad.size:
        raise DataError(f"{source}: row {bad[0]}: features contain NaN or infinity")
    return out


# ----------------------------------------------------------------------------- the splits


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed (seeded) permutation cut into (kept, held-out) index arrays.

    The built-in datasets' published test splits are cut this way: it must never change.
    """
    order = np.random.default_rng(seed).permutation(n)
    held = int(round(n * fraction))
    return np.sort(order[held:]), np.sort(order[:held])


def _held_per_class(counts: np.ndarray, fraction: float, total: int) -> np.ndarray:
    """How many examples of each class to hold out: its share rounded down or up (largest
    remainders first, so the total is ``total``), never its last example (kept for training)."""
    quota = counts * fraction
    held = np.minimum(np.floor(quota).astype(np.int64), counts - 1)
    spare = min(total, int((counts - 1).sum())) - int(held.sum())
    if spare > 0:
        room = (held < counts - 1) & (held < np.ceil(quota))
        order = np.argsort(-(quota - np.floor(quota)), kind="stable")
        held[order[room[order]][:spare]] += 1
    return held


def _stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) indices with each class's share held out within one example.

    scikit-learn's ``train_test_split(stratify=y)`` keeps the class proportions the same way;
    here a class's last example always stays in the kept part, so a rare class is never lost to
    training. Which examples of a class are held out follows one seeded permutation of all rows.
    """
    n = len(y)
    order = np.random.default_rng(seed).permutation(n)
    _present, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    held = _held_per_class(counts, fraction, int(round(n * fraction)))
    cls = inverse[order]
    by_class = np.argsort(cls, kind="stable")  # positions in `order`, grouped by class
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.int64)  # each position's rank among its class in `order`
    rank[by_class] = np.arange(n) - starts[cls[by_class]]
    out = rank < held[cls]
    return np.sort(order[~out]), np.sort(order[out])


def _cut(y: np.ndarray, fraction: float, seed: int, stratify: bool) -> tuple[np.ndarray, ...]:
    """(kept, held-out) indices: stratified by class, or (data.stratify: false) a plain cut."""
    if stratify and len(y):
        return _stratified_split(y, fraction, seed)
    return _split(len(y), fraction, seed)


def _split_notes(
    before: np.ndarray, held: np.ndarray, kept: np.ndarray, what: str, classes: list[str]
) -> list[str]:
    """Classes the split left without held-out (or, unstratified, training) examples."""
    notes = []
    had, got, left = (np.bincount(a, minlength=len(classes)) for a in (before, held, kept))
    for c in np.flatnonzero((had > 0) & (got == 0)).tolist():
        n = int(had[c])
        notes.append(
            f"{_named(c, classes)} has {n} example{'s' if n > 1 else ''}: "
            f"none left for the {what} split"
        )
    for c in np.flatnonzero((had > 0) & (left == 0)).tolist():
        notes.append(f"{_named(c, classes)}: every example went to the {what} split")
    return notes


def read_raw(cfg: DataConfig) -> RawData:
    """The arrays of the recipe's dataset as its reader returns them (no checks, no splits).

    Each factory is passed only the ``data`` keys it declares (its keyword parameters with a
    default, as ``trainlab list dataset`` shows them); the rest of the section is the loaders'.
    """
    entry = DATASETS.get(cfg.name)
    return entry.factory(**{key: getattr(cfg, key) for key in entry.params()})


def keep_classes(raw: RawData, keep: list[int]) -> RawData:
    """Only the examples of the source labels ``keep``, relabelled 0..K-1 in that order, with
    their class names (``data.keep_classes``): the data of a transfer experiment (pretrain on
    MNIST-1D's 0-4, fine-tune on 5-9) is carved from one source without a copy on disk."""
    y_train = check_labels(raw.y_train, raw.source, lines=raw.train_lines)
    names = raw.classes
    absent = [k for k in keep if not (y_train == k).any()]
    if absent or (names is not None and max(keep) >= len(names)):
        raise DataError(
            f"{raw.source}: data.keep_classes {keep}: label {(absent or [max(keep)])[0]} has no "
            f"training examples (labels present: {_spans(np.unique(y_train).tolist())})"
        )
    remap = np.zeros(max(keep) + 1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))

    def rows_of(y: np.ndarray, lines: list[int] | None) -> tuple[np.ndarray, list[int] | None]:
        rows = np.flatnonzero(np.isin(y, keep))
        return rows, None if lines is None else [lines[i] for i in rows]

    rows, train_lines = rows_of(y_train, raw.train_lines)
    x_test = y_test = test_lines = None
    if raw.y_test is not None and raw.x_test is not None:
        y_all = check_labels(raw.y_test, raw.test_source or f"{raw.source} (test)")
        test_rows, test_lines = rows_of(y_all, raw.test_lines)
        x_test, y_test = raw.x_test[test_rows], remap[y_all[test_rows]]
    kept = [names[k] if names is not None else str(k) for k in keep]
    return RawData(
        raw.x_train[rows], remap[y_train[rows]], x_test, y_test, kept, raw.source,
        list(raw.notes), raw.test_source, train_lines, test_lines,
    )  # fmt: skip


def load_splits(cfg: DataConfig) -> Splits:
    """Read the recipe's dataset, validate it, settle its classes and cut train / val / test."""
    raw = read_raw(cfg)
    if cfg.keep_classes is not None:
        raw = keep_classes(raw, list(cfg.keep_classes))
    test_source = raw.test_source or f"{raw.source} (test)"
    y_train = check_labels(raw.y_train, raw.source, lines=raw.train_lines)
    x_train = check_features(raw.x_train, y_train, raw.source)
    y_test = None
    if raw.y_test is not None:
        y_test = check_labels(raw.y_test, test_source, lines=raw.test_lines)
    classes, y_train, y_test, notes = _settle_classes(cfg, raw, y_train, y_test)
    notes = [*raw.notes, *notes]
    if raw.x_test is None or y_test is None:
        keep, test = _cut(y_train, cfg.test_fraction, cfg.split_seed, cfg.stratify)
        notes += _split_notes(y_train, y_train[test], y_train[keep], "test", classes)
        x_train, y_train, x_test, y_test = (
            x_train[keep],
            y_train[keep],
            x_train[test],
            y_train[test],
        )
    else:
        x_test = check_features(raw.x_test, y_test, test_source)
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"{raw.source}: test examples have shape {x_test.shape[1:]}, "
                f"train examples {x_train.shape[1:]}"
            )
        untested = np.setdiff1d(np.unique(y_train), y_test)
        if untested.size:
            notes.append(
                f"{'class' if untested.size == 1 else 'classes'} {_spans(untested.tolist())} "
                "of training have no test examples (no per-class test figures)"
            )
    keep, val = _cut(y_train, cfg.val_fraction, cfg.split_seed + 1, cfg.stratify)
    if len(keep) == 0:
        raise DataError(f"{raw.source}: no training examples left after the validation split")
    if cfg.val_fraction > 0:
        notes += _split_notes(y_train, y_train[val], y_train[keep], "validation", classes)
    return Splits(
        x_train[keep],
        y_train[keep],
        x_train[val],
        y_train[val],
        x_test,
        y_test,
        classes,
        raw.source,
        notes,
    )


# A dataset factory's keyword parameters with a default are the ``data`` keys it reads; their
# defaults repeat the schema's (trainlab.recipe.DataConfig, which data cannot import: the schema
# imports every component), and tests/test_registry_params.py asserts that they agree. The
# built-in datasets below are fixed: they read no key (the splits are load_splits' business).


@DATASETS.register("digits")
def digits() -> RawData:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes)."""
    images, target = _digits_arrays()
    x = images.astype(np.float32)[:, None]  # (N, 1, 8, 8), values 0..16
    return _fixed_test_split(x, target, [str(c) for c in range(10)], "digits")


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The (N, 8, 8) images and labels of ``sklearn.datasets.load_digits``, read from the CSV
    file scikit-learn ships without importing scikit-learn: the import alone takes about 1 s,
    a tenth of ``trainlab train`` on the default recipe. Falls back to ``load_digits`` if the
    file is not where scikit-learn keeps it."""
    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(roots[0], "datasets", "data", "digits.csv.gz") if roots else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    data = np.loadtxt(path, delimiter=",")  # what load_digits reads (gzip by the suffix)
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


@DATASETS.register("mnist1d")
def mnist1d() -> RawData:
    """MNIST-1D (Greydanus, 2020): 4,000 / 1,000 length-40 sequences from make_dataset()."""
    x, y, x_test, y_test = (a.copy() for a in _mnist1d_arrays())
    return RawData(x, y, x_test, y_test, [str(c) for c in range(10)], "mnist1d")


@functools.cache
def _mnist1d_arrays() -> tuple[np.ndarray, ...]:
    """The generated arrays, once per process: make_dataset has no arguments that vary (it
    seeds itself) and takes 1-2 s, which the doctor paid for each of its six model copies."""
    from mnist1d.data import get_dataset_args, make_dataset

    py_state, np_state = random.getstate(), np.random.get_state()
    try:  # make_dataset calls set_seed(42) on the global RNGs: keep the run's seeding intact
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x, x_test = data["x"].astype(np.float32)[:, None], data["x_test"].astype(np.float32)[:, None]
    return x, data["y"], x_test, data["y_test"]


@DATASETS.register("spiral")
def spiral() -> RawData:
    """cs231n's spiral: 3 interleaved arms in 2-D, 1,000 points each; not linearly separable."""
    per_class, classes = 1000, 3
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.0, 1.0, per_class)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, per_class) + rng.normal(0, 0.2, per_class)
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(per_class, c))
    x = np.concatenate(xs).astype(np.float32)
    return _fixed_test_split(x, np.concatenate(ys), ["0", "1", "2"], "spiral")


def _fixed_test_split(x: np.ndarray, y: np.ndarray, classes: list[str], source: str) -> RawData:
    """A built-in dataset's documented test split: 20% drawn with seed 0, whatever the recipe."""
    keep, test = _split(len(x), 0.2, 0)
    return RawData(x[keep], y[keep], x[test], y[test], classes, source)
