"""Compiled kernels for the Gaussian E-step, k-means seeding and row deduplication.

Each kernel walks the rows once, in fixed-size chunks spread over the cores, and keeps
no per-row temporaries beyond one row's worth: the E-step kernels return sufficient
statistics (one set per chunk of fixed size, summed afterwards, so results do not
depend on the number of threads).

Conventions shared with :mod:`emseg.mixture.gaussian_mixture`:

- ``prec_chol[k]`` is the upper-triangular factor ``U`` with precision ``U @ U.T``
  (scikit-learn's ``precisions_cholesky_``), so ``|| (x - mu) @ U ||^2`` is the
  Mahalanobis distance; for diagonal models it is the vector ``1 / sigma``.
- ``log_norm[k] = log(weight_k) + log|U_k| - D/2 log(2 pi)``.
- Statistics are centred on the current means: ``sx[k] = sum r (x - mu_k)`` and
  ``sxx[k] = sum r (x - mu_k)(x - mu_k)^T``, accumulated in float64.
"""

import numpy as np
from numba import njit, prange

CHUNK = 4096


@njit(cache=True)
def n_chunks(n_rows):
    return max(1, (n_rows + CHUNK - 1) // CHUNK)


@njit(cache=True, inline="always")
def _row_weight(weights, n):
    if weights.shape[0] == 0:
        return 1.0
    return weights[n]


@njit(cache=True, inline="always")
def _normalise_row(lp, K):
    """Turn the log-probabilities ``lp`` into responsibilities in place; return logsumexp."""
    top = lp[0]
    for k in range(1, K):
        if lp[k] > top:
            top = lp[k]
    total = 0.0
    for k in range(K):
        e = np.exp(lp[k] - top)
        lp[k] = e
        total += e
    for k in range(K):
        lp[k] /= total
    return top + np.log(total)


@njit(cache=True, inline="always")
def maha_full(X, n, means, prec_chol, k, y, D):
    """Squared Mahalanobis distance of row ``n`` of ``X`` to component ``k``:
    ``|| (x - mu_k) @ U_k ||^2`` with ``U_k = prec_chol[k]`` upper triangular (D, D).
    The centred row ``x - mu_k`` is left in ``y`` (length ``D``)."""
    for d in range(D):
        y[d] = X[n, d] - means[k, d]
    q = 0.0
    for j in range(D):
        s = 0.0
        for i in range(j + 1):
            s += y[i] * prec_chol[k, i, j]
        q += s * s
    return q


@njit(cache=True, inline="always")
def _maha_diag(X, n, means, prec_diag, k, y, D):
    q = 0.0
    for d in range(D):
        v = X[n, d] - means[k, d]
        y[d] = v
        s = v * prec_diag[k, d]
        q += s * s
    return q


@njit(cache=True, inline="always")
def _centred_log_prob(X, start, B, log_norm, means, prec_chol, Y, lp):
    """Fill ``Y[k] = X[rows] - mu_k`` and ``lp[:, k]`` for a block of rows; the
    Mahalanobis products go through BLAS (one small matrix product per component)."""
    D = X.shape[1]
    for k in range(means.shape[0]):
        for n in range(B):
            for d in range(D):
                Y[k, n, d] = X[start + n, d] - means[k, d]
        Z = np.dot(Y[k], prec_chol[k])
        for n in range(B):
            q = 0.0
            for d in range(D):
                q += Z[n, d] * Z[n, d]
            lp[n, k] = log_norm[k] - 0.5 * q


@njit(parallel=True, cache=True)
def estep_full(X, weights, log_norm, means, prec_chol):
    """Sufficient statistics for full (and tied) covariances.

    Returns ``(nk, sx, sxx, loglik)`` where ``loglik`` is the weighted sum of the rows'
    log-likelihoods. Works a block of rows at a time: the centred rows of every
    component stay in cache, and the second moments are one BLAS product per block.
    """
    N, D = X.shape
    K = means.shape[0]
    C = n_chunks(N)
    nk = np.zeros((C, K))
    sx = np.zeros((C, K, D))
    sxx = np.zeros((C, K, D, D))
    ll = np.zeros(C)
    for c in prange(C):
        start = c * CHUNK
        B = min(N, start + CHUNK) - start
        Y = np.empty((K, B, D))
        lp = np.empty((B, K))
        _centred_log_prob(X, start, B, log_norm, means, prec_chol, Y, lp)
        acc_ll = 0.0
        for n in range(B):
            w = _row_weight(weights, start + n)
            acc_ll += w * _normalise_row(lp[n], K)
            for k in range(K):
                lp[n, k] *= w
        weighted = np.empty((B, D))
        for k in range(K):
            for n in range(B):
                r = lp[n, k]
                nk[c, k] += r
                for d in range(D):
                    v = r * Y[k, n, d]
                    weighted[n, d] = v
                    sx[c, k, d] += v
            sxx[c, k] = np.dot(weighted.T, Y[k])
        ll[c] = acc_ll
    return nk.sum(0), sx.sum(0), sxx.sum(0), ll.sum()


@njit(parallel=True, cache=True)
def estep_diag(X, weights, log_norm, means, prec_diag):
    """Sufficient statistics for diagonal (and spherical) covariances: ``sxx`` is (K, D)."""
    N, D = X.shape
    K = means.shape[0]
    C = n_chunks(N)
    nk = np.zeros((C, K))
    sx = np.zeros((C, K, D))
    sxx = np.zeros((C, K, D))
    ll = np.zeros(C)
    for c in prange(C):
        y = np.empty((K, D))
        lp = np.empty(K)
        acc_n = np.zeros(K)
        acc_x = np.zeros((K, D))
        acc_xx = np.zeros((K, D))
        acc_ll = 0.0
        for n in range(c * CHUNK, min(N, (c + 1) * CHUNK)):
            for k in range(K):
                lp[k] = log_norm[k] - 0.5 * _maha_diag(X, n, means, prec_diag, k, y[k], D)
            lse = _normalise_row(lp, K)
            w = _row_weight(weights, n)
            acc_ll += w * lse
            for k in range(K):
                r = w * lp[k]
                acc_n[k] += r
                for i in range(D):
                    ri = r * y[k, i]
                    acc_x[k, i] += ri
                    acc_xx[k, i] += ri * y[k, i]
        nk[c] = acc_n
        sx[c] = acc_x
        sxx[c] = acc_xx
        ll[c] = acc_ll
    return nk.sum(0), sx.sum(0), sxx.sum(0), ll.sum()


@njit(parallel=True, cache=True)
def log_prob_full(X, log_norm, means, prec_chol):
    """Weighted log-probabilities ``log w_k + log N(x | k)``, shape (N, K)."""
    N, D = X.shape
    K = means.shape[0]
    out = np.empty((N, K))
    for c in prange(n_chunks(N)):
        start = c * CHUNK
        B = min(N, start + CHUNK) - start
        Y = np.empty((K, B, D))
        lp = np.empty((B, K))
        _centred_log_prob(X, start, B, log_norm, means, prec_chol, Y, lp)
        out[start : start + B] = lp
    return out


@njit(parallel=True, cache=True)
def log_prob_diag(X, log_norm, means, prec_diag):
    N, D = X.shape
    K = means.shape[0]
    out = np.empty((N, K))
    for c in prange(n_chunks(N)):
        y = np.empty(D)
        for n in range(c * CHUNK, min(N, (c + 1) * CHUNK)):
            for k in range(K):
                out[n, k] = log_norm[k] - 0.5 * _maha_diag(X, n, means, prec_diag, k, y, D)
    return out


# --- k-means ---------------------------------------------------------------------


@njit(parallel=True, cache=True)
def nearest_centre(X, centres):
    """Index of and squared distance to the nearest centre, per row."""
    N, D = X.shape
    K = centres.shape[0]
    labels = np.empty(N, dtype=np.int64)
    dist = np.empty(N)
    for c in prange(n_chunks(N)):
        for n in range(c * CHUNK, min(N, (c + 1) * CHUNK)):
            best = np.inf
            arg = 0
            for k in range(K):
                s = 0.0
                for d in range(D):
                    v = X[n, d] - centres[k, d]
                    s += v * v
                if s < best:
                    best = s
                    arg = k
            labels[n] = arg
            dist[n] = best
    return labels, dist


@njit(parallel=True, cache=True)
def sq_dist_to(X, point):
    N, D = X.shape
    out = np.empty(N)
    for n in prange(N):
        s = 0.0
        for d in range(D):
            v = X[n, d] - point[d]
            s += v * v
        out[n] = s
    return out


@njit(cache=True)
def weighted_centres(X, weights, labels, K):
    """Weighted mean of the rows of each label, and each label's total weight."""
    N, D = X.shape
    sums = np.zeros((K, D))
    tot = np.zeros(K)
    for n in range(N):
        w = _row_weight(weights, n)
        k = labels[n]
        tot[k] += w
        for d in range(D):
            sums[k, d] += w * X[n, d]
    return sums, tot


# --- distinct rows -------------------------------------------------------------------


@njit(cache=True, inline="always")
def _row_hash(bits, n, D):
    h = np.uint64(1469598103934665603)
    for d in range(D):
        h ^= np.uint64(bits[n, d])
        h *= np.uint64(1099511628211)
        h ^= h >> np.uint64(29)
    return h


@njit(cache=True, inline="always")
def _same_row(bits, m, n, D):
    for d in range(D):
        if bits[m, d] != bits[n, d]:
            return False
    return True


@njit(cache=True)
def distinct_rows(bits, weights, cap):
    """Find the distinct rows of ``bits`` (the rows' bit patterns as unsigned integers).

    Returns ``(first, total)``: the index of each distinct row's first occurrence and the
    summed weight of its copies, or two empty arrays when there are more than ``cap``
    distinct rows (the data do not compress, and the caller fits them as they are).
    """
    N, D = bits.shape
    size = 1
    while size < 2 * cap + 2:
        size *= 2
    mask = size - 1
    table = np.full(size, -1, dtype=np.int64)
    first = np.empty(cap + 1, dtype=np.int64)
    total = np.zeros(cap + 1)
    count = 0
    for n in range(N):
        slot = np.int64(_row_hash(bits, n, D) & np.uint64(mask))
        while True:
            u = table[slot]
            if u < 0:
                if count == cap:
                    return np.empty(0, dtype=np.int64), np.empty(0)
                table[slot] = count
                first[count] = n
                total[count] = _row_weight(weights, n)
                count += 1
                break
            if _same_row(bits, first[u], n, D):
                total[u] += _row_weight(weights, n)
                break
            slot = (slot + 1) & mask
    return first[:count].copy(), total[:count].copy()


@njit(cache=True)
def distinct_rows_inverse(bits):
    """All distinct rows: ``(first, counts, inverse)`` with ``inverse[n]`` the index of
    row ``n``'s distinct row (in order of first occurrence)."""
    N, D = bits.shape
    size = 16
    table = np.full(size, -1, dtype=np.int64)
    first = np.empty(N, dtype=np.int64)
    counts = np.zeros(N)
    inverse = np.empty(N, dtype=np.int64)
    count = 0
    for n in range(N):
        if 2 * (count + 1) > size:  # keep the table at most half full
            size *= 4
            table = np.full(size, -1, dtype=np.int64)
            for u in range(count):
                slot = np.int64(_row_hash(bits, first[u], D) & np.uint64(size - 1))
                while table[slot] >= 0:
                    slot = (slot + 1) & (size - 1)
                table[slot] = u
        slot = np.int64(_row_hash(bits, n, D) & np.uint64(size - 1))
        while True:
            u = table[slot]
            if u < 0:
                table[slot] = count
                first[count] = n
                counts[count] = 1.0
                inverse[n] = count
                count += 1
                break
            if _same_row(bits, first[u], n, D):
                counts[u] += 1.0
                inverse[n] = u
                break
            slot = (slot + 1) & (size - 1)
    return first[:count].copy(), counts[:count].copy(), inverse


# --- 8-bit colour histograms ------------------------------------------------------------


@njit(cache=True, inline="always")
def _pack_rgb(values, n):
    return (np.int64(values[n, 0]) << 16) | (np.int64(values[n, 1]) << 8) | np.int64(values[n, 2])


# A colour image's distinct colours are marked in a bitmap of all 2**24 colours (2 MiB,
# which stays in the L2 cache) rather than counted in a table of 2**24 counters (64 MiB,
# every page of which a photo touches): a colour's row among the distinct colours is then
# the number of marked colours below it, a prefix count per 64-bit word plus a popcount.


@njit(cache=True)
def rgb_bitmap(values):
    """Bitmap (2**18 uint64 words) of the packed 24-bit colours among the (N, 3) uint8
    rows: bit ``p & 63`` of word ``p >> 6`` is set when colour ``p`` occurs."""
    bits = np.zeros(1 << 18, dtype=np.uint64)
    for n in range(values.shape[0]):
        p = _pack_rgb(values, n)
        bits[p >> 6] |= np.uint64(1) << np.uint64(p & 63)
    return bits


@njit(cache=True, inline="always")
def _popcount(x):
    """Set bits of a uint64 (the classic SWAR count)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True)
def bitmap_colours(bits):
    """``(present, before)``: the marked colours in ascending order, and for each word
    the number of marked colours in the words before it."""
    before = np.empty(bits.shape[0], dtype=np.int32)
    total = 0
    for w in range(bits.shape[0]):
        before[w] = total
        total += _popcount(bits[w])
    present = np.empty(total, dtype=np.int64)
    i = 0
    for w in range(bits.shape[0]):
        word = bits[w]
        b = 0
        while word != np.uint64(0):
            if word & np.uint64(1):
                present[i] = w * 64 + b
                i += 1
            word >>= np.uint64(1)
            b += 1
    return present, before


@njit(parallel=True, cache=True)
def bitmap_index(values, bits, before):
    """Each (N, 3) uint8 row's position among the marked colours, as int32."""
    N = values.shape[0]
    out = np.empty(N, dtype=np.int32)
    for c in prange(n_chunks(N)):
        for n in range(c * CHUNK, min(N, (c + 1) * CHUNK)):
            p = _pack_rgb(values, n)
            w = p >> 6
            below = (np.uint64(1) << np.uint64(p & 63)) - np.uint64(1)
            out[n] = before[w] + _popcount(bits[w] & below)
    return out


@njit(cache=True)
def count_index(index, n_values):
    """How often each of ``0 .. n_values - 1`` occurs in ``index``, as float64."""
    counts = np.zeros(n_values)
    for n in range(index.shape[0]):
        counts[index[n]] += 1.0
    return counts


@njit(parallel=True, cache=True)
def gather(table, index):
    """``table[index]`` for a 1-D table, in parallel and without numpy's cast of a
    non-``intp`` index to a temporary copy."""
    N = index.shape[0]
    out = np.empty(N, dtype=table.dtype)
    for c in prange(n_chunks(N)):
        for n in range(c * CHUNK, min(N, (c + 1) * CHUNK)):
            out[n] = table[index[n]]
    return out


@njit(parallel=True, cache=True)
def normalise_rows(lp):
    """Turn (N, K) log-probabilities into probabilities in place; return each row's
    logsumexp (``-inf`` rows, impossible under every component, stay ``-inf``/NaN-free:
    their probabilities are set uniform)."""
    N, K = lp.shape
    lse = np.empty(N)
    for c in prange(n_chunks(N)):
        for n in range(c * CHUNK, min(N, (c + 1) * CHUNK)):
            top = lp[n, 0]
            for k in range(1, K):
                if lp[n, k] > top:
                    top = lp[n, k]
            if top == -np.inf:
                for k in range(K):
                    lp[n, k] = 1.0 / K
                lse[n] = -np.inf
                continue
            total = 0.0
            for k in range(K):
                e = np.exp(lp[n, k] - top)
                lp[n, k] = e
                total += e
            for k in range(K):
                lp[n, k] /= total
            lse[n] = top + np.log(total)
    return lse


@njit(cache=True)
def inv_lower(L):
    """Inverse of a lower-triangular matrix by forward substitution.

    Used for the precision factors in every M-step: LAPACK's triangular solve through
    a threaded OpenBLAS was measured at ~10 ms per 3 x 3 call when the cores are busy.
    """
    D = L.shape[0]
    out = np.zeros((D, D))
    for j in range(D):
        out[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, D):
            s = 0.0
            for m in range(j, i):
                s += L[i, m] * out[m, j]
            out[i, j] = -s / L[i, i]
    return out
