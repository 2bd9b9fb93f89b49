"""Dataset readers of trainlab.data.formats: shapes, dtypes and labels, and one-line DataErrors.

Every error test checks that the message starts with the offending file or folder (and names the
line for CSV), because that is what lets a user fix the data without a debugger.
"""

from __future__ import annotations

import gzip
import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg, encode_png

from trainlab.data import formats
from trainlab.data.datasets import DATASETS, load_splits
from trainlab.errors import DataError
from trainlab.recipe import DataConfig

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

SHARED_DATA = [
    Path("/work/shared/data"),
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data",
]
MNIST_DIR = next((p / "mnist-t10k" for p in SHARED_DATA if (p / "mnist-t10k").is_dir()), None)
CIFAR_TAR = next(
    (p / "cifar10-jpeg.tar.gz" for p in SHARED_DATA if (p / "cifar10-jpeg.tar.gz").is_file()), None
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that do not set data.cache_dir must not write into the user's ~/.cache."""
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "trainlab-cache"))


def cfg(name: str, **fields: object) -> DataConfig:
    """A validated data section, as a recipe would give it (unknown keys are refused)."""
    return DataConfig(name=name, **fields)


def load(name: str, **fields: object):
    return DATASETS.get(name).factory(cfg(name, **fields))


def raises_at(path: Path | str, *fragments: str) -> pytest.RaisesContext:
    """Expect a DataError whose one-line message starts with ``path`` and holds ``fragments``."""
    pattern = "^" + re.escape(str(path)) + ".*" + ".*".join(re.escape(f) for f in fragments)
    return pytest.raises(DataError, match=pattern)


def test_all_formats_registered() -> None:
    for name in ("npz", "npy", "csv", "idx", "cifar10", "imagefolder"):
        assert name in DATASETS
        assert DATASETS.get(name).summary  # first docstring line is the listing summary


# ------------------------------------------------------------------------------------ npz / npy


def test_npz_train_test_keys_and_classes(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.normal(size=(30, 4)).astype(np.float32),
        y_train=np.arange(30) % 3,
        x_test=rng.normal(size=(9, 4)).astype(np.float32),
        y_test=np.arange(9) % 3,
        classes=np.array(["cat", "dog", "eel"]),
    )
    raw = load("npz", path=str(path))
    assert raw.x_train.shape == (30, 4) and raw.x_test.shape == (9, 4)
    assert raw.y_train.tolist() == (np.arange(30) % 3).tolist()
    assert raw.classes == ["cat", "dog", "eel"]
    assert raw.source == str(path)


def test_npz_x_y_keys_default_classes(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((5, 2, 3), np.uint8), y=np.array([0, 3, 1, 1, 2]))
    raw = load("npz", path=str(path))
    assert raw.x_train.shape == (5, 2, 3) and raw.x_train.dtype == np.uint8
    assert raw.x_test is None and raw.y_test is None
    assert raw.classes == ["0", "1", "2", "3"]


def test_npz_missing_key_names_file_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((3, 2)), labels=np.zeros(3))
    with raises_at(path, "y_train", "found keys: labels, x_train"):
        load("npz", path=str(path))


def test_npz_test_pair_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.zeros(3), x_test=np.zeros((1, 2)))
    with raises_at(path, "x_test", "y_test"):
        load("npz", path=str(path))


def test_npz_object_array_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
    with raises_at(path, "'x'", "pickle"):
        load("npz", path=str(path))


def test_npz_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    path.write_text("hello")
    with raises_at(path, "cannot read"):
        load("npz", path=str(path))


def test_npz_missing_file(tmp_path: Path) -> None:
    with raises_at(tmp_path / "nope.npz", "no such file"):
        load("npz", path=str(tmp_path / "nope.npz"))


def test_npy_features_and_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((6, 1, 4, 4), np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 0, 1, 4]))
    raw = load("npy", path=str(tmp_path / "x.npy"), labels_path=str(tmp_path / "y.npy"))
    assert raw.x_train.shape == (6, 1, 4, 4) and raw.x_test is None
    assert raw.y_train.tolist() == [0, 1, 2, 0, 1, 4]
    assert raw.classes == ["0", "1", "2", "3", "4"]


def test_npy_errors(tmp_path: Path) -> None:
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x, np.ones((6, 2)))
    np.save(y, np.zeros(5))
    with raises_at(x, "6 feature rows", "5 labels"):
        load("npy", path=str(x), labels_path=str(y))
    np.save(y, np.array(["a", None] * 3, dtype=object))
    with raises_at(y, "pickle"):
        load("npy", path=str(x), labels_path=str(y))
    with pytest.raises(DataError, match="labels_path"):
        load("npy", path=str(x), labels_path=None)


# ------------------------------------------------------------------------------------------ csv


def test_csv_numeric_labels_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("\ufeffa, label ,b\n1.5,2,3\n-1,0,4e2\n\n0,1,0\n", encoding="utf-8")
    raw = load("csv", path=str(path), label_column="label", test_path=None)
    assert raw.x_train.dtype == np.float32 and raw.x_train.shape == (3, 2)
    assert raw.x_train.tolist() == [[1.5, 3.0], [-1.0, 400.0], [0.0, 0.0]]
    assert raw.y_train.tolist() == [2, 0, 1] and raw.y_train.dtype == np.int64
    assert raw.classes == ["0", "1", "2"] and raw.x_test is None


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


# ------------------------------------------------------------------------------------------ idx


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (uint8 payload) as MNIST stores it: magic, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">i4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def test_idx_train_and_test(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 5, 7), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(12) % 10, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:4])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([9, 8, 7, 6]))
    raw = load("idx", path=str(tmp_path))
    assert raw.x_train.shape == (12, 1, 5, 7) and raw.x_train.dtype == np.uint8
    assert raw.x_train.flags.writeable  # a copy, not a view of the file's bytes
    assert np.array_equal(raw.x_train[:, 0], images)
    assert raw.y_train.tolist() == (np.arange(12) % 10).tolist()
    assert raw.x_test.shape == (4, 1, 5, 7) and raw.y_test.tolist() == [9, 8, 7, 6]
    assert raw.classes == [str(i) for i in range(10)]


def test_idx_single_pair_is_train(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 2, 2)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 11, 2]))
    raw = load("idx", path=str(tmp_path))
    assert raw.x_train.shape == (3, 1, 2, 2) and raw.x_test is None
    assert len(raw.classes) == 12


def test_idx_truncated_names_file(tmp_path: Path) -> None:
    images = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 3, 3)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4))
    images.write_bytes(images.read_bytes()[:-5])
    with raises_at(images, "truncated", "(4, 3, 3)"):
        load("idx", path=str(tmp_path))


def test_idx_truncated_gzip_names_file(tmp_path: Path) -> None:
    labels = write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(400), gz=True)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((400, 3, 3)), gz=True)
    labels.write_bytes(labels.read_bytes()[:-12])
    with raises_at(labels, "cannot read"):
        load("idx", path=str(tmp_path))


def test_idx_errors(tmp_path: Path) -> None:
    with raises_at(tmp_path, "no IDX files"):
        load("idx", path=str(tmp_path))
    images = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 3, 3)))
    with raises_at(images, "no matching labels"):
        load("idx", path=str(tmp_path))
    labels = write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5))
    with raises_at(images, "4 images", "5 labels"):
        load("idx", path=str(tmp_path))
    labels.write_bytes(b"\x08\x03" + labels.read_bytes()[2:])
    with raises_at(labels, "not an IDX file"):
        load("idx", path=str(tmp_path))


@pytest.mark.skipif(MNIST_DIR is None, reason="shared data folder with MNIST t10k not present")
def test_idx_real_mnist_t10k() -> None:
    raw = load("idx", path=str(MNIST_DIR))
    assert raw.x_train.shape == (10000, 1, 28, 28) and raw.x_train.dtype == np.uint8
    assert raw.x_test is None
    assert raw.y_train.min() == 0 and raw.y_train.max() == 9
    assert np.bincount(raw.y_train).min() > 800  # every digit is present
    assert raw.y_train[:5].tolist() == [7, 2, 1, 0, 4]  # MNIST's published first test labels
    assert raw.classes == [str(i) for i in range(10)]


# -------------------------------------------------------------------------------------- cifar10


def write_cifar_batch(path: Path, n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """A batch in CIFAR-10's format (bytes keys, uint8 (N, 3072), list labels), protocol 2."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    batch = {b"batch_label": b"fake", b"labels": labels, b"data": data, b"filenames": [b"f"] * n}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return data, labels


def test_cifar10_batches(tmp_path: Path) -> None:
    d1, l1 = write_cifar_batch(tmp_path / "data_batch_1", 20, 1)
    d2, l2 = write_cifar_batch(tmp_path / "data_batch_2", 20, 2)
    dt, lt = write_cifar_batch(tmp_path / "test_batch", 20, 3)
    names = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"x"]
    meta = {b"num_cases_per_batch": 20, b"label_names": names, b"num_vis": 3072}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    raw = load("cifar10", path=str(tmp_path))
    assert raw.x_train.shape == (40, 3, 32, 32) and raw.x_train.dtype == np.uint8
    assert raw.x_test.shape == (20, 3, 32, 32)
    assert np.array_equal(raw.x_train[21, 1].ravel(), d2[1, 1024:2048])  # channel-major rows
    assert raw.y_train.tolist() == l1 + l2 and raw.y_test.tolist() == lt
    assert raw.classes[:2] == ["plane", "car"] and len(raw.classes) == 10


def test_cifar10_without_meta_or_test(tmp_path: Path) -> None:
    write_cifar_batch(tmp_path / "data_batch_1", 20, 1)
    raw = load("cifar10", path=str(tmp_path))
    assert raw.x_test is None and raw.classes[0] == "airplane"


class _Evil:
    """Unpickling this with plain pickle runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar10_malicious_pickle_refused(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    payload = {b"data": _Evil(marker), b"labels": [0]}
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(pickle.dumps(payload, protocol=protocol))
    with raises_at(batch, "refusing to unpickle", "system"):
        load("cifar10", path=str(tmp_path))
    assert not marker.exists()


def test_cifar10_errors(tmp_path: Path) -> None:
    with raises_at(tmp_path, "no CIFAR-10 batches"):
        load("cifar10", path=str(tmp_path))
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, 2))
    with raises_at(batch, "100 values per image"):
        load("cifar10", path=str(tmp_path))
    batch.write_bytes(b"\x80\x02garbage")
    with raises_at(batch, "cannot unpickle"):
        load("cifar10", path=str(tmp_path))


# ---------------------------------------------------------------------------------- imagefolder


def write_image(path: Path, image: torch.Tensor) -> Path:
    """Write a (C, H, W) uint8 tensor as PNG or JPEG (by the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode_png(image) if path.suffix == ".png" else encode_jpeg(image, quality=95)
    path.write_bytes(data.numpy().tobytes())
    return path


def make_folder(root: Path, classes: dict[str, int], size: int = 8, gray: bool = False) -> None:
    gen = torch.Generator().manual_seed(len(str(root)))
    for name, count in classes.items():
        for i in range(count):
            channels = 1 if gray else 3
            image = torch.randint(0, 256, (channels, size, size), dtype=torch.uint8, generator=gen)
            write_image(root / name / f"{i:03d}.{'png' if i % 2 else 'jpg'}", image)


def test_imagefolder_train_test_layout(tmp_path: Path) -> None:
    make_folder(tmp_path / "data" / "train", {"b_cat": 3, "a_dog": 4})
    make_folder(tmp_path / "data" / "test", {"b_cat": 2, "a_dog": 1})
    raw = load("imagefolder", path=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    assert raw.classes == ["a_dog", "b_cat"]
    assert raw.x_train.shape == (7, 3, 8, 8) and raw.x_train.dtype == np.uint8
    assert raw.y_train.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert raw.x_test.shape == (3, 3, 8, 8) and raw.y_test.tolist() == [0, 1, 1]
    png = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=torch.Generator())
    write_image(tmp_path / "one" / "k" / "x.png", png)
    exact = load("imagefolder", path=str(tmp_path / "one"), cache_dir=str(tmp_path / "cache"))
    assert np.array_equal(exact.x_train[0], png.numpy())  # PNG is lossless: exact pixels
    assert exact.x_test is None


def test_imagefolder_separate_test_path(tmp_path: Path) -> None:
    make_folder(tmp_path / "tr", {"x": 2, "y": 2})
    make_folder(tmp_path / "te", {"x": 1, "z": 1})
    with raises_at(tmp_path / "te", "class folders x, z differ"):
        load("imagefolder", path=str(tmp_path / "tr"), test_path=str(tmp_path / "te"))


def test_imagefolder_grayscale_gives_one_channel(tmp_path: Path) -> None:
    make_folder(tmp_path / "g", {"a": 2, "b": 2}, gray=True)
    raw = load("imagefolder", path=str(tmp_path / "g"), cache_dir=str(tmp_path / "cache"))
    assert raw.x_train.shape == (4, 1, 8, 8)


def test_imagefolder_sizes_differ(tmp_path: Path) -> None:
    make_folder(tmp_path / "s", {"a": 2})
    odd = write_image(tmp_path / "s" / "b" / "odd.png", torch.zeros(3, 5, 9, dtype=torch.uint8))
    with raises_at(odd, "5x9", "8x8", "image_size"):
        load("imagefolder", path=str(tmp_path / "s"), cache_dir=str(tmp_path / "cache"))
    raw = load(
        "imagefolder", path=str(tmp_path / "s"), cache_dir=str(tmp_path / "cache"), image_size=6
    )
    assert raw.x_train.shape == (3, 3, 6, 6) and raw.x_train.dtype == np.uint8


def test_imagefolder_empty_class_folder(tmp_path: Path) -> None:
    make_folder(tmp_path / "e", {"a": 2})
    (tmp_path / "e" / "b").mkdir()
    (tmp_path / "e" / "b" / "notes.txt").write_text("no images here")
    with raises_at(tmp_path / "e" / "b", "empty class folder"):
        load("imagefolder", path=str(tmp_path / "e"), cache_dir=str(tmp_path / "cache"))


def _bad_files(ok_png: bytes, ok_jpg: bytes) -> dict[str, bytes]:
    return {
        "zero.png": b"",
        "truncated.png": ok_png[: len(ok_png) // 2],
        "text.png": b"this is not an image\n",
        "truncated.jpg": ok_jpg[: len(ok_jpg) // 2],
    }


@pytest.mark.parametrize("name", ["zero.png", "truncated.png", "text.png", "truncated.jpg"])
def test_imagefolder_undecodable_file_named(tmp_path: Path, name: str) -> None:
    make_folder(tmp_path / "f", {"a": 3, "b": 3})
    image = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    ok_png, ok_jpg = encode_png(image).numpy().tobytes(), encode_jpeg(image).numpy().tobytes()
    bad = tmp_path / "f" / "b" / name
    bad.write_bytes(_bad_files(ok_png, ok_jpg)[name])
    with raises_at(bad, "image" if name == "zero.png" else "cannot"):
        load("imagefolder", path=str(tmp_path / "f"), cache_dir=str(tmp_path / "cache"))


def test_imagefolder_cache_hit_and_invalidation(tmp_path: Path, monkeypatch) -> None:
    make_folder(tmp_path / "c", {"a": 3, "b": 3})
    fields = {"path": str(tmp_path / "c"), "cache_dir": str(tmp_path / "cache")}
    first = load("imagefolder", **fields)
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".npz"  # no temp file left behind
    calls = []
    real = formats._decode_files

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(formats, "_decode_files", counting)
    second = load("imagefolder", **fields)
    assert calls == [] and "from" in second.notes[0]
    assert np.array_equal(first.x_train, second.x_train)
    assert second.y_train.tolist() == first.y_train.tolist()
    write_image(tmp_path / "c" / "b" / "new.png", torch.zeros(3, 8, 8, dtype=torch.uint8))
    third = load("imagefolder", **fields)
    assert len(calls) == 1 and len(third.x_train) == 7  # a changed tree is decoded again
    load("imagefolder", **fields, image_size=4)
    assert len(calls) == 2  # image_size is part of the key


def test_imagefolder_cache_env_var(tmp_path: Path, monkeypatch) -> None:
    make_folder(tmp_path / "c", {"a": 1, "b": 1})
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "tl"))
    load("imagefolder", path=str(tmp_path / "c"), cache_dir=None)
    assert len(list((tmp_path / "tl" / "images").glob("*.npz"))) == 1


def test_image_files_lists_paths_labels_classes(tmp_path: Path) -> None:
    make_folder(tmp_path / "r", {"c": 1, "e": 1, "a": 1, "d": 1, "b": 2})
    (tmp_path / "r" / "a" / ".hidden.png").write_bytes(b"")
    paths, labels, classes = formats.image_files(tmp_path / "r")
    assert classes == ["a", "b", "c", "d", "e"] and labels == [0, 1, 1, 2, 3, 4]
    assert [p.relative_to(tmp_path / "r").as_posix() for p in paths][:3] == [
        "a/000.jpg",
        "b/000.jpg",
        "b/001.png",
    ]
    with raises_at(tmp_path / "r" / "a", "no class subfolders"):
        formats.image_files(tmp_path / "r" / "a")


@pytest.mark.skipif(CIFAR_TAR is None, reason="shared data folder with cifar10-jpeg not present")
def test_imagefolder_real_cifar10_jpeg_subset(tmp_path: Path) -> None:
    wanted = re.compile(r"test/[^/]+/00[01][0-9]\.jpg$")  # 20 images per class
    with tarfile.open(CIFAR_TAR) as archive:
        for member in archive:
            if member.isfile() and wanted.match(member.name):
                archive.extract(member, tmp_path, filter="data")
    raw = load("imagefolder", path=str(tmp_path / "test"), cache_dir=str(tmp_path / "cache"))
    assert raw.x_train.shape == (200, 3, 32, 32) and raw.x_train.dtype == np.uint8
    assert raw.classes[0] == "airplane" and len(raw.classes) == 10
    assert np.bincount(raw.y_train).tolist() == [20] * 10
    assert 40 < raw.x_train.mean() < 200  # real photos, not blank decodes


def test_imagefolder_16bit_png_and_animated_gif(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "m" / "a").mkdir(parents=True)
    (tmp_path / "m" / "b").mkdir(parents=True)
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "m" / "a" / "deep.png")
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "m" / "b" / "anim.gif", save_all=True, append_images=frames[1:])
    raw = load("imagefolder", path=str(tmp_path / "m"), cache_dir=str(tmp_path / "cache"))
    assert raw.x_train.shape == (2, 1, 8, 8) and raw.x_train.dtype == np.uint8  # both gray
    assert raw.x_train[0, 0, 7, 7] == 63000 >> 8  # scaled to 8 bits, not wrapped (= 24)
    assert (raw.x_train[1] == 10).all()  # first frame of the GIF


def test_huge_label_refused_before_making_classes(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.array([0, 65535000, 1]))
    with raises_at(path, "row 1", "65535000"):
        load("npz", path=str(path))
