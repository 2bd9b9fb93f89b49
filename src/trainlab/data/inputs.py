"""New inputs for a trained model: what they must look like, and reading them from files.

At training time :func:`input_card` records what a prediction needs to know about the inputs
without the dataset (shape, dtype, class names, a CSV's feature columns); it goes into the run
folder's ``model.json``. At prediction time :func:`read_inputs` reads an ``.npz``/``.npy``, a
CSV with the training columns (the label column optional), one image file or a folder of images
(optionally in class subfolders) into arrays shaped and scaled as training saw them: the same
readers, checks and conversions as the datasets, so a test split given as a file predicts
exactly what evaluation measured.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.errors import DataError

if TYPE_CHECKING:
    from trainlab.data.datasets import Splits
    from trainlab.recipe import DataConfig

__all__ = ["Inputs", "input_card", "read_inputs", "csv_feature_columns"]


@dataclass(frozen=True)
class Inputs:
    """Examples read for prediction: ``x`` as the dataset would give them, labels when the file
    had them (as class indices), and a name per row (the file, or the row's line)."""

    x: np.ndarray
    y: np.ndarray | None
    names: list[str]
    source: str


def input_card(cfg: DataConfig, splits: Splits) -> dict[str, Any]:
    """What ``model.json`` records about the inputs: shape, dtype, class names and, for a CSV
    dataset, the feature columns in order (a prediction CSV must have them)."""
    card: dict[str, Any] = {
        "in_shape": list(splits.in_shape),
        "input_dtype": str(splits.x_train.dtype),
        "classes": list(splits.classes),
    }
    if cfg.name == "csv" and cfg.path:
        card["columns"] = csv_feature_columns(Path(cfg.path), cfg.label_column)
    return card


def csv_feature_columns(path: Path, label_column: str) -> list[str]:
    """The header of a CSV file without its label column."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle), [])
    return [name.strip() for name in header if name.strip() != label_column]


def read_inputs(
    path: str | Path,
    in_shape: tuple[int, ...],
    classes: list[str],
    cfg: DataConfig,
    columns: list[str] | None = None,
) -> Inputs:
    """Read ``path`` for a model trained on ``cfg``'s data: by suffix, or a folder of images."""
    from trainlab.data.formats import IMAGE_SUFFIXES

    path = Path(path)
    if path.is_dir():
        return _image_folder(path, in_shape, classes, cfg)
    if not path.is_file():
        raise DataError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _npz(path, classes)
    if suffix == ".npy":
        return _npy(path)
    if suffix == ".csv":
        return _csv(path, classes, cfg.label_column, columns)
    if suffix in IMAGE_SUFFIXES:
        return Inputs(_images([path], in_shape, cfg), None, [path.name], str(path))
    raise DataError(
        f"{path}: unknown input type {suffix!r}; expected .npz, .npy, .csv, an image "
        f"({', '.join(sorted(IMAGE_SUFFIXES))}) or a folder of images"
    )


def _labels(y: np.ndarray, classes: list[str], source: str) -> np.ndarray:
    """Labels as class indices: integers in [0, C), or the training class names."""
    if y.dtype.kind in "iu":
        bad = np.flatnonzero((y < 0) | (y >= len(classes)))
        if bad.size:
            raise DataError(
                f"{source}: row {bad[0]}: label {y[bad[0]]} is not a class of this model "
                f"(0..{len(classes) - 1})"
            )
        return y.astype(np.int64)
    index = {name: i for i, name in enumerate(classes)}
    out = np.empty(len(y), dtype=np.int64)
    for row, name in enumerate(y.tolist()):
        if str(name) not in index:
            raise DataError(
                f"{source}: row {row}: label {name!r} is not a class of this model "
                f"({', '.join(classes)})"
            )
        out[row] = index[str(name)]
    return out


def _npz(path: Path, classes: list[str]) -> Inputs:
    from trainlab.data.formats.arrays import _load_npz_arrays, _spelling

    arrays = _load_npz_arrays(path)
    for x_key, y_key in (("x", "y"), ("x_test", "y_test")):  # also X, X_test (scikit-learn)
        x_name = _spelling(arrays, x_key, path)
        if x_name is not None:
            y_name = _spelling(arrays, y_key, path)
            y = arrays[y_name] if y_name is not None else None
            labels = None if y is None else _labels(np.asarray(y), classes, str(path))
            return Inputs(arrays[x_name], labels, _rows(arrays[x_name], path), str(path))
    if len(arrays) == 1:
        x = next(iter(arrays.values()))
        return Inputs(x, None, _rows(x, path), str(path))
    found = ", ".join(sorted(arrays)) or "none"
    raise DataError(
        f"{path}: expected key 'x' (and 'y'), or 'x_test' (X, X_test as scikit-learn spells "
        f"them); found keys: {found}"
    )


def _npy(path: Path) -> Inputs:
    from trainlab.data.formats.arrays import _load_npy

    x = _load_npy(path)
    return Inputs(x, None, _rows(x, path), str(path))


def _rows(x: np.ndarray, source: Path) -> list[str]:
    """A name per example (its row number); a 0-d array holds no examples."""
    if x.ndim == 0:
        raise DataError(f"{source}: expected an array of examples (N, ...), got a single number")
    return [str(i) for i in range(len(x))]


def _csv(path: Path, classes: list[str], label_column: str, columns: list[str] | None) -> Inputs:
    """The training feature columns of a CSV (in the training order, wherever they stand);
    the label column, when present, gives labels."""
    from trainlab.data.formats.csv_table import _csv_labels, _raise_bad_number

    if columns is None:
        raise DataError(f"{path}: this model was not trained on a CSV; give an .npz or .npy")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            missing = [c for c in columns if c not in header]
            if missing:
                raise DataError(
                    f"{path}: missing the training column(s) {', '.join(missing)}; the model "
                    f"takes {', '.join(columns)}"
                )
            rows, labels, lines = _csv_cells(path, reader, header, columns, label_column)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    try:
        x = np.array(rows, dtype=np.float32).reshape(len(rows), len(columns))
    except ValueError:
        _raise_bad_number(path, rows, lines, columns)
        raise
    y = None
    if labels is not None:
        values, _named = _csv_labels(path, labels, lines)
        y = _labels(values, classes, str(path))
    return Inputs(x, y, [f"line {n}" for n in lines], str(path))


def _csv_cells(
    path: Path, reader: Any, header: list[str], columns: list[str], label_column: str
) -> tuple[list[list[str]], list[str] | None, list[int]]:
    """Feature cells (in ``columns`` order), label cells (None without a label column), lines."""
    at = [header.index(c) for c in columns]
    label_at = header.index(label_column) if label_column in header else None
    rows: list[list[str]] = []
    labels: list[str] = []
    lines: list[int] = []
    for cells in reader:
        if not cells or (len(cells) == 1 and not cells[0].strip() and len(header) > 1):
            continue
        if len(cells) != len(header):
            raise DataError(
                f"{path}: line {reader.line_num}: expected {len(header)} cells as in the "
                f"header, found {len(cells)}"
            )
        rows.append([cells[i] for i in at])
        if label_at is not None:
            labels.append(cells[label_at].strip())
        lines.append(reader.line_num)
    return rows, (labels if label_at is not None else None), lines


def _image_folder(root: Path, in_shape: tuple[int, ...], classes: list[str], cfg) -> Inputs:
    """Images directly in ``root`` (no labels), or in class subfolders named after the
    training classes (labels from the folder names)."""
    from trainlab.data.formats import IMAGE_SUFFIXES, image_files

    flat = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if flat:
        return Inputs(_images(flat, in_shape, cfg), None, [p.name for p in flat], str(root))
    paths, labels, names = image_files(root)
    if not paths:
        raise DataError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    y = _labels(np.asarray([names[i] for i in labels], dtype=object), classes, str(root))
    rel = [str(p.relative_to(root)) for p in paths]
    return Inputs(_images(paths, in_shape, cfg), y, rel, str(root))


def _images(paths: list[Path], in_shape: tuple[int, ...], cfg: DataConfig) -> np.ndarray:
    """Image files decoded as training decoded them: RGB uint8, resized to data.image_size,
    one channel when the model was trained on grayscale images."""
    from trainlab.data.formats.decode import _decode_files

    if len(in_shape) != 3 or in_shape[0] not in (1, 3):
        raise DataError(
            f"{paths[0]}: this model takes inputs of shape {tuple(in_shape)}, not images"
        )
    x = _decode_files(paths, cfg.image_size, cfg.max_image_pixels, "stop").x
    if in_shape[0] == 1:  # trained on grayscale images: refuse colour, as training would
        colour = np.flatnonzero((x != x[:, :1]).reshape(len(x), -1).any(axis=1))
        if colour.size:
            raise DataError(
                f"{paths[colour[0]]}: a colour image; this model was trained on grayscale "
                "images (convert it to grayscale first)"
            )
        x = np.ascontiguousarray(x[:, :1])
    if tuple(x.shape[2:]) != tuple(in_shape[1:]):
        raise DataError(
            f"{paths[0]}: image is {x.shape[2]}x{x.shape[3]}, the model takes "
            f"{in_shape[1]}x{in_shape[2]} (data.image_size was not set in training)"
        )
    return x
