"""Gaussian mixture models fitted by EM, in scikit-learn's conventions.

The model is the same as :class:`sklearn.mixture.GaussianMixture` (from the same
starting parameters both reach the same estimates), computed differently:

- The E-step is one compiled pass over the rows that returns sufficient statistics
  (weight, centred first and second moments per component) and never builds an
  N x K x D array. Statistics from chunks, images or workers simply add up.
- Rows repeated in the data (an image's grey levels, quantised sensors) are merged
  into one weighted row before fitting; the weighted fit is the same maximum-likelihood
  fit, on far fewer rows.
- Rows with missing values (NaN) are fitted by EM on their observed coordinates
  (Ghahramani & Jordan 1994): each missingness pattern is factorised once.
"""

import math
import os
from dataclasses import dataclass

import numpy as np

from .._shared import compute as kern
from .._shared.errors import ConvergenceWarning, EmptyComponentWarning, EmsegError
from .kmeans import kmeans_plusplus, lloyd
from .._shared.validation import (
    as_generator,
    check_choice,
    check_data,
    check_float,
    check_int,
    check_sample_weight,
    is_auto,
)
from .em import run_em

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_METHODS = ("kmeans", "kmeans++", "k-means++", "random", "random_from_data")
# reg_covar="auto": the covariance floor of each feature is this fraction of its variance
RELATIVE_FLOOR = 1e-6
# n_init="auto": restarts while a restart is cheap (rows x components x features^2)
_AUTO_RESTARTS = ((2e5, 10), (2e6, 3))
_LOG_2PI = np.log(2 * np.pi)
_EMPTY = np.empty(0)
_PATTERN_CHUNK = 65536


@dataclass
class GaussianStats:
    """Sufficient statistics of one E-step, centred on ``shift`` (the means used).

    ``sxx`` is (K, D, D) for full and tied models, (K, D) for diag and spherical.
    Statistics computed under the same parameters add up with ``+``.
    """

    nk: np.ndarray
    sx: np.ndarray
    sxx: np.ndarray
    shift: np.ndarray
    loglik: float
    weight: float

    def __add__(self, other):
        return GaussianStats(
            self.nk + other.nk,
            self.sx + other.sx,
            self.sxx + other.sxx,
            self.shift,
            self.loglik + other.loglik,
            self.weight + other.weight,
        )


@dataclass
class _Pattern:
    """The rows that share one pattern of missing values."""

    observed: np.ndarray  # bool (D,)
    X: np.ndarray
    w: np.ndarray  # float64 (n,)


@dataclass
class _TrainingData:
    X: np.ndarray  # complete rows (distinct rows when merged)
    w: np.ndarray  # their weights, or an empty array for unit weights
    patterns: list
    total_weight: float

    def init_view(self):
        """Rows and weights to start from: missing values filled with column means."""
        if not self.patterns:
            return self.X, self.w
        rows = [self.X] + [p.X for p in self.patterns]
        weights = [_unit(self.w, self.X.shape[0])] + [p.w for p in self.patterns]
        X = np.concatenate(rows).astype(np.float64)
        w = np.concatenate(weights)
        mask = np.isnan(X)
        col_mean = np.nansum(np.where(mask, 0, X) * w[:, None], 0) / (
            (~mask * w[:, None]).sum(0)
        )
        X[mask] = np.take(col_mean, np.nonzero(mask)[1])
        return np.ascontiguousarray(X), w


def _unit(w, n):
    return np.ones(n) if w.shape[0] == 0 else w


class GaussianMixture:
    """Gaussian mixture fitted by Expectation-Maximization.

    Parameters follow :class:`sklearn.mixture.GaussianMixture`, with these defaults
    that differ, each chosen so the fit does not depend on how the data are stored and
    reaches a maximum at least as good as scikit-learn's:

    - ``reg_covar="auto"``: the covariance floor added to each feature's variance is
      ``1e-6`` times that feature's (weighted) variance in the data, so multiplying a
      column by 1e-4 or 1e4 gives the same fit. A number is an absolute floor, as in
      scikit-learn (``reg_covar=1e-6`` reproduces scikit-learn's fit exactly).
    - ``n_init="auto"``: 10 restarts when one costs little (rows x components x
      features^2 up to 2e5, e.g. an image's few hundred grey levels), 3 up to 2e6,
      else 1 (and 1 when all three ``*_init`` are given). With several restarts each
      is a short run (to a change of 1e-3) and the best goes on to ``tol`` (see
      :mod:`emseg.mixture.em`).
    - ``tol="auto"``: 1e-6 (change in mean log-likelihood per sample) where an
      iteration is cheap (the same measure up to 2e6), else scikit-learn's 1e-3; and
      ``max_iter="auto"``: 1000 iterations where they are cheap, else 100.
    - ``init_params="kmeans"``: k-means++ seeds refined by Lloyd's k-means, as
      scikit-learn's default.
    - ``accelerate=True``: SQUAREM extrapolation (Varadhan & Roland 2008) between
      plain EM steps, kept only when it raises the log-likelihood, so the history never
      decreases and the same maximum is reached in fewer iterations. ``False`` gives
      plain EM step for step (the same iterates as scikit-learn from the same start).

    After ``fit``: ``weights_``, ``means_``, ``covariances_``, ``precisions_cholesky_``,
    ``converged_``, ``n_iter_``, ``lower_bound_`` (weighted mean log-likelihood per
    sample of the parameters the last M-step started from), ``history_`` (that value
    for every iteration of the kept restart), ``reg_covar_`` (the floor used, one value
    per feature), ``tol_`` and ``max_iter_`` (the values used), ``n_init_`` and
    ``restart_lower_bounds_`` (each restart's value at the end of its short run). Components are ordered by
    the mean of their first feature, ascending.

    ``callback(iteration, lower_bound)`` is called after every EM iteration.
    """

    # Merge repeated rows into weighted ones before fitting (exact; off only in tests
    # that exercise the plain per-row path).
    _merge_repeated_rows = True
    # fits on more rows than this start from a fit on a subsample of half as many
    _presubsample_rows = 1 << 17

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol="auto",
        reg_covar="auto",
        max_iter="auto",
        n_init="auto",
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        callback=None,
        accelerate=True,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.callback = callback
        self.accelerate = accelerate

    # --- fitting -----------------------------------------------------------------

    def fit(self, X, sample_weight=None):
        """Fit the mixture to the rows of ``X`` (NaN marks a missing value).

        A dask array is fitted chunk by chunk: see :mod:`emseg.mixture.dask_fit`.
        """
        if _is_dask(X):
            from .dask_fit import fit_dask_array

            return fit_dask_array(self, X, sample_weight)
        X = check_data(X)
        w = check_sample_weight(sample_weight, X.shape[0])
        self._check_parameters(X.shape[1])
        data = self._prepare(X, w)
        warm = self.warm_start and hasattr(self, "converged_")
        if warm and self.means_.shape[1] != X.shape[1]:
            raise EmsegError(
                f"warm_start: the model has {self.means_.shape[1]} features, X has "
                f"{X.shape[1]}; refit with warm_start=False"
            )
        self.reg_covar_ = self._covariance_floor(data)
        n_rows = data.X.shape[0] + sum(p.X.shape[0] for p in data.patterns)
        n_init, self.max_iter_, self.tol_ = self._settings(n_rows, X.shape[1])
        self._fit_data = data
        try:
            result = run_em(
                self,
                data,
                n_init=n_init,
                max_iter=self.max_iter_,
                tol=self.tol_,
                rng=as_generator(self.random_state),
                start_bound=self.lower_bound_ if warm else None,
                callback=self.callback,
                accelerate=self.accelerate,
            )
        finally:
            del self._fit_data
        return self._finish_fit(result)

    def _settings(self, n_rows, n_features):
        """``(n_init, max_iter, tol)`` as numbers: each "auto" one by the cost of a pass
        over the rows, rows x components x features^2 (see the class doc)."""
        work = n_rows * self.n_components * n_features**2
        cheap = work <= _AUTO_RESTARTS[-1][0]
        n_init = next((n for limit, n in _AUTO_RESTARTS if work <= limit), 1)
        if all(p is not None for p in (self.weights_init, self.means_init, self.precisions_init)):
            n_init = 1  # every restart would start from the same given parameters
        return (
            n_init if is_auto(self.n_init) else self.n_init,
            (1000 if cheap else 100) if is_auto(self.max_iter) else self.max_iter,
            (1e-6 if cheap else 1e-3) if is_auto(self.tol) else self.tol,
        )

    def _covariance_floor(self, data):
        """The covariance floor per feature: ``reg_covar``, or with "auto" a fraction
        ``RELATIVE_FLOOR`` of each feature's weighted variance (see :meth:`_floor_from_moments`)."""
        if not is_auto(self.reg_covar):
            return np.full(data.X.shape[1], float(self.reg_covar))
        parts = [column_moments(data.X, data.w)] + [column_moments(p.X, p.w) for p in data.patterns]
        return self._floor_from_moments(_sum_moments(parts))

    def _floor_from_moments(self, moments):
        """The floor from ``column_moments`` of all the data (the Dask fit's path too)."""
        n, _, m2 = moments
        if not is_auto(self.reg_covar):
            return np.full(n.shape[0], float(self.reg_covar))
        var = m2 / np.maximum(n, 1e-300)
        return np.where(var > 0, RELATIVE_FLOOR * var, RELATIVE_FLOOR)

    def _finish_fit(self, result):
        """Sort the components and record how EM went (shared with the Dask fit)."""
        self._sort_components()
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = float(result.lower_bound)
        self.history_ = np.asarray(result.history, dtype=np.float64)
        self.n_init_ = len(result.restarts)
        self.restart_lower_bounds_ = np.asarray(result.restarts, dtype=np.float64)
        return self

    def fit_predict(self, X, sample_weight=None):
        """Fit, then label each row with its most probable component."""
        return self.fit(X, sample_weight).predict(X)

    def _check_parameters(self, n_features):
        check_int(self.n_components, "n_components", 1)
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        if not is_auto(self.tol):
            check_float(self.tol, "tol")
        if not is_auto(self.reg_covar):
            check_float(self.reg_covar, "reg_covar")
        if not is_auto(self.max_iter):
            check_int(self.max_iter, "max_iter", 0)
        if not is_auto(self.n_init):
            check_int(self.n_init, "n_init", 1)
        check_choice(self.init_params, "init_params", INIT_METHODS)
        if not isinstance(self.accelerate, bool):
            raise EmsegError(f"accelerate must be True or False, got {self.accelerate!r}")
        if self.callback is not None and not callable(self.callback):
            raise EmsegError(f"callback must be callable, got {self.callback!r}")
        K, D = self.n_components, n_features
        if self.weights_init is not None:
            wi = _check_init(self.weights_init, "weights_init", (K,))
            if (wi < 0).any() or abs(wi.sum() - 1) > 1e-6:
                raise EmsegError(
                    "weights_init must be non-negative and sum to 1, got sum "
                    f"{wi.sum():g}"
                )
        if self.means_init is not None:
            _check_init(self.means_init, "means_init", (K, D))
        if self.precisions_init is not None:
            shape = {
                "full": (K, D, D),
                "tied": (D, D),
                "diag": (K, D),
                "spherical": (K,),
            }[self.covariance_type]
            _check_init(self.precisions_init, "precisions_init", shape)

    def _prepare(self, X, w):
        """Split rows into complete ones (merged when repeated) and missingness groups."""
        K = self.n_components
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
                patterns.append(_Pattern(observed, Xs[rows], ws[rows]))
            X = np.ascontiguousarray(X[~incomplete])
            w = None if w is None else w[~incomplete]
        n_rows = X.shape[0]
        n_pattern_rows = sum(p.X.shape[0] for p in patterns)
        if n_rows + n_pattern_rows == 0:
            raise EmsegError("X has no row with an observed value")
        if self._merge_repeated_rows or n_rows <= K:
            first, total = _merge_repeated(X, w, K)
        else:
            first = total = _EMPTY
        distinct = _count_distinct(X, patterns, first, K)
        if distinct < K:
            raise EmsegError(
                f"X has only {distinct} distinct rows, cannot fit n_components={K}; "
                "lower n_components"
            )
        if first.shape[0] and self._merge_repeated_rows:
            X, w = np.ascontiguousarray(X[first]), total
        weight = float(n_rows if w is None else w.sum()) + sum(float(p.w.sum()) for p in patterns)
        return _TrainingData(X, _EMPTY if w is None else w, patterns, weight)

    # --- the EM protocol (see emseg.mixture.em) ----------------------------------------------

    def _initialize(self, data, rng):
        K = self.n_components
        supplied = (self.weights_init, self.means_init, self.precisions_init)
        if all(p is not None for p in supplied):
            self._set_initial(self.weights_init, self.means_init, self.precisions_init)
            return
        # many rows: seed and iterate on a weighted subsample first (see _subsample)
        large = data.X.shape[0] > self._presubsample_rows and not data.patterns
        start = self._subsample(data, rng) if large else data
        X, w = start.init_view()
        full = self.covariance_type in ("full", "tied")  # else only the diagonal of sxx
        if self.means_init is not None:
            centres = np.asarray(self.means_init, dtype=np.float64)
            stats = _stats_from_labels(X, w, kern.nearest_centre(X, centres)[0], centres, full)
        elif self.init_params == "random":
            stats = _stats_from_random(X, w, K, rng, full)
        else:
            if self.init_params == "random_from_data":
                p = _unit(w, X.shape[0])
                centres = X[rng.choice(X.shape[0], K, replace=False, p=p / p.sum())]
                centres = centres.astype(np.float64)
            else:
                centres = kmeans_plusplus(X, w, K, rng)
            if self.init_params == "kmeans":
                centres, labels = lloyd(X, w, centres)
            else:
                labels = kern.nearest_centre(X, centres)[0]
            stats = _stats_from_labels(X, w, labels, centres, full)
        self._m_step(stats)
        self._set_initial(self.weights_init, self.means_init, self.precisions_init)
        if large:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                _, max_iter, tol = self._settings(*start.X.shape)
                run_em(self, start, n_init=1, max_iter=max_iter, tol=tol, rng=rng,
                       start_bound=-np.inf, accelerate=self.accelerate)

    def _subsample(self, data, rng):
        """A weighted random subsample of the rows, to seed and run EM on first, so the
        fit starts close to a maximum and the full data converge in a few iterations.

        This only chooses where EM starts; the fit still iterates on all the rows until
        the log-likelihood changes by less than ``tol``.
        """
        X, w = data.X, _unit(data.w, data.X.shape[0])
        m = self._presubsample_rows // 2
        picks = rng.choice(X.shape[0], size=m, p=w / w.sum())
        rows, counts = np.unique(picks, return_counts=True)
        return _TrainingData(
            np.ascontiguousarray(X[rows]), counts.astype(np.float64), [], float(m)
        )

    def _set_initial(self, weights, means, precisions):
        """Overwrite the starting parameters the caller supplied (copies, never views)."""
        if weights is not None:
            self.weights_ = np.array(weights, dtype=np.float64)
        if means is not None:
            self.means_ = np.array(means, dtype=np.float64)
        if precisions is not None:
            prec = np.array(precisions, dtype=np.float64)
            self.precisions_cholesky_ = _cholesky_of_precisions(prec, self.covariance_type)
            self.covariances_ = _covariances_from_chol(
                self.precisions_cholesky_, self.covariance_type
            )

    def _e_step(self, data):
        stats = self._complete_stats(data.X, data.w)
        for p in data.patterns:
            stats = stats + self._pattern_stats(p)
        return stats, stats.loglik / data.total_weight

    def _complete_stats(self, X, w):
        K, D = self.means_.shape
        kind, log_norm, means, prec = self._kernel_params()
        if X.shape[0] == 0:
            sxx = np.zeros((K, D, D) if kind == "full" else (K, D))
            return GaussianStats(np.zeros(K), np.zeros((K, D)), sxx, means, 0.0, 0.0)
        if kind == "full":
            nk, sx, sxx, ll = kern.estep_full(X, w, log_norm, means, prec)
            sxx = 0.5 * (sxx + sxx.transpose(0, 2, 1))
        else:
            nk, sx, sxx, ll = kern.estep_diag(X, w, log_norm, means, prec)
        weight = X.shape[0] if w.shape[0] == 0 else w.sum()
        return GaussianStats(nk, sx, sxx, means, float(ll), float(weight))

    def _pattern_stats(self, pattern):
        K, D = self.means_.shape
        full = self.covariance_type in ("full", "tied")
        parts = _PatternParts(self, pattern.observed)
        nk, sx = np.zeros(K), np.zeros((K, D))
        sxx = np.zeros((K, D, D) if full else (K, D))
        ll = 0.0
        for start in range(0, pattern.X.shape[0], _PATTERN_CHUNK):
            Xc = pattern.X[start : start + _PATTERN_CHUNK]
            wc = pattern.w[start : start + _PATTERN_CHUNK]
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
        return GaussianStats(nk, sx, sxx, self.means_, ll, float(pattern.w.sum()))

    def _m_step(self, stats):
        nk, total = stats.nk, stats.nk.sum()
        empty = nk <= 1e-10 * total
        safe = np.where(empty, 1.0, nk)
        shift = stats.sx / safe[:, None]
        means = stats.shift + shift
        reg = self.reg_covar_
        D = means.shape[1]
        ctype = self.covariance_type
        if ctype in ("full", "tied"):
            scatter = stats.sxx - nk[:, None, None] * shift[:, :, None] * shift[:, None, :]
            if ctype == "full":
                cov = scatter / safe[:, None, None]
                cov[:, np.arange(D), np.arange(D)] += reg
            else:
                cov = scatter.sum(0) / total
                cov.flat[:: D + 1] += reg
        else:
            sxx = stats.sxx if stats.sxx.ndim == 2 else np.einsum("kii->ki", stats.sxx)
            var = sxx / safe[:, None] - shift**2 + reg
            cov = var if ctype == "diag" else var.mean(1)
        weights = nk / total
        if empty.any():
            weights, means, cov = self._reseed(empty, weights, means, cov)
        self.weights_ = weights
        self.means_ = means
        self.covariances_ = cov
        self.precisions_cholesky_ = _cholesky_of_covariances(cov, ctype)

    def _reseed(self, empty, weights, means, cov):
        """Move each emptied component onto the row farthest from every other mean (greedy
        farthest-point, so two emptied components never land on one row), with a warning.

        The rule looks only at the data and the new means, never at a previous fit.
        """
        import warnings

        data = getattr(self, "_fit_data", None)
        X = data.init_view()[0] if data is not None else means[~empty]
        X = np.ascontiguousarray(X, dtype=np.float64)
        if (~empty).any():
            dist = kern.nearest_centre(X, np.ascontiguousarray(means[~empty]))[1]
        else:
            dist = np.zeros(X.shape[0])
        full_cov = self.covariance_type in ("full", "diag", "spherical")
        for k in np.flatnonzero(empty):
            row = int(np.argmax(dist))
            means[k] = X[row]
            dist = np.minimum(dist, kern.sq_dist_to(X, X[row]))
            weights[k] = 1.0 / len(weights)
            if full_cov:
                cov[k] = cov[~empty].mean(0) if (~empty).any() else cov[k]
        warnings.warn(
            f"{int(empty.sum())} mixture component(s) lost all their weight and were "
            "re-seeded on poorly fitted rows; consider fewer components",
            EmptyComponentWarning,
            stacklevel=5,
        )
        return weights / weights.sum(), means, cov

    def _get_params(self):
        return (self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)

    def _extrapolate(self, p0, p1, p2):
        """SQUAREM's step from three successive parameter sets (see :mod:`emseg.mixture.em`):
        the extrapolated parameters, or None when they are not a valid mixture."""
        r = [b - a for a, b in zip(p0[:3], p1[:3])]
        v = [c - 2 * b + a for a, b, c in zip(p0[:3], p1[:3], p2[:3])]
        norm_v = np.sqrt(sum(float((x * x).sum()) for x in v))
        if norm_v == 0 or not np.isfinite(norm_v):
            return None
        norm_r = np.sqrt(sum(float((x * x).sum()) for x in r))
        alpha = -max(norm_r / norm_v, 1.0)
        if alpha == -1.0:
            return None
        weights, means, cov = (
            a - 2 * alpha * dr + alpha**2 * dv for a, dr, dv in zip(p0[:3], r, v)
        )
        if (weights <= 0).any():
            return None
        if self.covariance_type in ("full", "tied"):
            cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
        try:
            chol = _cholesky_of_covariances(cov, self.covariance_type)
        except EmsegError:
            return None
        return (weights / weights.sum(), means, cov, chol)

    def _set_params(self, params):
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = params

    def _sort_components(self):
        self._reorder(np.argsort(self.means_[:, 0], kind="stable"))

    def _reorder(self, order):
        """Permute the components (``order[i]`` becomes component ``i``)."""
        self.weights_ = self.weights_[order]
        self.means_ = self.means_[order]
        if self.covariance_type != "tied":
            self.covariances_ = self.covariances_[order]
            self.precisions_cholesky_ = self.precisions_cholesky_[order]

    def _kernel_params(self):
        """Parameters in the layout the compiled kernels take."""
        K, D = self.means_.shape
        pc = self.precisions_cholesky_
        ctype = self.covariance_type
        if ctype == "full":
            log_det = np.log(np.diagonal(pc, axis1=1, axis2=2)).sum(1)
            prec, kind = pc, "full"
        elif ctype == "tied":
            log_det = np.full(K, np.log(np.diag(pc)).sum())
            prec, kind = np.broadcast_to(pc, (K, D, D)), "full"
        elif ctype == "diag":
            log_det = np.log(pc).sum(1)
            prec, kind = pc, "diag"
        else:
            log_det = D * np.log(pc)
            prec, kind = np.broadcast_to(pc[:, None], (K, D)), "diag"
        with np.errstate(divide="ignore"):
            log_norm = np.log(self.weights_) + log_det - 0.5 * D * _LOG_2PI
        means = np.ascontiguousarray(self.means_, dtype=np.float64)
        return kind, log_norm, means, np.ascontiguousarray(prec, dtype=np.float64)

    # --- using a fitted model -------------------------------------------------------

    def _check_fitted(self, X):
        self._require_fitted()
        X = check_data(X)
        self._require_fitted(X.shape[1])
        return X

    def _require_fitted(self, n_features=None):
        """Refuse an unfitted model, or data with another number of features."""
        if not hasattr(self, "precisions_cholesky_"):
            raise EmsegError("this GaussianMixture is not fitted yet; call fit(X) first")
        if n_features is not None and n_features != self.means_.shape[1]:
            raise EmsegError(
                f"X has {n_features} features but the model was fitted with "
                f"{self.means_.shape[1]}"
            )

    def _weighted_log_prob(self, X):
        """``log w_k + log p(x_obs | k)`` for every row, (N, K); NaN rows use their marginal."""
        kind, log_norm, means, prec = self._kernel_params()
        missing = np.isnan(X)
        incomplete = missing.any(axis=1)
        kernel = kern.log_prob_full if kind == "full" else kern.log_prob_diag
        if not incomplete.any():
            return kernel(X, log_norm, means, prec)
        out = np.empty((X.shape[0], self.n_components_))
        complete = ~incomplete
        if complete.any():
            out[complete] = kernel(np.ascontiguousarray(X[complete]), log_norm, means, prec)
        for rows, observed in _group_patterns(missing, incomplete):
            out[rows] = _PatternParts(self, observed).log_prob(X[rows])[0]
        return out

    @property
    def n_components_(self):
        return self.means_.shape[0]

    def score_samples(self, X):
        """Log-likelihood of each row (of its observed values, when some are NaN).
        For a dask array: a lazy dask array, computed chunk by chunk."""
        if _is_dask(X):
            from .dask_fit import map_rows

            return map_rows(self, X, "score_samples")
        return kern.normalise_rows(self._weighted_log_prob(self._check_fitted(X)))

    def score(self, X, sample_weight=None):
        """Weighted mean log-likelihood of the rows (a dask array: chunk by chunk)."""
        if _is_dask(X):
            from .dask_fit import mean_score

            return mean_score(self, X, sample_weight)
        X = self._check_fitted(X)
        w = check_sample_weight(sample_weight, X.shape[0])
        return float(np.average(self.score_samples(X), weights=w))

    def predict_proba(self, X):
        """Posterior probability of each component for each row, (N, K).
        For a dask array: a lazy dask array, computed chunk by chunk."""
        if _is_dask(X):
            from .dask_fit import map_rows

            return map_rows(self, X, "predict_proba")
        lp = self._weighted_log_prob(self._check_fitted(X))
        kern.normalise_rows(lp)
        return lp

    def predict(self, X):
        """Most probable component of each row.
        For a dask array: a lazy dask array, computed chunk by chunk."""
        if _is_dask(X):
            from .dask_fit import map_rows

            return map_rows(self, X, "predict")
        return self._weighted_log_prob(self._check_fitted(X)).argmax(axis=1)

    def _n_parameters(self):
        return n_parameters(self.covariance_type, *self.means_.shape)

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better)."""
        n = X.shape[0] if _is_dask(X) else self._check_fitted(X).shape[0]
        return -2 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better)."""
        n = X.shape[0] if _is_dask(X) else self._check_fitted(X).shape[0]
        return -2 * self.score(X) * n + 2 * self._n_parameters()

    @property
    def precisions_(self):
        pc = self.precisions_cholesky_
        if self.covariance_type == "full":
            return pc @ pc.transpose(0, 2, 1)
        if self.covariance_type == "tied":
            return pc @ pc.T
        return pc**2

    def sample(self, n_samples=1):
        """Draw ``n_samples`` rows; returns ``(X, labels)``."""
        if not hasattr(self, "precisions_cholesky_"):
            raise EmsegError("this GaussianMixture is not fitted yet; call fit(X) first")
        check_int(n_samples, "n_samples", 1)
        rng = as_generator(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_)
        if self.covariance_type in ("diag", "spherical"):  # independent coordinates
            sd = np.sqrt(_diagonal_variances(self))
            X = np.concatenate(
                [m + s * rng.standard_normal((int(n), m.size))
                 for m, s, n in zip(self.means_, sd, counts)]
            )
        else:
            cov = full_covariances(self)
            X = np.concatenate(
                [rng.multivariate_normal(m, c, int(n)) for m, c, n in zip(self.means_, cov, counts)]
            )
        labels = np.repeat(np.arange(self.n_components_), counts)
        return X, labels

    def impute(self, X):
        """A copy of ``X`` with each NaN replaced by its expected value under the model.

        The expectation is the posterior-weighted conditional mean of the missing block
        given the observed values (responsibilities from the observed values' marginal).
        """
        X = self._check_fitted(X)
        out = np.array(X, dtype=np.float64)
        missing = np.isnan(out)
        incomplete = missing.any(axis=1)
        for rows, observed in _group_patterns(missing, incomplete):
            parts = _PatternParts(self, observed)
            for start in range(0, rows.size, _PATTERN_CHUNK):
                idx = rows[start : start + _PATTERN_CHUNK]
                lp, centred = parts.log_prob(out[idx])
                resp = np.exp(lp - logsumexp_rows(lp)[:, None])
                fill = np.zeros((idx.size, parts.m.size))
                for k in range(self.n_components_):
                    fill += resp[:, k, None] * (self.means_[k, parts.m] + parts.fill(k, centred[k]))
                block = out[idx]
                block[:, parts.m] = fill
                out[idx] = block
        return out


# --- helpers ---------------------------------------------------------------------------


def column_moments(X, w):
    """Per column: the weight of the observed (non-NaN) values, their weighted mean and
    centred sum of squares; ``w`` an empty array for unit weights. Moments of parts add
    up through :func:`_sum_moments` (Chan, Golub & LeVeque's pairwise update)."""
    X = np.asarray(X, dtype=np.float64)
    w = _unit(w, X.shape[0])
    if not np.isnan(X).any():  # complete rows: no masks, and cache-sized temporaries
        n = np.full(X.shape[1], w.sum())
        mean = (w @ X) / n
        m2 = np.zeros(X.shape[1])
        buffer = np.empty((min(X.shape[0], _PATTERN_CHUNK), X.shape[1]))
        for start in range(0, X.shape[0], _PATTERN_CHUNK):
            rows = X[start : start + _PATTERN_CHUNK]
            centred = np.subtract(rows, mean, out=buffer[: rows.shape[0]])
            centred *= centred
            m2 += w[start : start + _PATTERN_CHUNK] @ centred
        return n, mean, m2
    seen = ~np.isnan(X)
    ws = seen * w[:, None]
    n = ws.sum(0)
    Xz = np.where(seen, X, 0.0)
    mean = (ws * Xz).sum(0) / np.maximum(n, 1e-300)
    m2 = (ws * np.where(seen, X - mean, 0.0) ** 2).sum(0)
    return n, mean, m2


def _sum_moments(parts):
    n, mean, m2 = parts[0]
    for nb, mb, m2b in parts[1:]:
        total = n + nb
        delta = mb - mean
        share = nb / np.maximum(total, 1e-300)
        mean = mean + delta * share
        m2 = m2 + m2b + delta**2 * n * share
        n = total
    return n, mean, m2


def _check_init(value, name, shape):
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise EmsegError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise EmsegError(f"{name} contains NaN or infinity")
    return arr


def _merge_repeated(X, w, K, probe=65536):
    """Distinct rows and their summed weights, or empty arrays when the rows repeat too
    little (under 4 copies each on average) for merging to pay.

    A look at the first ``probe`` rows settles most cases before the whole pass.
    """
    n = X.shape[0]
    if n > probe:
        first, _ = _distinct_rows(X[:probe], None if w is None else w[:probe], probe // 4)
        if not first.shape[0]:
            return _EMPTY, _EMPTY
    return _distinct_rows(X, w, cap=max(n // 4, K))


def _count_distinct(X, patterns, first, K):
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
    found, _ = _distinct_rows(rows, None, cap=K - 1) if K > 1 else (_EMPTY, None)
    if K > 1 and found.shape[0] == 0 and rows.shape[0] > 0:
        return K
    return found.shape[0] if K > 1 else min(rows.shape[0], 1)


def _distinct_rows(X, w, cap):
    bits = X.view(np.uint64 if X.dtype == np.float64 else np.uint32)
    return kern.distinct_rows(bits, _EMPTY if w is None else w, cap)


def _group_patterns(missing, incomplete):
    """Yield (row indices, observed mask) for each pattern of missing values."""
    idx = np.flatnonzero(incomplete)
    keys, inverse = np.unique(np.packbits(missing[idx], axis=1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for g in range(keys.shape[0]):
        rows = idx[inverse == g]
        yield rows, ~missing[rows[0]]


def n_parameters(covariance_type, k, d):
    """Free parameters of a k-component mixture in d dimensions."""
    cov = {
        "full": k * d * (d + 1) / 2,
        "tied": d * (d + 1) / 2,
        "diag": k * d,
        "spherical": k,
    }[covariance_type]
    return int(cov + k * d + k - 1)


def check_allocation(shape, what, fix="use fewer columns or components"):
    """Refuse (one line naming ``what``) a float64 array of ``shape`` larger than the
    machine's free memory, before numpy tries: a diagonal model over 100,000 columns
    made dense is (K, 100000, 100000), 149 GiB for two components."""
    size = 8.0 * math.prod(int(n) for n in shape)
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        free = 16 * 2**30
    if size > free:
        raise EmsegError(
            f"{what} needs a {tuple(int(n) for n in shape)} float64 array ({size / 2**30:.3g} "
            f"GiB), more than the {free / 2**30:.3g} GiB of free memory; {fix}"
        )


_DIAG_FIX = "use covariance_type='diag' (or fewer columns or components)"


def _diagonal_variances(gm):
    """(K, D) variances of a diag or spherical mixture."""
    K, D = gm.means_.shape
    cov = np.asarray(gm.covariances_, dtype=np.float64)
    return cov if gm.covariance_type == "diag" else np.repeat(cov[:, None], D, axis=1)


def full_covariances(gm):
    """The fitted covariances of ``gm`` as a (K, D, D) array, whatever its type.

    Diag and spherical models are made dense: refused by :func:`check_allocation` when
    that needs more than the free memory (their own code paths never need it)."""
    K, D = gm.means_.shape
    cov = gm.covariances_
    if gm.covariance_type == "full":
        return cov
    if gm.covariance_type == "tied":
        return np.broadcast_to(cov, (K, D, D))
    check_allocation((K, D, D), f"{gm.covariance_type} covariances as (K, D, D) matrices")
    if gm.covariance_type == "diag":
        return np.einsum("kd,de->kde", cov, np.eye(D))
    return cov[:, None, None] * np.eye(D)


class _PatternParts:
    """Per-component factorisations for one pattern of observed coordinates."""

    def __init__(self, gm, observed):
        self.o = np.flatnonzero(observed)
        self.m = np.flatnonzero(~observed)
        self.means = gm.means_
        with np.errstate(divide="ignore"):
            self.log_weights = np.log(gm.weights_)
        self.var = None
        if gm.covariance_type in ("diag", "spherical"):
            # independent coordinates: no (D, D) matrix, no regression of missing on observed
            self.var = _diagonal_variances(gm)
            self.log_det = np.log(self.var[:, self.o]).sum(1)
            self.chol = [None] * self.var.shape[0]
            return
        cov = full_covariances(gm)
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
                self.o.size * _LOG_2PI + self.log_det[k] + maha
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


def _is_dask(X):
    """True for a dask array (checked without importing dask)."""
    return type(X).__module__.startswith("dask.")


def logsumexp_rows(a):
    """``log(sum(exp(a), axis=1))`` for a 2-D array, without overflow (as
    ``scipy.special.logsumexp``; a row of -inf gives -inf)."""
    top = a.max(axis=1)
    top[~np.isfinite(top)] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - top[:, None]).sum(axis=1)) + top


def _cholesky_of_covariances(cov, ctype):
    """Upper-triangular precision factors, as scikit-learn stores them."""
    fix = "increase reg_covar or use fewer components"
    if ctype in ("diag", "spherical"):
        if (cov <= 0).any() or not np.isfinite(cov).all():
            raise EmsegError(f"a fitted variance is not positive; {fix}")
        return 1.0 / np.sqrt(cov)
    covs = cov[None] if ctype == "tied" else cov
    if covs.shape[-1] == 1:  # one feature (grey images): the factor is 1 / sqrt(variance)
        if not (covs > 0).all() or not np.isfinite(covs).all():
            raise EmsegError(f"a fitted covariance is singular; {fix}")
        out = 1.0 / np.sqrt(covs)
        return out[0] if ctype == "tied" else out
    out = np.empty_like(covs)
    for k, S in enumerate(covs):
        try:
            if not np.isfinite(S).all():
                raise np.linalg.LinAlgError
            L = np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            raise EmsegError(f"a fitted covariance is singular; {fix}") from None
        out[k] = kern.inv_lower(L).T
    return out[0] if ctype == "tied" else out


def _cholesky_of_precisions(prec, ctype):
    if ctype in ("diag", "spherical"):
        if (prec <= 0).any():
            raise EmsegError("precisions_init must be positive")
        return np.sqrt(prec)
    precs = prec[None] if ctype == "tied" else prec
    out = np.empty_like(precs)
    for k, P in enumerate(precs):
        try:
            # the upper factor U with P = U U^T, by Cholesky of P with rows and columns reversed
            if not np.isfinite(P).all():
                raise np.linalg.LinAlgError
            out[k] = np.flipud(np.fliplr(np.linalg.cholesky(np.flipud(np.fliplr(P)))))
        except np.linalg.LinAlgError:
            raise EmsegError("precisions_init must be symmetric positive definite") from None
    return out[0] if ctype == "tied" else out


def _covariances_from_chol(pc, ctype):
    if ctype in ("diag", "spherical"):
        return 1.0 / pc**2
    if ctype == "tied":
        return np.linalg.inv(pc @ pc.T)
    return np.linalg.inv(pc @ pc.transpose(0, 2, 1))


def _stats_from_labels(X, w, labels, centres, full=True):
    """Statistics of a hard assignment (for starting EM), centred on ``centres``; ``sxx``
    is (K, D) (its diagonal) unless ``full``, as the E-step of diag/spherical gives."""
    K, D = centres.shape
    w = _unit(w, X.shape[0])
    nk = np.zeros(K)
    sx = np.zeros((K, D))
    if full:
        check_allocation((K, D, D), "full or tied covariances", _DIAG_FIX)
    sxx = np.zeros((K, D, D) if full else (K, D))
    for k in range(K):
        rows = labels == k
        y = X[rows] - centres[k]
        wk = w[rows]
        nk[k] = wk.sum()
        sx[k] = wk @ y
        sxx[k] = (y * wk[:, None]).T @ y if full else wk @ (y * y)
    return GaussianStats(nk, sx, sxx, centres, 0.0, float(w.sum()))


def _stats_from_random(X, w, K, rng, full=True):
    """Statistics of random soft responsibilities (``init_params="random"``); ``sxx``
    as in :func:`_stats_from_labels`."""
    w = _unit(w, X.shape[0])
    resp = rng.uniform(size=(X.shape[0], K))
    resp /= resp.sum(1, keepdims=True)
    resp *= w[:, None]
    nk = resp.sum(0)
    centres = (resp.T @ X) / nk[:, None]
    D = X.shape[1]
    if full:
        check_allocation((K, D, D), "full or tied covariances", _DIAG_FIX)
    sxx = np.empty((K, D, D) if full else (K, D))
    for k in range(K):
        y = X - centres[k]
        sxx[k] = (y * resp[:, k, None]).T @ y if full else resp[:, k] @ (y * y)
    return GaussianStats(nk, np.zeros((K, D)), sxx, centres, 0.0, float(w.sum()))
