"""Datasets by name, each with a fixed test split and a validation split carved from train.

A dataset factory returns :class:`RawData` (numpy arrays, with a test split when the source has
one). :func:`load_splits` then checks the labels, carves the test split when the source has none
(``data.test_fraction``) and the validation split from train (``data.val_fraction``), both with
``data.split_seed`` so the recipe's ``seed`` never changes which examples are tested.

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
    "read_raw",
    "check_labels",
    "check_features",
    "features_as_float",
]

DATASETS = Registry("dataset", "data sources (data.name)")


@dataclass
class RawData:
    """Arrays as read from the source: x (N, ...) float or uint8, y (N,) integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: list[str]
    source: str
    notes: list[str] = field(default_factory=list)


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
    notes: list[str] = field(default_factory=list)  # what the reader did (skipped, converted)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def check_labels(y: np.ndarray, source: str, num_classes: int | None = None) -> np.ndarray:
    """Labels must be integers in [0, C); the first bad row is named in the error."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{source}: labels must be one-dimensional, got shape {y.shape}")
    if y.dtype == object or y.dtype.kind not in "iufb":
        raise DataError(f"{source}: labels must be integers, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise DataError(f"{source}: row {bad[0]}: label {y[bad[0]]} is not an integer")
    y = y.astype(np.int64)
    negative = np.flatnonzero(y < 0)
    if negative.size:
        raise DataError(f"{source}: row {negative[0]}: label {y[negative[0]]} is negative")
    if num_classes is not None:
        over = np.flatnonzero(y >= num_classes)
        if over.size:
            raise DataError(
                f"{source}: row {over[0]}: label {y[over[0]]} is out of range [0, {num_classes})"
            )
    return y


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


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed (seeded) permutation cut into (kept, held-out) index arrays."""
    order = np.random.default_rng(seed).permutation(n)
    held = int(round(n * fraction))
    return np.sort(order[held:]), np.sort(order[:held])


def read_raw(cfg: DataConfig) -> RawData:
    """The arrays of the recipe's dataset as its reader returns them (no checks, no splits).

    Each factory is passed only the ``data`` keys it declares (its keyword parameters with a
    default, as ``trainlab list dataset`` shows them); the rest of the section is the loaders'.
    """
    entry = DATASETS.get(cfg.name)
    return entry.factory(**{key: getattr(cfg, key) for key in entry.params()})


def load_splits(cfg: DataConfig) -> Splits:
    """Read the recipe's dataset, validate it and cut train / val / test."""
    raw = read_raw(cfg)
    classes = raw.classes
    y_train = check_labels(raw.y_train, raw.source, len(classes))
    x_train = check_features(raw.x_train, y_train, raw.source)
    if raw.x_test is None:
        keep, test = _split(len(x_train), cfg.test_fraction, cfg.split_seed)
        x_train, y_train, x_test, y_test = (
            x_train[keep],
            y_train[keep],
            x_train[test],
            y_train[test],
        )
    else:
        y_test = check_labels(raw.y_test, raw.source + " (test)", len(classes))
        x_test = check_features(raw.x_test, y_test, raw.source + " (test)")
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"{raw.source}: test examples have shape {x_test.shape[1:]}, "
                f"train examples {x_train.shape[1:]}"
            )
    keep, val = _split(len(x_train), cfg.val_fraction, cfg.split_seed + 1)
    if len(keep) == 0:
        raise DataError(f"{raw.source}: no training examples left after the validation split")
    return Splits(
        x_train[keep],
        y_train[keep],
        x_train[val],
        y_train[val],
        x_test,
        y_test,
        classes,
        raw.source,
        list(raw.notes),
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
