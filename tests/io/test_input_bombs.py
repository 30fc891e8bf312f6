"""Decompression bombs and forged headers (issue 17): sizes are checked from headers
before anything is decoded, and every decompression is bounded.

Each bomb is built here, small on disk, and inflates to ``BOMB`` bytes (256 MiB) or
declares far more pixels than it holds. The read runs in a child process, which
reports how far its peak resident memory (VmHWM) rose above what it used after its
imports; that rise must stay well below the bomb's size.
"""

import gzip
import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from emseg import EmsegError

from emseg.io import images as io

MiB = 1 << 20
BOMB = 256 * MiB  # what each bomb inflates to
BOUND = 64 * MiB  # the most a refused read may add to the peak memory
REPO = Path(__file__).resolve().parents[2]


def _zeros_stream(n_bytes, *, prefix=b"", gzip_wrapper=False):
    """A zlib (or gzip) stream of ``prefix`` and ``n_bytes`` zero bytes, made in a
    fraction of a second: one compressed MiB after a full flush is independent of what
    came before, so it is repeated, and the checksum is computed over the zeros."""
    zeros = bytes(MiB)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw; wrapped here
    head = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    n, rest = divmod(n_bytes, MiB)
    body = head + block * n + deflate.compress(bytes(rest)) + deflate.flush()
    update = zlib.crc32 if gzip_wrapper else zlib.adler32
    check = update(prefix, 0 if gzip_wrapper else 1)
    for _ in range(n):
        check = update(zeros, check)
    check = update(bytes(rest), check)
    if gzip_wrapper:
        size = (len(prefix) + n_bytes) & 0xFFFFFFFF
        return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + struct.pack("<II", check, size)
    return b"\x78\xda" + body + struct.pack(">I", check)


def _png_chunk(tag, body):
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def _peak_rise(path, **kwargs):
    """Read ``path`` in a child process: (its outcome, how far the peak RSS rose)."""
    code = textwrap.dedent(
        f"""
        import json, sys
        import cv2, nibabel, pydicom, tifffile, PIL.Image, numpy
        from emseg import EmsegError
        from emseg.io import images as io

        def status(key):
            for line in open("/proc/self/status"):
                if line.startswith(key):
                    return int(line.split()[1]) * 1024

        before = status("VmRSS:")
        try:
            io.read_image(sys.argv[1], **json.loads(sys.argv[2]))
            outcome = "read"
        except EmsegError as exc:
            outcome = "EmsegError: " + str(exc)
        print(json.dumps([outcome, status("VmHWM:") - before]))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), json.dumps(kwargs)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )
    outcome, rise = json.loads(done.stdout.strip().splitlines()[-1])
    return outcome, rise


# --------------------------------------------------------------------------- PNG


def png16_bomb(path):
    """A 16-bit RGB PNG declaring 2x2 pixels whose image data inflate to BOMB bytes."""
    ihdr = struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", _zeros_stream(BOMB)) + _png_chunk(b"IEND", b"")
    )
    return path


def test_png16_bomb_is_refused_without_inflating_it(tmp_path):
    path = png16_bomb(tmp_path / "bomb.png")
    assert path.stat().st_size < BOMB // 100
    outcome, rise = _peak_rise(path)
    assert outcome.startswith("EmsegError") and "bomb.png" in outcome, outcome
    assert "more image data than its 2x2 pixels" in outcome, outcome
    assert rise < BOUND, f"peak memory rose by {rise / MiB:.0f} MiB"


# --------------------------------------------------------------------------- NIfTI


def nifti_bomb(path, shape=(1024, 1024, 256)):
    """A .nii.gz whose header declares ``shape`` uint8 voxels, all of them present
    (zeros), in a file of a few hundred KB."""
    nib = pytest.importorskip("nibabel")
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header["vox_offset"] = 352
    prefix = header.binaryblock + bytes(4)
    Path(path).write_bytes(_zeros_stream(int(np.prod(shape)), prefix=prefix, gzip_wrapper=True))
    return path


def test_nifti_bomb_is_refused_from_its_header(tmp_path):
    path = nifti_bomb(tmp_path / "bomb.nii.gz")
    assert path.stat().st_size < BOMB // 100
    with gzip.open(path) as f:  # the bomb is a valid volume of that size
        assert len(f.read(1000)) == 1000
    outcome, rise = _peak_rise(path)
    assert "1024x1024 pixels x 256 slices = 268,435,456 pixels, above the limit" in outcome
    assert rise < BOUND, f"peak memory rose by {rise / MiB:.0f} MiB"
    # a 4-D file is refused from its header too, before any volume is inflated
    outcome, rise = _peak_rise(nifti_bomb(tmp_path / "4d.nii.gz", (256, 256, 256, 16)))
    assert "--channels" in outcome, outcome
    assert rise < BOUND, f"peak memory rose by {rise / MiB:.0f} MiB"


# --------------------------------------------------------------------------- DICOM


def dicom_rle_slice(folder, rows, columns, segment):
    """A folder with one 8-bit RLE Lossless DICOM slice of ``rows`` x ``columns`` whose
    single RLE segment is ``segment``."""
    pydicom = pytest.importorskip("pydicom")
    from _helpers import dicom_slice
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    folder.mkdir()
    ds = dicom_slice(rows, columns, bits=8, transfer_syntax=RLELossless, series="1.2.3")
    header = struct.pack("<16I", 1, 64, *[0] * 14)
    ds.PixelData = encapsulate([header + segment])
    ds["PixelData"].VR = "OB"
    ds.save_as(folder / "slice.dcm", enforce_file_format=True)
    assert pydicom.dcmread(folder / "slice.dcm").Rows == rows
    return folder


def test_dicom_rle_segments_inflating_past_the_slice_are_refused(tmp_path):
    """A 64x64 slice whose RLE segment repeats a byte 128 times per two bytes of file,
    for BOMB bytes in all."""
    folder = dicom_rle_slice(tmp_path / "rle", 64, 64, b"\x81\x00" * (BOMB // 128))
    outcome, rise = _peak_rise(folder)
    assert "RLE data that decode to more than its 64x64 pixels" in outcome, outcome
    assert rise < BOUND, f"peak memory rose by {rise / MiB:.0f} MiB"


def test_dicom_size_is_checked_from_the_header(tmp_path):
    """A 10000x10000 slice (100 million pixels, above the default limit) in 160 bytes of
    RLE data is refused before pydicom allocates it."""
    folder = dicom_rle_slice(tmp_path / "big", 10000, 10000, b"\x81\x00" * 80)
    outcome, rise = _peak_rise(folder)
    assert "10000x10000 pixels x 1 slices = 100,000,000 pixels, above the limit" in outcome
    assert rise < BOUND, f"peak memory rose by {rise / MiB:.0f} MiB"


# --------------------------------------------------------------------------- JPEG


def forged_jpeg(path, width, height):
    """An 8x8 grey JPEG whose frame header (SOF0) is rewritten to ``width`` x ``height``."""
    import io as _io

    buffer = _io.BytesIO()
    PILImage.fromarray(np.full((8, 8), 90, np.uint8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    Path(path).write_bytes(bytes(data))
    return path


def test_jpeg_declaring_more_pixels_than_its_data_can_hold_is_refused(tmp_path):
    path = forged_jpeg(tmp_path / "forged.jpg", 9000, 9000)
    with pytest.raises(EmsegError, match=r"forged\.jpg declares 9000x9000 pixels but holds"):
        io.read_image(path)
    # the real thing of that size is read (here 3000x2000, of a smooth gradient: small)
    smooth = np.add.outer(np.arange(2000) // 8, np.arange(3000) // 12).astype(np.uint8)
    PILImage.fromarray(smooth).save(tmp_path / "real.jpg", quality=5)
    assert (tmp_path / "real.jpg").stat().st_size * 8 < 2000 * 3000 / 8  # < 1 bit/pixel
    assert io.read_image(tmp_path / "real.jpg").pixels.shape == (2000, 3000)


# --------------------------------------------------------------------------- TIFF


def tiff_bomb(path, stream, compression="zlib"):
    """A 2x2 uint8 TIFF with one compressed strip, replaced by ``stream``."""
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(path, np.zeros((2, 2), np.uint8), compression=compression)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        (offset,), (length,) = page.dataoffsets, page.databytecounts
        counts = page.tags["StripByteCounts"]
        assert counts.count == 1 and counts.dtype == 4  # one LONG, held in the tag
        where, order = counts.valueoffset, tif.byteorder
    data = bytearray(Path(path).read_bytes())
    assert offset + length == len(data)  # the strip is the file's last bytes
    data[offset:] = stream
    data[where : where + 4] = struct.pack(order + "I", len(stream))
    Path(path).write_bytes(bytes(data))
    return path


def test_tiff_deflate_strip_bomb_is_refused_without_inflating_it(tmp_path):
    path = tiff_bomb(tmp_path / "bomb.tif", _zeros_stream(BOMB))
    assert path.stat().st_size < BOMB // 100
    outcome, rise = _peak_rise(path)
    assert outcome.startswith("EmsegError") and "bomb.tif" in outcome, outcome
    assert "compressed strip 0 inflates to more than the 4 bytes" in outcome, outcome
    assert "\n" not in outcome
    assert rise < BOUND, f"peak memory rose by {rise / MiB:.0f} MiB"


def test_tiff_lzma_strip_bomb_is_refused(tmp_path):
    import lzma

    stream = lzma.compress(bytes(16 * MiB))  # a few KB
    path = tiff_bomb(tmp_path / "bomb.tif", stream, compression="lzma")
    with pytest.raises(EmsegError, match=r"bomb\.tif: compressed strip 0 inflates"):
        io.read_image(path)


@pytest.mark.parametrize(
    "shape, options",
    [
        ((5, 40, 50), dict(compression="zlib", rowsperstrip=7, predictor=True)),
        ((40, 50), dict(compression="zlib", tile=(16, 16))),
        ((40, 50, 3), dict(compression="lzma", photometric="rgb")),
        ((3, 40, 50), dict(compression="zlib", planarconfig="separate", photometric="rgb")),
        ((41, 53), dict(compression="adobe_deflate", rowsperstrip=1000)),
    ],
)
def test_compressed_tiffs_within_their_size_are_read(tmp_path, shape, options):
    tifffile = pytest.importorskip("tifffile")
    data = np.random.default_rng(0).integers(0, 200, shape, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "ok.tif", data, **options)
    pixels = io.read_image(tmp_path / "ok.tif").pixels
    expected = np.moveaxis(data, 0, -1) if options.get("planarconfig") else data
    assert np.array_equal(pixels, expected)
