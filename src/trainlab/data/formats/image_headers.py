"""Image headers read without decoding: format, width, height and (PNG, JPEG) stored channels.

Every image file is checked from its first bytes before anything decodes it: a header that
claims more than data.max_image_pixels is refused as a decompression bomb, and a malformed one
is a DataError naming the file. PNG, JPEG, GIF, BMP and WebP headers are parsed by hand, from
bytes already read (the resident path) or straight from the file (the streamed path's up-front
check), so the check costs a few bytes per file and no decoder.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainlab.data.formats.common import _one_line
from trainlab.errors import DataError

if TYPE_CHECKING:
    import torch

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # IHDR colour type -> channels (palette is RGB)


@dataclass(frozen=True)
class _Header:
    """What a file's first bytes say: format, size and (PNG, JPEG) the stored channel count."""

    format: str
    width: int
    height: int
    channels: int | None  # None: only decoding tells (GIF, WebP)


def _jpeg_frame(read: Callable[[int, int], bytes]) -> tuple[int, int, int]:
    """(width, height, components) from a JPEG's SOFn segment, walking the marker segments."""
    pos = 2
    while True:
        marker = read(pos, 2)
        if len(marker) < 2:
            raise ValueError("JPEG ends before its frame header")
        if marker[0] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}")
        kind = marker[1]
        if kind == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if kind == 0x01 or 0xD0 <= kind <= 0xD8:  # TEM, RSTn, SOI: no length field
            pos += 2
            continue
        if kind in (0xD9, 0xDA):
            raise ValueError("JPEG has no frame header before its image data")
        segment = read(pos + 2, 8)
        if len(segment) < 2:
            raise ValueError("JPEG ends inside a marker segment")
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):  # SOFn, not DHT/JPG/DAC
            if len(segment) < 8:
                raise ValueError("JPEG frame header is truncated")
            height, width = struct.unpack(">HH", segment[3:7])
            return width, height, segment[7]
        length = int.from_bytes(segment[:2], "big")
        if length < 2:
            raise ValueError(f"JPEG segment at byte {pos} has length {length}")
        pos += 2 + length


def _image_header(read: Callable[[int, int], bytes]) -> _Header:
    """The header of a PNG, JPEG, GIF, BMP or WebP, read without decoding.

    ``read(offset, n)`` returns up to n bytes. Another format, or a header that is cut short or
    malformed, raises ValueError: the file would not decode either (torchvision reads no other
    formats that IMAGE_SUFFIXES lists).
    """
    head = read(0, 32)
    if head[:8] == _PNG_MAGIC:
        if len(head) < 26 or head[12:16] != b"IHDR":
            raise ValueError("PNG without a complete IHDR header")
        width, height = struct.unpack(">II", head[16:24])
        channels = _PNG_CHANNELS.get(head[25])
        if channels is None:
            raise ValueError(f"PNG colour type {head[25]} is not valid")
        return _Header("png", width, height, channels)
    if head[:3] == _JPEG_MAGIC:
        return _Header("jpeg", *_jpeg_frame(read))
    if head[:6] in (b"GIF87a", b"GIF89a"):
        if len(head) < 10:
            raise ValueError("GIF header is truncated")
        return _Header("gif", *struct.unpack("<HH", head[6:10]), None)
    if head[:2] == b"BM":
        if len(head) < 26:
            raise ValueError("BMP header is truncated")
        if int.from_bytes(head[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            return _Header("bmp", *struct.unpack("<HH", head[18:22]), None)
        width, height = struct.unpack("<ii", head[18:26])
        return _Header("bmp", abs(width), abs(height), None)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_header(head)
    raise ValueError(f"not a PNG, JPEG, GIF, BMP or WebP file (starts with {bytes(head[:8])!r})")


def _webp_header(head: bytes) -> _Header:
    """Size of a WebP from its first chunk (VP8 lossy, VP8L lossless or VP8X extended)."""
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return _Header("webp", width & 0x3FFF, height & 0x3FFF, None)
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return _Header("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, None)
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        return _Header("webp", width, int.from_bytes(head[27:30], "little") + 1, None)
    raise ValueError(f"WebP with an unknown or truncated first chunk {chunk!r}")


def _checked_header(path: Path, read: Callable[[int, int], bytes], max_pixels: int) -> _Header:
    """The file's header; a malformed one, or a decompression bomb, is a DataError naming it."""
    try:
        header = _image_header(read)
    except (ValueError, OSError, struct.error) as exc:
        raise DataError(f"{path}: cannot read image header ({_one_line(exc)})") from None
    if header.width * header.height > max_pixels:
        raise DataError(
            f"{path}: image is {header.width}x{header.height} "
            f"({header.width * header.height:,} pixels, over data.max_image_pixels = "
            f"{max_pixels:,}); looks like a decompression bomb; raise data.max_image_pixels "
            "if it is genuine"
        )
    return header


def _bytes_header(path: Path, data: torch.Tensor, max_pixels: int) -> _Header:
    """:func:`_checked_header` of a file already read into a uint8 tensor."""
    view = memoryview(data.numpy())
    return _checked_header(path, lambda at, n: bytes(view[at : at + n]), max_pixels)


def _file_header(path: Path, max_pixels: int) -> _Header:
    """:func:`_checked_header` reading only the header bytes (the streamed up-front check)."""
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                raise DataError(f"{path}: empty file (0 bytes), expected an image")

            def read(at: int, n: int) -> bytes:
                file.seek(at)
                return file.read(n)

            return _checked_header(path, read, max_pixels)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({_one_line(exc)})") from None
