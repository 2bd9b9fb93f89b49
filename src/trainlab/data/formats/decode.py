"""Image files decoded to RGB uint8 (3, H, W), one at a time or a whole split in batches.

Each file is read, its header checked (``image_headers``), then decoded by torchvision:
consecutive JPEGs in one ``decode_jpeg`` call, other formats one by one, every colour mode
converted to RGB and counted under the mode it was stored in. :func:`_decode_files` stacks one
split's files into one array; a file that cannot be read or decoded stops it or, with
data.on_corrupt: skip, is left out and listed. The last helpers account for the files left out
and are shared by both loading paths (``resident`` and ``streamed``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainlab.data.formats.common import _one_line
from trainlab.data.formats.image_headers import _bytes_header, _Header
from trainlab.errors import DataError

if TYPE_CHECKING:
    import torch

_MODES = ("grayscale", "grayscale+alpha", "RGB", "RGBA", "CMYK")  # the order notes list them in
_DECODE_BATCH = 256

_Skipped = tuple[Path, str]  # (file, why it was left out) for data.on_corrupt: skip


def _mode(header: _Header, channels: int) -> str:
    """The stored colour mode's name: four JPEG components are CMYK (or YCCK), else RGBA."""
    if channels == 4 and header.format == "jpeg":
        return "CMYK"
    return _MODES[min(max(channels, 1), 4) - 1]


@contextmanager
def _quiet_torchvision_io() -> Iterator[None]:
    """Silence torchvision 0.29's deprecation notice for its decoders (once per call is noise)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*image decoding and encoding capabilities")
        yield


def _read_image_bytes(path: Path) -> torch.Tensor:
    """The file as a uint8 tensor; a zero-byte or unreadable file is a DataError naming it."""
    from torchvision.io import read_file

    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file (0 bytes), expected an image")
        with _quiet_torchvision_io():
            return read_file(str(path))
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{path}: cannot read ({_one_line(exc)})") from None


def _decode_one(path: Path, data: torch.Tensor, header: _Header) -> tuple[torch.Tensor, int]:
    """(RGB (3, H, W) uint8 image, channels as stored); a file that does not decode is a DataError.

    PNG and JPEG are decoded straight to RGB (their header gave the stored channels; a palette
    PNG counts as RGB); other formats are decoded unchanged, to count their channels, and then
    converted here the same way: gray is replicated, alpha dropped. An animated GIF keeps its
    first frame; a 16-bit PNG is scaled to 8 bits like every other image, so one uint8 array
    holds them all.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import to_dtype

    channels = header.channels
    mode = ImageReadMode.UNCHANGED if channels is None else ImageReadMode.RGB
    try:
        image = decode_image(data, mode=mode)
    except (RuntimeError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({_one_line(exc)})") from None
    image = image[0] if image.ndim == 4 else image
    if channels is None:
        channels = int(image.shape[0])
        if channels in (1, 2):
            image = image[:1].repeat(3, 1, 1)
        elif channels > 3:
            image = image[:3]
    if image.dtype != torch.uint8:
        image = to_dtype(image, torch.uint8, scale=True)
    return image, channels


def _decode_jpegs(
    paths: list[Path], blobs: list[torch.Tensor], headers: list[_Header]
) -> list[torch.Tensor | DataError]:
    """A batch of JPEGs decoded in one call (the fast path); on failure, find the bad files."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(blobs, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        out: list[torch.Tensor | DataError] = []
        for path, blob, header in zip(paths, blobs, headers, strict=True):
            try:
                out.append(_decode_one(path, blob, header)[0])
            except DataError as exc:
                out.append(exc)
        return out


def _decoded(
    paths: list[Path], max_pixels: int
) -> Iterator[tuple[Path, torch.Tensor | DataError, str]]:
    """(path, RGB image or the DataError it raised, stored mode) for each file in order.

    Every header is checked (malformed, decompression bomb) before anything is decoded;
    consecutive JPEGs are batched for decode_jpeg, which converts gray and CMYK to RGB itself.
    """
    for start in range(0, len(paths), _DECODE_BATCH):
        chunk = paths[start : start + _DECODE_BATCH]
        results: dict[int, tuple[torch.Tensor | DataError, str]] = {}
        blobs: dict[int, torch.Tensor] = {}
        headers: dict[int, _Header] = {}
        for i, path in enumerate(chunk):
            try:
                blobs[i] = _read_image_bytes(path)
                headers[i] = _bytes_header(path, blobs[i], max_pixels)
            except DataError as exc:
                results[i] = (exc, "")
        jpegs = [i for i, h in headers.items() if h.format == "jpeg"]
        if jpegs:
            decoded = _decode_jpegs(
                [chunk[i] for i in jpegs], [blobs[i] for i in jpegs], [headers[i] for i in jpegs]
            )
            for i, image in zip(jpegs, decoded, strict=True):
                results[i] = (image, _mode(headers[i], headers[i].channels))
        for i in headers.keys() - set(jpegs):
            try:
                image, channels = _decode_one(chunk[i], blobs[i], headers[i])
                results[i] = (image, _mode(headers[i], channels))
            except DataError as exc:
                results[i] = (exc, "")
        for i, path in enumerate(chunk):
            yield path, *results[i]


@dataclass
class _Split:
    """One split decoded: the kept images, their indices among the files, what was left out."""

    x: np.ndarray
    kept: np.ndarray
    skipped: list[_Skipped]
    modes: dict[str, int]


def _decode_files(
    paths: list[Path], image_size: int | None, max_pixels: int, on_corrupt: str = "stop"
) -> _Split:
    """All images as one uint8 array (N, 3, H, W), resized to image_size when it is set.

    Without image_size every image must have the first one's size: a silent resize would change
    the data the user thinks they are training on. A file that cannot be read or decoded raises,
    or with on_corrupt="skip" is left out and listed.
    """
    from torchvision.transforms.v2.functional import resize

    out: np.ndarray | None = None
    first: tuple[Path, tuple[int, int]] | None = None
    kept: list[int] = []
    skipped: list[_Skipped] = []
    modes: dict[str, int] = {}
    with _quiet_torchvision_io():
        for i, (path, image, mode) in enumerate(_decoded(paths, max_pixels)):
            if isinstance(image, DataError):
                if on_corrupt != "skip":
                    raise image
                skipped.append((path, str(image).removeprefix(f"{path}: ")))
                continue
            size = (int(image.shape[1]), int(image.shape[2]))
            if image_size is not None and size != (image_size, image_size):
                image = resize(image, [image_size, image_size], antialias=True)
            elif first is None:
                first = (path, size)
            elif size != first[1]:
                raise DataError(
                    f"{path}: image is {size[0]}x{size[1]} but {first[0]} is "
                    f"{first[1][0]}x{first[1][1]}; set data.image_size to resize all images"
                )
            if out is None:
                out = np.empty((len(paths), *image.shape), dtype=np.uint8)
            out[len(kept)] = image.numpy()
            kept.append(i)
            modes[mode] = modes.get(mode, 0) + 1
    if out is None:  # every file skipped: _check_classes names the first class folder
        out = np.empty((0, 3, 1, 1), dtype=np.uint8)
    elif len(kept) < len(out):
        out = out[: len(kept)].copy()
    return _Split(out, np.asarray(kept, dtype=np.int64), skipped, modes)


def _check_classes(paths: list[Path], kept: np.ndarray, skipped: list[_Skipped]) -> None:
    """A class folder whose every image was skipped is an error (the class would never be seen)."""
    if len(kept) == len(paths):
        return
    left = {paths[i].parent for i in kept.tolist()}
    for folder in dict.fromkeys(p.parent for p in paths):
        if folder not in left:
            lost = [s for s in skipped if s[0].parent == folder]
            first = f"first: {lost[0][0]}: {lost[0][1]}" if lost else "none readable"
            raise DataError(
                f"{folder}: every image of this class was skipped as unreadable "
                f"({len(lost)} files; {first})"
            )


def _skip_note(skipped: list[_Skipped]) -> list[str]:
    if not skipped:
        return []
    s = "s" if len(skipped) > 1 else ""
    return [f"skipped {len(skipped)} unreadable image{s} (first: {skipped[0][0]}: {skipped[0][1]})"]
