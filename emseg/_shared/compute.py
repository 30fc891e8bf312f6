"""Numpy twins of the row kernels of :mod:`emseg._shared.kernels`, for small inputs.

Loading numba costs a fresh process seconds (its import, then the refresh of its
target context before the first cached kernel loads, then each kernel's cache), which
is far more than a small job's whole work: an 8-bit grey image's mixture is fitted on
at most 256 distinct grey levels. So every kernel the mixture engine calls has a numpy
twin here, with the same arguments and results, and the compiled kernel runs only on
inputs large enough to pay for it.

Measured (2-core VM shared with other jobs, load average 8-10): a fresh process per
run, wall time from interpreter start, kernels loaded from numba's cache, medians of 7
runs alternating the twins with ``TWINS = False`` (every call compiled):

- ``emseg gmm fit`` on a 150-row, 2-column CSV: 5.7 s with the twins, 7.0 s compiled
  (numba loaded either way then, for the old compiled CSV parser; the rest is each
  compiled kernel's loading from the cache). Tables are now read by the ``csv``
  module, so with the twins a small ``gmm fit`` loads no numba at all (issue 15:
  about 1.5x the time of ``python -c "import numpy"``);
- ``GaussianMixture(3).fit`` on 150 x 2 rows: 1.1 s, numba not loaded; 6.7 s compiled;
- ``emseg.segment`` of a 64 x 80 grey image: 1.0 s, numba not loaded; 5.6 s compiled.

So every twin is kept: each matters on its own. Each is called by a small fit
or segment (``estep_diag`` and ``log_prob_diag`` by diagonal and spherical mixtures,
``gather`` and ``log_prob_full`` by ``segment``, ``inv_lower`` by every M-step with two
features or more, the others by every fit), and sending any single one to its
compiled kernel loads numba in that job (medians of 3 runs, same machine):

- ``GaussianMixture(3).fit``, 150 x 2 rows: 1.2 s with every twin; with one compiled,
  ``estep_full`` 5.4 s, ``inv_lower`` 5.7, ``normalise_rows`` 5.5, ``nearest_centre``
  4.9, ``sq_dist_to`` 6.6, ``weighted_centres`` 3.9, ``distinct_rows`` 4.6;
- the same with ``covariance_type="diag"``, then ``predict``: 1.0 s; ``estep_diag``
  2.3 s, ``log_prob_diag`` 4.9;
- ``emseg.segment`` of the grey image: 1.0 s; ``log_prob_full`` 4.7 s, ``gather`` 2.6.

The switch: ``TWINS`` (True). False sends every call to the compiled kernel (the tests
compare both paths that way). What counts as small, with the switch on:

- Floating-point kernels (E-step statistics, log-probabilities, distances) choose by
  the size of the input alone, so the same data always take the same path and give
  the same bits. Up to ``SMALL`` units of work (rows x components x features^2 for
  an E-step; rows x components x features for distances) the numpy version runs,
  which on one core is as fast as the compiled kernel for one feature (measured:
  256 x 3 x 1, 0.11 ms against 0.05-0.17 ms; 8192 x 4 x 1, 0.9 against 1.1 ms). The two
  agree to rounding (sums taken in another order), which the tests check.
- Integer kernels (gathers, distinct rows) give identical results either way; they use
  the compiled version when numba is loaded already, or the input is large.
- The inverse of a precision factor is taken in Python up to ``MAX_PYTHON_DIM``
  features.
"""

import os
import sys

import numpy as np

TWINS = True  # the switch: False runs every kernel compiled
SMALL = 1 << 15  # work (rows x components x features^2 for an E-step) done in numpy
LARGE_GATHER = 1 << 26  # elements from which a gather loads the compiled kernel
MAX_PYTHON_DIM = 8  # features up to which the precision factor is inverted in Python


def _compiled():
    from .._shared import kernels as _kernels

    return _kernels


def _twin(work, limit=None, exact=False):
    """Whether the numpy twin takes a call: the switch is on, the ``work`` is at most
    ``limit`` (None: ``SMALL``), and for an ``exact`` kernel (the same result either
    way) numba is not loaded already."""
    limit = SMALL if limit is None else limit
    return TWINS and work <= limit and not (exact and compiled_loaded())


def _small(*sizes, exact=False):
    """:func:`_twin` for the product of ``sizes`` (each at least 1) against ``SMALL``."""
    work = 1
    for size in sizes:
        work *= max(int(size), 1)
    return _twin(work, exact=exact)


def compiled_loaded():
    """True when the compiled kernels are already loaded in this process."""
    return "emseg._shared.kernels" in sys.modules


def num_threads():
    """The threads compiled kernels run on in this process: numba's setting, read
    without loading numba (from ``NUMBA_NUM_THREADS``, else the core count, as numba
    would) when it is not loaded yet."""
    if "numba" in sys.modules:
        import numba

        return numba.get_num_threads()
    try:
        return max(1, int(os.environ["NUMBA_NUM_THREADS"]))
    except (KeyError, ValueError):
        return os.cpu_count() or 1


def set_num_threads(threads):
    """Let compiled kernels use ``threads`` threads, without loading numba: when it is
    not loaded yet, through ``NUMBA_NUM_THREADS``, which it reads when it loads."""
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(max(1, threads))


# --- the E-step ----------------------------------------------------------------------


def _centred(X, means):
    """``X - mu_k`` for every component: (K, N, D) float64."""
    return np.asarray(X, dtype=np.float64)[None, :, :] - means[:, None, :]


def _responsibilities(lp, weights):
    """Normalise (N, K) ``lp`` into responsibilities times the row weights, in place;
    return the weighted sum of the rows' log-likelihoods."""
    lse = normalise_rows(lp)
    if weights.shape[0] == 0:
        return float(lse.sum())
    lp *= weights[:, None]
    return float(weights @ lse)


def _log_prob(Y, log_norm, prec, full):
    """(N, K) weighted log-probabilities from the centred rows ``Y`` (K, N, D)."""
    Z = np.einsum("knd,kde->kne", Y, prec) if full else Y * prec[:, None, :]
    return log_norm[None, :] - 0.5 * np.einsum("kne,kne->nk", Z, Z)


def _estep(X, weights, log_norm, means, prec, full):
    Y = _centred(X, means)
    lp = _log_prob(Y, log_norm, prec, full)
    ll = _responsibilities(lp, weights)
    if full:
        sxx = np.einsum("nk,kni,knj->kij", lp, Y, Y)
    else:
        sxx = np.einsum("nk,knd,knd->kd", lp, Y, Y)
    return lp.sum(0), np.einsum("nk,knd->kd", lp, Y), sxx, ll


def estep_full(X, weights, log_norm, means, prec_chol):
    """``(nk, sx, sxx, loglik)`` for full (and tied) covariances; see
    :func:`emseg._shared.kernels.estep_full`."""
    K, D = means.shape
    if not _small(X.shape[0], K, D, D):
        return _compiled().estep_full(X, weights, log_norm, means, prec_chol)
    return _estep(X, weights, log_norm, means, prec_chol, full=True)


def estep_diag(X, weights, log_norm, means, prec_diag):
    """``(nk, sx, sxx, loglik)`` for diagonal (and spherical) covariances; ``sxx`` is
    (K, D). See :func:`emseg._shared.kernels.estep_diag`."""
    K, D = means.shape
    if not _small(X.shape[0], K, D):
        return _compiled().estep_diag(X, weights, log_norm, means, prec_diag)
    return _estep(X, weights, log_norm, means, prec_diag, full=False)


def log_prob_full(X, log_norm, means, prec_chol):
    """``log w_k + log N(x | k)`` for every row, (N, K), full covariances."""
    K, D = means.shape
    if not _small(X.shape[0], K, D, D):
        return _compiled().log_prob_full(X, log_norm, means, prec_chol)
    return _log_prob(_centred(X, means), log_norm, prec_chol, full=True)


def log_prob_diag(X, log_norm, means, prec_diag):
    """``log w_k + log N(x | k)`` for every row, (N, K), diagonal covariances."""
    if not _small(X.shape[0], *means.shape):
        return _compiled().log_prob_diag(X, log_norm, means, prec_diag)
    return _log_prob(_centred(X, means), log_norm, prec_diag, full=False)


def normalise_rows(lp):
    """Turn (N, K) log-probabilities into probabilities in place and return each row's
    logsumexp; a row that is ``-inf`` everywhere becomes uniform with logsumexp
    ``-inf``. See :func:`emseg._shared.kernels.normalise_rows`."""
    N, K = lp.shape
    if not _small(N, K):
        return _compiled().normalise_rows(lp)
    top = lp.max(axis=1)
    impossible = top == -np.inf
    if impossible.any():
        top[impossible] = 0.0
    lp -= top[:, None]
    np.exp(lp, out=lp)
    total = lp.sum(axis=1)
    if impossible.any():
        total[impossible] = 1.0  # these rows are all zeros now; made uniform below
    lp /= total[:, None]
    lse = top + np.log(total)
    if impossible.any():
        lp[impossible] = 1.0 / K
        lse[impossible] = -np.inf
    return lse


# --- k-means -----------------------------------------------------------------------


def nearest_centre(X, centres):
    """Index of (int64) and squared distance to the nearest centre, per row."""
    if not _small(X.shape[0], *centres.shape):
        return _compiled().nearest_centre(X, centres)
    Y = _centred(X, np.asarray(centres, dtype=np.float64))
    dist = np.einsum("knd,knd->nk", Y, Y)
    labels = dist.argmin(axis=1)
    return labels, dist[np.arange(dist.shape[0]), labels]


def sq_dist_to(X, point):
    """Squared distance of every row to ``point``."""
    if not _small(*X.shape):
        return _compiled().sq_dist_to(X, point)
    y = np.asarray(X, dtype=np.float64) - point
    return np.einsum("nd,nd->n", y, y)


def weighted_centres(X, weights, labels, K):
    """Weighted mean of the rows of each label, and each label's total weight."""
    if not _small(*X.shape):
        return _compiled().weighted_centres(X, weights, labels, K)
    w = np.ones(X.shape[0]) if weights.shape[0] == 0 else weights
    tot = np.bincount(labels, weights=w, minlength=K)
    sums = np.stack(
        [np.bincount(labels, weights=w * X[:, d], minlength=K) for d in range(X.shape[1])],
        axis=1,
    )
    return sums, tot


# --- exact kernels -------------------------------------------------------------------


def distinct_rows(bits, weights, cap):
    """``(first, total)``: each distinct row's first index (in order of first
    occurrence) and its copies' summed weight, or two empty arrays when there are more
    than ``cap`` distinct rows. See :func:`emseg._shared.kernels.distinct_rows`."""
    if not _small(*bits.shape, exact=True):
        return _compiled().distinct_rows(bits, weights, cap)
    if bits.shape[1] == 1:
        _, first, inverse = np.unique(bits[:, 0], return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(bits, axis=0, return_index=True, return_inverse=True)
    if first.shape[0] > cap:
        return np.empty(0, dtype=np.int64), np.empty(0)
    total = np.bincount(inverse.ravel(), weights=None if weights.shape[0] == 0 else weights,
                        minlength=first.shape[0])
    order = np.argsort(first, kind="stable")
    return first[order].astype(np.int64), total[order].astype(np.float64)


def gather(table, index):
    """``table[index]`` for a 1-D table and a 1-D int32 index into it."""
    if not _twin(index.shape[0], LARGE_GATHER - 1, exact=True):
        return _compiled().gather(table, index)
    if table.shape[0] <= 256 and table.dtype in (np.int32, np.uint8):
        # every index is below 256: OpenCV's table lookup on a uint8 copy of the index
        # is 2.5x numpy's take, which first copies the index to int64
        import cv2

        lut = np.zeros(256, dtype=table.dtype)
        lut[: table.shape[0]] = table
        return cv2.LUT(index.astype(np.uint8), lut).reshape(-1)
    return np.take(table, index)


def inv_lower(L):
    """Inverse of a lower-triangular matrix by forward substitution (not LAPACK: a
    threaded OpenBLAS was measured at ~10 ms per 3 x 3 triangular solve on busy
    cores). In Python for a few features, compiled beyond."""
    D = L.shape[0]
    if not _twin(D, MAX_PYTHON_DIM):
        return _compiled().inv_lower(L)
    out = np.zeros((D, D))
    rows = L.tolist()
    inv = [[0.0] * D for _ in range(D)]
    for j in range(D):
        inv[j][j] = 1.0 / rows[j][j]
        for i in range(j + 1, D):
            s = 0.0
            for m in range(j, i):
                s += rows[i][m] * inv[m][j]
            inv[i][j] = -s / rows[i][i]
    out[:] = inv
    return out
