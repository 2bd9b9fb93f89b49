"""What every reader in this package shares: recipe path keys, image settings, error text.

Each dataset factory starts from a file or folder the recipe names (:func:`_path` turns a
missing one into a DataError naming the ``data.`` key) and quotes library exceptions on one line
(:func:`_one_line`). A source that stores no class names returns ``classes=None``: the number
of classes is settled in one place, :func:`trainlab.data.datasets.check_classes`, never by a
reader. They live here so that the readers depend on this module, never on each other.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trainlab.errors import DataError

_NUMPY_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)


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


@dataclass(frozen=True)
class ImageSettings:
    """The ``data`` keys that reading image files obeys, as ``imagefolder`` was given them.

    The decoding helpers (``resident``, ``cache``, ``streamed``) take this rather than the
    recipe section, which this package never imports.
    """

    image_size: int | None
    max_image_pixels: int
    on_corrupt: Literal["stop", "skip"]
    max_resident_mb: float
    cache_dir: str | None


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, without torchvision's C++ source location prefix."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return re.sub(r"^.*?\.(?:cpp|h):\d+, ", "", text)
