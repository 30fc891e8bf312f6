"""Text on pictures: a legend strip beside an overlay and captions on montage tiles.

Drawn with OpenCV's Hershey fonts (built in, no font files), sized to the picture.
Pure functions from arrays to new arrays: inputs are never modified, and the picture
itself is never drawn over except in :func:`caption`'s corner box.
"""

import cv2
import numpy as np

from .._shared.errors import EmsegError

__all__ = ["caption", "legend_rows", "with_legend"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_PAPER = (255, 255, 255)  # the legend strip: black text on white, as a printed figure
_INK = (0, 0, 0)
# A legend row is about 1/36 of the picture's height (83 px for a 12 MP photo,
# 28 px for a 1,000-px-tall image), never under 22 px (text about 12 px tall), and
# shrinks (down to _MIN_ROW) when the classes would not otherwise fit beside the picture.
_ROWS_PER_HEIGHT = 36
_MIN_ROW = 22


def legend_rows(means, fractions):
    """The legend's text, one ``(label, mean, fraction)`` row per class, header first:
    label numbers 1..k, mean values to 4 significant digits (3 for each of several
    channels, separated by commas) and fractions in percent."""
    means = np.asarray(means, dtype=np.float64)
    if means.ndim == 1:
        means = means[:, None]
    fractions = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if means.ndim != 2 or len(means) != len(fractions):
        raise EmsegError(
            f"means {means.shape} and fractions {fractions.shape} must have one row per class"
        )
    rows = [("label", "mean", "fraction")]
    for i, (mean, fraction) in enumerate(zip(means, fractions)):
        pct = 100.0 * fraction
        share = "<0.1%" if 0 < pct < 0.05 else f"{pct:.1f}%"
        digits = ".4g" if len(mean) == 1 else ".3g"
        rows.append((str(i + 1), ", ".join(format(v, digits) for v in mean), share))
    return rows


def with_legend(picture, colors, means, fractions):
    """``picture`` ((H, W, 3) uint8, e.g. :func:`emseg.image.render.overlay`) with a
    legend strip on its right: for each class (label 1..k, top to bottom) a swatch of
    its colour (``colors``, (k, 3) uint8, e.g. ``render.palette(k)``), its label
    number, mean value (``means``, (k,) or (k, channels)) and fraction of the
    labelled pixels (``fractions``, (k,), 0..1).

    The picture is copied unchanged into the top left of the result; when the classes
    need more height than the picture has, the result is taller and the space below
    the picture is black.
    """
    pic = np.asarray(picture)
    if pic.ndim != 3 or pic.shape[2] != 3 or pic.dtype != np.uint8:
        raise EmsegError(f"picture must be (H, W, 3) uint8, got {pic.shape} {pic.dtype}")
    colors = np.asarray(colors)
    rows = legend_rows(means, fractions)
    if colors.shape != (len(rows) - 1, 3):
        raise EmsegError(f"colors must have shape ({len(rows) - 1}, 3), got {colors.shape}")
    H, W = pic.shape[:2]
    k = len(rows) - 1
    row = max(_MIN_ROW, H // _ROWS_PER_HEIGHT)
    row = max(_MIN_ROW, min(row, H // (k + 2)))  # header + k rows + margins
    scale, thick = _font(row)
    pad = max(4, row // 3)
    swatch = int(row * 0.7)
    sizes = [[cv2.getTextSize(t, _FONT, scale, thick)[0][0] for t in r] for r in rows]
    widths = np.max(np.array(sizes), axis=0)
    lefts = [pad + swatch + pad]  # the columns: label, mean, fraction
    for w in widths[:-1]:
        lefts.append(lefts[-1] + int(w) + 2 * pad)
    strip_w = lefts[-1] + int(widths[-1]) + pad
    out_h = max(H, (k + 1) * row + 2 * pad)
    # one pass: the picture copied into a canvas widened (and heightened) with paper
    out = cv2.copyMakeBorder(np.ascontiguousarray(pic), 0, out_h - H, 0, strip_w,
                             cv2.BORDER_CONSTANT, value=_PAPER)
    out[H:, :W] = 0  # below a short picture: black
    strip = out[:, W:]
    baseline = int(row * 0.72)
    for i, texts in enumerate(rows):
        top = pad + i * row
        for left, text, width in zip(lefts, texts, widths):
            if text and left != lefts[0]:  # numbers right-aligned
                left += int(width) - cv2.getTextSize(text, _FONT, scale, thick)[0][0]
            cv2.putText(strip, text, (left, top + baseline), _FONT, scale, _INK, thick,
                        cv2.LINE_AA)
        if i:
            y0 = top + (row - swatch) // 2
            box = strip[y0 : y0 + swatch, pad : pad + swatch]
            box[:] = _INK  # a 1-px outline, so light colours show on white
            box[1:-1, 1:-1] = colors[i - 1]
    return out


def caption(picture, text):
    """A copy of ``picture`` ((H, W, 3) uint8) with ``text`` in white on a black box in
    its top-left corner, in a row about 1/7 of the picture's smaller side (at least
    20 px); the rest of the picture is unchanged."""
    pic = np.asarray(picture)
    if pic.ndim != 3 or pic.shape[2] != 3 or pic.dtype != np.uint8:
        raise EmsegError(f"picture must be (H, W, 3) uint8, got {pic.shape} {pic.dtype}")
    out = np.array(pic, copy=True, order="C")
    H, W = pic.shape[:2]
    row = max(20, min(H, W) // 7)
    scale, thick = _font(row)
    (tw, th), _ = cv2.getTextSize(text, _FONT, scale, thick)
    pad = max(2, row // 6)
    box_h, box_w = min(H, th + 2 * pad + thick), min(W, tw + 2 * pad)
    out[:box_h, :box_w] = 0
    corner = out[:box_h, :box_w]  # text drawn into the box only (clipped at its edge)
    cv2.putText(corner, text, (pad, pad + th), _FONT, scale, (255, 255, 255), thick,
                cv2.LINE_AA)
    return out


def _font(row):
    """Hershey font scale and stroke thickness for text in rows ``row`` pixels tall:
    capitals about 55% of the row."""
    thick = max(1, row // 28)
    return cv2.getFontScaleFromHeight(_FONT, max(6, int(row * 0.55)), thick), thick
