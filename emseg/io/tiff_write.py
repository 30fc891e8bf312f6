"""TIFF outputs: plain multi-page stacks, ImageJ hyperstacks and OME-TIFF.

:func:`write_tiff_stack` writes pages (uncompressed, or deflated) without a timestamp;
:func:`write_hyperstack` writes an array with named axes (T, Z, C, Y, X) as an ImageJ
hyperstack (what Fiji opens natively) or, with ``ome``, as OME-TIFF, with the
calibration of the input: voxel size and unit, and the interval between time points.
Both write into the temporary file of :func:`~emseg.io.atomic.writing`, so a target is
complete or absent.

ImageJ and OME-TIFF hold uint8, uint16 and float32 (and OME also other integers and
float64) but no float16: float16 and float64 maps are written as float32.
"""

import os

import numpy as np

from .._shared.errors import EmsegError
from .atomic import open_temp, reason, writing
from .tiff import unit_name

__all__ = ["HYPERSTACK_ORDER", "write_hyperstack", "write_tiff_stack"]

HYPERSTACK_ORDER = "TZCYX"  # ImageJ's order (TZCYXS); OME-TIFF is written in it too
# length units that OME names (UnitsLength) and emseg reports in this spelling
_OME_LENGTHS = ("pm", "Å", "nm", "µm", "mm", "cm", "m")
_HYPERSTACK_DTYPES = (np.uint8, np.uint16, np.float32)


def write_tiff_stack(path, pages, *, dtype=np.float32, compress=False, overwrite=False,
                     imagej=False, spacing=None, unit=None):
    """Write ``pages`` (``(k, H, W)``, or one ``(H, W)`` page) as a multi-page TIFF of
    ``dtype`` (float32 unless told: label stacks are uint8 or uint16).

    Each leading index is one page (a ``(k, Z, H, W)`` array gives k*Z pages, with its
    shape recorded for tifffile). Uncompressed, or with ``compress`` deflate (zlib level
    1: every TIFF reader has it; measured on the four posterior pages of a 12 MP photo,
    0.14 s against 0.33 s at level 6 for a file a third larger); no timestamp, so the
    bytes depend only on the data.

    ``imagej``: a ``(Z, H, W)`` stack is written as an ImageJ hyperstack (axes ZYX) that
    Fiji opens as a volume, calibrated when ``spacing`` ``(z, y, x)`` is given (in
    ``unit``, e.g. "µm"; the resolution tags and ImageJ's ``spacing`` and ``unit``);
    :func:`write_hyperstack` writes other axes.
    """
    path = os.fspath(path)
    arr = _as_array(path, pages, dtype)
    if arr.ndim < 2 or 0 in arr.shape:
        raise EmsegError(
            f"cannot write {path}: TIFF pages need shape (k, H, W) or (H, W), got {arr.shape}"
        )
    if imagej and arr.ndim == 3:
        write_hyperstack(path, arr, "ZYX", spacing=spacing, unit=unit, compress=compress,
                         overwrite=overwrite)
        return
    _imwrite(path, arr, overwrite, compress, photometric="minisblack")


def write_hyperstack(path, data, axes, *, spacing=None, unit=None, interval=None,
                     ome=False, compress=True, overwrite=False):
    """Write ``data``, whose axes are named by ``axes`` (letters of T, Z, C, Y, X, in any
    order, Y and X included), as an ImageJ hyperstack, or with ``ome`` as OME-TIFF.

    The axes are put in ImageJ's order T, Z, C, Y, X (OME-TIFF too: DimensionOrder
    XYCZT). ``spacing``: the voxel size, ``(z, y, x)`` or ``(y, x)``, in ``unit``
    ("µm", "nm"...; None: pixel units), written as the resolution tags and ImageJ's
    ``spacing`` and ``unit``, or OME's ``PhysicalSizeX/Y/Z`` with their units (OME
    names length units; in another unit the sizes are left out, as OME would read them
    as µm). ``interval``: ``(value, unit)`` between time points, ImageJ's
    ``finterval`` (seconds only) or OME's ``TimeIncrement``. Deflate level 1 with
    ``compress``; no timestamp. uint8, uint16 and float32 are written as they are,
    other dtypes as float32 (integers that fit, as uint16).
    """
    path = os.fspath(path)
    arr = np.asarray(data)
    if (len(axes) != arr.ndim or len(set(axes)) != len(axes)
            or not set(axes) <= set(HYPERSTACK_ORDER) or not {"Y", "X"} <= set(axes)):
        raise EmsegError(
            f"cannot write {path}: axes {axes!r} do not name the {arr.ndim} axes of an "
            f"array of shape {arr.shape} with letters of {HYPERSTACK_ORDER} (Y and X "
            "included)"
        )
    if 0 in arr.shape:
        raise EmsegError(f"cannot write {path}: an empty array of shape {arr.shape}")
    order = "".join(a for a in HYPERSTACK_ORDER if a in axes)
    arr = np.transpose(arr, [axes.index(a) for a in order])
    arr = _as_array(path, arr, _hyperstack_dtype(arr))
    keywords = {"photometric": "minisblack"}  # never three channels read as one RGB
    sizes = _sizes(spacing, order)
    if sizes:
        keywords["resolution"] = (1.0 / sizes["X"], 1.0 / sizes["Y"])
    unit = unit_name(unit)
    if ome:
        metadata = {"axes": order}
        if sizes and unit in _OME_LENGTHS:
            for axis, size in sizes.items():
                metadata[f"PhysicalSize{axis}"] = size
                metadata[f"PhysicalSize{axis}Unit"] = unit
        if interval is not None and "T" in order:
            metadata["TimeIncrement"] = float(interval[0])
            metadata["TimeIncrementUnit"] = str(interval[1])
        keywords.update(ome=True, metadata=metadata)
    else:
        metadata = {"axes": order}
        if sizes:
            if "Z" in sizes:
                metadata["spacing"] = sizes["Z"]
            if unit:
                metadata["unit"] = _imagej_unit(unit)
        if interval is not None and "T" in order and interval[1] == "s":
            metadata["finterval"] = float(interval[0])
        keywords.update(imagej=True, metadata=metadata)
    _imwrite(path, arr, overwrite, compress, **keywords)


def _sizes(spacing, order):
    """``{"Z": z, "Y": y, "X": x}`` from ``spacing`` for the axes in ``order``."""
    if spacing is None:
        return {}
    values = [float(v) for v in spacing]
    names = "ZYX"[-len(values):] if len(values) in (2, 3) else ""
    if not names or not all(v > 0 and np.isfinite(v) for v in values):
        return {}
    return {a: v for a, v in zip(names, values) if a in order}


def _hyperstack_dtype(arr):
    if arr.dtype in _HYPERSTACK_DTYPES:
        return arr.dtype
    if arr.dtype.kind in "ub" or (arr.dtype.kind == "i" and (arr.size == 0 or arr.min() >= 0)):
        if arr.size == 0 or arr.max() <= np.iinfo(np.uint16).max:
            return np.uint16
    return np.float32


def _as_array(path, data, dtype):
    try:
        return np.asarray(data, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise EmsegError(
            f"cannot write {path}: pages are not a numeric array ({reason(exc)})"
        ) from None


def _imwrite(path, arr, overwrite, compress, **keywords):
    import tifffile

    with writing(path, overwrite) as tmp, open_temp(tmp) as f:
        tifffile.imwrite(
            f,
            np.ascontiguousarray(arr),
            software=False,
            datetime=None,
            compression="zlib" if compress else None,
            compressionargs={"level": 1} if compress else None,
            **keywords,
        )


def _imagej_unit(unit):
    """``unit`` as ImageJ writes it in its ASCII description: "micron" for µm, other
    non-ASCII letters as ``\\uXXXX``."""
    unit = unit_name(unit)
    if unit == "µm":
        return "micron"
    return "".join(c if ord(c) < 128 else f"\\u{ord(c):04X}" for c in unit)
