"""The csv reader (trainlab.data.formats.csv_table): numbers, names, and errors naming the line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.data.formats.formats_util import cfg, load, raises_at
from trainlab.data.datasets import load_splits


def test_csv_numeric_labels_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("\ufeffa, label ,b\n1.5,2,3\n-1,0,4e2\n\n0,1,0\n", encoding="utf-8")
    raw = load("csv", path=str(path), label_column="label", test_path=None)
    assert raw.x_train.dtype == np.float32 and raw.x_train.shape == (3, 2)
    assert raw.x_train.tolist() == [[1.5, 3.0], [-1.0, 400.0], [0.0, 0.0]]
    assert raw.y_train.tolist() == [2, 0, 1] and raw.y_train.dtype == np.int64
    assert raw.classes is None and raw.x_test is None  # numbers: check_classes numbers them
    assert raw.train_lines == [2, 3, 5]  # the blank line 4 carries no row


def test_csv_string_labels_and_test_file(tmp_path: Path) -> None:
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("x1,x2,kind\n1,2,versicolor\n3,4,setosa\n5,6,virginica\n7,8,setosa\n")
    test.write_text("x1,x2,kind\n0,0,virginica\n1,1,setosa\n")
    raw = load("csv", path=str(train), test_path=str(test), label_column="kind")
    assert raw.classes == ["setosa", "versicolor", "virginica"]
    assert raw.y_train.tolist() == [1, 0, 2, 0]
    assert raw.y_test.tolist() == [2, 0]
    assert raw.x_test.shape == (2, 2) and raw.x_test.dtype == np.float32


def test_csv_through_load_splits(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    rows = "\n".join(f"{i},{i * 2},{i % 2}" for i in range(50))
    path.write_text("a,b,label\n" + rows + "\n")
    splits = load_splits(cfg("csv", path=str(path), test_path=None))
    assert len(splits.x_train) + len(splits.x_val) + len(splits.x_test) == 50
    assert splits.num_classes == 2 and splits.in_shape == (2,)


CSV_ERRORS = [
    ("a,label\n1,0\n2,1,7\n", ("line 3", "expected 2 cells", "found 3")),
    ("a,b,label\n1,,0\n", ("line 2", "empty cell", "'b'")),
    ("a,b,label\n1,2,0\n1,x2,1\n", ("line 3", "'b'", "'x2' is not a number")),
    ("a,label\n1,\n", ("line 2", "empty cell", "'label'")),
    ("a,label\n", ("no data rows",)),
    ("", ("empty file",)),
    ("a,b,target\n1,2,3\n", ("label column 'label' not found", "a, b, target")),
    ("a,label\n1,0\n2,cat\n", ("line 3", "'cat'", "line 2", "names or numbers")),
    ("a,label\n1,0\n\xff\n", ("not UTF-8",)),
]


@pytest.mark.parametrize(("text", "fragments"), CSV_ERRORS)
def test_csv_errors_name_file_and_line(
    tmp_path: Path, text: str, fragments: tuple[str, ...]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(text.encode("latin-1"))
    with raises_at(path, *fragments):
        load("csv", path=str(path), label_column="label", test_path=None)


def test_csv_test_file_errors(tmp_path: Path) -> None:
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("a,label\n1,cat\n2,dog\n")
    test.write_text("b,label\n1,cat\n")
    with raises_at(test, "header b, label differs"):
        load("csv", path=str(train), test_path=str(test), label_column="label")
    test.write_text("a,label\n1,cat\n2,eel\n")
    with raises_at(test, "line 3", "'eel' does not occur"):
        load("csv", path=str(train), test_path=str(test), label_column="label")
