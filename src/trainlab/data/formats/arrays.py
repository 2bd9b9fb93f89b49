"""The ``npz`` and ``npy`` datasets: NumPy arrays a user saved, read without pickle.

``npz`` is a whole dataset in one archive (x_train/y_train[/x_test/y_test] or x/y, and optional
class names); ``npy`` is two one-array files, features and labels. Both are opened with
``allow_pickle=False``, so a downloaded file cannot run code when it is loaded, and an object
array is refused with a DataError naming the file and key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainlab.data.datasets import DATASETS, RawData
from trainlab.data.formats.common import _NUMPY_ERRORS, _default_classes, _one_line, _path
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


@DATASETS.register("npz")
def npz(*, path: str | None = None) -> RawData:
    """A NumPy .npz with x_train/y_train[/x_test/y_test] or x/y, and optional class names.

    Reading with ``allow_pickle=False`` means a downloaded archive cannot run code when loaded.
    """
    file = _path(path, "path", "npz")
    arrays = _load_npz_arrays(file)
    found = ", ".join(sorted(arrays)) or "none"
    if "x_train" in arrays or "y_train" in arrays:
        names = ("x_train", "y_train")
    elif "x" in arrays or "y" in arrays:
        names = ("x", "y")
    else:
        raise DataError(f"{file}: expected keys x_train, y_train (or x, y); found keys: {found}")
    for key in names:
        if key not in arrays:
            raise DataError(f"{file}: missing key {key!r} beside {names[0]!r}; found keys: {found}")
    x, y = arrays[names[0]], arrays[names[1]]
    x_test, y_test = arrays.get("x_test"), arrays.get("y_test")
    if (x_test is None) != (y_test is None):
        have, miss = ("x_test", "y_test") if y_test is None else ("y_test", "x_test")
        raise DataError(f"{file}: key {have!r} needs {miss!r} too; found keys: {found}")
    if "classes" in arrays:
        classes = _str_classes(arrays["classes"], str(file))
    else:
        classes = _default_classes(str(file), y, y_test)
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
    return RawData(x, y, None, None, _default_classes(str(labels), y), str(features))
