"""The rows a Gaussian mixture is fitted on, as the EM loop passes them around.

:class:`TrainingData` is the ``data`` of :func:`emseg.mixture.em.run_em` for a fit in
memory: complete rows (repeated ones merged into one weighted row: the same
maximum-likelihood fit on far fewer rows), rows with missing values grouped by pattern
(:mod:`emseg.mixture.missing`), and, for a subsample, the data it was drawn from. It
computes the E-step's statistics under given parameters and names the rows an emptied
component is re-seeded on, so nothing about the data travels on the estimator.
:class:`emseg.mixture.dask_fit.ChunkedData` is its counterpart for a dask array.

Also here: the per-column moments that set the covariance floor, and the distinct-row
count that refuses more components than distinct rows.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .._shared import compute as kern
from .._shared.errors import EmsegError
from .gaussian import complete_stats, unit_weights
from .missing import CHUNK_ROWS, Pattern, pattern_stats

_EMPTY = np.empty(0)


@dataclass
class TrainingData:
    """Rows for EM: ``X`` complete rows (distinct rows when merged), ``w`` their weights
    (an empty array for unit weights), ``patterns`` the rows with missing values (a list
    of :class:`~emseg.mixture.missing.Pattern`), ``total_weight`` the weight of all of
    them, and ``drawn_from`` the data this is a subsample of (None if it is not), whose
    rows then re-seed an emptied component."""

    X: np.ndarray
    w: np.ndarray
    patterns: list
    total_weight: float
    drawn_from: Optional["TrainingData"] = None

    @classmethod
    def from_rows(cls, X, w, n_components, merge=True):
        """Split checked rows ``X`` (weights ``w``, None for unit weights) into complete
        rows (merged when repeated and ``merge``) and missingness patterns.

        Drops rows of weight zero and rows with nothing observed; refuses (EmsegError) a
        column with no observed value, no row with one, and fewer distinct rows than
        ``n_components``.
        """
        K = n_components
        if w is not None and (w == 0).any():
            keep = w > 0
            X, w = X[keep], w[keep]
        missing = np.isnan(X)
        incomplete = missing.any(axis=1)
        patterns = []
        if incomplete.any():
            empty_cols = np.flatnonzero(missing.all(axis=0))
            if empty_cols.size:
                raise EmsegError(
                    f"X column {int(empty_cols[0])} has no observed value; drop that column"
                )
            some = incomplete & ~missing.all(axis=1)  # rows with nothing observed carry no information
            keys, inverse = np.unique(
                np.packbits(missing[some], axis=1), axis=0, return_inverse=True
            )
            Xs = X[some]
            ws = np.ones(Xs.shape[0]) if w is None else w[some]
            inverse = inverse.ravel()
            for g in range(keys.shape[0]):
                rows = np.flatnonzero(inverse == g)
                observed = ~missing[some][rows[0]]
                patterns.append(Pattern(observed, Xs[rows], ws[rows]))
            X = np.ascontiguousarray(X[~incomplete])
            w = None if w is None else w[~incomplete]
        n_rows = X.shape[0]
        n_pattern_rows = sum(p.X.shape[0] for p in patterns)
        if n_rows + n_pattern_rows == 0:
            raise EmsegError("X has no row with an observed value")
        if merge or n_rows <= K:
            first, total = merge_repeated(X, w, K)
        else:
            first = total = _EMPTY
        distinct = count_distinct(X, patterns, first, K)
        if distinct < K:
            raise EmsegError(
                f"X has only {distinct} distinct rows, cannot fit n_components={K}; "
                "lower n_components"
            )
        if first.shape[0] and merge:
            X, w = np.ascontiguousarray(X[first]), total
        weight = float(n_rows if w is None else w.sum()) + sum(float(p.w.sum()) for p in patterns)
        return cls(X, _EMPTY if w is None else w, patterns, weight)

    @property
    def n_rows(self):
        """Rows fitted (complete and incomplete)."""
        return self.X.shape[0] + sum(p.X.shape[0] for p in self.patterns)

    @property
    def n_features(self):
        return self.X.shape[1]

    def init_view(self):
        """Rows and weights to start from: missing values filled with column means."""
        if not self.patterns:
            return self.X, self.w
        rows = [self.X] + [p.X for p in self.patterns]
        weights = [unit_weights(self.w, self.X.shape[0])] + [p.w for p in self.patterns]
        X = np.concatenate(rows).astype(np.float64)
        w = np.concatenate(weights)
        mask = np.isnan(X)
        col_mean = np.nansum(np.where(mask, 0, X) * w[:, None], 0) / (
            (~mask * w[:, None]).sum(0)
        )
        X[mask] = np.take(col_mean, np.nonzero(mask)[1])
        return np.ascontiguousarray(X), w

    def reseed_rows(self):
        """The rows an emptied component is re-seeded on (see
        :func:`emseg.mixture.gaussian.m_step`): those of the data this subsample was drawn
        from, else these, missing values filled with column means."""
        source = self if self.drawn_from is None else self.drawn_from
        return np.ascontiguousarray(source.init_view()[0], dtype=np.float64)

    def column_moments(self):
        """:func:`column_moments` of all the rows."""
        parts = [column_moments(self.X, self.w)]
        parts += [column_moments(p.X, p.w) for p in self.patterns]
        return sum_moments(parts)

    def stats(self, params, covariance_type):
        """The E-step: :class:`~emseg.mixture.gaussian.GaussianStats` of all the rows under
        ``params`` (a :class:`~emseg.mixture.gaussian.GaussianParams`)."""
        weights, means, covariances, precisions_cholesky = params
        stats = complete_stats(self.X, self.w, weights, means, precisions_cholesky,
                               covariance_type)
        for p in self.patterns:
            stats = stats + pattern_stats(p, weights, means, covariances, covariance_type)
        return stats


def column_moments(X, w):
    """Per column: the weight of the observed (non-NaN) values, their weighted mean and
    centred sum of squares; ``w`` an empty array for unit weights. Moments of parts add
    up through :func:`sum_moments` (Chan, Golub & LeVeque's pairwise update)."""
    X = np.asarray(X, dtype=np.float64)
    w = unit_weights(w, X.shape[0])
    if not np.isnan(X).any():  # complete rows: no masks, and cache-sized temporaries
        n = np.full(X.shape[1], w.sum())
        mean = (w @ X) / n
        m2 = np.zeros(X.shape[1])
        buffer = np.empty((min(X.shape[0], CHUNK_ROWS), X.shape[1]))
        for start in range(0, X.shape[0], CHUNK_ROWS):
            rows = X[start : start + CHUNK_ROWS]
            centred = np.subtract(rows, mean, out=buffer[: rows.shape[0]])
            centred *= centred
            m2 += w[start : start + CHUNK_ROWS] @ centred
        return n, mean, m2
    seen = ~np.isnan(X)
    ws = seen * w[:, None]
    n = ws.sum(0)
    Xz = np.where(seen, X, 0.0)
    mean = (ws * Xz).sum(0) / np.maximum(n, 1e-300)
    m2 = (ws * np.where(seen, X - mean, 0.0) ** 2).sum(0)
    return n, mean, m2


def sum_moments(parts):
    """The :func:`column_moments` of the union of the parts whose moments are ``parts``."""
    n, mean, m2 = parts[0]
    for nb, mb, m2b in parts[1:]:
        total = n + nb
        delta = mb - mean
        share = nb / np.maximum(total, 1e-300)
        mean = mean + delta * share
        m2 = m2 + m2b + delta**2 * n * share
        n = total
    return n, mean, m2


def distinct_rows(X, w, cap):
    """``(first, total)``: the index of the first copy of each distinct row of ``X`` and
    the summed weights ``w`` (None: unit) of its copies, compared bit for bit; empty
    arrays once there are more than ``cap`` distinct rows."""
    bits = X.view(np.uint64 if X.dtype == np.float64 else np.uint32)
    return kern.distinct_rows(bits, _EMPTY if w is None else w, cap)


def merge_repeated(X, w, K, probe=65536):
    """Distinct rows and their summed weights, or empty arrays when the rows repeat too
    little (under 4 copies each on average) for merging to pay.

    A look at the first ``probe`` rows settles most cases before the whole pass.
    """
    n = X.shape[0]
    if n > probe:
        first, _ = distinct_rows(X[:probe], None if w is None else w[:probe], probe // 4)
        if not first.shape[0]:
            return _EMPTY, _EMPTY
    return distinct_rows(X, w, cap=max(n // 4, K))


def count_distinct(X, patterns, first, K):
    """The number of distinct rows (counting rows with NaN by their observed values), or
    K when there are at least K: all the fit needs to know."""
    if not patterns and first.shape[0]:
        return min(first.shape[0], K)
    rows = [X] + [p.X for p in patterns]
    if patterns:
        rows = [np.where(np.isnan(r), np.nan, r) for r in rows]  # one NaN bit pattern
        dtype = np.result_type(*rows)
        rows = np.ascontiguousarray(np.concatenate([r.astype(dtype) for r in rows]))
    else:
        rows = rows[0]
    found, _ = distinct_rows(rows, None, cap=K - 1) if K > 1 else (_EMPTY, None)
    if K > 1 and found.shape[0] == 0 and rows.shape[0] > 0:
        return K
    return found.shape[0] if K > 1 else min(rows.shape[0], 1)
