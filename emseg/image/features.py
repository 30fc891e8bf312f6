"""Turn pixels into feature vectors, and find an image's distinct pixel values.

Features are a fixed function of the pixel value (and, with ``spatial > 0``, of its
position). Values are first mapped to 0..1 by the data's own range, never by what the
dtype could hold: ``(value - offset) / scale`` with ``offset`` the smallest value and
``scale`` the range of the pixels being fitted (one range for the three channels of a
colour image, so colours keep their balance; one per channel for co-registered
channels). A 16-bit microscope image using 0..235, its float32 copy, and the same
values times 1e-4 or plus 1000 therefore give the same features and the same labels.
The recipe, range included, is a :class:`FeatureSpec`, stored with a model so the same
model labels other images on the same scale.
"""

from dataclasses import asdict, dataclass, replace

import numpy as np

from .._shared.errors import EmsegError

COLOR_SPACES = ("auto", "gray", "rgb", "lab", "hsv", "channels")
# Rec. 709 luma weights, as skimage.color.rgb2gray uses.
_LUMA = np.array([0.2125, 0.7154, 0.0721])
_NAMES = {
    "gray": ("intensity",),
    "rgb": ("red", "green", "blue"),
    "lab": ("L/100", "a/100", "b/100"),
    "hsv": ("hue", "saturation", "value"),
}


@dataclass(frozen=True)
class FeatureSpec:
    """How pixels become features.

    ``color_space`` is one of gray, rgb, lab, hsv; ``spatial`` the weight of the pixel
    coordinates (divided by the image's longest side), 0 for none. ``offset`` and
    ``scale``: per input channel, the value mapped to 0 and the span mapped to 1 (see
    the module doc); empty until :meth:`with_range` sets them from the data.
    """

    color_space: str
    spatial: float = 0.0

    n_channels: int = 0  # for color_space "channels": how many co-registered channels
    offset: tuple = ()
    scale: tuple = ()

    def with_range(self, values):
        """This spec with ``offset`` and ``scale`` from (M, C) pixel values (no NaN)."""
        v = np.asarray(values)
        if self.color_space == "channels":
            low, high = v.min(axis=0), v.max(axis=0)
        else:  # grey, or one range for the three colour channels
            low, high = np.full(v.shape[1], v.min()), np.full(v.shape[1], v.max())
        low, high = low.astype(np.float64), high.astype(np.float64)
        span = high - low
        if not np.isfinite(span).all():
            raise EmsegError(
                f"pixel values span {low.min():g}..{high.max():g}, too wide for float64 "
                "arithmetic; rescale the image"
            )
        span[span == 0] = 1.0
        return replace(self, offset=tuple(low.tolist()), scale=tuple(span.tolist()))

    @property
    def names(self):
        if self.color_space == "channels":
            return tuple(f"channel {i}" for i in range(self.n_channels))
        return _NAMES[self.color_space]

    @property
    def value_only(self):
        """True when the features depend on the pixel value alone (histogram fitting)."""
        return self.spatial == 0

    def to_dict(self):
        return asdict(self) | {
            "offset": list(self.offset),
            "scale": list(self.scale),
            "names": list(self.names),
            "value_scale": "(value - offset) / scale, per channel, before any colour conversion",
            "lab_scale": "L, a and b divided by 100",
            "spatial_scale": "pixel index / longest side, times spatial",
        }


def split_channels(pixels, channel_axis="auto", multichannel=False):
    """Return ``(values, is_color, alpha)`` for an image array.

    ``values`` has the spatial shape plus a trailing channel axis of 1 (grey) or 3
    (colour); ``alpha`` is the alpha channel or None. With ``channel_axis="auto"`` a
    last axis of 3 or 4 on a 3-D array, or any 4-D array, holds colour channels;
    ``channel_axis=None`` forces a grey image or volume. With ``multichannel`` the
    channel axis (default the last) holds any number of co-registered channels, none of
    them alpha.
    """
    arr = np.asarray(pixels)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise EmsegError(f"image must be numeric, got dtype {arr.dtype}")
    if multichannel:
        arr = np.moveaxis(arr, -1 if channel_axis in ("auto", None) else channel_axis, -1)
        if arr.ndim not in (3, 4):
            raise EmsegError(
                f"a multi-channel image must be 2-D or 3-D plus channels, got {arr.shape}"
            )
        return arr, False, None
    if channel_axis == "auto":
        colored = arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))
    elif channel_axis is None:
        colored = False
    else:
        arr = np.moveaxis(arr, channel_axis, -1)
        colored = True
    if colored:
        channels = arr.shape[-1]
        if channels not in (1, 2, 3, 4):
            raise EmsegError(f"image has {channels} channels; expected grey, RGB or RGBA")
        alpha = arr[..., -1] if channels in (2, 4) else None
        values = arr[..., :3] if channels >= 3 else arr[..., :1]
        return values, channels >= 3, alpha
    if arr.ndim not in (2, 3):
        raise EmsegError(f"image must be 2-D or 3-D, got shape {arr.shape}")
    return arr[..., None], False, None


def resolve_color_space(color_space, is_color, multichannel=False):
    if color_space not in COLOR_SPACES:
        raise EmsegError(
            f"color_space must be one of {', '.join(COLOR_SPACES)}; got {color_space!r}"
        )
    if multichannel:
        if color_space not in ("auto", "channels"):
            raise EmsegError(
                f"color_space {color_space!r} is for grey or RGB images; co-registered "
                "channels use color_space 'channels' (or 'auto')"
            )
        return "channels"
    if color_space == "channels":
        raise EmsegError("color_space 'channels' needs a multi-channel input (--channels)")
    if color_space == "auto":
        return "lab" if is_color else "gray"
    return color_space


def scaled(values, spec, dtype=np.float64):
    """(M, C) pixel values mapped to 0..1 by the spec's range."""
    offset = np.asarray(spec.offset, dtype=dtype)
    scale = np.asarray(spec.scale, dtype=dtype)
    out = np.subtract(values, offset, dtype=dtype)
    out /= scale
    return out


def luminance(values, color_space=None):
    """Luminance of (M, 1) or (M, 3) pixel values, in the image's own units (only its
    order matters: classes are ranked darkest first). Co-registered channels
    (``color_space`` "channels", e.g. T1 and T2, however many) are ordered by the first,
    as FSL FAST does."""
    v = np.asarray(values, dtype=np.float64)
    return v @ _LUMA if v.shape[1] == 3 and color_space != "channels" else v[:, 0]


def value_features(values, spec):
    """Features of (M, C) pixel values (C = 1 or 3) for a value-only colour space."""
    color_space = spec.color_space
    if color_space in ("lab", "hsv"):
        return _converted(values, spec)
    v = scaled(values, spec)
    if color_space == "channels":
        return v
    if color_space == "gray":
        return v if v.shape[1] == 1 else (v @ _LUMA)[:, None]
    return v if v.shape[1] == 3 else np.repeat(v, 3, axis=1)


def _converted(values, spec):
    """Lab or HSV features through OpenCV's float32 conversion of the scaled RGB
    (values outside the spec's range, from a model applied to another image, clip)."""
    import cv2

    rgb = np.clip(scaled(values, spec, np.float32), 0.0, 1.0)
    if rgb.shape[1] == 1:
        rgb = np.repeat(rgb, 3, axis=1)
    if spec.color_space == "lab":
        out = cv2.cvtColor(rgb[None], cv2.COLOR_RGB2Lab)[0].astype(np.float64)
        out /= 100.0
        return out
    out = cv2.cvtColor(rgb[None], cv2.COLOR_RGB2HSV)[0].astype(np.float64)
    out[:, 0] /= 360.0
    return out


def spatial_features(shape, weight):
    """(N, ndim) pixel coordinates divided by the longest side, times ``weight``."""
    grids = np.indices(shape, dtype=np.float64).reshape(len(shape), -1).T
    return grids * (weight / max(max(shape) - 1, 1))


# From this many pixels on, a dense table of all 2**24 colours beats sorting them.
_DENSE_RGB_MIN = 1 << 20


def distinct_values(values):
    """Distinct rows of (N, C) pixel values.

    Returns ``(unique, counts, inverse)`` with ``unique[inverse] == values``, the rows
    of ``unique`` in ascending (lexicographic) order. 8-bit and
    16-bit grey and 8-bit colour use a bincount over the packed value (no sort);
    anything else a hash of each row's bits.
    """
    N, C = values.shape
    if values.dtype == np.uint8 and C == 3 and N < _DENSE_RGB_MIN:
        packed = (
            (values[:, 0].astype(np.int32) << 16)
            | (values[:, 1].astype(np.int32) << 8)
            | values[:, 2]
        )
        present, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
        unique = np.stack([present >> 16, (present >> 8) & 255, present & 255], 1)
        return unique.astype(np.uint8), counts.astype(np.float64), inverse.ravel()
    if values.dtype == np.uint8 and C == 3 and N < 2**31:
        from .._shared import kernels as _kernels

        bits = _kernels.rgb_bitmap(values)
        present, before = _kernels.bitmap_colours(bits)
        index = _kernels.bitmap_index(values, bits, before)
        counts = _kernels.count_index(index, present.size)
        unique = np.stack([present >> 16, (present >> 8) & 255, present & 255], 1)
        return unique.astype(np.uint8), counts, index
    if values.dtype in (np.uint8, np.uint16) and C == 1:
        bins = 256 if values.dtype == np.uint8 else 65536
        packed = values[:, 0]
        counts = np.bincount(packed, minlength=bins)
        present = np.flatnonzero(counts)
        index = np.zeros(bins, dtype=np.int32)
        index[present] = np.arange(present.size, dtype=np.int32)
        unique = present.astype(values.dtype)[:, None]
        if bins == 256:  # OpenCV's table lookup: 3x numpy's, which first copies to intp
            import cv2

            rows = cv2.LUT(np.ascontiguousarray(packed), index).reshape(-1)
        else:
            rows = index[packed]
        return unique, counts[present].astype(np.float64), rows
    from .._shared import kernels as _kernels

    view = np.ascontiguousarray(values)
    if view.dtype.itemsize in (1, 2, 4, 8):
        bits = view.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[view.dtype.itemsize])
    else:
        bits = view.astype(np.float64).view(np.uint64)
    first, counts, inverse = _kernels.distinct_rows_inverse(bits)
    unique = view[first]
    # sorted like the bincount path, so that one image in any dtype is fitted alike
    order = np.lexsort(unique.T[::-1])
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return unique[order], counts[order], rank[inverse]
