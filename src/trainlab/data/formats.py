"""Dataset factories that read a user's files: npz, npy, csv, MNIST IDX, CIFAR-10 pickles, images.

Every factory takes the recipe's ``data`` section and returns :class:`RawData` with the labels as
stored; :func:`trainlab.data.datasets.load_splits` then validates labels and features (naming the
bad row) and carves a test split when the source has none (``x_test is None``). What only the
reader can know (a missing key, a ragged CSV line, a truncated file) is raised here as a one-line
:class:`DataError` that starts with the file or folder path, so the user knows what to fix.

Nothing is ever unpickled with plain :mod:`pickle`: numpy files are opened with
``allow_pickle=False``, CIFAR-10's pickles go through an unpickler that can only rebuild numpy
arrays, and the decoded-image cache is written with ``np.savez``.

Registered names: ``npz``, ``npy``, ``csv``, ``idx``, ``cifar10``, ``imagefolder``.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import os
import pickle
import re
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.data.datasets import DATASETS, RawData
from trainlab.errors import DataError

if TYPE_CHECKING:
    import torch

    from trainlab.recipe import DataConfig

__all__ = [
    "npz",
    "npy",
    "csv_file",
    "idx",
    "cifar10",
    "imagefolder",
    "ImageFiles",
    "image_files",
    "read_idx",
    "image_cache_dir",
    "IMAGE_SUFFIXES",
]

_NUMPY_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)


# --------------------------------------------------------------------------- shared helpers


def _path(value: str | None, key: str, dataset: str, *, folder: bool = False) -> Path:
    """The existing file (or folder) a recipe key names; a missing one is a DataError."""
    if not value:
        raise DataError(f"data.{key} is not set: dataset {dataset!r} needs it")
    path = Path(value).expanduser()
    if folder and not path.is_dir():
        raise DataError(f"{path}: no such folder (data.{key} of dataset {dataset!r})")
    if not folder and not path.is_file():
        raise DataError(f"{path}: no such file (data.{key} of dataset {dataset!r})")
    return path


_MAX_CLASSES = 100_000


def _default_classes(source: str, *labels: np.ndarray | None, at_least: int = 0) -> list[str]:
    """Class names "0".."max label"; [] when the labels are not numbers (check_labels says why).

    A huge label (a sentinel such as 65535, say) would silently create that many classes, so
    more than 100,000 is refused here, naming the row.
    """
    top = at_least - 1
    for y in labels:
        if y is None or y.size == 0 or y.dtype.kind not in "iufb":
            continue
        flat = y.reshape(-1)
        if flat.dtype.kind == "f":
            finite = np.isfinite(flat)
            if not finite.any():
                continue
            flat = np.where(finite, flat, -np.inf)
        peak_at = int(flat.argmax())
        peak = float(flat[peak_at])
        if peak >= _MAX_CLASSES:
            raise DataError(
                f"{source}: row {peak_at}: label {flat[peak_at]} would make {int(peak) + 1} "
                f"classes (at most {_MAX_CLASSES}); labels must be 0..C-1"
            )
        top = max(top, int(peak))
    return [str(i) for i in range(top + 1)]


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


# --------------------------------------------------------------------------- npz / npy


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
def npz(cfg: DataConfig) -> RawData:
    """A NumPy .npz with x_train/y_train[/x_test/y_test] or x/y, and optional class names.

    Reading with ``allow_pickle=False`` means a downloaded archive cannot run code when loaded.
    """
    path = _path(cfg.path, "path", "npz")
    arrays = _load_npz_arrays(path)
    found = ", ".join(sorted(arrays)) or "none"
    if "x_train" in arrays or "y_train" in arrays:
        names = ("x_train", "y_train")
    elif "x" in arrays or "y" in arrays:
        names = ("x", "y")
    else:
        raise DataError(f"{path}: expected keys x_train, y_train (or x, y); found keys: {found}")
    for key in names:
        if key not in arrays:
            raise DataError(f"{path}: missing key {key!r} beside {names[0]!r}; found keys: {found}")
    x, y = arrays[names[0]], arrays[names[1]]
    x_test, y_test = arrays.get("x_test"), arrays.get("y_test")
    if (x_test is None) != (y_test is None):
        have, miss = ("x_test", "y_test") if y_test is None else ("y_test", "x_test")
        raise DataError(f"{path}: key {have!r} needs {miss!r} too; found keys: {found}")
    if "classes" in arrays:
        classes = _str_classes(arrays["classes"], str(path))
    else:
        classes = _default_classes(str(path), y, y_test)
    return RawData(x, y, x_test, y_test, classes, str(path))


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
def npy(cfg: DataConfig) -> RawData:
    """Two NumPy .npy files: features at data.path, labels at data.labels_path (train only).

    The test split is carved by the caller (``data.test_fraction``); a separate test set needs
    the ``npz`` format, which keeps the four arrays of a dataset together.
    """
    path = _path(cfg.path, "path", "npy")
    labels_path = _path(cfg.labels_path, "labels_path", "npy")
    if cfg.test_path:
        raise DataError(
            f"{cfg.test_path}: data.test_path is not supported by 'npy'; "
            "store x_train, y_train, x_test, y_test in one .npz and use 'npz'"
        )
    x, y = _load_npy(path), _load_npy(labels_path)
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} feature rows but {labels_path} holds {len(y)} labels")
    return RawData(x, y, None, None, _default_classes(str(labels_path), y), str(path))


# --------------------------------------------------------------------------- csv


def _read_csv(path: Path, label_column: str) -> tuple[list[str], np.ndarray, list[str], list[int]]:
    """(header, features (N, D) float32, label cells, file line of each row) of one CSV file.

    Rows are checked with the csv module first (ragged lines, empty cells), so every error can
    name the line as an editor shows it; numbers are then converted by numpy in one go.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header, label_at, rows, labels, lines = _csv_rows(path, reader, label_column)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({_one_line(exc)})") from None
    if not rows:
        raise DataError(f"{path}: no data rows after the header line")
    features = [c for i, c in enumerate(header) if i != label_at]
    if not features:
        raise DataError(f"{path}: no feature columns beside label column {label_column!r}")
    try:
        x = np.array(rows, dtype=np.float32)
    except ValueError as exc:
        _raise_bad_number(path, rows, lines, features)
        raise DataError(f"{path}: cannot convert the features to numbers ({exc})") from None
    return header, x, labels, lines


def _csv_rows(
    path: Path, reader: Any, label_column: str
) -> tuple[list[str], int, list[list[str]], list[str], list[int]]:
    """Split each line into feature cells and the label cell, refusing ragged or empty cells."""
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: empty file, expected a header line naming the columns")
    header = [name.strip() for name in header]
    if header.count(label_column) != 1:
        what = "appears twice in" if label_column in header else "not found in"
        raise DataError(
            f"{path}: label column {label_column!r} {what} the header: {', '.join(header)}"
        )
    label_at = header.index(label_column)
    rows: list[list[str]] = []
    labels: list[str] = []
    lines: list[int] = []
    for cells in reader:
        if not cells or (len(cells) == 1 and not cells[0].strip() and len(header) > 1):
            continue  # a blank line (often the last one) carries no example
        line = reader.line_num
        if len(cells) != len(header):
            raise DataError(
                f"{path}: line {line}: expected {len(header)} cells as in the header, "
                f"found {len(cells)}"
            )
        for name, cell in zip(header, cells, strict=True):
            if not cell.strip():
                raise DataError(f"{path}: line {line}: empty cell in column {name!r}")
        labels.append(cells[label_at].strip())
        rows.append(cells[:label_at] + cells[label_at + 1 :])
        lines.append(line)
    return header, label_at, rows, labels, lines


def _raise_bad_number(
    path: Path, rows: list[list[str]], lines: list[int], names: list[str]
) -> None:
    """Find the first cell numpy could not convert and name its line and column."""
    for row, line in zip(rows, lines, strict=True):
        for name, cell in zip(names, row, strict=True):
            try:
                float(cell)
            except ValueError:
                raise DataError(
                    f"{path}: line {line}: column {name!r}: {cell!r} is not a number"
                ) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_labels(path: Path, cells: list[str], lines: list[int]) -> tuple[np.ndarray, bool]:
    """Label cells as numbers (int64 when integral-looking, else float) or as names.

    Returns (labels, named). A column mixing numbers and names is refused: mapping "10" and
    "cat" to sorted class names would silently renumber the numeric classes.
    """
    numeric = [_is_number(c) for c in cells]
    if all(numeric):
        try:
            return np.array([int(c) for c in cells], dtype=np.int64), False
        except ValueError:
            return np.array([float(c) for c in cells], dtype=np.float64), False
    if any(numeric):
        first_num, first_name = numeric.index(True), numeric.index(False)
        raise DataError(
            f"{path}: line {lines[first_name]}: label {cells[first_name]!r} is a name but line "
            f"{lines[first_num]} has the number {cells[first_num]!r}; use names or numbers only"
        )
    return np.array(cells, dtype=object), True


def _encode_names(
    path: Path, cells: np.ndarray, lines: list[int], classes: list[str]
) -> np.ndarray:
    """Class names -> indices into ``classes``; a name that train never used is a DataError."""
    index = {name: i for i, name in enumerate(classes)}
    out = np.empty(len(cells), dtype=np.int64)
    for i, name in enumerate(cells):
        if name not in index:
            raise DataError(
                f"{path}: line {lines[i]}: label {name!r} does not occur in the training file"
            )
        out[i] = index[name]
    return out


@DATASETS.register("csv")
def csv_file(cfg: DataConfig) -> RawData:
    """A CSV table with a header: one label column (data.label_column), every other a feature.

    Labels may be integers or class names (sorted names become classes 0..C-1). ``data.test_path``
    may name a second CSV with the same header as the test split.
    """
    path = _path(cfg.path, "path", "csv")
    header, x, cells, lines = _read_csv(path, cfg.label_column)
    y, named = _csv_labels(path, cells, lines)
    x_test = y_test = None
    if cfg.test_path:
        test = _path(cfg.test_path, "test_path", "csv")
        test_header, x_test, test_cells, test_lines = _read_csv(test, cfg.label_column)
        if test_header != header:
            raise DataError(
                f"{test}: header {', '.join(test_header)} differs from {path}: {', '.join(header)}"
            )
        y_test, test_named = _csv_labels(test, test_cells, test_lines)
        if test_named != named:
            kind = "names" if test_named else "numbers"
            raise DataError(
                f"{test}: labels are {kind} but {path} uses {'names' if named else 'numbers'}"
            )
    if not named:
        return RawData(x, y, x_test, y_test, _default_classes(str(path), y, y_test), str(path))
    classes = sorted(set(y.tolist()))
    y_idx = _encode_names(path, y, lines, classes)
    if y_test is not None:
        y_test = _encode_names(Path(str(cfg.test_path)), y_test, test_lines, classes)
    return RawData(x, y_idx, x_test, y_test, classes, str(path))


# --------------------------------------------------------------------------- MNIST IDX

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_NAME = re.compile(r"(images[-.]idx3|labels[-.]idx1)[-.]ubyte(\.gz)?$")


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it ends in .gz (a broken gzip is a DataError)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({_one_line(exc)})") from None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX array (MNIST's format), checking the header against the payload length.

    Parsed by hand so no extra package is needed and so a truncated download is reported as
    such instead of producing a short or garbled array.
    """
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (expected magic bytes 00 00 <type> <ndim>)")
    code, dims_n = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX data type code 0x{code:02X}")
    if dims_n != ndim:
        raise DataError(
            f"{path}: expected an IDX file with {ndim} dimensions, header says {dims_n}"
        )
    start = 4 + 4 * dims_n
    if len(data) < start:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, ">i4", count=dims_n, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - start != expected:
        state = "truncated" if len(data) - start < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {state}: header says {dims} needing {expected} payload bytes, "
            f"file has {len(data) - start}"
        )
    array = np.frombuffer(data, dtype, offset=start).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a writable, native-order copy


def _idx_split(name: str) -> str:
    """'train', 'test' or 'other' from an IDX file name (MNIST calls its test set t10k)."""
    if name.startswith("train"):
        return "train"
    if name.startswith(("t10k", "test")):
        return "test"
    return "other"


def _idx_pairs(folder: Path) -> dict[str, dict[str, Path]]:
    """{split: {"images": path, "labels": path}}; an uncompressed copy beats its .gz twin."""
    pairs: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir(), key=lambda p: (p.suffix == ".gz", p.name)):
        match = _IDX_NAME.search(path.name)
        if not match or not path.is_file():
            continue
        kind = "images" if match.group(1).startswith("images") else "labels"
        pairs.setdefault(_idx_split(path.name), {}).setdefault(kind, path)
    for files in pairs.values():
        for have, miss in (("images", "labels"), ("labels", "images")):
            if have in files and miss not in files:
                raise DataError(f"{files[have]}: no matching {miss} IDX file beside it in {folder}")
    return pairs


def _read_idx_pair(files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, H, W) and labels (N,) of one split, with matching counts."""
    images_path, labels_path = files["images"], files["labels"]
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path}: {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    return images[:, None], labels


@DATASETS.register("idx")
def idx(cfg: DataConfig) -> RawData:
    """MNIST / Fashion-MNIST IDX files (optionally .gz) in the folder data.path.

    ``train-*`` files are train, ``t10k-*``/``test-*`` test; a folder holding only one pair
    (say MNIST's t10k) is used as train and the caller carves the test split.
    """
    folder = _path(cfg.path, "path", "idx", folder=True)
    pairs = _idx_pairs(folder)
    if not pairs:
        raise DataError(
            f"{folder}: no IDX files found (expected *images-idx3-ubyte[.gz] and "
            "*labels-idx1-ubyte[.gz])"
        )
    if len(pairs) == 1:
        x, y = _read_idx_pair(next(iter(pairs.values())))
        x_test = y_test = None
    elif set(pairs) == {"train", "test"}:
        x, y = _read_idx_pair(pairs["train"])
        x_test, y_test = _read_idx_pair(pairs["test"])
    else:
        names = sorted(p["images"].name for p in pairs.values())
        raise DataError(
            f"{folder}: cannot tell train from test among {', '.join(names)} "
            "(name them train-* and t10k-*)"
        )
    classes = _default_classes(str(folder), y, y_test, at_least=10)
    return RawData(x, y, x_test, y_test, classes, str(folder))


# --------------------------------------------------------------------------- CIFAR-10 pickles

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
def cifar10(cfg: DataConfig) -> RawData:
    """CIFAR-10's python batches (data_batch_1..5, test_batch) in the folder data.path.

    The batches are pickles, so they are read with an unpickler that only rebuilds numpy arrays.
    """
    folder = _path(cfg.path, "path", "cifar10", folder=True)
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


# --------------------------------------------------------------------------- image folders

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"})
_CACHE_VERSION = "trainlab-images-v2"
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # IHDR colour type -> channels (palette is RGB)
_MODES = ("grayscale", "grayscale+alpha", "RGB", "RGBA", "CMYK")  # the order notes list them in
_DECODE_BATCH = 256

_Skipped = tuple[Path, str]  # (file, why it was left out) for data.on_corrupt: skip


@dataclass(frozen=True)
class _Header:
    """What a file's first bytes say: format, size and (PNG, JPEG) the stored channel count."""

    format: str
    width: int
    height: int
    channels: int | None  # None: only decoding tells (GIF, WebP)


def _jpeg_frame(read: Callable[[int, int], bytes]) -> tuple[int, int, int]:
    """(width, height, components) from a JPEG's SOFn segment, walking the marker segments."""
    pos = 2
    while True:
        marker = read(pos, 2)
        if len(marker) < 2:
            raise ValueError("JPEG ends before its frame header")
        if marker[0] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}")
        kind = marker[1]
        if kind == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if kind == 0x01 or 0xD0 <= kind <= 0xD8:  # TEM, RSTn, SOI: no length field
            pos += 2
            continue
        if kind in (0xD9, 0xDA):
            raise ValueError("JPEG has no frame header before its image data")
        segment = read(pos + 2, 8)
        if len(segment) < 2:
            raise ValueError("JPEG ends inside a marker segment")
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):  # SOFn, not DHT/JPG/DAC
            if len(segment) < 8:
                raise ValueError("JPEG frame header is truncated")
            height, width = struct.unpack(">HH", segment[3:7])
            return width, height, segment[7]
        length = int.from_bytes(segment[:2], "big")
        if length < 2:
            raise ValueError(f"JPEG segment at byte {pos} has length {length}")
        pos += 2 + length


def _image_header(read: Callable[[int, int], bytes]) -> _Header:
    """The header of a PNG, JPEG, GIF, BMP or WebP, read without decoding.

    ``read(offset, n)`` returns up to n bytes. Another format, or a header that is cut short or
    malformed, raises ValueError: the file would not decode either (torchvision reads no other
    formats that IMAGE_SUFFIXES lists).
    """
    head = read(0, 32)
    if head[:8] == _PNG_MAGIC:
        if len(head) < 26 or head[12:16] != b"IHDR":
            raise ValueError("PNG without a complete IHDR header")
        width, height = struct.unpack(">II", head[16:24])
        channels = _PNG_CHANNELS.get(head[25])
        if channels is None:
            raise ValueError(f"PNG colour type {head[25]} is not valid")
        return _Header("png", width, height, channels)
    if head[:3] == _JPEG_MAGIC:
        return _Header("jpeg", *_jpeg_frame(read))
    if head[:6] in (b"GIF87a", b"GIF89a"):
        if len(head) < 10:
            raise ValueError("GIF header is truncated")
        return _Header("gif", *struct.unpack("<HH", head[6:10]), None)
    if head[:2] == b"BM":
        if len(head) < 26:
            raise ValueError("BMP header is truncated")
        if int.from_bytes(head[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            return _Header("bmp", *struct.unpack("<HH", head[18:22]), None)
        width, height = struct.unpack("<ii", head[18:26])
        return _Header("bmp", abs(width), abs(height), None)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_header(head)
    raise ValueError(f"not a PNG, JPEG, GIF, BMP or WebP file (starts with {bytes(head[:8])!r})")


def _webp_header(head: bytes) -> _Header:
    """Size of a WebP from its first chunk (VP8 lossy, VP8L lossless or VP8X extended)."""
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return _Header("webp", width & 0x3FFF, height & 0x3FFF, None)
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return _Header("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, None)
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        return _Header("webp", width, int.from_bytes(head[27:30], "little") + 1, None)
    raise ValueError(f"WebP with an unknown or truncated first chunk {chunk!r}")


def _checked_header(path: Path, read: Callable[[int, int], bytes], max_pixels: int) -> _Header:
    """The file's header; a malformed one, or a decompression bomb, is a DataError naming it."""
    try:
        header = _image_header(read)
    except (ValueError, OSError, struct.error) as exc:
        raise DataError(f"{path}: cannot read image header ({_one_line(exc)})") from None
    if header.width * header.height > max_pixels:
        raise DataError(
            f"{path}: image is {header.width}x{header.height} "
            f"({header.width * header.height:,} pixels, over data.max_image_pixels = "
            f"{max_pixels:,}); looks like a decompression bomb; raise data.max_image_pixels "
            "if it is genuine"
        )
    return header


def _bytes_header(path: Path, data: torch.Tensor, max_pixels: int) -> _Header:
    """:func:`_checked_header` of a file already read into a uint8 tensor."""
    view = memoryview(data.numpy())
    return _checked_header(path, lambda at, n: bytes(view[at : at + n]), max_pixels)


def _file_header(path: Path, max_pixels: int) -> _Header:
    """:func:`_checked_header` reading only the header bytes (the streamed up-front check)."""
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                raise DataError(f"{path}: empty file (0 bytes), expected an image")

            def read(at: int, n: int) -> bytes:
                file.seek(at)
                return file.read(n)

            return _checked_header(path, read, max_pixels)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({_one_line(exc)})") from None


def _mode(header: _Header, channels: int) -> str:
    """The stored colour mode's name: four JPEG components are CMYK (or YCCK), else RGBA."""
    if channels == 4 and header.format == "jpeg":
        return "CMYK"
    return _MODES[min(max(channels, 1), 4) - 1]


def image_files(root: Path | str) -> tuple[list[Path], list[int], list[str]]:
    """(image paths, class index of each, class names) of an ImageFolder tree ``root/<class>/``.

    Classes are the sorted subfolder names, so the numbering is the same on every machine. An
    empty class folder is an error: it would silently become a class that is never seen.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected root/<class>/<image files>)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class subfolders (expected root/<class>/<image files>)")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = _class_images(root / name)
        if not found:
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise DataError(f"{root / name}: empty class folder (no {suffixes} files)")
        paths += found
        labels += [index] * len(found)
    return paths, labels, classes


def _class_images(folder: Path) -> list[Path]:
    """Image files of one class folder, sorted by name (os.scandir: no stat call per file)."""
    with os.scandir(folder) as entries:
        names = sorted(
            e.name
            for e in entries
            if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
            and not e.name.startswith(".")
            and e.is_file()
        )
    return [folder / n for n in names]


def image_cache_dir(cfg: DataConfig) -> Path:
    """The decoded-image cache: data.cache_dir, else $TRAINLAB_CACHE/images, else ~/.cache/."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    base = os.environ.get("TRAINLAB_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "trainlab") / "images"


def _cache_key(
    splits: dict[str, tuple[Path, list[Path]]], image_size: int | None, max_pixels: int
) -> str:
    """A hash of every file's relative path, size and mtime, the resize target and pixel limit.

    Relative paths keep the cache valid when the dataset folder moves; sizes and mtimes catch
    an edited or replaced file without reading it. The pixel limit is in the key so a lowered
    data.max_image_pixels is checked against the files again. data.on_corrupt need not be: a
    cache is only written when no file was skipped, and then both settings decode the same.
    """
    digest = hashlib.sha256(
        f"{_CACHE_VERSION}\nimage_size={image_size}\nmax_pixels={max_pixels}\n".encode()
    )
    for split, (_root, paths) in splits.items():
        lines = []
        for path in paths:
            try:
                info = os.stat(path)
            except OSError as exc:
                raise DataError(f"{path}: cannot stat ({_one_line(exc)})") from None
            rel = f"{path.parent.name}/{path.name}"  # image_files: always root/<class>/<file>
            lines.append(f"{split}\t{rel}\t{info.st_size}\t{info.st_mtime_ns}\n")
        digest.update("".join(lines).encode())
    return digest.hexdigest()[:32]


def _load_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when absent or unreadable (then the images are decoded again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (*_NUMPY_ERRORS, KeyError):
        return None


def _save_cache(path: Path, arrays: dict[str, np.ndarray]) -> str | None:
    """Write the arrays atomically (temp file + os.replace); returns a note when that fails.

    Atomic so a crash or a concurrent run never leaves a half-written cache that later loads.
    """
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            tmp_name = tmp.name
            np.savez(tmp, **arrays)
        os.replace(tmp_name, path)
    except OSError as exc:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
        return f"image cache not written ({path.parent}: {_one_line(exc)})"
    return None


@contextmanager
def _quiet_torchvision_io() -> Iterator[None]:
    """Silence torchvision 0.29's deprecation notice for its decoders (once per call is noise)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*image decoding and encoding capabilities")
        yield


def _read_image_bytes(path: Path) -> torch.Tensor:
    """The file as a uint8 tensor; a zero-byte or unreadable file is a DataError naming it."""
    from torchvision.io import read_file

    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file (0 bytes), expected an image")
        with _quiet_torchvision_io():
            return read_file(str(path))
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{path}: cannot read ({_one_line(exc)})") from None


def _decode_one(path: Path, data: torch.Tensor, header: _Header) -> tuple[torch.Tensor, int]:
    """(RGB (3, H, W) uint8 image, channels as stored); a file that does not decode is a DataError.

    PNG and JPEG are decoded straight to RGB (their header gave the stored channels; a palette
    PNG counts as RGB); other formats are decoded unchanged, to count their channels, and then
    converted here the same way: gray is replicated, alpha dropped. An animated GIF keeps its
    first frame; a 16-bit PNG is scaled to 8 bits like every other image, so one uint8 array
    holds them all.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import to_dtype

    channels = header.channels
    mode = ImageReadMode.UNCHANGED if channels is None else ImageReadMode.RGB
    try:
        image = decode_image(data, mode=mode)
    except (RuntimeError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({_one_line(exc)})") from None
    image = image[0] if image.ndim == 4 else image
    if channels is None:
        channels = int(image.shape[0])
        if channels in (1, 2):
            image = image[:1].repeat(3, 1, 1)
        elif channels > 3:
            image = image[:3]
    if image.dtype != torch.uint8:
        image = to_dtype(image, torch.uint8, scale=True)
    return image, channels


def _decode_jpegs(
    paths: list[Path], blobs: list[torch.Tensor], headers: list[_Header]
) -> list[torch.Tensor | DataError]:
    """A batch of JPEGs decoded in one call (the fast path); on failure, find the bad files."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(blobs, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        out: list[torch.Tensor | DataError] = []
        for path, blob, header in zip(paths, blobs, headers, strict=True):
            try:
                out.append(_decode_one(path, blob, header)[0])
            except DataError as exc:
                out.append(exc)
        return out


def _decoded(
    paths: list[Path], max_pixels: int
) -> Iterator[tuple[Path, torch.Tensor | DataError, str]]:
    """(path, RGB image or the DataError it raised, stored mode) for each file in order.

    Every header is checked (malformed, decompression bomb) before anything is decoded;
    consecutive JPEGs are batched for decode_jpeg, which converts gray and CMYK to RGB itself.
    """
    for start in range(0, len(paths), _DECODE_BATCH):
        chunk = paths[start : start + _DECODE_BATCH]
        results: dict[int, tuple[torch.Tensor | DataError, str]] = {}
        blobs: dict[int, torch.Tensor] = {}
        headers: dict[int, _Header] = {}
        for i, path in enumerate(chunk):
            try:
                blobs[i] = _read_image_bytes(path)
                headers[i] = _bytes_header(path, blobs[i], max_pixels)
            except DataError as exc:
                results[i] = (exc, "")
        jpegs = [i for i, h in headers.items() if h.format == "jpeg"]
        if jpegs:
            decoded = _decode_jpegs(
                [chunk[i] for i in jpegs], [blobs[i] for i in jpegs], [headers[i] for i in jpegs]
            )
            for i, image in zip(jpegs, decoded, strict=True):
                results[i] = (image, _mode(headers[i], headers[i].channels))
        for i in headers.keys() - set(jpegs):
            try:
                image, channels = _decode_one(chunk[i], blobs[i], headers[i])
                results[i] = (image, _mode(headers[i], channels))
            except DataError as exc:
                results[i] = (exc, "")
        for i, path in enumerate(chunk):
            yield path, *results[i]


@dataclass
class _Split:
    """One split decoded: the kept images, their indices among the files, what was left out."""

    x: np.ndarray
    kept: np.ndarray
    skipped: list[_Skipped]
    modes: dict[str, int]


def _decode_files(
    paths: list[Path], image_size: int | None, max_pixels: int, on_corrupt: str = "stop"
) -> _Split:
    """All images as one uint8 array (N, 3, H, W), resized to image_size when it is set.

    Without image_size every image must have the first one's size: a silent resize would change
    the data the user thinks they are training on. A file that cannot be read or decoded raises,
    or with on_corrupt="skip" is left out and listed.
    """
    from torchvision.transforms.v2.functional import resize

    out: np.ndarray | None = None
    first: tuple[Path, tuple[int, int]] | None = None
    kept: list[int] = []
    skipped: list[_Skipped] = []
    modes: dict[str, int] = {}
    with _quiet_torchvision_io():
        for i, (path, image, mode) in enumerate(_decoded(paths, max_pixels)):
            if isinstance(image, DataError):
                if on_corrupt != "skip":
                    raise image
                skipped.append((path, str(image).removeprefix(f"{path}: ")))
                continue
            size = (int(image.shape[1]), int(image.shape[2]))
            if image_size is not None and size != (image_size, image_size):
                image = resize(image, [image_size, image_size], antialias=True)
            elif first is None:
                first = (path, size)
            elif size != first[1]:
                raise DataError(
                    f"{path}: image is {size[0]}x{size[1]} but {first[0]} is "
                    f"{first[1][0]}x{first[1][1]}; set data.image_size to resize all images"
                )
            if out is None:
                out = np.empty((len(paths), *image.shape), dtype=np.uint8)
            out[len(kept)] = image.numpy()
            kept.append(i)
            modes[mode] = modes.get(mode, 0) + 1
    if out is None:  # every file skipped: _check_classes names the first class folder
        out = np.empty((0, 3, 1, 1), dtype=np.uint8)
    elif len(kept) < len(out):
        out = out[: len(kept)].copy()
    return _Split(out, np.asarray(kept, dtype=np.int64), skipped, modes)


def _check_classes(paths: list[Path], kept: np.ndarray, skipped: list[_Skipped]) -> None:
    """A class folder whose every image was skipped is an error (the class would never be seen)."""
    if len(kept) == len(paths):
        return
    left = {paths[i].parent for i in kept.tolist()}
    for folder in dict.fromkeys(p.parent for p in paths):
        if folder not in left:
            lost = [s for s in skipped if s[0].parent == folder]
            first = f"first: {lost[0][0]}: {lost[0][1]}" if lost else "none readable"
            raise DataError(
                f"{folder}: every image of this class was skipped as unreadable "
                f"({len(lost)} files; {first})"
            )


def _skip_note(skipped: list[_Skipped]) -> list[str]:
    if not skipped:
        return []
    s = "s" if len(skipped) > 1 else ""
    return [f"skipped {len(skipped)} unreadable image{s} (first: {skipped[0][0]}: {skipped[0][1]})"]


def _convert_note(modes: dict[str, int], channels: int) -> list[str]:
    """'converted 3 images to RGB (2 grayscale, 1 RGBA)'; nothing when none changed mode."""
    target = "RGB" if channels == 3 else "grayscale"
    counts = {m: modes[m] for m in _MODES if m != target and modes.get(m)}
    total = sum(counts.values())
    if not total:
        return []
    detail = ", ".join(f"{n} {m}" for m, n in counts.items())
    return [f"converted {total} image{'s' if total > 1 else ''} to {target} ({detail})"]


def _all_gray(*arrays: np.ndarray) -> bool:
    """True when every pixel of every image has R == G == B (a grayscale file decoded as RGB)."""
    for x in arrays:
        for start in range(0, len(x), 4096):
            part = x[start : start + 4096]
            if not np.array_equal(part[:, 0], part[:, 1]):
                return False
            if not np.array_equal(part[:, 1], part[:, 2]):
                return False
    return True


def _image_roots(cfg: DataConfig) -> tuple[Path, Path | None]:
    """(train folder, test folder or None) from data.path / data.test_path."""
    root = _path(cfg.path, "path", "imagefolder", folder=True)
    split_layout = (root / "train").is_dir() and (root / "test").is_dir()
    if split_layout and cfg.test_path:
        raise DataError(
            f"{root}: has train/ and test/ subfolders and data.test_path is set too; use one"
        )
    if split_layout:
        return root / "train", root / "test"
    if cfg.test_path:
        return root, _path(cfg.test_path, "test_path", "imagefolder", folder=True)
    return root, None


@dataclass
class _Decoded:
    """Both splits decoded: arrays, kept file indices per split, notes for RawData."""

    x: np.ndarray
    x_test: np.ndarray | None
    kept: dict[str, np.ndarray]
    skipped: list[_Skipped]
    notes: list[str] = field(default_factory=list)


def _decode_splits(cfg: DataConfig, splits: dict[str, tuple[Path, list[Path]]]) -> _Decoded:
    """Decode train (and test) images; one channel when all images of both are grayscale."""
    decoded: dict[str, _Split] = {}
    for name, (_root, paths) in splits.items():
        part = _decode_files(paths, cfg.image_size, cfg.max_image_pixels, cfg.on_corrupt)
        _check_classes(paths, part.kept, part.skipped)
        decoded[name] = part
    train, test = splits["train"], splits.get("test")
    x = decoded["train"].x
    x_test = None if test is None else decoded["test"].x
    if x_test is not None and x_test.shape[2:] != x.shape[2:]:
        raise DataError(
            f"{test[0]}: test images are {x_test.shape[2]}x{x_test.shape[3]} but train "
            f"images ({train[0]}) are {x.shape[2]}x{x.shape[3]}; set data.image_size"
        )
    if _all_gray(x, *(() if x_test is None else (x_test,))):
        x = np.ascontiguousarray(x[:, :1])
        x_test = None if x_test is None else np.ascontiguousarray(x_test[:, :1])
    modes: dict[str, int] = {}
    for part in decoded.values():
        for mode, count in part.modes.items():
            modes[mode] = modes.get(mode, 0) + count
    skipped = [s for part in decoded.values() for s in part.skipped]
    kept = {name: part.kept for name, part in decoded.items()}
    return _Decoded(x, x_test, kept, skipped, _convert_note(modes, x.shape[1]))


def _cached_decode(cfg: DataConfig, splits: dict[str, tuple[Path, list[Path]]]) -> _Decoded:
    """Decoded train (and test) images from the cache, or decoded now and cached; plus notes.

    Only a decode that skipped nothing is cached: a folder with unreadable files is decoded
    again on every load (and its skipped files reported again).
    """
    train_root = splits["train"][0]
    key = _cache_key(splits, cfg.image_size, cfg.max_image_pixels)
    cache = image_cache_dir(cfg) / f"{train_root.parent.name}-{train_root.name}-{key}.npz"
    cached = _load_cache(cache) or {}
    stored = {k.removeprefix("x_"): len(a) for k, a in cached.items() if k.startswith("x_")}
    if stored == {split: len(paths) for split, (_root, paths) in splits.items()}:  # a valid hit
        kept = {split: np.arange(n) for split, n in stored.items()}
        notes = [f"decoded images read from {cache}", *cached.get("notes", np.array([])).tolist()]
        return _Decoded(cached["x_train"], cached.get("x_test"), kept, [], notes)
    result = _decode_splits(cfg, splits)
    count = len(result.x) + (0 if result.x_test is None else len(result.x_test))
    if result.skipped:
        result.notes[:0] = [f"decoded {count} images (not cached: files were skipped)"]
        result.notes += _skip_note(result.skipped)
        return result
    arrays = {"x_train": result.x, "notes": np.array(result.notes, dtype=str)}
    if result.x_test is not None:
        arrays["x_test"] = result.x_test
    saved = _save_cache(cache, arrays) or f"decoded {count} images into {cache}"
    result.notes[:0] = [saved]
    return result


class ImageFiles:
    """Image files decoded on access: the array stand-in that streams a folder too big to hold.

    Indexing with an integer decodes one image to a float (C, H, W) tensor in [0, 1] (what the
    resident path's uint8 arrays become); indexing with index arrays or slices returns a subset,
    so splits are carved exactly as for arrays. ``nbytes`` is the decoded float32 size, which is
    what decides between the two loading paths. Each file's header is checked against
    ``max_pixels`` (decompression bombs) before it is decoded; a file that cannot be read or
    decoded raises a DataError when it is reached, whatever data.on_corrupt says: with "skip",
    :func:`imagefolder` leaves out the files whose header is unreadable up front, but a file
    that passes that check and fails to decode later still stops training.
    """

    dtype = np.dtype(np.float32)

    def __init__(
        self,
        paths: list[Path],
        image_shape: tuple[int, int, int],
        image_size: int | None,
        max_pixels: int = 89_478_485,
    ) -> None:
        self.paths, self.image_shape, self.image_size = list(paths), image_shape, image_size
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), *self.image_shape)

    @property
    def ndim(self) -> int:
        return 4

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * 4

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int | np.integer):
            return self.decode(int(index))
        picked = np.arange(len(self.paths))[index]
        return ImageFiles(
            [self.paths[i] for i in picked], self.image_shape, self.image_size, self.max_pixels
        )

    def decode(self, i: int) -> torch.Tensor:
        """Image ``i`` as float32 in [0, 1], resized to image_size when set."""
        from torchvision.transforms.v2.functional import resize

        path = self.paths[i]
        image = _decode_checked(path, self.max_pixels)
        if self.image_size is not None:
            image = resize(image, [self.image_size, self.image_size], antialias=True)
        if tuple(image.shape) != self.image_shape:
            raise DataError(
                f"{path}: image is {image.shape[1]}x{image.shape[2]} but the first image is "
                f"{self.image_shape[1]}x{self.image_shape[2]}; set data.image_size to resize"
            )
        return image.float().div_(255.0)


def _decode_checked(path: Path, max_pixels: int) -> torch.Tensor:
    """One file read, its header checked, decoded to RGB uint8 (3, H, W)."""
    with _quiet_torchvision_io():
        data = _read_image_bytes(path)
        return _decode_one(path, data, _bytes_header(path, data, max_pixels))[0]


@dataclass
class _Streamed:
    """ImageFiles per split, the indices of the files they keep, and the files left out."""

    files: dict[str, ImageFiles]
    kept: dict[str, np.ndarray]
    skipped: list[_Skipped]


def _streamed(cfg: DataConfig, splits: dict[str, tuple[Path, list[Path]]]) -> _Streamed | None:
    """ImageFiles per split when the decoded images would not fit data.max_resident_mb.

    The first readable training image gives the size. With data.on_corrupt: skip every file's
    header is read up front (no decoding) and files that are unreadable, malformed or bombs are
    left out; a file that passes and fails to decode later still raises during training.
    """
    skip = cfg.on_corrupt == "skip"
    bad: dict[Path, str] = {}
    image = None
    for path in splits["train"][1]:
        try:
            image = _decode_checked(path, cfg.max_image_pixels)
            break
        except DataError as exc:
            if not skip:
                raise
            bad[path] = str(exc).removeprefix(f"{path}: ")
    if image is None:  # nothing readable: the decode path reports it per class folder
        return None
    side = (cfg.image_size, cfg.image_size) if cfg.image_size else tuple(image.shape[1:])
    shape = (3, *side)
    count = sum(len(paths) for _root, paths in splits.values())
    if count * int(np.prod(shape)) * 4 <= cfg.max_resident_mb * 2**20:  # float32 when decoded
        return None
    kept: dict[str, np.ndarray] = {}
    skipped: list[_Skipped] = []
    for name, (_root, paths) in splits.items():
        keep = []
        for i, path in enumerate(paths):
            if skip and path not in bad:
                try:
                    _file_header(path, cfg.max_image_pixels)
                except DataError as exc:
                    bad[path] = str(exc).removeprefix(f"{path}: ")
            if path in bad:
                skipped.append((path, bad[path]))
            else:
                keep.append(i)
        kept[name] = np.asarray(keep, dtype=np.int64)
        _check_classes(paths, kept[name], skipped)
    files = {
        name: ImageFiles(
            [paths[i] for i in kept[name].tolist()],
            shape,
            cfg.image_size,
            cfg.max_image_pixels,
        )
        for name, (_root, paths) in splits.items()
    }
    return _Streamed(files, kept, skipped)


@DATASETS.register("imagefolder")
def imagefolder(cfg: DataConfig) -> RawData:
    """Images in class folders (root/<class>/*.jpg|png), decoded once and cached as uint8.

    ``root/train`` + ``root/test`` give both splits; else data.path is train (and data.test_path
    the test set, if set). Decoding tens of thousands of files takes seconds to minutes, so the
    decoded array is cached under a key of the files' paths, sizes and mtimes. A folder whose
    decoded images exceed ``data.max_resident_mb`` is not decoded up front: it is streamed from
    the files (RGB, decoded per image in DataLoader workers).

    Every file's header is read before it is decoded: an image over ``data.max_image_pixels``
    is refused as a decompression bomb. Grayscale, gray+alpha, RGBA and CMYK files are converted
    to RGB (alpha dropped) and counted in the notes, unless every image is gray (one channel).
    A file that cannot be read or decoded stops loading (``data.on_corrupt: stop``) or is left
    out with its label and counted (``skip``); a class left with no image is an error.
    """
    train_root, test_root = _image_roots(cfg)
    paths, labels, classes = image_files(train_root)
    splits = {"train": (train_root, paths)}
    y_test = None
    if test_root is not None:
        test_paths, test_labels, test_classes = image_files(test_root)
        if test_classes != classes:
            raise DataError(
                f"{test_root}: class folders {', '.join(test_classes)} differ from "
                f"{train_root}: {', '.join(classes)}"
            )
        splits["test"] = (test_root, test_paths)
        y_test = np.asarray(test_labels, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    streamed = _streamed(cfg, splits)
    if streamed is not None:
        y = y[streamed.kept["train"]]
        y_test = None if y_test is None else y_test[streamed.kept["test"]]
        notes = [f"{len(y)} training images streamed from {train_root} (too large to hold)"]
        notes += _skip_note(streamed.skipped)
        x, x_test = streamed.files["train"], streamed.files.get("test")
        return RawData(x, y, x_test, y_test, classes, str(train_root), notes)
    result = _cached_decode(cfg, splits)
    y = y[result.kept["train"]]
    y_test = None if y_test is None else y_test[result.kept["test"]]
    return RawData(result.x, y, result.x_test, y_test, classes, str(train_root), result.notes)


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, without torchvision's C++ source location prefix."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return re.sub(r"^.*?\.(?:cpp|h):\d+, ", "", text)
