"""Helpers shared by the dataset-reader tests: recipe sections, loading, error matching, images."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torchvision.io import encode_jpeg, encode_png

from trainlab.data.datasets import read_raw
from trainlab.errors import DataError
from trainlab.recipe import DataConfig

SHARED_DATA = [
    Path("/work/shared/data"),
    Path(__file__).resolve().parents[3] / ".." / "shared" / "data",
]
MNIST_DIR = next((p / "mnist-t10k" for p in SHARED_DATA if (p / "mnist-t10k").is_dir()), None)
CIFAR_TAR = next(
    (p / "cifar10-jpeg.tar.gz" for p in SHARED_DATA if (p / "cifar10-jpeg.tar.gz").is_file()), None
)


def cfg(name: str, **fields: object) -> DataConfig:
    """A validated data section, as a recipe would give it (unknown keys are refused)."""
    return DataConfig(name=name, **fields)


def load(name: str, **fields: object):
    return read_raw(cfg(name, **fields))


def raises_at(path: Path | str, *fragments: str) -> pytest.RaisesContext:
    """Expect a DataError whose one-line message starts with ``path`` and holds ``fragments``."""
    pattern = "^" + re.escape(str(path)) + ".*" + ".*".join(re.escape(f) for f in fragments)
    return pytest.raises(DataError, match=pattern)


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
