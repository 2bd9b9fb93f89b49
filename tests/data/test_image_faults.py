"""imagefolder faults: decompression bombs, mixed colour modes, unreadable files (on_corrupt)."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import encode_jpeg, encode_png

from trainlab.data import formats
from trainlab.data.datasets import read_raw
from trainlab.data.formats import decode, image_headers, streamed
from trainlab.errors import DataError
from trainlab.recipe import DataConfig

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "trainlab-cache"))


def load(**fields: object):
    fields.setdefault("cache_dir", str(fields["path"]) + "-cache")
    return read_raw(DataConfig(name="imagefolder", **fields))


def raises_at(path: Path | str, *fragments: str) -> pytest.RaisesContext:
    pattern = "^" + re.escape(str(path)) + ".*" + ".*".join(re.escape(f) for f in fragments)
    return pytest.raises(DataError, match=pattern)


def rgb(seed: int, size: int = 8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen)


def write(path: Path, data: bytes | torch.Tensor) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.numpy().tobytes())
    return path


def pil_bytes(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A PNG signature and a valid IHDR chunk claiming width x height RGB, and no pixel data."""
    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body))


def rgb_folder(root: Path, classes: dict[str, int]) -> None:
    for c, (name, count) in enumerate(classes.items()):
        for i in range(count):
            image = rgb(10 * c + i)
            data = encode_png(image) if i % 2 else encode_jpeg(image, quality=95)
            write(root / name / f"{i:03d}.{'png' if i % 2 else 'jpg'}", data)


# ------------------------------------------------------------------------ decompression bombs


def test_header_sizes_of_every_format_without_decoding() -> None:
    gray = Image.new("L", (7, 5))
    cases = {
        "png": pil_bytes(Image.new("RGBA", (7, 5)), "PNG"),
        "jpeg": pil_bytes(Image.new("RGB", (7, 5)), "JPEG", exif=b"Exif\x00\x00" + b"\x00" * 300),
        "progressive": pil_bytes(gray, "JPEG", progressive=True),
        "gif": pil_bytes(gray, "GIF"),
        "bmp": pil_bytes(gray, "BMP"),
        "webp": pil_bytes(Image.new("RGB", (7, 5)), "WEBP", quality=80),
        "webp-lossless": pil_bytes(Image.new("RGBA", (7, 5)), "WEBP", lossless=True),
    }
    channels = {"png": 4, "jpeg": 3, "progressive": 1}
    for name, data in cases.items():
        header = image_headers._image_header(lambda at, n, d=data: d[at : at + n])
        assert (header.width, header.height) == (7, 5), name
        assert header.channels == channels.get(name), name
    with pytest.raises(ValueError, match="not a PNG, JPEG"):
        image_headers._image_header(lambda at, n: b"not an image"[at : at + n])
    with pytest.raises(ValueError, match="frame header"):
        jpeg = cases["jpeg"]
        sof = jpeg.index(b"\xff\xc0")
        image_headers._image_header(lambda at, n: jpeg[:sof][at : at + n])


def test_bomb_png_refused_from_its_header(tmp_path: Path, monkeypatch) -> None:
    rgb_folder(tmp_path / "b", {"a": 2, "b": 2})
    bomb = write(tmp_path / "b" / "b" / "bomb.png", bomb_png(100_000, 100_000))

    real = decode._decode_one

    def decode_one(path, *args):
        assert path != bomb, "decoded before the header check"
        return real(path, *args)

    monkeypatch.setattr(decode, "_decode_one", decode_one)
    monkeypatch.setattr(streamed, "_decode_one", decode_one)
    message = "100000x100000 (10,000,000,000 pixels, over data.max_image_pixels = 89,478,485)"
    with raises_at(bomb, message, "decompression bomb", "raise data.max_image_pixels"):
        load(path=str(tmp_path / "b"), max_resident_mb=1e6)
    with raises_at(bomb, "decompression bomb"):
        formats.ImageFiles([bomb], (3, 8, 8), None)[0]  # the streamed path checks it too


def test_lowered_pixel_limit_refuses_a_real_image(tmp_path: Path) -> None:
    rgb_folder(tmp_path / "r", {"a": 2, "b": 1})  # 8x8 = 64 pixels: a/000.jpg is first
    with raises_at(tmp_path / "r" / "a" / "000.jpg", "8x8 (64 pixels", "= 63)", "bomb"):
        load(path=str(tmp_path / "r"), max_image_pixels=63)
    assert load(path=str(tmp_path / "r"), max_image_pixels=64).x_train.shape == (3, 3, 8, 8)
    with raises_at(tmp_path / "r" / "a" / "000.jpg", "bomb"):  # the cache does not bypass it
        load(path=str(tmp_path / "r"), max_image_pixels=63)
    png = tmp_path / "r" / "a" / "001.png"
    with raises_at(png, "8x8", "bomb"):
        formats.ImageFiles([png], (3, 8, 8), None, max_pixels=10)[0]


# ----------------------------------------------------------------------- mixed colour modes


def test_mixed_modes_converted_to_rgb_and_counted(tmp_path: Path) -> None:
    root = tmp_path / "m"
    rgb_folder(root, {"a": 2, "b": 2})
    gray = rgb(7)[0]
    write(root / "a" / "gray.png", encode_png(gray[None]))
    rgba = torch.cat([rgb(8), torch.full((1, 8, 8), 9, dtype=torch.uint8)])
    rgba_image = Image.fromarray(rgba.permute(1, 2, 0).numpy(), "RGBA")
    write(root / "b" / "rgba.png", pil_bytes(rgba_image, "PNG"))
    la = Image.fromarray(np.stack([gray.numpy(), np.full((8, 8), 3, np.uint8)], -1), "LA")
    write(root / "b" / "la.png", pil_bytes(la, "PNG"))
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 0, 0))
    write(root / "a" / "cmyk.jpg", pil_bytes(cmyk, "JPEG", quality=95))
    write(root / "b" / "z.webp", pil_bytes(rgba_image, "WEBP", lossless=True))
    for attempt in ("decoded", "cached"):
        raw = load(path=str(root))
        paths, _labels, _classes = formats.image_files(root)
        at = {p.name if p.parent.name == "a" else "b/" + p.name: i for i, p in enumerate(paths)}
        assert raw.x_train.shape == (9, 3, 8, 8) and raw.x_train.dtype == np.uint8
        note = "converted 5 images to RGB (1 grayscale, 1 grayscale+alpha, 2 RGBA, 1 CMYK)"
        assert note in raw.notes, (attempt, raw.notes)
        assert attempt in raw.notes[0] or "read from" in raw.notes[0]
        x = raw.x_train
        assert (x[at["gray.png"]] == gray.numpy()[None]).all()  # gray replicated
        assert (x[at["b/la.png"]] == gray.numpy()[None]).all()  # gray+alpha: alpha dropped
        assert np.array_equal(x[at["b/rgba.png"]], rgba[:3].numpy())  # RGBA drops alpha
        assert np.array_equal(x[at["b/z.webp"]], rgba[:3].numpy())  # decoded unchanged, then RGB
        expected = np.asarray(Image.open(root / "a" / "cmyk.jpg").convert("RGB"))[0, 0]
        assert np.abs(x[at["cmyk.jpg"], :, 0, 0].astype(int) - expected).max() <= 3


def test_all_gray_stays_one_channel_without_a_conversion_note(tmp_path: Path) -> None:
    for i, name in enumerate(["a/0.png", "a/1.jpg", "b/0.png"]):
        image = rgb(i)[:1]
        write(tmp_path / "g" / name, encode_png(image) if "png" in name else encode_jpeg(image))
    raw = load(path=str(tmp_path / "g"))
    assert raw.x_train.shape == (3, 1, 8, 8)
    assert not any("converted" in n for n in raw.notes)


# ----------------------------------------------------------------------------- on_corrupt


def corrupt_folder(root: Path) -> dict[str, Path]:
    rgb_folder(root, {"a": 3, "b": 3})
    ok_jpg = encode_jpeg(rgb(99)).numpy().tobytes()
    return {
        "zero": write(root / "a" / "0zero.png", b""),
        "text": write(root / "b" / "text.png", b"this is not an image\n"),
        "truncated": write(root / "b" / "truncated.jpg", ok_jpg[: len(ok_jpg) // 2]),
        "bomb": write(root / "b" / "zbomb.png", bomb_png(50_000, 50_000)),
    }


def test_skip_leaves_out_unreadable_files_with_their_labels(tmp_path: Path) -> None:
    bad = corrupt_folder(tmp_path / "c")
    with raises_at(bad["zero"], "empty file"):  # stop is the default
        load(path=str(tmp_path / "c"))
    raw = load(path=str(tmp_path / "c"), on_corrupt="skip")
    assert raw.x_train.shape == (6, 3, 8, 8) and raw.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(raw.x_train[1], rgb(1).numpy())  # a/001.png: the right images kept
    note = f"skipped 4 unreadable images (first: {bad['zero']}: empty file (0 bytes)"
    assert any(n.startswith(note) for n in raw.notes), raw.notes
    assert not list((tmp_path / "c-cache").glob("*.npz"))  # a decode that skipped is not cached
    with raises_at(bad["zero"], "empty file"):  # so stop still refuses
        load(path=str(tmp_path / "c"))
    for path in bad.values():
        path.unlink()
    clean = load(path=str(tmp_path / "c"), on_corrupt="skip")
    assert len(list((tmp_path / "c-cache").glob("*.npz"))) == 1
    assert np.array_equal(clean.x_train, raw.x_train) and not any(
        "skipped" in n for n in clean.notes
    )


def test_skip_in_the_test_split_and_a_class_left_empty(tmp_path: Path) -> None:
    rgb_folder(tmp_path / "d" / "train", {"a": 2, "b": 2})
    rgb_folder(tmp_path / "d" / "test", {"a": 2, "b": 1})
    write(tmp_path / "d" / "test" / "a" / "bad.png", b"garbage")
    raw = load(path=str(tmp_path / "d"), on_corrupt="skip")
    assert raw.y_test.tolist() == [0, 0, 1] and len(raw.x_test) == 3
    assert any("skipped 1 unreadable image (first:" in n for n in raw.notes)
    (tmp_path / "d" / "test" / "b" / "000.jpg").write_bytes(b"")
    with raises_at(tmp_path / "d" / "test" / "b", "every image of this class was skipped"):
        load(path=str(tmp_path / "d"), on_corrupt="skip")


def test_streamed_skip_checks_headers_up_front(tmp_path: Path) -> None:
    bad = corrupt_folder(tmp_path / "s")
    fields = {"path": str(tmp_path / "s"), "max_resident_mb": 0.001}
    stop = load(**fields)  # stop: nothing is read up front, a bad file raises when reached
    assert len(stop.x_train) == 10
    with raises_at(bad["zero"], "empty file"):
        stop.x_train[stop.x_train.paths.index(bad["zero"])]
    raw = load(**fields, on_corrupt="skip")
    assert isinstance(raw.x_train, formats.ImageFiles) and raw.x_train.shape == (7, 3, 8, 8)
    names = [p.name for p in raw.x_train.paths]
    assert "0zero.png" not in names and "text.png" not in names and "zbomb.png" not in names
    assert raw.y_train.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert any(n.startswith("skipped 3 unreadable images (first: ") for n in raw.notes)
    assert torch.allclose(raw.x_train[1], rgb(1).float() / 255)
    # a file whose header is fine but whose data is cut short is only found when decoded
    with raises_at(bad["truncated"], "cannot decode"):
        raw.x_train[names.index("truncated.jpg")]
