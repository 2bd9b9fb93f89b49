"""The resident path: the train and test images decoded into uint8 arrays held in memory.

:func:`_decode_splits` decodes both splits (``decode``), insists that they share one image size,
keeps one channel when every image of both is gray, and writes the note on converted colour
modes. ``imagefolder`` takes this path when the decoded images fit data.max_resident_mb (else
``streamed``), and ``cache`` keeps its result between runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainlab.data.formats.decode import _MODES, _check_classes, _decode_files, _Skipped, _Split
from trainlab.errors import DataError

if TYPE_CHECKING:
    from trainlab.data.formats.common import ImageSettings


def _convert_note(modes: dict[str, int], channels: int) -> list[str]:
    """'converted 3 images to RGB (2 grayscale, 1 RGBA)'; nothing when none changed mode."""
    target = "RGB" if channels == 3 else "grayscale"
    counts = {m: modes[m] for m in _MODES if m != target and modes.get(m)}
    total = sum(counts.values())
    if not total:
        return []
    detail = ", ".join(f"{n} {m}" for m, n in counts.items())
    return [f"converted {total} image{'s' if total > 1 else ''} to {target} ({detail})"]


def _all_gray(*arrays: np.ndarray) -> bool:
    """True when every pixel of every image has R == G == B (a grayscale file decoded as RGB)."""
    for x in arrays:
        for start in range(0, len(x), 4096):
            part = x[start : start + 4096]
            if not np.array_equal(part[:, 0], part[:, 1]):
                return False
            if not np.array_equal(part[:, 1], part[:, 2]):
                return False
    return True


@dataclass
class _Decoded:
    """Both splits decoded: arrays, kept file indices per split, notes for RawData."""

    x: np.ndarray
    x_test: np.ndarray | None
    kept: dict[str, np.ndarray]
    skipped: list[_Skipped]
    notes: list[str] = field(default_factory=list)


def _decode_splits(settings: ImageSettings, splits: dict[str, tuple[Path, list[Path]]]) -> _Decoded:
    """Decode train (and test) images; one channel when all images of both are grayscale."""
    decoded: dict[str, _Split] = {}
    for name, (_root, paths) in splits.items():
        part = _decode_files(
            paths, settings.image_size, settings.max_image_pixels, settings.on_corrupt
        )
        _check_classes(paths, part.kept, part.skipped)
        decoded[name] = part
    train, test = splits["train"], splits.get("test")
    x = decoded["train"].x
    x_test = None if test is None else decoded["test"].x
    if x_test is not None and x_test.shape[2:] != x.shape[2:]:
        raise DataError(
            f"{test[0]}: test images are {x_test.shape[2]}x{x_test.shape[3]} but train "
            f"images ({train[0]}) are {x.shape[2]}x{x.shape[3]}; set data.image_size"
        )
    if _all_gray(x, *(() if x_test is None else (x_test,))):
        x = np.ascontiguousarray(x[:, :1])
        x_test = None if x_test is None else np.ascontiguousarray(x_test[:, :1])
    modes: dict[str, int] = {}
    for part in decoded.values():
        for mode, count in part.modes.items():
            modes[mode] = modes.get(mode, 0) + count
    skipped = [s for part in decoded.values() for s in part.skipped]
    kept = {name: part.kept for name, part in decoded.items()}
    return _Decoded(x, x_test, kept, skipped, _convert_note(modes, x.shape[1]))
