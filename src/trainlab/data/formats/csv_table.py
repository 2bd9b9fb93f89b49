"""The ``csv`` dataset: a CSV table with a header line, one label column, every other a feature.

Rows are checked with the csv module before numpy converts them, so a ragged line, an empty
cell or a cell that is not a number is reported with its line number as an editor shows it.
Labels are integers or class names, never a mix; a test file (data.test_path) must repeat the
training file's header.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.data.datasets import DATASETS, RawData
from trainlab.data.formats.common import _one_line, _path
from trainlab.errors import DataError

__all__ = ["csv_file"]


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
def csv_file(
    *, path: str | None = None, test_path: str | None = None, label_column: str = "label"
) -> RawData:
    """A CSV table with a header: one label column (data.label_column), every other a feature.

    Labels may be integers or class names (sorted names become classes 0..C-1). ``data.test_path``
    may name a second CSV with the same header as the test split. Each row's line is kept, so
    label errors found later (load_splits) name the line an editor shows.
    """
    train = _path(path, "path", "csv")
    header, x, cells, lines = _read_csv(train, label_column)
    y, named = _csv_labels(train, cells, lines)
    x_test = y_test = test = None
    test_lines: list[int] | None = None
    if test_path:
        test = _path(test_path, "test_path", "csv")
        test_header, x_test, test_cells, test_lines = _read_csv(test, label_column)
        if test_header != header:
            raise DataError(
                f"{test}: header {', '.join(test_header)} differs from {train}: {', '.join(header)}"
            )
        y_test, test_named = _csv_labels(test, test_cells, test_lines)
        if test_named != named:
            kind = "names" if test_named else "numbers"
            raise DataError(
                f"{test}: labels are {kind} but {train} uses {'names' if named else 'numbers'}"
            )
    classes = None  # numbers: load_splits numbers the classes (data.num_classes, or the labels)
    if named:
        classes = sorted(set(y.tolist()))
        y = _encode_names(train, y, lines, classes)
        if test is not None and y_test is not None and test_lines is not None:
            y_test = _encode_names(test, y_test, test_lines, classes)
    test_source = None if test is None else str(test)
    return RawData(x, y, x_test, y_test, classes, str(train), [], test_source, lines, test_lines)
