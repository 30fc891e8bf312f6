"""TIFF: reading through tifffile, with the checks that keep a hostile file cheap, and
:func:`write_tiff_stack`.

Reading
    :func:`read_tiff` reads the first series of a TIFF (a multi-page TIFF is a 3-D
    stack). Before any pixel is decoded it refuses pages of different sizes or types
    (:func:`_check_tiff_pages`), layouts emseg does not read and sizes above the pixel
    limit (:func:`_check_tiff_layout`), and deflate or LZMA strips that inflate past
    their size (:func:`_check_tiff_inflation`). Pixels keep their dtype when it is
    uint8, uint16 or float32; other dtypes are converted without losing values.

Writing
    :func:`write_tiff_stack` writes pages uncompressed, without a timestamp, into the
    temporary file of :func:`~emseg.io.atomic.writing`.
"""

import math
import os
import zlib

import numpy as np

from .._shared.errors import EmsegError
from .atomic import open_temp, reason, writing
from .checks import check_size, log_as_warnings, to_float32

__all__ = ["is_tiff", "read_tiff", "write_tiff_stack"]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


# --------------------------------------------------------------------------- reading


def is_tiff(head):
    """True when a file's first bytes ``head`` are a TIFF's (classic or BigTIFF)."""
    return head[:4] in _TIFF_MAGIC


def read_tiff(path, limit):
    """Pixels (Z, H, W[, 3]) or (H, W[, 3]), alpha or None, and whether the TIFF at
    ``path`` is a stack; its size is checked against ``limit`` before decoding."""
    import tifffile

    try:
        with log_as_warnings(path, "tifffile", "tifffile"), tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise EmsegError(f"{path} is a TIFF file with no image in it; re-export it")
            _check_tiff_pages(path, tif.series)
            series = tif.series[0]
            page = series.keyframe
            axes, shape = series.axes, tuple(series.shape)
            photometric = int(page.photometric)
            colormap = page.colormap
            _check_tiff_layout(path, axes, shape, photometric, limit)
            _check_tiff_inflation(path, tif.filehandle, series)
            data = series.asarray()
            if data.shape != shape:
                raise ValueError(f"its pixels decode to shape {data.shape}, not {shape}")
    except EmsegError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        raise EmsegError(
            f"cannot read {path}: corrupt TIFF ({reason(exc)}), truncated or in a TIFF "
            "variant emseg does not read; re-export it"
        ) from None
    return _tiff_pixels(path, data, axes, photometric, colormap)


def _check_tiff_pages(path, series):
    """Refuse a TIFF whose full-resolution pages differ in size or type.

    tifffile groups equal pages into series; emseg reads the first series as the
    image (a stack when it has several pages), so any other one would be dropped
    silently. Reduced-resolution pages (thumbnails, pyramid levels) are not images
    of their own and are ignored.
    """
    images = [s for s in series if not getattr(s.keyframe, "is_reduced", False)]
    kinds = {(s.keyframe.imagewidth, s.keyframe.imagelength, str(s.keyframe.dtype),
              s.keyframe.samplesperpixel) for s in images}
    if len(kinds) < 2:
        return
    groups = []
    for s in images[:4]:
        first = s.pages[0].index if s.pages and s.pages[0] is not None else "?"
        first = first[0] if isinstance(first, tuple) else first
        page = s.keyframe
        groups.append(
            f"page {first}{f' (+{len(s.pages) - 1} more)' if len(s.pages) > 1 else ''}: "
            f"{page.imagewidth}x{page.imagelength} {page.dtype}"
        )
    more = f" and {len(images) - 4} more groups" if len(images) > 4 else ""
    raise EmsegError(
        f"{path} holds pages of different sizes or types ({'; '.join(groups)}{more}); "
        "emseg reads a multi-page TIFF as one stack of equal pages: save each size as "
        "its own file"
    )


# TIFF compressions that tifffile, without imagecodecs, inflates with an unbounded
# zlib.decompress or lzma.decompress: deflate (8, 32946) and LZMA (34925).
_TIFF_INFLATERS = {8: zlib.decompressobj, 32946: zlib.decompressobj}


def _lzma_inflater():
    import lzma

    return lzma.LZMADecompressor()


_TIFF_INFLATERS[34925] = _lzma_inflater


def _check_tiff_inflation(path, fh, series):
    """Refuse a deflate or LZMA TIFF whose strips or tiles inflate past their size.

    tifffile inflates each strip or tile in one call, unbounded, so a TIFF declaring a
    few pixels whose one strip inflates to gigabytes would take that much memory
    before anything could check it. Here each strip or tile is inflated a MiB at a
    time and thrown away, and never beyond the bytes a full strip or tile of the page
    holds (its chunk shape times the sample size: an upper bound for the last strip
    and for packed bit depths). Other compressions are left to tifffile: uncompressed
    pages cost nothing here, and PackBits expands at most 64-fold.
    """
    page = series.keyframe
    inflater = _TIFF_INFLATERS.get(int(page.compression))
    if inflater is None:
        return
    need = math.prod(page.chunks) * page.dtype.itemsize
    for number, frame in enumerate(series.pages):
        if frame is None:
            continue
        for index, (offset, count) in enumerate(zip(frame.dataoffsets, frame.databytecounts)):
            if count and _inflates_past(fh, offset, count, inflater(), need):
                kind = "tile" if page.is_tiled else "strip"
                where = f" of page {number}" if len(series.pages) > 1 else ""
                raise EmsegError(
                    f"{path}: compressed {kind} {index}{where} inflates to more than "
                    f"the {need:,} bytes it can hold (corrupt, or a decompression "
                    "bomb); re-export it"
                )


def _inflates_past(fh, offset, count, inflate, need):
    """Whether ``count`` compressed bytes at ``offset`` inflate to more than ``need``."""
    fh.seek(offset)
    size, pending, step = 0, b"", 1 << 20
    while not inflate.eof:
        # zlib hands back the input it did not use; LZMA keeps it and says so
        if not pending and getattr(inflate, "needs_input", True):
            pending = fh.read(min(count, step)) if count > 0 else b""
            if not pending:
                return False
            count -= len(pending)
        size += len(inflate.decompress(pending, max_length=min(need + 1 - size, step)))
        if size > need:
            return True
        pending = getattr(inflate, "unconsumed_tail", b"")
    return False


def _tiff_layout(axes, shape):
    """Sizes of the sample axis and of the non-singleton extra (stack) axes."""
    samples = shape[axes.index("S")] if "S" in axes else 1
    extra = [n for a, n in zip(axes, shape) if a not in "YXS" and n > 1]
    return samples, extra


def _check_tiff_layout(path, axes, shape, photometric, limit):
    if "Y" not in axes or "X" not in axes:
        raise EmsegError(
            f"{path} has TIFF axes {axes} without both Y and X; re-export it as an image"
        )
    samples, extra = _tiff_layout(axes, shape)
    if len(extra) > 1:
        raise EmsegError(
            f"{path} has TIFF axes {axes} with shape {tuple(shape)}: more than one stack "
            "axis; export a single 2-D image or one 3-D stack"
        )
    if samples not in (1, 2, 3, 4):
        raise EmsegError(
            f"{path} has {samples} samples per pixel; emseg reads grey, grey+alpha, RGB "
            "or RGBA: export those channels"
        )
    if photometric not in (0, 1, 2, 3, 6):  # MINISWHITE, MINISBLACK, RGB, PALETTE, YCBCR
        raise EmsegError(
            f"{path} has TIFF photometric interpretation {photometric}, which emseg "
            "does not read; convert it to grey or RGB"
        )
    height, width = shape[axes.index("Y")], shape[axes.index("X")]
    n_pixels = height * width * (extra[0] if extra else 1)
    size_text = f"{width}x{height}" + (f"x{extra[0]}" if extra else "")
    check_size(path, n_pixels, size_text, limit)


def _tiff_pixels(path, data, axes, photometric, colormap):
    """Reorder to (Z, H, W, C), split alpha off, and settle the dtype."""
    # stack axis first, then Y and X, then the samples; singleton axes dropped
    order = [i for i, a in enumerate(axes) if a not in "YXS"]
    order += [axes.index("Y"), axes.index("X")]
    if "S" in axes:
        order.append(axes.index("S"))
    data = np.transpose(data, order)
    letters = [axes[i] for i in order]
    keep = tuple(slice(None) if a in "YX" or n > 1 else 0 for a, n in zip(letters, data.shape))
    data = data[keep]
    is_stack = any(a not in "YXS" and n > 1 for a, n in zip(letters, data.shape))
    samples = data.shape[-1] if data.ndim == (4 if is_stack else 3) else 1

    if photometric == 3:  # PALETTE: indices into a (3, N) uint16 colour map
        if colormap is None or samples != 1:
            raise EmsegError(f"{path} is a palette TIFF without a colour map; re-export it")
        colormap = np.asarray(colormap)
        if colormap.max() <= 255:
            colormap = colormap.astype(np.uint8)
        elif not (colormap % 257).any():
            colormap = (colormap // 257).astype(np.uint8)
        index = np.clip(data.astype(np.intp), 0, colormap.shape[1] - 1)
        rgb = np.moveaxis(colormap[:, index], 0, -1)
        return np.ascontiguousarray(rgb), None, is_stack
    alpha = None
    if samples in (2, 4):
        alpha = np.ascontiguousarray(data[..., -1])
        data = data[..., 0] if samples == 2 else data[..., :3]
    data = _tiff_dtype(path, data)
    if photometric == 0:  # MINISWHITE: 0 is white
        data = _invert(data)
    return np.ascontiguousarray(data), alpha, is_stack


def _tiff_dtype(path, data):
    """uint8 / uint16 / float32, converting other dtypes without losing values."""
    dt = data.dtype
    if dt == bool:
        return data.astype(np.uint8) * np.uint8(255)
    if dt in (np.uint8, np.uint16, np.float32):
        return data
    if np.issubdtype(dt, np.floating):
        return to_float32(path, data)
    if np.issubdtype(dt, np.integer):
        if data.size and data.min() >= 0 and data.max() <= 255 and dt.itemsize == 1:
            return data.astype(np.uint8)
        if data.size and data.min() >= 0 and data.max() <= np.iinfo(np.uint16).max:
            return data.astype(np.uint16)
        return data.astype(np.float32)
    raise EmsegError(
        f"{path} has pixels of type {dt}, which emseg does not read; "
        "export 8- or 16-bit integers or 32-bit floats"
    )


def _invert(data):
    if data.dtype.kind == "u":
        return np.iinfo(data.dtype).max - data
    return data.max() - data


# --------------------------------------------------------------------------- writing


def write_tiff_stack(path, pages, *, dtype=np.float32, compress=False, overwrite=False):
    """Write ``pages`` (``(k, H, W)``, or one ``(H, W)`` page) as a multi-page TIFF of
    ``dtype`` (float32 unless told: label stacks are uint8 or uint16).

    Each leading index is one page (a ``(k, Z, H, W)`` array gives k*Z pages, with its
    shape recorded for tifffile). Uncompressed, or with ``compress`` deflate (zlib level
    1: every TIFF reader has it; measured on the four posterior pages of a 12 MP photo,
    0.14 s against 0.33 s at level 6 for a file a third larger); no timestamp, so the
    bytes depend only on the data.
    """
    path = os.fspath(path)
    try:
        arr = np.asarray(pages, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise EmsegError(
            f"cannot write {path}: pages are not a numeric array ({reason(exc)})"
        ) from None
    if arr.ndim < 2 or 0 in arr.shape:
        raise EmsegError(
            f"cannot write {path}: TIFF pages need shape (k, H, W) or (H, W), got {arr.shape}"
        )
    import tifffile

    with writing(path, overwrite) as tmp, open_temp(tmp) as f:
        tifffile.imwrite(
            f,
            np.ascontiguousarray(arr),
            photometric="minisblack",  # never read three pages as one RGB image
            software=False,
            datetime=None,
            compression="zlib" if compress else None,
            compressionargs={"level": 1} if compress else None,
        )
