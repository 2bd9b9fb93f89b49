"""The ``imagefolder`` dataset: images in class folders, root/<class>/*.jpg|png|gif|webp.

:func:`image_files` lists an ImageFolder tree (sorted class folders, the files of each sorted
by name). :func:`imagefolder` finds the train and test folders, then either decodes every image
into uint8 arrays (``resident``, through ``cache``) or, when those would not fit
data.max_resident_mb, streams the files (``streamed``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

from trainlab.data.datasets import DATASETS, RawData
from trainlab.data.formats.cache import _cached_decode
from trainlab.data.formats.common import ImageSettings, _path
from trainlab.data.formats.decode import _skip_note
from trainlab.data.formats.streamed import _streamed
from trainlab.errors import DataError
from trainlab.types import Positive, PositiveInt

__all__ = ["IMAGE_SUFFIXES", "image_files", "imagefolder"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"})


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


def _image_roots(path: str | None, test_path: str | None) -> tuple[Path, Path | None]:
    """(train folder, test folder or None) from data.path / data.test_path."""
    root = _path(path, "path", "imagefolder", folder=True)
    split_layout = (root / "train").is_dir() and (root / "test").is_dir()
    if split_layout and test_path:
        raise DataError(
            f"{root}: has train/ and test/ subfolders and data.test_path is set too; use one"
        )
    if split_layout:
        return root / "train", root / "test"
    if test_path:
        return root, _path(test_path, "test_path", "imagefolder", folder=True)
    return root, None


@DATASETS.register("imagefolder")
def imagefolder(
    *,
    path: str | None = None,
    test_path: str | None = None,
    image_size: PositiveInt | None = None,
    cache_dir: str | None = None,
    on_corrupt: Literal["stop", "skip"] = "stop",
    max_image_pixels: PositiveInt = 89_478_485,
    max_resident_mb: Positive = 4096.0,
) -> RawData:
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
    settings = ImageSettings(image_size, max_image_pixels, on_corrupt, max_resident_mb, cache_dir)
    train_root, test_root = _image_roots(path, test_path)
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
    streamed = _streamed(settings, splits)
    if streamed is not None:
        y = y[streamed.kept["train"]]
        y_test = None if y_test is None else y_test[streamed.kept["test"]]
        notes = [f"{len(y)} training images streamed from {train_root} (too large to hold)"]
        notes += _skip_note(streamed.skipped)
        x, x_test = streamed.files["train"], streamed.files.get("test")
        return RawData(x, y, x_test, y_test, classes, str(train_root), notes)
    result = _cached_decode(settings, splits)
    y = y[result.kept["train"]]
    y_test = None if y_test is None else y_test[result.kept["test"]]
    return RawData(result.x, y, result.x_test, y_test, classes, str(train_root), result.notes)
