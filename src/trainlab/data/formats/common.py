"""What every reader in this package shares: recipe path keys, default class names, error text.

Each dataset factory starts from a file or folder the recipe names (:func:`_path` turns a
missing one into a DataError naming the ``data.`` key), numbers its classes "0".."max label"
when the source stores no names (:func:`_default_classes`, which refuses a sentinel label that
would create tens of thousands of classes), and quotes library exceptions on one line
(:func:`_one_line`). They live here so that the readers depend on this module, never on each
other.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

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


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, without torchvision's C++ source location prefix."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return re.sub(r"^.*?\.(?:cpp|h):\d+, ", "", text)
