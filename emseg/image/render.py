"""Pictures of a segmentation: pure functions from arrays to display arrays.

Nothing here reads or writes a file (that is :mod:`emseg.io.images`) or fits anything.
Labels are integer arrays with values ``1 .. k`` for the classes (darkest first) and
``0`` for background (pixels outside the mask, or transparent), the convention of FSL
FAST, ANTs Atropos, ITK-SNAP and napari. Inputs are never modified.
"""

import concurrent.futures

import cv2
import numpy as np

from .._shared.errors import EmsegError

__all__ = [
    "boundaries",
    "boundary_width",
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
    """``(k, 3)`` uint8 colours: row ``i`` for class (label) ``i + 1``; the same for the
    same ``k``.

    The first twelve are a fixed, hand-picked set; later ones step round the hue
    circle by the golden ratio, cycling through three saturation/brightness levels.
    ``palette(k)`` is the first ``k`` rows of ``palette(n)`` for any ``n >= k``.

    The colours are computed once, in O(k) array operations, and kept: the result is a
    read-only view, so ``palette(k)[i]`` inside a loop over the classes costs O(1)
    rather than O(k) (10,000 classes once took minutes per image). Copy it to change it.
    """
    global _PALETTE
    k = _check_k(k, "k", minimum=0)
    if k > _PALETTE.shape[0]:
        _PALETTE = _make_palette(max(k, 2 * _PALETTE.shape[0]))
        _PALETTE.flags.writeable = False
    return _PALETTE[:k]


def _make_palette(k):
    """The first ``k`` palette colours, all at once (``colorsys.hsv_to_rgb``'s
    arithmetic on arrays, so each colour is exactly what colorsys gives)."""
    colors = np.zeros((k, 3), dtype=np.uint8)
    n_base = min(k, len(_BASE_COLORS))
    colors[:n_base] = _BASE_COLORS[:n_base]
    j = np.arange(k - n_base, dtype=np.float64)
    hue = (0.07 + j * _GOLDEN) % 1.0
    levels = np.array([(0.85, 0.95), (0.55, 0.8), (0.95, 0.6)])  # (saturation, value)
    sat, val = levels[np.arange(k - n_base) % 3].T
    sector = (hue * 6.0).astype(np.int64)  # as colorsys: i = int(h * 6.0), f = h * 6 - i
    f = hue * 6.0 - sector
    p = val * (1.0 - sat)
    q = val * (1.0 - sat * f)
    t = val * (1.0 - sat * (1.0 - f))
    sector %= 6
    choices = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)]
    rgb = np.zeros((k - n_base, 3))
    for i, channels in enumerate(choices):
        rows = sector == i
        for c in range(3):
            rgb[rows, c] = channels[c][rows]
    colors[n_base:] = np.round(rgb * 255)
    return colors


_PALETTE = np.zeros((0, 3), dtype=np.uint8)


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
    """Labels as stored values: class ``i`` -> ``i`` (1..k), background -> 0.

    uint8 for ``k <= 255``, uint16 for larger k.
    """
    k = _check_k(k, "k", minimum=1)
    if k > 65535:
        raise EmsegError(f"k={k} classes do not fit a 16-bit label image; use k <= 65535")
    lab = _check_labels(labels, k)
    return lab.astype(np.uint8 if k <= 255 else np.uint16, order="C")


def boundaries(labels, width=1):
    """Bool mask of class boundaries, in-plane (the last two axes), ``width`` pixels wide.

    A pixel is on a boundary when a 4-neighbour in its plane has a lower label; so
    the line between two classes is drawn once, on the side of the higher label,
    and the line between a class and background (0) on the class's side, never on
    background. This is ``skimage.segmentation.find_boundaries(mode="inner")``
    thinned to one side: "inner" and "thick" draw two-pixel lines between classes,
    which hide detail on busy segmentations. With ``width`` w > 1, a pixel is on a
    boundary when a lower label lies within (Euclidean) distance w of it (the disc of
    radius w, whose w = 1 case is the 4-neighbour cross), so the line is w pixels
    wide in every direction, still on the higher label's side.
    """
    lab = np.asarray(labels)
    if lab.ndim < 2:
        raise EmsegError(f"labels must be at least 2-D, got shape {lab.shape}")
    width = _check_k(width, "width", minimum=1)
    if width > 1:
        return _wide_boundaries(lab, width)
    edge = np.zeros(lab.shape, dtype=bool)
    for axis in (-1, -2):
        first = np.moveaxis(lab, axis, -1)
        marks = np.moveaxis(edge, axis, -1)  # a view: writes land in edge
        left, right = first[..., :-1], first[..., 1:]
        marks[..., 1:] |= right > left
        marks[..., :-1] |= left > right
    return edge


def _wide_boundaries(lab, width):
    """:func:`boundaries` for ``width`` > 1: each plane's labels compared with their
    erosion (minimum over the disc); erode's default border never counts pixels
    outside the image."""
    edge = np.zeros(lab.shape, dtype=bool)
    if not lab.size:
        return edge
    lo, hi = int(lab.min()), int(lab.max())
    dtype = np.uint8 if lo >= 0 and hi <= 255 else (
        np.uint16 if lo >= 0 and hi <= 65535 else np.float64)
    disc = _disc(width)
    planes = lab.reshape((-1,) + lab.shape[-2:])
    marks = edge.reshape(planes.shape)
    for plane, mark in zip(planes, marks):
        values = np.ascontiguousarray(plane, dtype=dtype)
        np.less(cv2.erode(values, disc), values, out=mark)
    return edge


def _disc(width):
    """The structuring element of boundaries ``width`` px wide: the pixels within
    Euclidean distance ``width`` of the centre, uint8 (width 1: the 4-neighbour cross)."""
    return (np.hypot(*np.mgrid[-width : width + 1, -width : width + 1]) <= width).astype(
        np.uint8)


# Boundary lines are 1 px wide up to this many pixels per unit of width squared
# (see boundary_width): 1 px below about 6.75 MP, 2 px from there to 18.75 MP
# (a 12 MP photo), 3 px to 36.75 MP, ...
_PIXELS_PER_WIDTH_SQUARED = 3_000_000


def boundary_width(shape):
    """Boundary width in pixels that reads the same on screen for a picture of
    ``shape`` (its first two axes, ``(H, W)``): ``round(sqrt(H * W / 3 MP))``, at least 1.

    Pictures are looked at scaled to fit a screen about 1,500-2,000 pixels wide: a
    1-px line on a 12 MP photo (4,000 x 3,000) is shown half a pixel wide and fades,
    so it gets 2 px; anything up to ~6.7 MP (and every slice of a usual volume)
    keeps 1 px. The rule goes with the square root of the pixel count so that a
    picture and the same picture rotated get the same width.
    """
    h, w = (int(n) for n in shape[:2])
    return max(1, int(np.floor(np.sqrt(h * w / _PIXELS_PER_WIDTH_SQUARED) + 0.5)))


def overlay(pixels, labels, k, *, alpha=0.45, draw_boundaries=True, boundary_width=1):
    """The class colours blended over the image: ``(H, W, 3)`` uint8.

    Each labelled pixel becomes ``(1 - alpha) * image + alpha * palette(k)[label - 1]``;
    background pixels (label 0) keep the image's display colour exactly. With
    ``draw_boundaries``, class boundaries (:func:`boundaries` of ``boundary_width``
    pixels; :func:`boundary_width` gives one for the picture's size) are drawn in
    white over dark blended pixels and black over light ones, never on background.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise EmsegError(f"alpha must be between 0 and 1, got {alpha}")
    k = _check_k(k, "k", minimum=1)
    width = _check_k(boundary_width, "boundary_width", minimum=1)
    base = _display_values(pixels)
    lab = _check_labels(labels, k)
    if lab.shape != base.shape[:2]:
        raise EmsegError(
            f"labels have shape {lab.shape} but the image is {base.shape[:2]}; "
            "pass the labels of this image"
        )
    alpha, draw_boundaries = float(alpha), bool(draw_boundaries)
    blended = _blends(k, alpha)
    if base.ndim == 2 and k <= _MAX_CODED_K:
        out = np.empty(lab.shape + (3,), dtype=np.uint8)
        if out.size:
            _overlay_grey(base, lab, blended, draw_boundaries and width, out)
        return out
    # colour, or many classes: the compiled kernel (colour images load numba anyway)
    from ._render_kernels import blend

    base = np.ascontiguousarray(base.reshape(base.shape[:2] + (-1,)))
    wide = draw_boundaries and width > 1  # the kernel draws 1-px boundaries only
    out = blend(base, np.ascontiguousarray(lab, dtype=np.int32), blended,
                draw_boundaries and not wide)
    if wide and out.size:
        from ._edge_kernels import mark

        mark(out, boundaries(lab, width))
    return out


def segments(labels, class_colors):
    """Each pixel painted its class's colour, ``(H, W, 3)`` uint8; background black.

    ``class_colors`` is a ``(k, 3)`` uint8 array (row ``i`` for label ``i + 1``), e.g.
    each class's mean colour.
    """
    colors = np.asarray(class_colors)
    if colors.ndim != 2 or colors.shape[1] != 3 or colors.shape[0] < 1:
        raise EmsegError(f"class_colors must have shape (k, 3), got {colors.shape}")
    if colors.dtype != np.uint8:
        raise EmsegError(
            f"class_colors must be uint8, got {colors.dtype}; round and clip to 0-255 first"
        )
    lab = _check_labels(labels, colors.shape[0])
    # label 0 (background) picks the black row in front
    table = _pack_rgb(np.vstack([np.zeros((1, 3), np.uint8), colors]))
    return _paint(lab, table)


def class_colors(display, labels, k):
    """Mean colour of each class's pixels in ``display`` ((..., 3) uint8): (k, 3) uint8,
    row ``i`` for label ``i + 1``. A class with no pixel gets black.
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
        mask = (lab == i + 1).view(np.uint8)
        if mask.any():
            out[i] = np.clip(np.rint(cv2.mean(img, mask=mask)[:3]), 0, 255)
    return out


PROBABILITY_DTYPES = ("uint8", "float16", "float32")


def posterior_pages(posteriors, dtype="float32"):
    """``(H, W, k)`` class probabilities -> ``(k, H, W)`` pages (any leading axes) of
    ``dtype``: "float32", "float16", or "uint8" (probability x 255, rounded: within
    1/510 of the value, a quarter of float32's size before compression)."""
    post = np.asarray(posteriors)
    if post.ndim < 3:
        raise EmsegError(
            f"posteriors must have shape (H, W, k), got {post.shape}"
        )
    if dtype not in PROBABILITY_DTYPES:
        raise EmsegError(f"dtype must be one of {', '.join(PROBABILITY_DTYPES)}, got {dtype!r}")
    pages = np.moveaxis(post, -1, 0)
    if dtype == "uint8":
        scaled = np.multiply(pages, 255.0, dtype=np.float32)
        np.clip(scaled, 0, 255, out=scaled)
        return np.rint(scaled, out=scaled).astype(np.uint8)
    return np.ascontiguousarray(pages, dtype=dtype)


# The pictures are drawn a strip of about this many pixels at a time, so that every
# temporary is strip-sized: allocated once, reused while it is in cache. Image-sized
# temporaries cost more in first touches of fresh memory than the arithmetic does, and
# numpy's gathers (np.take) make an intp copy of their indices.
_STRIP = 1 << 17
# Strips a thread gets at least when a picture is drawn in parallel bands: with fewer
# (a 1-megapixel picture on 2 cores), starting threads and their contention with
# OpenCV's own cost as much as they save.
_BAND_STRIPS = 8

# Grey overlays look pixels up in a table indexed by a uint8 code per pixel: 0 for
# background, c for class c, k + c for class c on a boundary, so 2k + 1 codes.
_MAX_CODED_K = 127

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _in_bands(size, step, draw):
    """Call ``draw(start, stop)`` on contiguous bands that cover ``range(size)``, each a
    whole number of ``step``s: one band per thread OpenCV may use (``cv2.setNumThreads``),
    in parallel, since numpy and OpenCV release the GIL while they work."""
    steps = -(-size // step)
    n = max(1, min(cv2.getNumThreads(), steps // _BAND_STRIPS))
    if n == 1:
        draw(0, size)
        return
    cuts = [min(size, steps * i // n * step) for i in range(n + 1)]
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        for band in [pool.submit(draw, a, b) for a, b in zip(cuts, cuts[1:])]:
            band.result()


def _paint(labels, table):
    """``table[labels]`` for a packed-RGB ``table`` (:func:`_pack_rgb`):
    ``labels.shape + (3,)`` uint8."""
    flat = labels.reshape(-1)
    out = np.empty((flat.size, 3), dtype=np.uint8)

    def draw(start, stop):
        packed = np.empty(min(_STRIP, stop - start), dtype="<u4")
        for at in range(start, stop, _STRIP):
            part = flat[at : min(stop, at + _STRIP)]
            n = part.size
            # labels are checked: "wrap" never wraps; "raise" would also buffer the output
            np.take(table, part, out=packed[:n], mode="wrap")
            _unpack_rgb(packed[:n].reshape(1, n), out[at : at + n].reshape(1, n, 3))

    _in_bands(flat.size, _STRIP, draw)
    return out.reshape(labels.shape + (3,))


def _pack_rgb(colors):
    """``(..., 3)`` uint8 colours as little-endian uint32 ``r | g << 8 | b << 16``, so
    that one np.take moves a whole colour; :func:`_unpack_rgb` undoes it."""
    c = colors.astype(np.uint32)
    return (c[..., 0] | c[..., 1] << 8 | c[..., 2] << 16).astype("<u4", copy=False)


def _unpack_rgb(packed, out):
    """Write the ``(h, w)`` packed colours into ``out``, an ``(h, w, 3)`` uint8 array."""
    h, w = packed.shape
    cv2.cvtColor(packed.view(np.uint8).reshape(h, w, 4), cv2.COLOR_RGBA2RGB, dst=out)


def _is_dark(c0, c1, c2):
    """Whether boundary pixels over colour ``(c0, c1, c2)`` are drawn white (else black):
    its luma, in float64 and summed in this order, is below 128."""
    return 0.299 * c0 + 0.587 * c1 + 0.114 * c2 < 128.0


def _strip_rows(width):
    """Rows in a strip of a picture ``width`` pixels wide."""
    return max(1, _STRIP // width)


def _codes(labels, k, draw_boundaries, start, stop):
    """Yield ``(rows, code)`` for strips of rows ``start .. stop - 1``: ``code`` is the
    uint8 code (0 background, c class c, k + c class c on a boundary) of
    ``labels[rows]``, for k <= 127.

    A labelled pixel is on a boundary when a 4-neighbour in the image has a lower label,
    background included (as :func:`boundaries`): when the minimum over the pixel's
    cross, cv2.erode's, is below the pixel; erode's default border lets pixels outside
    the image never count. ``draw_boundaries`` may be a width w > 1 (True is 1): then
    the minimum is over the disc of radius w (:func:`boundaries` of width w).
    ``code`` is a view of a buffer that the next strip overwrites.
    """
    H, W = labels.shape
    rows = _strip_rows(W)
    width = int(draw_boundaries)
    shape = _CROSS if width <= 1 else _disc(width)
    reach = max(width, 1)  # rows of context on each side
    shifted = np.empty((min(rows, stop - start) + 2 * reach, W), dtype=np.uint8)
    for y0 in range(start, stop, rows):
        y1 = min(stop, y0 + rows)
        top, bottom = max(y0 - reach, 0), min(y1 + reach, H)
        near = shifted[: bottom - top]
        np.copyto(near, labels[top:bottom], casting="unsafe")  # checked: 0..k <= 127
        code = near[y0 - top : y1 - top]
        if draw_boundaries:
            lowest = cv2.erode(near, shape)[y0 - top : y1 - top]
            on_edge = cv2.compare(lowest, code, cv2.CMP_LT)  # 255 or 0
            code += np.bitwise_and(on_edge, k, out=on_edge)
        yield slice(y0, y1), code


def _overlay_grey(grey, labels, blended, draw_boundaries, out):
    """:func:`overlay` of a grey ``(H, W)`` uint8 image into ``out``: one lookup per
    pixel, in a table of packed colours indexed by ``code * 256 + grey value``."""
    k = len(blended)
    colors = np.empty((2 * k + 1, 256, 3), dtype=np.uint8)
    colors[0] = np.arange(256)[:, None]  # background: the grey value itself
    colors[1 : k + 1] = blended.transpose(0, 2, 1)
    mark = _is_dark(*(colors[1 : k + 1, :, i].astype(np.float64) for i in range(3)))
    colors[k + 1 :] = np.where(mark, 255, 0)[..., None]
    table = _pack_rgb(colors).reshape(-1)
    H, W = labels.shape
    rows = _strip_rows(W)

    def draw(start, stop):
        size = (min(rows, stop - start), W)
        index = np.empty(size + (2,), dtype=np.uint8)  # little-endian value + 256 * code
        packed = np.empty(size, dtype="<u4")
        for at, code in _codes(labels, k, draw_boundaries, start, stop):
            h = len(code)
            cv2.merge([grey[at], code], dst=index[:h])
            np.take(table, index[:h].view("<u2")[..., 0], out=packed[:h], mode="wrap")
            _unpack_rgb(packed[:h], out[at])

    _in_bands(H, rows, draw)


def _blends(k, alpha):
    """``(k, 3, 256)`` uint8: channel ``i`` of class ``c``'s colour blended over the value
    ``v``, ``(1 - alpha) * v + alpha * palette(k)[c, i]`` rounded as np.rint does."""
    return np.rint(
        (1.0 - alpha) * np.arange(256.0) + alpha * palette(k)[:, :, None].astype(np.float64)
    ).astype(np.uint8)


def _check_k(k, name, minimum):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < minimum:
        raise EmsegError(f"{name} must be an integer >= {minimum}, got {k!r}")
    return int(k)


def _check_labels(labels, k):
    lab = np.asarray(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raise EmsegError(f"labels must be integers, got dtype {lab.dtype}")
    if lab.size and (lab.min() < 0 or lab.max() > k):
        raise EmsegError(
            f"labels must be 0 (background) or 1..{k} for k={k}, "
            f"got values {lab.min()}..{lab.max()}"
        )
    return lab


def montage(pictures, columns=None, gap=2, captions=None):
    """Tile equally sized ``(H, W, 3)`` uint8 pictures (e.g. overlays of several slices
    of a volume) into one image, row by row, ``gap`` black pixels apart
    (``skimage.util.montage`` without its outer border). ``captions``, one string per
    picture (e.g. its slice number), are drawn in each tile's top-left corner
    (:func:`emseg.image.legend.caption`)."""
    from skimage.util import montage as tile

    pics = [np.asarray(p) for p in pictures]
    if not pics or any(p.shape != pics[0].shape or p.ndim != 3 for p in pics):
        raise EmsegError("montage needs one or more (H, W, 3) pictures of one size")
    if captions is not None:
        from .legend import caption

        if len(captions) != len(pics):
            raise EmsegError(f"montage got {len(captions)} captions for {len(pics)} pictures")
        pics = [caption(p, str(c)) for p, c in zip(pics, captions)]
    n = len(pics)
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    out = tile(np.stack(pics), fill=(0,) * pics[0].shape[2], grid_shape=(rows, columns),
               padding_width=gap, channel_axis=-1)
    inner = out[gap : out.shape[0] - gap, gap : out.shape[1] - gap]
    return np.ascontiguousarray(inner, dtype=np.uint8)


def representative_slices(n_slices, count=9):
    """Indices of ``count`` slices spread evenly through a volume (inner ones first
    and last, not the often-empty outermost)."""
    count = min(count, n_slices)
    return np.unique(np.linspace(0, n_slices - 1, count + 2)[1:-1].round().astype(int))
