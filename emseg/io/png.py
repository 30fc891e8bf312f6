"""PNG: the 16-bit colour PNGs Pillow cannot read, checked before decoding, and
:func:`write_png`.

Reading
    Pillow reads 8-bit and 16-bit grey PNGs (see :mod:`.images`) but silently drops a
    16-bit colour PNG to 8 bits, so :func:`read_16bit_color_png` reads those through
    OpenCV. libpng would print to stderr on a damaged file and inflate a bomb whole, so
    the file's chunks (checksums, length, row filters) are checked first, inflating a
    MiB at a time and never past what the header's size needs, and only the chunks that
    make the pixels reach OpenCV.

Writing
    :func:`write_png` filters and deflates a block of rows at a time (ISA-L) into the
    temporary file of :func:`~emseg.io.atomic.writing`; the bytes depend only on the
    pixels.
"""

import os
import struct
import zlib

import numpy as np

from .._shared.errors import EmsegError
from .atomic import open_temp, reason, writing

__all__ = ["is_16bit_color_png", "read_16bit_color_png", "write_png"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_BLOCK_BYTES = 1 << 22  # rows are filtered and deflated this many bytes at a time
_PNG_IDAT_BYTES = 1 << 20  # compressed data is written in IDAT chunks of about this size


# --------------------------------------------------------------------------- reading


def is_16bit_color_png(head):
    """True for a 16-bit grey+alpha, RGB or RGBA PNG (IHDR bit depth and colour type)."""
    if not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR" or len(head) < 26:
        return False
    return head[24] == 16 and head[25] in (2, 4, 6)


def read_16bit_color_png(path, im, colour_type):
    """Read a 16-bit colour PNG with OpenCV; ``im`` (Pillow, header read) gives EXIF."""
    import cv2

    try:
        data = np.fromfile(path, dtype=np.uint8)
        problem = _png_problem(data)
        if problem is not None:  # libpng would print to stderr; refuse first
            raise EmsegError(
                f"{path} could not be decoded ({problem}); the file is corrupt or "
                "truncated: re-export or re-copy it"
            )
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # no stderr
        try:
            arr = cv2.imdecode(_png_pixel_chunks(data), cv2.IMREAD_UNCHANGED)
        finally:
            cv2.utils.logging.setLogLevel(level)
    except (EmsegError, MemoryError):
        raise
    except Exception as exc:
        arr, problem = None, reason(exc)
    else:
        problem = "OpenCV could not decode it"
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        raise EmsegError(
            f"{path} could not be decoded ({problem}); the file is corrupt or "
            "truncated: re-export or re-copy it"
        )
    if colour_type == 4:  # grey + alpha: OpenCV expands the grey to three channels
        pixels, alpha = arr[..., 0], arr[..., 3]
    elif arr.shape[2] == 4:
        pixels, alpha = arr[..., 2::-1], arr[..., 3]
    else:
        pixels, alpha = arr[..., ::-1], None
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block; use the image as stored
        orientation = 1
    pixels = np.ascontiguousarray(_orient(pixels, orientation))
    if alpha is not None:
        alpha = np.ascontiguousarray(_orient(alpha, orientation))
    return pixels, alpha


def _png_problem(data):
    """What is structurally wrong with PNG bytes (bad CRC, truncation, more or less
    image data than the header's size needs), or None.

    The image data are inflated a MiB at a time and thrown away, and never beyond
    what the header's size needs: a small file that inflates to gigabytes (a
    decompression bomb) costs no memory and is refused as soon as it overflows.
    """
    data = memoryview(data)
    pos, idat = 8, []
    while True:
        if pos + 12 > len(data):
            return "truncated: no IEND chunk"
        length = int.from_bytes(data[pos : pos + 4], "big")
        tag = bytes(data[pos + 4 : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return f"truncated inside a {tag.decode('latin-1')!r} chunk"
        body = data[pos + 4 : end - 4]
        if zlib.crc32(body) != int.from_bytes(data[end - 4 : end], "big"):
            return f"bad checksum in a {tag.decode('latin-1')!r} chunk"
        if tag == b"IDAT":
            idat.append(body[4:])
        if tag == b"IEND":
            break
        pos = end
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[26] != 0 or data[27] != 0 or data[28] > 1:
        return "unknown compression, filter or interlace method in its header"
    runs = _png_row_runs(width, height, data[24], data[25], data[28])
    need = sum(length * n for _, length, n in runs)
    inflate, size = zlib.decompressobj(), 0
    try:
        for chunk in idat:
            while chunk and not inflate.eof:
                rows = inflate.decompress(chunk, 1 << 20)
                if size + len(rows) > need:
                    return f"more image data than its {width}x{height} pixels need"
                if _png_bad_filter(runs, size, rows):
                    return "a row with an unknown filter type"
                size += len(rows)
                chunk = inflate.unconsumed_tail
    except zlib.error as exc:
        return f"broken image data: {exc}"
    return None if inflate.eof and size == need else "image data ends early"


# The chunks that decide a PNG's pixels as OpenCV decodes them (no colour management)
_PNG_PIXEL_CHUNKS = (b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND")


def _png_pixel_chunks(data):
    """Checked PNG bytes (see :func:`_png_problem`) with only the chunks that make
    the pixels: libpng prints a line to stderr for each odd ancillary chunk (``libpng
    warning: iCCP: too short``, ``sRGB: invalid``, ``gAMA: duplicate``) that no log
    level of OpenCV's silences, and none of them changes what OpenCV decodes."""
    data = memoryview(data)
    pos, kept = 8, [bytes(data[:8])]
    while pos + 12 <= len(data):
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        if bytes(data[pos + 4 : pos + 8]) in _PNG_PIXEL_CHUNKS:
            kept.append(data[pos:end])
        pos = end
    return np.frombuffer(b"".join(kept), np.uint8)


def _png_row_runs(width, height, depth, colour_type, interlace):
    """The filtered rows a PNG of this header holds once inflated, as runs of
    ``(first byte, row length, number of rows)``: one run, or one per Adam7 pass."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour_type, 4)
    if not interlace:
        sizes = [(width, height)]
    else:
        passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                  (1, 0, 2, 2), (0, 1, 1, 2))  # Adam7: first column, first row, steps
        sizes = [((width - x + dx - 1) // dx, (height - y + dy - 1) // dy)
                 for x, y, dx, dy in passes]
    runs, start = [], 0
    for w, h in sizes:
        if w and h:  # each row: a filter byte, then the packed samples
            runs.append((start, 1 + (w * channels * depth + 7) // 8, h))
            start += runs[-1][1] * h
    return runs


def _png_data_size(width, height, depth, colour_type, interlace):
    """Bytes of filtered rows a PNG of this header holds once inflated."""
    return sum(length * n for _, length, n in
               _png_row_runs(width, height, depth, colour_type, interlace))


def _png_bad_filter(runs, base, chunk):
    """Whether inflated bytes ``chunk``, from offset ``base``, hold a row filter type
    other than 0-4 (libpng would print "bad adaptive filter value" to stderr)."""
    chunk = np.frombuffer(chunk, np.uint8)
    for start, length, n in runs:
        end = start + length * n
        if end <= base or start >= base + len(chunk):
            continue
        first = start + max(0, -(-(base - start) // length)) * length
        if first < min(end, base + len(chunk)) and (
            chunk[first - base : min(end, base + len(chunk)) - base : length] > 4
        ).any():
            return True
    return False


def _orient(arr, orientation):
    """Apply an EXIF orientation (1-8) to an array, as ``ImageOps.exif_transpose`` does."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return arr if op is None else op(arr)


# --------------------------------------------------------------------------- writing


def write_png(path, array, *, overwrite=False):
    """Write a uint8 or uint16, grey ``(H, W)`` or RGB ``(H, W, 3)`` array as a PNG.

    The bytes depend only on the pixels (no timestamp or other metadata).
    """
    path = os.fspath(path)
    arr = np.asarray(array)
    if arr.dtype not in (np.uint8, np.uint16):
        raise EmsegError(
            f"cannot write {path}: PNG pixels must be uint8 or uint16, got {arr.dtype}; "
            "convert them first (render.to_display, render.label_image)"
        )
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise EmsegError(
            f"cannot write {path}: a PNG needs shape (H, W) or (H, W, 3), got {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EmsegError(f"cannot write {path}: the image is empty (shape {arr.shape})")
    with writing(path, overwrite) as tmp:
        with open_temp(tmp) as f:
            for piece in _png_pieces(arr):
                f.write(piece)


def _png_pieces(arr):
    """The bytes of a PNG of ``arr`` (uint8/uint16, (H, W) or (H, W, 3)), in pieces.

    Every row takes PNG's "up" filter (each byte minus the byte above it), computed by
    numpy a block of rows at a time into one reused buffer, and the rows are deflated
    by ISA-L (the ``isal`` package) at its level 2: for a 12-megapixel photo's overlay
    4-5x faster than zlib at level 1 (the fastest OpenCV and Pillow offer), at about
    the same size. Nothing but the pixels goes in, so the same array always gives the
    same bytes.
    """
    from isal import isal_zlib

    def chunk(tag, body):
        crc = zlib.crc32(body, zlib.crc32(tag))
        return [struct.pack(">I", len(body)), tag, bytes(body), struct.pack(">I", crc)]

    h, w = arr.shape[:2]
    depth = 16 if arr.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(arr, dtype=">u2" if depth == 16 else np.uint8)
    rows = rows.view(np.uint8).reshape(h, -1)
    colour_type = 2 if arr.ndim == 3 else 0  # truecolour or greyscale
    yield _PNG_SIGNATURE
    yield from chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0))

    block = max(1, _PNG_BLOCK_BYTES // (rows.shape[1] + 1))
    filtered = np.empty((min(block, h), rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type "up"; the row above the first counts as zeros
    deflate = isal_zlib.compressobj(2)
    pending = bytearray()
    for start in range(0, h, block):
        stop = min(h, start + block)
        out = filtered[: stop - start]
        if start == 0:
            out[0, 1:] = rows[0]
            np.subtract(rows[1:stop], rows[: stop - 1], out=out[1:, 1:])
        else:
            np.subtract(rows[start:stop], rows[start - 1 : stop - 1], out=out[:, 1:])
        pending += deflate.compress(out)
        if len(pending) >= _PNG_IDAT_BYTES:
            yield from chunk(b"IDAT", pending)
            pending.clear()
    pending += deflate.flush()
    yield from chunk(b"IDAT", pending)
    yield from chunk(b"IEND", b"")
