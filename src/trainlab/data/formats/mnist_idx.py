"""The ``idx`` dataset: MNIST-style IDX files (optionally gzipped) in one folder.

An IDX file is a small header (type code, dimensions) and raw big-endian numbers. It is parsed
here by hand, with no extra package, and the header is checked against the payload length, so a
truncated download is a DataError naming the file rather than a short or garbled array.
``train-*`` files are the training split, ``t10k-*``/``test-*`` the test split.
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import numpy as np

from trainlab.data.datasets import DATASETS, RawData
from trainlab.data.formats.common import _one_line, _path
from trainlab.errors import DataError

__all__ = ["idx", "read_idx"]

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
def idx(*, path: str | None = None) -> RawData:
    """MNIST / Fashion-MNIST IDX files (optionally .gz) in the folder data.path.

    ``train-*`` files are train, ``t10k-*``/``test-*`` test; a folder holding only one pair
    (say MNIST's t10k) is used as train and the caller carves the test split.
    """
    folder = _path(path, "path", "idx", folder=True)
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
    return RawData(x, y, x_test, y_test, None, str(folder))  # classes: from the labels
