"""Compiled kernels for :mod:`emseg.render`: one pass over the pixels per picture.

A 12-megapixel overlay built from numpy pieces (a gather of class colours, a weighted
sum, four shifted comparisons for the boundaries, a masked copy) touches several
image-sized temporaries; each of these kernels reads its inputs once and writes its
output once, spread over the cores by rows.
"""

import numpy as np
from numba import njit, prange

from ._kernels import CHUNK, n_chunks


@njit(parallel=True, cache=True)
def paint(labels, table):
    """``table[labels[n]]`` for each of the (N,) int32 labels, as an (N, C) array;
    label -1 (background) takes ``table``'s last row."""
    N = labels.shape[0]
    C = table.shape[1]
    last = table.shape[0] - 1
    out = np.empty((N, C), dtype=table.dtype)
    for c in prange(n_chunks(N)):
        for n in range(c * CHUNK, min(N, (c + 1) * CHUNK)):
            lab = labels[n]
            if lab < 0:
                lab = last
            for j in range(C):
                out[n, j] = table[lab, j]
    return out


@njit(parallel=True, cache=True)
def blend(base, labels, blended, draw_edges):
    """The overlay of (H, W) int32 ``labels`` on (H, W, C) uint8 ``base`` (C = 1 for grey,
    shown as three equal channels, or 3).

    ``blended[k, c, v]`` is channel ``c`` of class ``k``'s colour blended over the value
    ``v``. Background (-1) keeps ``base``. With ``draw_edges``, a labelled pixel with a
    lower-labelled 4-neighbour (as :func:`emseg.render.boundaries`) becomes white over
    a dark blend and black over a light one.
    """
    H, W = labels.shape
    grey = base.shape[2] == 1
    out = np.empty((H, W, 3), dtype=np.uint8)
    for y in prange(H):
        for x in range(W):
            lab = labels[y, x]
            if lab < 0:
                for c in range(3):
                    out[y, x, c] = base[y, x, 0 if grey else c]
                continue
            for c in range(3):
                out[y, x, c] = blended[lab, c, base[y, x, 0 if grey else c]]
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
