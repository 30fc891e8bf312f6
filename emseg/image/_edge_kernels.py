"""The compiled marking of wide boundaries on a colour overlay (:mod:`emseg.image.render`).

One pass over the picture, spread over the cores by rows: numpy's gather of the
boundary pixels (np.nonzero, then fancy indexing) cost 5-10 times as much on a 12 MP
photo. Colour overlays load numba anyway (their blend is compiled too).
"""

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def mark(out, edge):
    """Make each ``edge`` pixel of the (H, W, 3) uint8 ``out`` white when its luma
    (0.299 R + 0.587 G + 0.114 B, in float64, in this order) is below 128, else black."""
    H, W = edge.shape
    for y in prange(H):
        for x in range(W):
            if edge[y, x]:
                luma = 0.299 * out[y, x, 0] + 0.587 * out[y, x, 1] + 0.114 * out[y, x, 2]
                v = np.uint8(255) if luma < 128.0 else np.uint8(0)
                out[y, x, 0] = v
                out[y, x, 1] = v
                out[y, x, 2] = v
