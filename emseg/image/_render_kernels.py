"""The compiled overlay of :mod:`emseg.image.render`, for colour images and many classes.

A grey overlay with up to 127 classes is drawn by table lookups in numpy and OpenCV
(no numba to load); a colour one needs the pixel's three channels and its class
together, which this kernel looks up in one pass, reading its inputs once and writing
its output once, spread over the cores by rows. Colour images load numba for their
features anyway.
"""

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def blend(base, labels, blended, draw_edges):
    """The overlay of (H, W) int32 ``labels`` on (H, W, C) uint8 ``base`` (C = 1 for grey,
    shown as three equal channels, or 3).

    ``blended[k - 1, c, v]`` is channel ``c`` of class ``k``'s colour blended over the value
    ``v``. Classes are labelled 1..k; background (0) keeps ``base``. With ``draw_edges``, a labelled pixel with a
    lower-labelled 4-neighbour (as :func:`emseg.image.render.boundaries`) becomes white over
    a dark blend and black over a light one.
    """
    H, W = labels.shape
    grey = base.shape[2] == 1
    out = np.empty((H, W, 3), dtype=np.uint8)
    for y in prange(H):
        for x in range(W):
            lab = labels[y, x]
            if lab == 0:
                for c in range(3):
                    out[y, x, c] = base[y, x, 0 if grey else c]
                continue
            for c in range(3):
                out[y, x, c] = blended[lab - 1, c, base[y, x, 0 if grey else c]]
            if draw_edges and (
                (x > 0 and labels[y, x - 1] < lab)
                or (x + 1 < W and labels[y, x + 1] < lab)
                or (y > 0 and labels[y - 1, x] < lab)
                or (y + 1 < H and labels[y + 1, x] < lab)
            ):
                luma = 0.299 * out[y, x, 0] + 0.587 * out[y, x, 1] + 0.114 * out[y, x, 2]
                mark = np.uint8(255) if luma < 128.0 else np.uint8(0)
                for c in range(3):
                    out[y, x, c] = mark
    return out
