"""Rows with missing values (NaN), fitted by EM on their observed coordinates.

As Ghahramani & Jordan (1994): the rows are grouped by their pattern of missing
values, and for each pattern every component is factorised once (the Cholesky factor of
its observed block, the regression of the missing coordinates on the observed ones and
their conditional covariance), so the E-step's statistics include the expected missing
values and their uncertainty. Diag and spherical models have independent coordinates:
no factorisation, and a missing coordinate keeps its component's mean and variance.
"""

from dataclasses import dataclass

import numpy as np

from .gaussian import LOG_2PI, GaussianStats, dense_covariances, diagonal_variances, logsumexp_rows

#: Rows per block in loops over many rows (cache-sized temporaries).
CHUNK_ROWS = 65536


@dataclass
class Pattern:
    """The rows that share one pattern of missing values."""

    observed: np.ndarray  # bool (D,)
    X: np.ndarray
    w: np.ndarray  # float64 (n,)


def group_patterns(missing, incomplete):
    """Yield ``(row indices, observed mask)`` for each pattern of missing values:
    ``missing`` is ``np.isnan(X)``, ``incomplete`` the rows with any."""
    idx = np.flatnonzero(incomplete)
    keys, inverse = np.unique(np.packbits(missing[idx], axis=1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for g in range(keys.shape[0]):
        rows = idx[inverse == g]
        yield rows, ~missing[rows[0]]


class PatternParts:
    """Per-component factorisations for one pattern of observed coordinates, under the
    parameters ``weights``, ``means`` and ``covariances`` (see :mod:`emseg.mixture.gaussian`)."""

    def __init__(self, observed, weights, means, covariances, covariance_type):
        self.o = np.flatnonzero(observed)
        self.m = np.flatnonzero(~observed)
        self.means = means
        with np.errstate(divide="ignore"):
            self.log_weights = np.log(weights)
        self.var = None
        K, D = means.shape
        if covariance_type in ("diag", "spherical"):
            # independent coordinates: no (D, D) matrix, no regression of missing on observed
            self.var = diagonal_variances(covariances, covariance_type, D)
            self.log_det = np.log(self.var[:, self.o]).sum(1)
            self.chol = [None] * self.var.shape[0]
            return
        cov = dense_covariances(covariances, covariance_type, K, D)
        o, m = self.o, self.m
        self.chol, self.log_det, self.regress, self.cond_cov = [], [], [], []
        from scipy import linalg  # only for missing values: plain fits do without scipy

        for S in cov:
            if o.size:
                L = linalg.cholesky(S[np.ix_(o, o)], lower=True)
                A = linalg.cho_solve((L, True), S[np.ix_(o, m)]).T
            else:
                L = np.zeros((0, 0))
                A = np.zeros((m.size, 0))
            self.chol.append(L)
            self.log_det.append(2 * np.log(np.diag(L)).sum())
            self.regress.append(A)
            self.cond_cov.append(S[np.ix_(m, m)] - A @ S[np.ix_(o, m)])

    def log_prob(self, X):
        """Weighted log-probabilities of the observed block, and the centred observed
        values per component."""
        xo = np.asarray(X[:, self.o], dtype=np.float64)
        K = len(self.chol)
        lp = np.empty((X.shape[0], K))
        centred = []
        for k in range(K):
            y = xo - self.means[k, self.o]
            if self.var is not None:
                maha = (y * y / self.var[k, self.o]).sum(1)
            elif self.o.size:
                from scipy import linalg

                z = linalg.solve_triangular(self.chol[k], y.T, lower=True)
                maha = np.einsum("ij,ij->j", z, z)
            else:
                maha = np.zeros(X.shape[0])
            lp[:, k] = self.log_weights[k] - 0.5 * (
                self.o.size * LOG_2PI + self.log_det[k] + maha
            )
            centred.append(y)
        return lp, centred

    def complete(self, y_obs, k):
        """Expected ``x - mean_k`` for the full row: observed part and its regression."""
        y = np.empty((y_obs.shape[0], self.o.size + self.m.size))
        y[:, self.o] = y_obs
        y[:, self.m] = self.fill(k, y_obs)
        return y

    def fill(self, k, y_obs):
        """Expected ``x_missing - mean_k[missing]`` given the centred observed values."""
        if self.var is not None:
            return np.zeros((y_obs.shape[0], self.m.size))
        return y_obs @ self.regress[k].T


def pattern_stats(pattern, weights, means, covariances, covariance_type):
    """The E-step on the rows of one :class:`Pattern`: :class:`GaussianStats` centred on
    ``means``, with the missing coordinates' expected values and conditional
    covariances filled in."""
    K, D = means.shape
    full = covariance_type in ("full", "tied")
    parts = PatternParts(pattern.observed, weights, means, covariances, covariance_type)
    nk, sx = np.zeros(K), np.zeros((K, D))
    sxx = np.zeros((K, D, D) if full else (K, D))
    ll = 0.0
    for start in range(0, pattern.X.shape[0], CHUNK_ROWS):
        Xc = pattern.X[start : start + CHUNK_ROWS]
        wc = pattern.w[start : start + CHUNK_ROWS]
        lp, centred = parts.log_prob(Xc)
        lse = logsumexp_rows(lp)
        resp = np.exp(lp - lse[:, None]) * wc[:, None]
        ll += float(wc @ lse)
        for k in range(K):
            y = parts.complete(centred[k], k)
            rk = resp[:, k]
            nk[k] += rk.sum()
            sx[k] += rk @ y
            sxx[k] += (y * rk[:, None]).T @ y if full else rk @ (y * y)
    for k in range(K):
        if full:
            sxx[k][np.ix_(parts.m, parts.m)] += nk[k] * parts.cond_cov[k]
        else:  # independent coordinates: the missing ones keep their variance
            sxx[k, parts.m] += nk[k] * parts.var[k, parts.m]
    return GaussianStats(nk, sx, sxx, means, ll, float(pattern.w.sum()))
