"""The compiled kernel that formats large CSV results (:mod:`emseg.io.table_writers`).

In its own module so that writing a small table (formatted in Python) never imports
numba.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def format_lines(first_row, ints, floats, row_seq, id_bytes, id_offsets):
    """CSV lines: the row number, the sequence id (when ``row_seq`` is not empty), the
    integers, then the numbers with 6 decimals (|x| < 1e12)."""
    n, a = ints.shape
    b = floats.shape[1]
    longest = 0
    for s in range(id_offsets.shape[0] - 1):
        longest = max(longest, id_offsets[s + 1] - id_offsets[s])
    out = np.empty(n * ((a + b + 1) * 24 + longest + 2), dtype=np.uint8)
    digits = np.empty(24, dtype=np.uint8)
    p = 0
    for i in range(n):
        for j in range(a + b + 1):
            if j > 0:
                out[p] = 44
                p += 1
            if j == 0:
                scaled = np.int64(first_row + i)
                decimals = 0
            elif j <= a:
                scaled = ints[i, j - 1]
                decimals = 0
            else:
                x = floats[i, j - 1 - a]
                scaled = np.int64(np.floor(abs(x) * 1e6 + 0.5))
                if x < 0 and scaled != 0:
                    scaled = -scaled
                decimals = 6
            if scaled < 0:
                out[p] = 45
                p += 1
                scaled = -scaled
            nd = 0
            while True:
                digits[nd] = 48 + scaled % 10
                scaled //= 10
                nd += 1
                if scaled == 0 and nd > decimals:
                    break
            for t in range(nd - 1, -1, -1):
                out[p] = digits[t]
                p += 1
                if t == decimals and decimals > 0:
                    out[p] = 46
                    p += 1
            if j == 0 and row_seq.shape[0] > 0:
                out[p] = 44
                p += 1
                s = row_seq[i]
                for t in range(id_offsets[s], id_offsets[s + 1]):
                    out[p] = id_bytes[t]
                    p += 1
        out[p] = 10
        p += 1
    return out[:p]
