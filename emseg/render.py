"""Pictures of a segmentation: pure functions from arrays to display arrays.

Nothing here reads or writes a file (that is :mod:`emseg.io`) or fits anything.
Labels are integer arrays with values ``0 .. k-1`` for the classes and ``-1`` for
background (pixels outside the mask, or transparent). Inputs are never modified.
"""

import colorsys

import cv2
import numpy as np

from ._errors import EmsegError

__all__ = [
    "boundaries",
    "label_image",
    "overlay",
    "palette",
    "posterior_pages",
    "segments",
    "to_display",
]

# Twelve well-separated colours for the first classes: matplotlib's tab10 without
# its grey and olive (which read as "no colour" over photos), plus four saturated
# colours from ColorBrewer's Set1/Paired that are far from those.
_BASE_COLORS = np.array(
    [
        (31, 119, 180),  # blue
        (255, 127, 14),  # orange
        (44, 160, 44),  # green
        (214, 39, 40),  # red
        (148, 103, 189),  # purple
        (23, 190, 207),  # cyan
        (227, 119, 194),  # pink
        (140, 86, 75),  # brown
        (255, 255, 51),  # yellow
        (0, 0, 128),  # navy
        (178, 223, 138),  # light green
        (128, 0, 0),  # maroon
    ],
    dtype=np.uint8,
)

_GOLDEN = 0.618033988749895


def palette(k):
    """``(k, 3)`` uint8 colours for classes ``0 .. k-1``; the same for the same ``k``.

    The first twelve are a fixed, hand-picked set; later ones step round the hue
    circle by the golden ratio, cycling through three saturation/brightness levels.
    ``palette(k)`` is the first ``k`` rows of ``palette(n)`` for any ``n >= k``.
    """
    k = _check_k(k, "k", minimum=0)
    colors = np.zeros((k, 3), dtype=np.uint8)
    n_base = min(k, len(_BASE_COLORS))
    colors[:n_base] = _BASE_COLORS[:n_base]
    levels = ((0.85, 0.95), (0.55, 0.8), (0.95, 0.6))  # (saturation, value)
    for i in range(n_base, k):
        j = i - len(_BASE_COLORS)
        hue = (0.07 + j * _GOLDEN) % 1.0
        sat, val = levels[j % len(levels)]
        rgb = colorsys.hsv_to_rgb(hue, sat, val)
        colors[i] = np.round(np.asarray(rgb) * 255)
    return colors


def to_display(pixels, *, valid=None):
    """8-bit RGB ``(H, W, 3)`` for showing grey ``(H, W)`` or RGB ``(H, W, 3)`` pixels.

    uint8 is shown as is. Other dtypes (uint16, float, ...) are stretched so that the
    0.5th and 99.5th percentiles (over all channels together, so colours keep their
    balance) map to 0 and 255, and clipped. ``valid`` (a bool mask of shape
    ``(H, W)``) restricts the percentiles to those pixels. NaN shows as black.
    """
    out = _display_values(pixels, valid)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return np.array(out, dtype=np.uint8, copy=True, order="C")


def _display_values(pixels, valid=None):
    """``to_display`` without the copy and without repeating grey into three channels:
    uint8 ``(H, W)`` or ``(H, W, 3)``, the input itself when it is uint8 already."""
    arr = np.asarray(pixels)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise EmsegError(
            f"pixels must have shape (H, W) or (H, W, 3) to display, got {arr.shape}; "
            "pass one slice of a stack at a time"
        )
    if arr.dtype == bool:
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating):
        return _stretch(arr, valid)
    raise EmsegError(f"pixels must be numeric to display, got dtype {arr.dtype}")


def _stretch(arr, valid):
    values = arr.astype(np.float64)
    sample = values
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != arr.shape[:2]:
            raise EmsegError(
                f"valid must have the image's shape {arr.shape[:2]}, got {valid.shape}"
            )
        sample = values[valid]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return np.zeros(arr.shape, dtype=np.uint8)
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if hi <= lo:  # (nearly) constant: fall back to the full range
        lo, hi = sample.min(), sample.max()
    if hi <= lo:  # constant: mid-grey
        out = np.full(arr.shape, 128, dtype=np.uint8)
    else:
        scaled = (values - lo) * (255.0 / (hi - lo))
        out = np.clip(np.rint(np.nan_to_num(scaled, nan=0.0)), 0, 255).astype(np.uint8)
    out[~np.isfinite(values)] = 0
    return out


def label_image(labels, k):
    """Labels as stored values: class ``i`` -> ``i``, background (-1) -> the dtype's max.

    uint8 (background 255) for ``k <= 255``, uint16 (background 65535) for larger k.
    """
    k = _check_k(k, "k", minimum=1)
    if k > 65535:
        raise EmsegError(f"k={k} classes do not fit a 16-bit label image; use k <= 65535")
    lab = _check_labels(labels, k)
    dtype = np.uint8 if k <= 255 else np.uint16
    table = np.append(np.arange(k), np.iinfo(dtype).max).astype(dtype)[:, None]
    return _paint(lab, table).reshape(lab.shape)


def boundaries(labels):
    """Bool mask of class boundaries, in-plane (the last two axes), one pixel wide.

    A pixel is on a boundary when a 4-neighbour in its plane has a lower label; so
    the line between two classes is drawn once, on the side of the higher label,
    and the line between a class and background (-1) on the class's side, never on
    background. This is ``skimage.segmentation.find_boundaries(mode="inner")``
    thinned to one side: "inner" and "thick" draw two-pixel lines between classes,
    which hide detail on busy segmentations, and treat label 0 as background.
    """
    lab = np.asarray(labels)
    if lab.ndim < 2:
        raise EmsegError(f"labels must be at least 2-D, got shape {lab.shape}")
    edge = np.zeros(lab.shape, dtype=bool)
    for axis in (-1, -2):
        first = np.moveaxis(lab, axis, -1)
        marks = np.moveaxis(edge, axis, -1)  # a view: writes land in edge
        left, right = first[..., :-1], first[..., 1:]
        marks[..., 1:] |= right > left
        marks[..., :-1] |= left > right
    return edge


def overlay(pixels, labels, k, *, alpha=0.45, draw_boundaries=True):
    """The class colours blended over the image: ``(H, W, 3)`` uint8.

    Each labelled pixel becomes ``(1 - alpha) * image + alpha * palette(k)[label]``;
    background pixels (label -1) keep the image's display colour exactly. With
    ``draw_boundaries``, class boundaries are drawn 1 px wide in white over dark
    pixels and black over light ones, never on background pixels.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise EmsegError(f"alpha must be between 0 and 1, got {alpha}")
    k = _check_k(k, "k", minimum=1)
    base = _display_values(pixels)
    lab = _check_labels(labels, k)
    if lab.shape != base.shape[:2]:
        raise EmsegError(
            f"labels have shape {lab.shape} but the image is {base.shape[:2]}; "
            "pass the labels of this image"
        )
    from ._render_kernels import blend

    # every (class, channel, value) blend, rounded to nearest as np.rint does
    alpha = float(alpha)
    blended = np.rint(
        (1.0 - alpha) * np.arange(256.0) + alpha * palette(k)[:, :, None].astype(np.float64)
    ).astype(np.uint8)
    base = np.ascontiguousarray(base.reshape(base.shape[:2] + (-1,)))
    return blend(base, np.ascontiguousarray(lab, dtype=np.int32), blended,
                 bool(draw_boundaries))


def segments(labels, class_colors):
    """Each pixel painted its class's colour, ``(H, W, 3)`` uint8; background black.

    ``class_colors`` is a ``(k, 3)`` uint8 array, e.g. each class's mean colour.
    """
    colors = np.asarray(class_colors)
    if colors.ndim != 2 or colors.shape[1] != 3 or colors.shape[0] < 1:
        raise EmsegError(f"class_colors must have shape (k, 3), got {colors.shape}")
    if colors.dtype != np.uint8:
        raise EmsegError(
            f"class_colors must be uint8, got {colors.dtype}; round and clip to 0-255 first"
        )
    lab = _check_labels(labels, colors.shape[0])
    # label -1 picks the appended black row
    table = np.vstack([colors, np.zeros((1, 3), np.uint8)])
    return _paint(lab, table).reshape(lab.shape + (3,))


def class_colors(display, labels, k):
    """Mean colour of each class's pixels in ``display`` ((..., 3) uint8): (k, 3) uint8.

    A class with no pixel gets black.
    """
    k = _check_k(k, "k", minimum=1)
    img = np.ascontiguousarray(display).reshape(-1, 1, 3)
    lab = _check_labels(labels, k).reshape(-1, 1)
    if img.shape[0] != lab.shape[0] or np.asarray(display).shape[-1] != 3:
        raise EmsegError(
            f"display {np.asarray(display).shape} and labels {np.shape(labels)} do not match"
        )
    out = np.zeros((k, 3), dtype=np.uint8)
    for i in range(k):
        mask = (lab == i).view(np.uint8)
        if mask.any():
            out[i] = np.clip(np.rint(cv2.mean(img, mask=mask)[:3]), 0, 255)
    return out


def posterior_pages(posteriors):
    """``(H, W, k)`` class probabilities -> ``(k, H, W)`` float32 pages (any leading axes)."""
    post = np.asarray(posteriors)
    if post.ndim < 3:
        raise EmsegError(
            f"posteriors must have shape (H, W, k), got {post.shape}"
        )
    return np.ascontiguousarray(np.moveaxis(post, -1, 0), dtype=np.float32)


def _paint(labels, table):
    """``table[labels]`` (label -1: the last row) as ``(labels.size, C)``, in one pass."""
    from ._render_kernels import paint

    return paint(np.ascontiguousarray(labels, dtype=np.int32).reshape(-1), table)


def _check_k(k, name, minimum):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < minimum:
        raise EmsegError(f"{name} must be an integer >= {minimum}, got {k!r}")
    return int(k)


def _check_labels(labels, k):
    lab = np.asarray(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raise EmsegError(f"labels must be integers, got dtype {lab.dtype}")
    if lab.size and (lab.min() < -1 or lab.max() >= k):
        raise EmsegError(
            f"labels must be -1 (background) or 0..{k - 1} for k={k}, "
            f"got values {lab.min()}..{lab.max()}"
        )
    return lab


def montage(pictures, columns=None, gap=2):
    """Tile equally sized ``(H, W, 3)`` uint8 pictures (e.g. overlays of several slices
    of a volume) into one image, row by row, ``gap`` black pixels apart."""
    pics = [np.asarray(p) for p in pictures]
    if not pics or any(p.shape != pics[0].shape or p.ndim != 3 for p in pics):
        raise EmsegError("montage needs one or more (H, W, 3) pictures of one size")
    n = len(pics)
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    h, w = pics[0].shape[:2]
    out = np.zeros((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), np.uint8)
    for i, p in enumerate(pics):
        r, c = divmod(i, columns)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = p
    return out


def representative_slices(n_slices, count=9):
    """Indices of ``count`` slices spread evenly through a volume (inner ones first
    and last, not the often-empty outermost)."""
    count = min(count, n_slices)
    return np.unique(np.linspace(0, n_slices - 1, count + 2)[1:-1].round().astype(int))
