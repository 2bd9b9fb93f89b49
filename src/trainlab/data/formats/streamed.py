"""The streamed path: :class:`ImageFiles`, image files that stand in for an array.

A folder whose decoded images would not fit data.max_resident_mb is not decoded up front:
:func:`_streamed` gives each split an ImageFiles, which DataLoader workers index one image at a
time, each file's header checked against data.max_image_pixels before it is decoded. With
data.on_corrupt: skip every file's header is read up front and the unreadable files are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.data.formats.decode import (
    _check_classes,
    _decode_one,
    _quiet_torchvision_io,
    _read_image_bytes,
    _Skipped,
)
from trainlab.data.formats.image_headers import _bytes_header, _file_header
from trainlab.errors import DataError

if TYPE_CHECKING:
    import torch

    from trainlab.data.formats.common import ImageSettings

__all__ = ["ImageFiles"]


class ImageFiles:
    """Image files decoded on access: the array stand-in that streams a folder too big to hold.

    Indexing with an integer decodes one image to a float (C, H, W) tensor in [0, 1] (what the
    resident path's uint8 arrays become); indexing with index arrays or slices returns a subset,
    so splits are carved exactly as for arrays. ``nbytes`` is the decoded float32 size, which is
    what decides between the two loading paths. Each file's header is checked against
    ``max_pixels`` (decompression bombs) before it is decoded; a file that cannot be read or
    decoded raises a DataError when it is reached, whatever data.on_corrupt says: with "skip",
    :func:`imagefolder` leaves out the files whose header is unreadable up front, but a file
    that passes that check and fails to decode later still stops training.
    """

    dtype = np.dtype(np.float32)

    def __init__(
        self,
        paths: list[Path],
        image_shape: tuple[int, int, int],
        image_size: int | None,
        max_pixels: int = 89_478_485,
    ) -> None:
        self.paths, self.image_shape, self.image_size = list(paths), image_shape, image_size
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), *self.image_shape)

    @property
    def ndim(self) -> int:
        return 4

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * 4

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int | np.integer):
            return self.decode(int(index))
        picked = np.arange(len(self.paths))[index]
        return ImageFiles(
            [self.paths[i] for i in picked], self.image_shape, self.image_size, self.max_pixels
        )

    def decode(self, i: int) -> torch.Tensor:
        """Image ``i`` as float32 in [0, 1], resized to image_size when set."""
        from torchvision.transforms.v2.functional import resize

        path = self.paths[i]
        image = _decode_checked(path, self.max_pixels)
        if self.image_size is not None:
            image = resize(image, [self.image_size, self.image_size], antialias=True)
        if tuple(image.shape) != self.image_shape:
            raise DataError(
                f"{path}: image is {image.shape[1]}x{image.shape[2]} but the first image is "
                f"{self.image_shape[1]}x{self.image_shape[2]}; set data.image_size to resize"
            )
        return image.float().div_(255.0)


def _decode_checked(path: Path, max_pixels: int) -> torch.Tensor:
    """One file read, its header checked, decoded to RGB uint8 (3, H, W)."""
    with _quiet_torchvision_io():
        data = _read_image_bytes(path)
        return _decode_one(path, data, _bytes_header(path, data, max_pixels))[0]


@dataclass
class _Streamed:
    """ImageFiles per split, the indices of the files they keep, and the files left out."""

    files: dict[str, ImageFiles]
    kept: dict[str, np.ndarray]
    skipped: list[_Skipped]


def _streamed(
    settings: ImageSettings, splits: dict[str, tuple[Path, list[Path]]]
) -> _Streamed | None:
    """ImageFiles per split when the decoded images would not fit data.max_resident_mb.

    The first readable training image gives the size. With data.on_corrupt: skip every file's
    header is read up front (no decoding) and files that are unreadable, malformed or bombs are
    left out; a file that passes and fails to decode later still raises during training.
    """
    skip = settings.on_corrupt == "skip"
    bad: dict[Path, str] = {}
    image = None
    for path in splits["train"][1]:
        try:
            image = _decode_checked(path, settings.max_image_pixels)
            break
        except DataError as exc:
            if not skip:
                raise
            bad[path] = str(exc).removeprefix(f"{path}: ")
    if image is None:  # nothing readable: the decode path reports it per class folder
        return None
    size = settings.image_size
    side = (size, size) if size else tuple(image.shape[1:])
    shape = (3, *side)
    count = sum(len(paths) for _root, paths in splits.values())
    if count * int(np.prod(shape)) * 4 <= settings.max_resident_mb * 2**20:  # float32 when decoded
        return None
    kept: dict[str, np.ndarray] = {}
    skipped: list[_Skipped] = []
    for name, (_root, paths) in splits.items():
        keep = []
        for i, path in enumerate(paths):
            if skip and path not in bad:
                try:
                    _file_header(path, settings.max_image_pixels)
                except DataError as exc:
                    bad[path] = str(exc).removeprefix(f"{path}: ")
            if path in bad:
                skipped.append((path, bad[path]))
            else:
                keep.append(i)
        kept[name] = np.asarray(keep, dtype=np.int64)
        _check_classes(paths, kept[name], skipped)
    files = {
        name: ImageFiles(
            [paths[i] for i in kept[name].tolist()],
            shape,
            settings.image_size,
            settings.max_image_pixels,
        )
        for name, (_root, paths) in splits.items()
    }
    return _Streamed(files, kept, skipped)
