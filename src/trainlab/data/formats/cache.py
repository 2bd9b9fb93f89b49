"""The decoded-image cache: the resident path's arrays kept as one .npz per folder and settings.

Decoding tens of thousands of image files takes seconds to minutes, so :func:`_cached_decode`
stores the result in data.cache_dir (else $TRAINLAB_CACHE/images, else ~/.cache/trainlab/images)
under a key of every file's path, size and mtime, the resize target and the pixel limit. The
file is read back with ``allow_pickle=False`` and written with :func:`trainlab.files.atomic_path`,
so a crash never leaves a half-written cache; a decode that skipped files is never cached.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainlab.data.formats.common import _NUMPY_ERRORS, _one_line
from trainlab.data.formats.decode import _skip_note
from trainlab.data.formats.resident import _decode_splits, _Decoded
from trainlab.errors import DataError
from trainlab.files import atomic_path

if TYPE_CHECKING:
    from trainlab.data.formats.common import ImageSettings
    from trainlab.recipe import DataConfig

__all__ = ["image_cache_dir"]

_CACHE_VERSION = "trainlab-images-v2"


def image_cache_dir(cfg: ImageSettings | DataConfig) -> Path:
    """The decoded-image cache: data.cache_dir, else $TRAINLAB_CACHE/images, else ~/.cache/.

    ``cfg`` is the data section or the :class:`ImageSettings` imagefolder made of it.
    """
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    base = os.environ.get("TRAINLAB_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "trainlab") / "images"


def _cache_key(
    splits: dict[str, tuple[Path, list[Path]]], image_size: int | None, max_pixels: int
) -> str:
    """A hash of every file's relative path, size and mtime, the resize target and pixel limit.

    Relative paths keep the cache valid when the dataset folder moves; sizes and mtimes catch
    an edited or replaced file without reading it. The pixel limit is in the key so a lowered
    data.max_image_pixels is checked against the files again. data.on_corrupt need not be: a
    cache is only written when no file was skipped, and then both settings decode the same.
    """
    digest = hashlib.sha256(
        f"{_CACHE_VERSION}\nimage_size={image_size}\nmax_pixels={max_pixels}\n".encode()
    )
    for split, (_root, paths) in splits.items():
        lines = []
        for path in paths:
            try:
                info = os.stat(path)
            except OSError as exc:
                raise DataError(f"{path}: cannot stat ({_one_line(exc)})") from None
            rel = f"{path.parent.name}/{path.name}"  # image_files: always root/<class>/<file>
            lines.append(f"{split}\t{rel}\t{info.st_size}\t{info.st_mtime_ns}\n")
        digest.update("".join(lines).encode())
    return digest.hexdigest()[:32]


def _load_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when absent or unreadable (then the images are decoded again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (*_NUMPY_ERRORS, KeyError):
        return None


def _save_cache(path: Path, arrays: dict[str, np.ndarray]) -> str | None:
    """Write the arrays atomically (:func:`trainlab.files.atomic_path`); a note when that fails.

    Atomic so a crash or a concurrent run never leaves a half-written cache that later loads;
    a failed write leaves no temporary file behind.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)
    except OSError as exc:
        return f"image cache not written ({path.parent}: {_one_line(exc)})"
    return None


def _cached_decode(settings: ImageSettings, splits: dict[str, tuple[Path, list[Path]]]) -> _Decoded:
    """Decoded train (and test) images from the cache, or decoded now and cached; plus notes.

    Only a decode that skipped nothing is cached: a folder with unreadable files is decoded
    again on every load (and its skipped files reported again).
    """
    train_root = splits["train"][0]
    key = _cache_key(splits, settings.image_size, settings.max_image_pixels)
    cache = image_cache_dir(settings) / f"{train_root.parent.name}-{train_root.name}-{key}.npz"
    cached = _load_cache(cache) or {}
    stored = {k.removeprefix("x_"): len(a) for k, a in cached.items() if k.startswith("x_")}
    if stored == {split: len(paths) for split, (_root, paths) in splits.items()}:  # a valid hit
        kept = {split: np.arange(n) for split, n in stored.items()}
        notes = [f"decoded images read from {cache}", *cached.get("notes", np.array([])).tolist()]
        return _Decoded(cached["x_train"], cached.get("x_test"), kept, [], notes)
    result = _decode_splits(settings, splits)
    count = len(result.x) + (0 if result.x_test is None else len(result.x_test))
    if result.skipped:
        result.notes[:0] = [f"decoded {count} images (not cached: files were skipped)"]
        result.notes += _skip_note(result.skipped)
        return result
    arrays = {"x_train": result.x, "notes": np.array(result.notes, dtype=str)}
    if result.x_test is not None:
        arrays["x_test"] = result.x_test
    saved = _save_cache(cache, arrays) or f"decoded {count} images into {cache}"
    result.notes[:0] = [saved]
    return result
