"""The imagefolder reader (trainlab.data.formats.class_folders): layouts, sizes, bad files."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg, encode_png

from tests.data.formats.formats_util import CIFAR_TAR, load, make_folder, raises_at, write_image
from trainlab.data import formats

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


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
