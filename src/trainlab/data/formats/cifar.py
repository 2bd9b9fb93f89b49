"""The ``cifar10`` dataset: CIFAR-10's python batches, unpickled without running any code.

The batches are pickles, and plain :mod:`pickle` calls whatever a file names (``os.system``
included), so they go through :class:`_ArrayOnlyUnpickler`, which can only rebuild dicts,
lists, strings and numpy arrays. Class names come from ``batches.meta`` when it is there, else
from CIFAR-10's published order.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.data.datasets import DATASETS, RawData
from trainlab.data.formats.common import _one_line, _path
from trainlab.errors import DataError

__all__ = ["cifar10", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def _numpy_reconstruct() -> Any:
    """numpy's array-unpickling helper (numpy._core in numpy 2, numpy.core before)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays, nothing that could run code.

    Plain pickle resolves any ``module.name`` the file mentions and calls it; a crafted file can
    thereby call ``os.system``. Here only the four callables that array pickles need resolve.
    """

    def __init__(self, file: Any, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
            ("numpy", "ndarray"): lambda: np.ndarray,
            ("numpy", "dtype"): lambda: np.dtype,
            ("_codecs", "encode"): lambda: codecs.encode,
        }
        if (module, name) not in allowed:
            raise DataError(
                f"{self.source}: refusing to unpickle {module}.{name} "
                "(only numpy arrays are allowed in a CIFAR-10 batch)"
            )
        return allowed[(module, name)]()


def _unpickle(path: Path) -> dict[str, Any]:
    """A CIFAR batch as a dict with str keys, loaded with the array-only unpickler."""
    try:
        with open(path, "rb") as handle:
            obj = _ArrayOnlyUnpickler(handle, path).load()
    except DataError:
        raise
    except Exception as exc:  # any malformed pickle: UnpicklingError, EOFError, TypeError, ...
        raise DataError(
            f"{path}: cannot unpickle ({type(exc).__name__}: {_one_line(exc)})"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) of one CIFAR-10 batch file."""
    batch = _unpickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise DataError(f"{path}: missing key {key!r}; found keys: {', '.join(sorted(batch))}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path}: key 'data' must be a uint8 array (N, 3072)")
    if data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: key 'data' has {data.shape[1]} values per image, expected 3072")
    labels = np.asarray(batch["labels"])
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but labels have shape {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_classes(folder: Path) -> list[str]:
    """Class names from batches.meta, else CIFAR-10's published order."""
    meta_path = folder / "batches.meta"
    if not meta_path.is_file():
        return list(CIFAR10_CLASSES)
    names = _unpickle(meta_path).get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
        raise DataError(f"{meta_path}: key 'label_names' must be a list of strings")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]


@DATASETS.register("cifar10")
def cifar10(*, path: str | None = None) -> RawData:
    """CIFAR-10's python batches (data_batch_1..5, test_batch) in the folder data.path.

    The batches are pickles, so they are read with an unpickler that only rebuilds numpy arrays.
    """
    folder = _path(path, "path", "cifar10", folder=True)
    if not list(folder.glob("data_batch_*")) and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"  # the folder the official tarball unpacks to
    batches = sorted(
        (p for p in folder.glob("data_batch_*") if p.name[11:].isdigit()),
        key=lambda p: int(p.name[11:]),
    )
    if not batches:
        raise DataError(f"{folder}: no CIFAR-10 batches found (expected data_batch_1 .. 5)")
    parts = [_cifar_batch(p) for p in batches]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    x_test = y_test = None
    if (folder / "test_batch").is_file():
        x_test, y_test = _cifar_batch(folder / "test_batch")
    notes = [f"read {', '.join(p.name for p in batches)}"] if len(batches) != 5 else []
    return RawData(x, y, x_test, y_test, _cifar_classes(folder), str(folder), notes)
