"""TIFF: reading through tifffile, with the checks that keep a hostile file cheap.

Reading
    :func:`read_tiff` reads the first series of a TIFF (a multi-page TIFF is a 3-D
    stack) by the axes tifffile reports (:func:`_axis_roles`: ImageJ hyperstacks and
    OME-TIFF give Z, C, T, S by name), with the calibration ImageJ or OME metadata give
    (:func:`calibration`). Before any pixel is decoded it refuses pages of different sizes or types
    (:func:`_check_tiff_pages`), layouts emseg does not read and sizes above the pixel
    limit (:func:`_check_tiff_layout`), and deflate or LZMA strips that inflate past
    their size (:func:`_check_tiff_inflation`). Pixels keep their dtype when it is
    uint8, uint16 or float32; other dtypes are converted without losing values.
    Time points (T) are read only when the caller asks (``allow_time``: ``emseg run``
    segments each of them); the frame interval comes from ImageJ ``finterval`` or OME
    ``TimeIncrement`` (:func:`frame_interval`).

The writers (:func:`~emseg.io.tiff_write.write_tiff_stack`, ImageJ hyperstacks and
OME-TIFF) live in :mod:`.tiff_write`.
"""

import math
import re
import zlib
from typing import NamedTuple

import numpy as np

from .._shared.errors import EmsegError
from .atomic import reason
from .checks import check_size, log_as_warnings, to_float32

__all__ = ["TiffImage", "calibration", "frame_interval", "is_tiff", "read_tiff", "unit_name"]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


# --------------------------------------------------------------------------- reading


def is_tiff(head):
    """True when a file's first bytes ``head`` are a TIFF's (classic or BigTIFF)."""
    return head[:4] in _TIFF_MAGIC


class TiffImage(NamedTuple):
    """What :func:`read_tiff` found: pixels in emseg's (Z, Y, X[, C]) layout and what
    the file says about them."""

    pixels: np.ndarray  # ([T,] Z, H, W[, C]) or ([T,] H, W[, C])
    alpha: np.ndarray | None
    is_stack: bool  # a Z axis (a volume, or a plain multi-page stack)
    channels: bool  # the last axis holds co-registered channels (the C axis), not RGB
    spacing: tuple | None  # (z, y, x) or (y, x) in ``unit``, when the file is calibrated
    unit: str | None  # the unit of ``spacing``, when the file names one
    axes: str  # one line: the file's axes and what each was read as
    time_points: int | None = None  # the T axis (leading in ``pixels``), when read
    interval: tuple | None = None  # (seconds or the file's unit, unit) between time points


def read_tiff(path, limit, *, allow_time=False):
    """Read the first series of the TIFF at ``path`` into a :class:`TiffImage`; its
    size is checked against ``limit`` before decoding.

    The axes tifffile reports (ImageJ hyperstacks, OME-TIFF, tifffile's own shaped
    files) are read by letter: Z is a volume, C co-registered channels (the last axis,
    as ``--channels``), S colour samples, Y and X the plane, axes of size 1 dropped;
    one unnamed page axis (a plain multi-page TIFF) is a Z stack. With ``allow_time``,
    T (time points) is kept as the leading axis of ``pixels`` (``time_points`` says how
    many); without, more than one time point is refused with the fix. A second stack
    axis, channels together with colour samples, and unnamed axes beside a named one
    are refused with the fix. The calibration comes from the ImageJ
    ``spacing``/``unit`` and resolution tags, or OME ``PhysicalSize*``.
    """
    import tifffile

    try:
        with log_as_warnings(path, "tifffile", "tifffile"), tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise EmsegError(f"{path} is a TIFF file with no image in it; re-export it")
            _check_tiff_pages(path, tif.series)
            if tif.is_ome:
                _check_ome_images(path, tif.series)
            series = tif.series[0]
            page = series.keyframe
            axes, shape = series.axes, tuple(series.shape)
            photometric = int(page.photometric)
            colormap = page.colormap
            roles = _check_tiff_layout(path, axes, shape, photometric, limit, allow_time)
            _check_tiff_inflation(path, tif.filehandle, series)
            kind = "OME-TIFF" if tif.is_ome else "ImageJ" if tif.is_imagej else "TIFF"
            spacing, unit = calibration(tif, page)
            interval = frame_interval(tif) if "T" in roles else None
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
    pixels, alpha, is_stack = _tiff_pixels(path, data, roles, photometric, colormap)
    channels = "C" in roles
    if spacing is not None:
        spacing = spacing if is_stack else spacing[1:]
        if unit is None and all(v == 1 for v in spacing):
            spacing = None
    note = _axes_note(kind, axes, shape, roles, spacing, unit, interval)
    time_points = shape[roles.index("T")] if "T" in roles else None
    return TiffImage(pixels, alpha, is_stack, channels, spacing, unit, note, time_points,
                     interval)


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


def _check_ome_images(path, series):
    """Refuse an OME-TIFF that holds several images (positions, wells): emseg would
    read the first and drop the others silently."""
    images = [s for s in series if not getattr(s.keyframe, "is_reduced", False)]
    if len(images) > 1:
        raise EmsegError(
            f"{path} is an OME-TIFF holding {len(images)} images (series); emseg reads "
            "one: save each image as its own file (Fiji: Bio-Formats, open each series) "
            "and segment them with emseg batch"
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


_ROLE_NAMES = {"Z": "slices", "C": "channels", "S": "colour samples", "T": "time points"}


def _axis_roles(path, axes, shape, allow_time=False):
    """Each axis's role: ``Z`` (the volume), ``C`` (channels), ``S`` (colour samples),
    ``T`` (time points, with ``allow_time``), ``Y``, ``X``, or ``""`` (size 1:
    dropped)."""
    where = f"{path} has TIFF axes {axes} with shape {tuple(shape)}"
    roles = []
    for letter, n in zip(axes, shape):
        if letter in "YX" or (letter == "S" and n > 1):
            roles.append(letter)
        elif n == 1:
            roles.append("")
        elif letter in "ZC":
            roles.append(letter)
        elif letter == "T" and allow_time:
            roles.append("T")
        elif letter == "T":
            raise EmsegError(
                f"{where}: {n} time points (T), where one image or volume is expected; "
                "segment the time series with emseg run (each time point, --shared-model "
                "for one model over all), or save each time point as its own file (Fiji: "
                "Image > Hyperstacks > Reduce Dimensionality)"
            )
        else:
            roles.append("?")
    unnamed = [i for i, r in enumerate(roles) if r == "?"]
    if len(unnamed) == 1 and "Z" not in roles:
        roles[unnamed[0]] = "Z"  # the pages of a plain multi-page TIFF: a stack
    elif unnamed:
        letters = ", ".join(f"{axes[i]} ({shape[i]})" for i in unnamed)
        raise EmsegError(
            f"{where}: more than one stack axis, and {letters} is not named Z, C or T; "
            "save it as an ImageJ hyperstack or OME-TIFF with named axes, or export a "
            "single 2-D image or one 3-D stack"
        )
    for role in "ZCT":
        if roles.count(role) > 1:
            raise EmsegError(
                f"{where}: more than one {_ROLE_NAMES[role]} axis; export a single 2-D "
                "image or one 3-D stack"
            )
    samples = shape[axes.index("S")] if "S" in axes else 1
    if "C" in roles and samples > 1:
        raise EmsegError(
            f"{where}: both channels (C) and {samples} colour samples per pixel (S); "
            "emseg reads one or the other: save the channels as grey (Fiji: Image > "
            "Type > 8-bit or 16-bit) or the image as plain RGB"
        )
    return roles


def _check_tiff_layout(path, axes, shape, photometric, limit, allow_time=False):
    """Refuse what emseg cannot read before decoding; return each axis's role."""
    if "Y" not in axes or "X" not in axes:
        raise EmsegError(
            f"{path} has TIFF axes {axes} without both Y and X; re-export it as an image"
        )
    roles = _axis_roles(path, axes, shape, allow_time)
    samples = shape[axes.index("S")] if "S" in axes else 1
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
    if photometric == 3 and "C" in roles:
        raise EmsegError(
            f"{path} is a palette TIFF with channels (axes {axes}); save the channels "
            "as grey"
        )
    size = dict(zip(roles, shape))
    depth, n_channels, n_times = size.get("Z", 1), size.get("C", 1), size.get("T", 1)
    n_pixels = size["Y"] * size["X"] * depth * n_channels * n_times
    size_text = f"{size['X']}x{size['Y']}" + (f"x{depth}" if "Z" in size else "")
    if n_channels > 1:
        size_text += f" with {n_channels} channels"
    if n_times > 1:
        size_text += f" at {n_times} time points"
    check_size(path, n_pixels, size_text, limit)
    return roles


def _tiff_pixels(path, data, roles, photometric, colormap):
    """Reorder to ([T,] Z, H, W[, C or S]), split alpha off, and settle the dtype."""
    order = [roles.index(r) for r in "TZYXCS" if r in roles]
    data = np.transpose(data[tuple(0 if r == "" else slice(None) for r in roles)],
                        [sorted(order).index(i) for i in order])
    is_stack = "Z" in roles
    if "C" in roles:
        data = _tiff_dtype(path, data)
        if photometric == 0:
            data = _invert(data)
        return np.ascontiguousarray(data), None, is_stack
    samples = data.shape[-1] if "S" in roles else 1

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


# --------------------------------------------------------------------------- calibration

# lengths in micrometres, for OME units and ImageJ's unit names
_MICRONS = {"pm": 1e-6, "Å": 1e-4, "nm": 1e-3, "µm": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}
_UNIT_SPELLINGS = {"micron": "µm", "microns": "µm", "um": "µm", "μm": "µm",
                   "angstrom": "Å", "nanometer": "nm",
                   "millimeter": "mm", "centimeter": "cm", "meter": "m"}


def unit_name(name):
    """A unit name as ImageJ or OME writes it (``micron``, ``um``, ``\\u00B5m``...), in the
    spelling emseg reports (``µm``); None for None or an empty name."""
    if name is None:
        return None
    name = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)),
                  str(name).strip())  # ImageJ escapes non-ASCII letters
    return _UNIT_SPELLINGS.get(name.lower(), name) or None


def calibration(tif, page):
    """(spacing, unit) that an ImageJ or OME-TIFF file declares: spacing ``(z, y, x)``
    in ``unit``, or ``(None, None)`` for a file that declares none (a plain TIFF's
    resolution tags are print resolution, not a pixel size, and are ignored).

    ImageJ: x and y from the XResolution / YResolution tags (pixels per unit), z from
    the description's ``spacing`` (1 when absent, ImageJ's default), the unit from its
    ``unit``. OME: ``PhysicalSizeX/Y/Z`` of the first image, in their units (µm when
    unnamed), converted to one unit when they differ; a missing Z size is X's.
    """
    if tif.is_ome:
        return _ome_calibration(tif.ome_metadata)
    if not tif.is_imagej:
        return None, None
    meta = tif.imagej_metadata or {}
    sizes = []
    for tag in ("YResolution", "XResolution"):
        value = page.tags.get(tag)
        num, den = value.value if value is not None else (1, 1)
        sizes.append(den / num if num and den else 1.0)
    z = meta.get("spacing", 1.0)
    try:
        z = float(z)
    except (TypeError, ValueError):
        z = 1.0
    spacing = (z if z > 0 and math.isfinite(z) else 1.0, *sizes)
    unit = unit_name(meta.get("unit"))
    if unit in ("pixel", "pixels"):
        unit = None
    return spacing, unit


def _ome_pixels(xml):
    """The first ``Pixels`` element of OME-XML (its sizes, units, time increment), or
    None when the XML does not parse or has none."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    return next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)


def _ome_calibration(xml):
    pixels = _ome_pixels(xml)
    if pixels is None:
        return None, None
    sizes, units = {}, {}
    for axis in "XYZ":
        value = pixels.get(f"PhysicalSize{axis}")
        try:
            value = float(value) if value is not None else None
        except ValueError:
            value = None
        if value is not None and value > 0 and math.isfinite(value):
            sizes[axis] = value
            units[axis] = unit_name(pixels.get(f"PhysicalSize{axis}Unit")) or "µm"
    if not sizes:
        return None, None
    if len(set(units.values())) > 1:
        if not all(u in _MICRONS for u in units.values()):
            return None, None
        sizes = {a: v * _MICRONS[units[a]] for a, v in sizes.items()}
        units = dict.fromkeys(units, "µm")
    first = next(iter(sizes))
    x = sizes.get("X", sizes.get("Y", sizes[first]))
    y = sizes.get("Y", x)
    return (sizes.get("Z", x), y, x), units[first]


def _axes_note(kind, axes, shape, roles, spacing, unit, interval=None):
    """One line for the report: the file's axes and what each was read as."""
    read = []
    for letter, n, role in zip(axes, shape, roles):
        if role in ("Y", "X"):
            continue
        what = "dropped (size 1)" if role == "" else f"{n} {_ROLE_NAMES[role]}"
        if role == "Z" and letter != "Z":
            what += " (a stack, read as Z)"
        if role == "T":
            what += " (each segmented)"
            if interval is not None:
                what += f", {interval[0]:g} {interval[1]} apart"
        read.append(f"{letter}: {what}")
    text = f"{kind} axes {axes} {tuple(shape)}: " + ", ".join(read + ["Y, X: the plane"])
    if spacing is not None:
        names = "z, y, x" if len(spacing) == 3 else "y, x"
        values = " x ".join(f"{v:g}" for v in spacing)
        text += f"; spacing ({names}) {values}{' ' + unit if unit else ''}"
    return text


def frame_interval(tif):
    """``(interval, unit)`` between time points that an ImageJ or OME-TIFF file
    declares, or None: ImageJ's ``finterval`` (seconds), OME's ``TimeIncrement`` in
    ``TimeIncrementUnit`` (seconds when unnamed)."""
    value, unit = None, "s"
    if tif.is_ome:
        pixels = _ome_pixels(tif.ome_metadata)
        if pixels is not None:
            value = pixels.get("TimeIncrement")
            unit = pixels.get("TimeIncrementUnit") or "s"
    elif tif.is_imagej:
        value = (tif.imagej_metadata or {}).get("finterval")
    try:
        value = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    if value is None or not (value > 0 and math.isfinite(value)):
        return None
    return value, unit


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
