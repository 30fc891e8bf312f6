"""Tests for emseg.io's images, PNG, TIFF, JSON and atomic writing: every file is made
here, in tmp_path."""

import json
import math
import os
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from emseg import EmsegError
from emseg import io
from emseg.io import images, png

IMAGES = Path(__file__).resolve().parent.parent.parent / "images"


def _png16(path, arr, colour_type):
    """A minimal 16-bit PNG writer (Pillow cannot write 16-bit grey+alpha or RGBA)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        crc = struct.pack(">I", zlib.crc32(tag + data))
        return struct.pack(">I", len(data)) + tag + data + crc

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _raises(path, *extra):
    """pytest.raises for an EmsegError whose message names ``path`` (and ``extra``)."""
    pattern = re.escape(str(path)) + "".join(f"(?s:.*){re.escape(e)}" for e in extra)
    return pytest.raises(EmsegError, match=pattern)


# ----------------------------------------------------------------- Pillow formats


def test_png_grey_uint8_round_trip(tmp_path, rng):
    arr = rng.integers(0, 256, (7, 9), dtype=np.uint8)
    PILImage.fromarray(arr).save(tmp_path / "g.png")
    img = io.read_image(tmp_path / "g.png")
    assert img.pixels.dtype == np.uint8
    np.testing.assert_array_equal(img.pixels, arr)
    assert img.valid is None and not img.is_color and not img.is_stack
    assert img.path == str(tmp_path / "g.png")
    assert img.spatial_shape == (7, 9)


def test_png_grey_uint16_round_trip(tmp_path, rng):
    arr = rng.integers(0, 65536, (7, 9), dtype=np.uint16)
    io.write_png(tmp_path / "g16.png", arr)
    img = io.read_image(tmp_path / "g16.png")
    assert img.pixels.dtype == np.uint16
    np.testing.assert_array_equal(img.pixels, arr)


def test_png_rgb_uint8_round_trip(tmp_path, rng):
    arr = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    io.write_png(tmp_path / "c.png", arr)
    img = io.read_image(tmp_path / "c.png")
    np.testing.assert_array_equal(img.pixels, arr)
    assert img.is_color and img.spatial_shape == (5, 6)


def test_png_rgb_uint16_round_trip(tmp_path, rng):
    # Pillow alone would silently drop these to 8 bits
    arr = rng.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    io.write_png(tmp_path / "c16.png", arr)
    img = io.read_image(tmp_path / "c16.png")
    assert img.pixels.dtype == np.uint16
    np.testing.assert_array_equal(img.pixels, arr)


def test_png_rgba_alpha_becomes_valid(tmp_path, rng):
    arr = rng.integers(0, 256, (4, 5, 4), dtype=np.uint8)
    arr[..., 3] = 255
    arr[0, :2, 3] = 0
    arr[3, 4, 3] = 7  # partly transparent still counts as valid
    PILImage.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    img = io.read_image(tmp_path / "a.png")
    assert img.pixels.shape == (4, 5, 3) and img.is_color
    np.testing.assert_array_equal(img.pixels, arr[..., :3])
    expected = np.ones((4, 5), bool)
    expected[0, :2] = False
    np.testing.assert_array_equal(img.valid, expected)


def test_opaque_alpha_gives_valid_none(tmp_path, rng):
    arr = rng.integers(0, 256, (4, 5, 4), dtype=np.uint8)
    arr[..., 3] = 255
    PILImage.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    assert io.read_image(tmp_path / "a.png").valid is None


def test_png_la(tmp_path, rng):
    arr = rng.integers(0, 256, (4, 5, 2), dtype=np.uint8)
    arr[..., 1] = 200
    arr[2, 2, 1] = 0
    PILImage.fromarray(arr, "LA").save(tmp_path / "la.png")
    img = io.read_image(tmp_path / "la.png")
    assert img.pixels.shape == (4, 5) and img.pixels.dtype == np.uint8
    np.testing.assert_array_equal(img.pixels, arr[..., 0])
    assert img.valid.sum() == 19 and not img.valid[2, 2]


@pytest.mark.parametrize("colour_type, channels", [(4, 2), (6, 4)])
def test_png_16bit_with_alpha(tmp_path, rng, colour_type, channels):
    arr = rng.integers(1, 65536, (4, 5, channels), dtype=np.uint16)
    arr[1, 3, -1] = 0
    _png16(tmp_path / "x.png", arr, colour_type)
    img = io.read_image(tmp_path / "x.png")
    assert img.pixels.dtype == np.uint16
    expected = arr[..., 0] if channels == 2 else arr[..., :3]
    np.testing.assert_array_equal(img.pixels, expected)
    assert not img.valid[1, 3] and img.valid.sum() == 19


def test_png_16bit_interlaced(tmp_path, rng):
    """Adam7 interlacing: the data-size check (a decompression-bomb guard) counts the
    seven passes' rows, so an interlaced 16-bit colour PNG still reads."""
    arr = rng.integers(0, 65536, (7, 5, 3), dtype=np.uint16)
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                           (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
        sub = arr[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.astype(">u2").tobytes() for row in sub)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", 5, 7, 16, 2, 0, 0, 1)
    (tmp_path / "i.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    np.testing.assert_array_equal(io.read_image(tmp_path / "i.png").pixels, arr)


def test_png_palette_mode(tmp_path):
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    im = PILImage.fromarray(indices, "L").convert("P")
    colours = [(200, 10, 10), (10, 200, 10), (10, 10, 200)]
    im.putpalette([c for rgb in colours for c in rgb])
    im.save(tmp_path / "p.png")
    img = io.read_image(tmp_path / "p.png")
    assert img.pixels.shape == (2, 3, 3) and img.pixels.dtype == np.uint8
    np.testing.assert_array_equal(img.pixels, np.array(colours, np.uint8)[indices])
    assert img.valid is None


def test_png_palette_with_transparency(tmp_path):
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    im = PILImage.fromarray(indices, "L").convert("P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    im.save(tmp_path / "p.png", transparency=1)
    img = io.read_image(tmp_path / "p.png")
    assert img.pixels.shape == (2, 3, 3)
    np.testing.assert_array_equal(img.valid, indices != 1)


def test_mode_1_becomes_0_255(tmp_path):
    arr = np.array([[True, False], [False, True]])
    PILImage.fromarray(arr).save(tmp_path / "b.png")
    img = io.read_image(tmp_path / "b.png")
    assert img.pixels.dtype == np.uint8
    np.testing.assert_array_equal(img.pixels, arr * 255)


def test_bmp_round_trip(tmp_path, rng):
    arr = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    PILImage.fromarray(arr).save(tmp_path / "c.bmp")
    np.testing.assert_array_equal(io.read_image(tmp_path / "c.bmp").pixels, arr)


def test_jpeg_colour_and_cmyk(tmp_path):
    arr = np.full((8, 10, 3), (200, 60, 30), np.uint8)
    PILImage.fromarray(arr).save(tmp_path / "c.jpg", quality=95)
    img = io.read_image(tmp_path / "c.jpg")
    assert img.pixels.shape == (8, 10, 3) and img.pixels.dtype == np.uint8
    assert np.abs(img.pixels.astype(int) - arr).max() < 8
    PILImage.fromarray(arr).convert("CMYK").save(tmp_path / "k.jpg", quality=95)
    cmyk = io.read_image(tmp_path / "k.jpg")
    assert cmyk.pixels.shape == (8, 10, 3) and cmyk.pixels.dtype == np.uint8


@pytest.mark.parametrize(
    "orientation, shape", [(1, (4, 6)), (3, (4, 6)), (6, (6, 4)), (8, (6, 4))]
)
def test_jpeg_exif_orientation_applied(tmp_path, orientation, shape):
    arr = np.full((4, 6), 230, np.uint8)
    arr[:, :3] = 20  # left half dark
    im = PILImage.fromarray(arr)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=95)
    px = io.read_image(tmp_path / "o.jpg").pixels
    assert px.shape == shape
    if orientation == 6:  # 90 degrees clockwise: the left half goes to the top
        assert px[:3].mean() < 60 and px[3:].mean() > 190
    if orientation == 8:  # 90 degrees counter-clockwise: the left half goes to the bottom
        assert px[3:].mean() < 60 and px[:3].mean() > 190
    if orientation == 3:  # 180 degrees: the left half goes to the right
        assert px[:, 3:].mean() < 60


def test_pillow_int32_and_float_modes():
    small = PILImage.fromarray(np.array([[0, 1000], [65535, 7]], np.int32))
    assert small.mode == "I"
    px, alpha = images._pillow_pixels(small, "x.png")
    assert px.dtype == np.uint16 and alpha is None
    big = PILImage.fromarray(np.array([[-5, 1000], [70000, 7]], np.int32))
    px, _ = images._pillow_pixels(big, "x.png")
    assert px.dtype == np.float32 and px[1, 0] == 70000 and px[0, 0] == -5
    f = PILImage.fromarray(np.array([[0.5, 1.5], [2.5, -1.0]], np.float32))
    px, _ = images._pillow_pixels(f, "x.png")
    assert px.dtype == np.float32 and px[1, 1] == -1.0


# ---------------------------------------------------------------------------- TIFF


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_grey_round_trip(tmp_path, rng, dtype):
    arr = (rng.random((6, 7)) * 1000).astype(dtype)
    tifffile.imwrite(tmp_path / "g.tif", arr)
    img = io.read_image(tmp_path / "g.tif")
    assert img.pixels.dtype == dtype
    np.testing.assert_array_equal(img.pixels, arr)
    assert not img.is_color and not img.is_stack


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_rgb_round_trip(tmp_path, rng, dtype):
    arr = rng.integers(0, np.iinfo(dtype).max, (6, 7, 3)).astype(dtype)
    tifffile.imwrite(tmp_path / "c.tiff", arr, photometric="rgb")
    img = io.read_image(tmp_path / "c.tiff")
    assert img.pixels.dtype == dtype and img.is_color
    np.testing.assert_array_equal(img.pixels, arr)


def test_tiff_planar_rgb(tmp_path, rng):
    arr = rng.integers(0, 256, (3, 6, 7), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", arr, photometric="rgb", planarconfig="separate")
    img = io.read_image(tmp_path / "c.tif")
    np.testing.assert_array_equal(img.pixels, np.moveaxis(arr, 0, -1))


def test_tiff_rgba_and_grey_alpha(tmp_path, rng):
    rgba = rng.integers(1, 65536, (5, 6, 4), dtype=np.uint16)
    rgba[2, 3, 3] = 0
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb")
    img = io.read_image(tmp_path / "rgba.tif")
    np.testing.assert_array_equal(img.pixels, rgba[..., :3])
    assert img.valid.sum() == 29 and not img.valid[2, 3]

    la = rng.integers(1, 256, (5, 6, 2), dtype=np.uint8)
    la[0, 0, 1] = 0
    tifffile.imwrite(
        tmp_path / "la.tif", la, photometric="minisblack", extrasamples=["unassalpha"]
    )
    img = io.read_image(tmp_path / "la.tif")
    np.testing.assert_array_equal(img.pixels, la[..., 0])
    assert not img.valid[0, 0] and img.valid.sum() == 29


def test_tiff_multipage_is_stack(tmp_path, rng):
    arr = rng.integers(0, 65536, (4, 5, 6), dtype=np.uint16)
    with tifffile.TiffWriter(tmp_path / "s.tif") as tif:
        for page in arr:  # separate pages, as a microscope writes them
            tif.write(page, metadata=None, photometric="minisblack")
    img = io.read_image(tmp_path / "s.tif")
    assert img.pixels.shape == (4, 5, 6) and img.pixels.dtype == np.uint16
    assert img.is_stack and not img.is_color and img.spatial_shape == (4, 5, 6)
    np.testing.assert_array_equal(img.pixels, arr)


def test_tiff_rgb_stack_with_three_pixel_wide_pages(tmp_path, rng):
    grey = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)  # (Z, H, W=3): not RGB
    tifffile.imwrite(tmp_path / "g.tif", grey, photometric="minisblack")
    img = io.read_image(tmp_path / "g.tif")
    assert img.is_stack and not img.is_color and img.spatial_shape == (4, 5, 3)

    rgb = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    img = io.read_image(tmp_path / "c.tif")
    assert img.is_stack and img.is_color and img.spatial_shape == (4, 5, 6)
    np.testing.assert_array_equal(img.pixels, rgb)


def test_tiff_other_dtypes(tmp_path):
    tifffile.imwrite(tmp_path / "i16.tif", np.array([[-3, 5], [7, 9]], np.int16))
    px = io.read_image(tmp_path / "i16.tif").pixels
    assert px.dtype == np.float32 and px[0, 0] == -3
    tifffile.imwrite(tmp_path / "u32.tif", np.array([[3, 5], [7, 9]], np.uint32))
    assert io.read_image(tmp_path / "u32.tif").pixels.dtype == np.uint16
    tifffile.imwrite(tmp_path / "f64.tif", np.array([[0.5, 5], [7, 9]], np.float64))
    assert io.read_image(tmp_path / "f64.tif").pixels.dtype == np.float32


def test_tiff_miniswhite_and_palette(tmp_path):
    arr = np.array([[0, 255], [10, 20]], np.uint8)
    tifffile.imwrite(tmp_path / "w.tif", arr, photometric="miniswhite")
    np.testing.assert_array_equal(io.read_image(tmp_path / "w.tif").pixels, 255 - arr)

    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, 1] = (65535, 0, 0)
    colormap[:, 2] = (0, 0, 65535)
    idx = np.array([[1, 2], [2, 1]], np.uint8)
    tifffile.imwrite(tmp_path / "p.tif", idx, photometric="palette", colormap=colormap)
    px = io.read_image(tmp_path / "p.tif").pixels
    assert px.dtype == np.uint8 and px.shape == (2, 2, 3)
    np.testing.assert_array_equal(px[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(px[0, 1], (0, 0, 255))


# ----------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path):
    """(path, words the message must contain) for each kind of bad input."""
    cases = []
    cases.append((tmp_path / "missing.png", "does not exist"))
    (tmp_path / "folder.png").mkdir()
    cases.append((tmp_path / "folder.png", "folder"))
    (tmp_path / "empty.png").write_bytes(b"")
    cases.append((tmp_path / "empty.png", "0 bytes"))
    (tmp_path / "text.png").write_text("this is not an image\n")
    cases.append((tmp_path / "text.png", "not an image"))
    (tmp_path / "text.tif").write_text("neither is this\n")
    cases.append((tmp_path / "text.tif", "not an image"))

    good = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    PILImage.fromarray(good).save(tmp_path / "good.png")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    cases.append((tmp_path / "truncated.png", "corrupt or truncated"))
    corrupt = bytearray(data)
    corrupt[100:400] = bytes(300)  # zeroed IDAT data: bad CRC / bad zlib stream
    (tmp_path / "corrupt.png").write_bytes(bytes(corrupt))
    cases.append((tmp_path / "corrupt.png", "could not"))

    io.write_png(tmp_path / "good16.png", good.astype(np.uint16) * 257)
    data = (tmp_path / "good16.png").read_bytes()
    (tmp_path / "truncated16.png").write_bytes(data[: len(data) // 2])
    cases.append((tmp_path / "truncated16.png", "corrupt or truncated"))

    PILImage.fromarray(good).save(tmp_path / "good.jpg")
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    cases.append((tmp_path / "truncated.jpg", "corrupt or truncated"))

    tifffile.imwrite(tmp_path / "good.tif", good[..., 0])
    data = (tmp_path / "good.tif").read_bytes()
    (tmp_path / "truncated.tif").write_bytes(data[:200])
    cases.append((tmp_path / "truncated.tif", "TIFF"))
    (tmp_path / "junk.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    cases.append((tmp_path / "junk.tif", "TIFF"))

    PILImage.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "one.png")
    cases.append((tmp_path / "one.png", "too small to segment"))
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((1, 1), np.uint16))
    cases.append((tmp_path / "one.tif", "too small to segment"))

    PILImage.fromarray(good).save(tmp_path / "anim.gif")
    cases.append((tmp_path / "anim.gif", "GIF"))
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((4, 4, 5), np.uint8), planarconfig="contig",
                     photometric="minisblack")
    cases.append((tmp_path / "five.tif", "5 samples"))
    tifffile.imwrite(tmp_path / "complex.tif", np.zeros((4, 4), np.complex64))
    cases.append((tmp_path / "complex.tif", "complex"))
    tifffile.imwrite(tmp_path / "hyper.tif", np.zeros((2, 3, 4, 4), np.uint8),
                     photometric="minisblack")
    cases.append((tmp_path / "hyper.tif", "more than one stack axis"))

    rgba = np.zeros((4, 4, 4), np.uint8)
    PILImage.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    cases.append((tmp_path / "clear.png", "fully transparent"))
    return cases


def test_every_bad_input_is_a_one_line_emseg_error(tmp_path, capfd):
    cases = _bad_inputs(tmp_path)
    capfd.readouterr()
    for path, words in cases:
        with _raises(path, words) as info:
            io.read_image(path)
        message = str(info.value)
        assert "\n" not in message, message
        # no Pillow/tifffile exception shows in the traceback
        exc = info.value
        assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    # and nothing printed on the way (tifffile logs, OpenCV warnings)
    assert capfd.readouterr() == ("", "")


def test_bad_input_never_raises_anything_else(tmp_path):
    """Random bytes behind each magic number: always EmsegError, nothing raw."""
    rng = np.random.default_rng(7)
    heads = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"BM", b"II*\x00", b"MM\x00*", b""]
    for i in range(60):
        head = heads[i % len(heads)]
        path = tmp_path / f"fuzz{i}.img"
        body = rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes()
        path.write_bytes(head + body)
        try:
            io.read_image(path)
        except EmsegError as exc:
            assert str(path) in str(exc)


# ---------------------------------------------------------------------- max_pixels


def test_max_pixels(tmp_path):
    PILImage.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "big.png")
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((5, 100, 100), np.uint8))
    for name in ("big.png", "big.tif"):
        with _raises(tmp_path / name, "--max-pixels"):
            io.read_image(tmp_path / name, max_pixels=5_000)
    assert io.read_image(tmp_path / "big.png", max_pixels=10_000).pixels.shape == (100, 100)
    assert io.read_image(tmp_path / "big.tif", max_pixels=50_000).pixels.shape == (5, 100, 100)
    with pytest.raises(EmsegError, match="max_pixels"):
        io.read_image(tmp_path / "big.png", max_pixels=0)


def test_pillow_limit_applies_by_default_and_is_restored(tmp_path, monkeypatch):
    PILImage.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "big.png")
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((100, 100), np.uint8))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1_000)  # far below 2 x 10,000
    for name in ("big.png", "big.tif"):
        with _raises(tmp_path / name, "decompression bomb", "--max-pixels 10000"):
            io.read_image(tmp_path / name)
    # raising the limit on purpose works for the call, and only for the call
    assert io.read_image(tmp_path / "big.png", max_pixels=20_000).pixels.shape == (100, 100)
    assert PILImage.MAX_IMAGE_PIXELS == 1_000
    with _raises(tmp_path / "big.png", "--max-pixels"):
        io.read_image(tmp_path / "big.png")
    # between the limit and twice it, Pillow only warns: emseg still refuses, quietly
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 6_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _raises(tmp_path / "big.png", "limit of 6,000", "--max-pixels 10000"):
            io.read_image(tmp_path / "big.png")


# --------------------------------------------------------------------------- masks


def test_read_mask_any_channel_nonzero(tmp_path):
    arr = np.zeros((4, 5, 3), np.uint8)
    arr[0, 0, 2] = 1
    arr[3, 4] = 255
    PILImage.fromarray(arr).save(tmp_path / "m.png")
    mask = io.read_mask(tmp_path / "m.png", (4, 5))
    assert mask.dtype == bool and mask.sum() == 2 and mask[0, 0] and mask[3, 4]


def test_read_mask_transparent_pixels_are_outside(tmp_path):
    arr = np.full((4, 5, 2), 255, np.uint8)
    arr[1, 1, 1] = 0
    PILImage.fromarray(arr, "LA").save(tmp_path / "m.png")
    mask = io.read_mask(tmp_path / "m.png", (4, 5))
    assert mask.sum() == 19 and not mask[1, 1]


def test_read_mask_size_mismatch_names_both_sizes(tmp_path):
    PILImage.fromarray(np.full((4, 5), 255, np.uint8)).save(tmp_path / "m.png")
    with _raises(tmp_path / "m.png", "5x4", "8x6"):
        io.read_mask(tmp_path / "m.png", (6, 8))


def test_read_mask_2d_applies_to_every_slice_and_empty_is_refused(tmp_path):
    arr = np.zeros((4, 5), np.uint8)
    arr[1:3, 1:4] = 9
    PILImage.fromarray(arr).save(tmp_path / "m.png")
    mask = io.read_mask(tmp_path / "m.png", (3, 4, 5))
    assert mask.shape == (3, 4, 5) and mask.sum() == 18
    PILImage.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "zero.png")
    with _raises(tmp_path / "zero.png", "selects no pixel"):
        io.read_mask(tmp_path / "zero.png", (4, 5))


# ------------------------------------------------------------------------- writing


def _leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp"))


def test_atomic_output_temp_name_and_rename(tmp_path):
    target = tmp_path / "out.bin"
    with io.atomic_output(target, overwrite=False) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        name = os.path.basename(tmp)
        assert name.startswith(".") and name.endswith(".tmp")
        assert not target.exists()
        Path(tmp).write_bytes(b"done")
    assert target.read_bytes() == b"done"
    assert _leftovers(tmp_path) == []


def test_atomic_output_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="boom"):
        with io.atomic_output(target, overwrite=False) as tmp:
            Path(tmp).write_bytes(b"half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old contents")

    def disk_full(file, mode="r", *args, **kwargs):
        Path(file).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    from emseg.io import atomic

    monkeypatch.setattr(atomic, "open", disk_full, raising=False)  # the PNG bytes' write
    with _raises(target, "No space left"):
        io.write_png(target, np.zeros((2, 2), np.uint8), overwrite=True)
    assert target.read_bytes() == b"old contents"
    assert _leftovers(tmp_path) == []


def test_refuses_to_overwrite_unless_asked(tmp_path):
    target = tmp_path / "out.png"
    io.write_png(target, np.zeros((2, 3), np.uint8))
    before = target.read_bytes()
    with _raises(target, "exists; pass --overwrite to replace it"):
        io.write_png(target, np.full((2, 3), 9, np.uint8))
    with _raises(tmp_path / "out.png", "--overwrite"):
        io.write_json(target, {"a": 1})
    assert target.read_bytes() == before
    io.write_png(target, np.full((2, 3), 9, np.uint8), overwrite=True)
    assert io.read_image(target).pixels[0, 0] == 9
    assert _leftovers(tmp_path) == []


def test_file_created_during_write_is_not_replaced(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(EmsegError, match="exists"):
        with io.atomic_output(target, overwrite=False) as tmp:
            Path(tmp).write_text("new")
            target.write_text("someone else's")  # appears while we write
    assert target.read_text() == "someone else's"
    assert _leftovers(tmp_path) == []


def test_missing_or_bad_output_folder(tmp_path):
    missing = tmp_path / "nope" / "out.png"
    with _raises(tmp_path / "nope", "does not exist"):
        io.write_png(missing, np.zeros((2, 2), np.uint8))
    (tmp_path / "afile").write_text("x")
    with _raises(tmp_path / "afile", "not a folder"):
        io.write_json(tmp_path / "afile" / "out.json", {})
    (tmp_path / "adir").mkdir()
    with _raises(tmp_path / "adir", "folder"):
        io.write_json(tmp_path / "adir", {}, overwrite=True)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere"
)
def test_unwritable_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with _raises(folder, "not writable"):
            io.write_png(folder / "out.png", np.zeros((2, 2), np.uint8))
    finally:
        folder.chmod(0o755)


def test_check_writable(tmp_path):
    (tmp_path / "exists.png").write_bytes(b"x")
    io.check_writable([tmp_path / "a.png", tmp_path / "b.json"], overwrite=False)
    with _raises(tmp_path / "exists.png", "--overwrite"):
        io.check_writable([tmp_path / "a.png", tmp_path / "exists.png"], overwrite=False)
    io.check_writable([tmp_path / "exists.png"], overwrite=True)
    with _raises(tmp_path / "missing", "does not exist"):
        io.check_writable([tmp_path / "missing" / "a.png"], overwrite=True)
    with _raises(tmp_path / "a.png", "twice"):
        io.check_writable([tmp_path / "a.png", str(tmp_path / "." / "a.png")], overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.png"]


def test_write_png_rejects_bad_arrays_before_touching_disk(tmp_path):
    bads = (np.zeros((2, 2), np.float32), np.zeros((2, 2, 4), np.uint8), np.zeros((0, 2), np.uint8))
    for bad in bads:
        with _raises(tmp_path / "x.png"):
            io.write_png(tmp_path / "x.png", bad)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "array",
    [
        np.arange(60, dtype=np.uint8).reshape(6, 10),
        np.arange(60, dtype=np.uint16).reshape(6, 10) * 1000,
        np.arange(180, dtype=np.uint8).reshape(6, 10, 3),
        np.arange(180, dtype=np.uint16).reshape(6, 10, 3) * 300,
    ],
)
def test_write_png_is_deterministic(tmp_path, array):
    io.write_png(tmp_path / "a.png", array)
    io.write_png(tmp_path / "b.png", array)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    np.testing.assert_array_equal(io.read_image(tmp_path / "a.png").pixels, array)


def test_write_tiff_stack(tmp_path, rng):
    pages = rng.random((3, 5, 6)).astype(np.float64)
    pages[0, 0, 0] = np.nan
    io.write_tiff_stack(tmp_path / "a.tif", pages)
    io.write_tiff_stack(tmp_path / "b.tif", pages)
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert len(tif.pages) == 3  # three pages, not one RGB image
        back = tif.asarray()
    assert back.dtype == np.float32 and back.shape == (3, 5, 6)
    np.testing.assert_array_equal(back, pages.astype(np.float32))
    img = io.read_image(tmp_path / "a.tif")
    assert img.is_stack and img.pixels.shape == (3, 5, 6)
    with _raises(tmp_path / "a.tif", "--overwrite"):
        io.write_tiff_stack(tmp_path / "a.tif", pages)
    with _raises(tmp_path / "c.tif", "shape"):
        io.write_tiff_stack(tmp_path / "c.tif", np.zeros(5))


def test_write_json(tmp_path):
    obj = {
        "b": np.float32(0.5),
        "a": [np.int64(3), math.nan, -math.inf, np.array([[1.0, np.nan], [2.0, 3.0]])],
        "c": (np.bool_(True), None, "text", Path("x/y.png")),
        7: np.uint8(9),
    }
    io.write_json(tmp_path / "r.json", obj)
    text = (tmp_path / "r.json").read_text()
    assert text.endswith("}\n") and "NaN" not in text and "Infinity" not in text
    assert text.splitlines()[1].startswith('  "7"')  # indent 2, keys sorted
    back = json.loads(text)
    assert back == {
        "7": 9,
        "a": [3, None, None, [[1.0, None], [2.0, 3.0]]],
        "b": 0.5,
        "c": [True, None, "text", os.fspath(Path("x/y.png"))],
    }
    io.write_json(tmp_path / "r2.json", obj)
    assert (tmp_path / "r2.json").read_bytes() == text.encode()
    with _raises(tmp_path / "bad.json", "set", "['s']"):
        io.write_json(tmp_path / "bad.json", {"s": {1, 2}})
    assert not (tmp_path / "bad.json").exists()


# ------------------------------------------------------------------- sample images


@pytest.mark.skipif(not IMAGES.is_dir(), reason="no images/ folder")
def test_sample_images_read():
    names = sorted(p.name for p in IMAGES.iterdir() if p.suffix in (".png", ".jpg"))
    assert names, "no sample images"
    for name in names:
        img = io.read_image(IMAGES / name)
        assert img.pixels.dtype == np.uint8 and max(img.pixels.shape[:2]) <= 512
        assert (IMAGES / name).stat().st_size < 300_000


@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (17, 1), (23, 31), (23, 31, 3), (1, 1, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_write_png_read_back_by_pillow_and_opencv(tmp_path, rng, shape, dtype, monkeypatch):
    """emseg's own PNG encoder against two independent decoders, with the rows
    filtered in several blocks and the data split over several IDAT chunks."""
    import cv2

    monkeypatch.setattr(png, "_PNG_IDAT_BYTES", 7)
    monkeypatch.setattr(png, "_PNG_BLOCK_BYTES", 50)  # a few rows at a time
    arr = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    arr = arr[::-1]  # not contiguous in memory
    io.write_png(tmp_path / "x.png", arr)
    with PILImage.open(tmp_path / "x.png") as im:
        im.load()
        if dtype == np.uint8:
            np.testing.assert_array_equal(np.asarray(im), arr)
    back = cv2.imread(str(tmp_path / "x.png"), cv2.IMREAD_UNCHANGED)
    if len(shape) == 3:
        back = back[..., ::-1]
    np.testing.assert_array_equal(back.reshape(shape), arr)
    assert back.dtype == dtype


# ------------------------------------------------------------- hostile TIFFs (issue 17)


def test_tiff_pages_of_different_sizes_refused_naming_them(tmp_path):
    """Only the first page was segmented, silently; equal pages still make a stack."""
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.zeros((3, 40, 50), np.uint8), photometric="minisblack")
        tif.write(np.ones((20, 30), np.uint8))
    with _raises(path, "page 0 (+2 more): 50x40 uint8; page 3: 30x20 uint8",
                 "save each size as its own file"):
        io.read_image(path)
    tifffile.imwrite(tmp_path / "equal.tif", np.zeros((2, 20, 30), np.uint8))
    assert io.read_image(tmp_path / "equal.tif").pixels.shape == (2, 20, 30)


def _tiff_bytes(rng, **kwargs):
    buffer = __import__("io").BytesIO()
    tifffile.imwrite(buffer, rng.integers(0, 255, (3, 40, 48), dtype=np.uint8), **kwargs)
    return buffer.getvalue()


def test_truncated_and_garbled_tiffs_get_one_line(tmp_path, rng):
    """Every truncation and a seeded sample of byte changes: a one-line EmsegError
    (garbled IFDs whose pixels decode to another shape than declared gave numpy's
    "axes don't match array", an internal error: 6 in 1500 such changes)."""
    originals = [_tiff_bytes(rng), _tiff_bytes(rng, compression="zlib"),
                 _tiff_bytes(rng, tile=(16, 16))]
    cases = [data[:n] for data in originals for n in range(8, len(data), 97)]
    for _ in range(300):
        data = bytearray(originals[int(rng.integers(len(originals)))])
        for _ in range(int(rng.integers(1, 8))):
            data[int(rng.integers(4, len(data)))] = int(rng.integers(256))
        cases.append(bytes(data))
    path = tmp_path / "bad.tif"
    corrupt = 0
    for data in cases:
        path.write_bytes(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                io.read_image(path)
        except EmsegError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            corrupt += "corrupt TIFF (" in str(exc)
    assert corrupt > len(cases) // 4


def test_float64_beyond_float32_range_refused_in_one_line(tmp_path, rng):
    """Values near 1e300 became infinities (float32) and a misleading message later."""
    pixels = rng.normal(1e300, 1e299, (20, 30))
    tifffile.imwrite(tmp_path / "huge.tif", pixels)
    with _raises(tmp_path / "huge.tif", "values up to 1.", "e+300", "rescale the data"):
        io.read_image(tmp_path / "huge.tif")
    tifffile.imwrite(tmp_path / "fine.tif", pixels * 1e-270)  # 1e30: float32 holds it
    assert io.read_image(tmp_path / "fine.tif").pixels.dtype == np.float32

    from click.testing import CliRunner

    from emseg.cli.main import main

    result = CliRunner().invoke(main, ["run", str(tmp_path / "huge.tif"), "-o", str(tmp_path)])
    assert result.exit_code == 1
    message = result.output.strip()
    assert "\n" not in message and "beyond the range of 32-bit floats" in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fine.tif", "huge.tif"]


def test_mask_is_guarded_by_the_images_size(tmp_path):
    """--max-pixels did not reach --mask: a mask of any size up to Pillow's limit was
    decoded. Now a mask larger than its image is refused from its header."""
    image_shape = (40, 50)
    PILImage.fromarray(np.full((4000, 5000), 255, np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(EmsegError, match="mask .*big.png is 5000x4000 but the image is 50x40"):
        io.read_mask(tmp_path / "big.png", image_shape)
    PILImage.fromarray(np.full(image_shape, 255, np.uint8)).save(tmp_path / "m.png")
    assert io.read_mask(tmp_path / "m.png", image_shape).all()
    with _raises(tmp_path / "m.png", "2,000 pixels, above the limit of 100"):
        io.read_mask(tmp_path / "m.png", image_shape, max_pixels=100)
    # a 2-D mask for a stack is smaller than the stack: read
    assert io.read_mask(tmp_path / "m.png", (3, *image_shape)).shape == (3, *image_shape)
