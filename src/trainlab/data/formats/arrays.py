"""The ``npz`` and ``npy`` datasets: NumPy arrays a user saved, read without pickle.

``npz`` is a whole dataset in one archive (x_train/y_train[/x_test/y_test] or x/y, the features
also as scikit-learn spells them, X_train/X/X_test, and optional class names); ``npy`` is two
one-array files, features and labels. Both are opened with
``allow_pickle=False``, so a downloaded file cannot run code when it is loaded, and an object
array is refused with a DataError naming the file and key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainlab.data.datasets import DATASETS, RawData
from trainlab.data.formats.common import _NUMPY_ERRORS, _one_line, _path
from trainlab.errors import DataError

__all__ = ["npz", "npy"]


def _str_classes(values: np.ndarray, source: str) -> list[str]:
    """A stored ``classes`` array as a list of names (str or UTF-8 bytes, one-dimensional)."""
    if values.ndim != 1 or values.dtype.kind not in "US":
        raise DataError(
            f"{source}: key 'classes' must be a 1-D array of strings, "
            f"got dtype {values.dtype} shape {values.shape}"
        )
    if values.dtype.kind == "S":
        return [v.decode("utf-8", "replace") for v in values.tolist()]
    return [str(v) for v in values.tolist()]


def _load_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz archive, refusing pickled (object) arrays with a DataError."""
    try:
        archive = np.load(path, allow_pickle=False)
    except _NUMPY_ERRORS as exc:
        raise DataError(f"{path}: cannot read as .npz ({_one_line(exc)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected an .npz archive of named arrays, found one array")
    arrays: dict[str, np.ndarray] = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except _NUMPY_ERRORS as exc:
                raise DataError(
                    f"{path}: key {key!r} cannot be read without pickle "
                    f"(object arrays are refused; store numbers or strings): {_one_line(exc)}"
                ) from None
    return arrays


def _spelling(arrays: dict[str, np.ndarray], key: str, file: Path) -> str | None:
    """The stored name of ``key``: as given or with a capital first letter (scikit-learn's
    ``X_train``, ``X``), None when neither is there; both at once is ambiguous."""
    names = [k for k in dict.fromkeys((key, key[0].upper() + key[1:])) if k in arrays]
    if len(names) > 1:
        raise DataError(f"{file}: keys {names[0]!r} and {names[1]!r} both present; keep one")
    return names[0] if names else None


def _pair(
    arrays: dict[str, np.ndarray], x_key: str, y_key: str, file: Path, found: str
) -> tuple[str, str] | None:
    """The stored names of a features/labels pair, None when neither is there; one without its
    partner is a DataError naming the key that is present and the one it needs."""
    x_name, y_name = _spelling(arrays, x_key, file), _spelling(arrays, y_key, file)
    if x_name is None and y_name is None:
        return None
    if x_name is None or y_name is None:
        have, miss = (x_name, y_key) if y_name is None else (y_name, x_key)
        raise DataError(f"{file}: key {have!r} needs {miss!r} beside it; found keys: {found}")
    return x_name, y_name


@DATASETS.register("npz")
def npz(*, path: str | None = None) -> RawData:
    """A NumPy .npz with x_train/y_train[/x_test/y_test] or x/y (X_... too), and class names.

    Reading with ``allow_pickle=False`` means a downloaded archive cannot run code when loaded.
    Without a ``classes`` array the classes are numbered from the labels by load_splits.
    """
    file = _path(path, "path", "npz")
    arrays = _load_npz_arrays(file)
    found = ", ".join(sorted(arrays)) or "none"
    names = _pair(arrays, "x_train", "y_train", file, found) or _pair(arrays, "x", "y", file, found)
    if names is None:
        raise DataError(
            f"{file}: expected keys x_train, y_train (or x, y; X_train, X as scikit-learn "
            f"spells them); found keys: {found}"
        )
    x, y = arrays[names[0]], arrays[names[1]]
    test = _pair(arrays, "x_test", "y_test", file, found)
    x_test, y_test = (None, None) if test is None else (arrays[test[0]], arrays[test[1]])
    classes = _str_classes(arrays["classes"], str(file)) if "classes" in arrays else None
    return RawData(x, y, x_test, y_test, classes, str(file))


def _load_npy(path: Path) -> np.ndarray:
    """One .npy array without pickle; an .npz or an object array is a DataError."""
    try:
        array = np.load(path, allow_pickle=False)
    except _NUMPY_ERRORS as exc:
        raise DataError(f"{path}: cannot read as .npy without pickle ({_one_line(exc)})") from None
    if isinstance(array, np.lib.npyio.NpzFile):
        array.close()
        raise DataError(f"{path}: expected one .npy array, found an .npz archive (use 'npz')")
    return array


@DATASETS.register("npy")
def npy(
    *, path: str | None = None, labels_path: str | None = None, test_path: str | None = None
) -> RawData:
    """Two NumPy .npy files: features at data.path, labels at data.labels_path (train only).

    The test split is carved by the caller (``data.test_fraction``); a separate test set needs
    the ``npz`` format, which keeps the four arrays of a dataset together.
    """
    features = _path(path, "path", "npy")
    labels = _path(labels_path, "labels_path", "npy")
    if test_path:
        raise DataError(
            f"{test_path}: data.test_path is not supported by 'npy'; "
            "store x_train, y_train, x_test, y_test in one .npz and use 'npz'"
        )
    x, y = _load_npy(features), _load_npy(labels)
    if len(x) != len(y):
        raise DataError(f"{features}: {len(x)} feature rows but {labels} holds {len(y)} labels")
    return RawData(x, y, None, None, None, str(features))
