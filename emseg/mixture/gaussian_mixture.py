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

This module holds the estimator; the Gaussian algebra is :mod:`emseg.mixture.gaussian`,
the rows it is fitted on :mod:`emseg.mixture.training_data` (in memory) and
:mod:`emseg.mixture.dask_fit` (a dask array), the missing values
:mod:`emseg.mixture.missing`, and the EM loop :mod:`emseg.mixture.em`.
"""

import warnings

import numpy as np

from .._shared import compute as kern
from .._shared.errors import ConvergenceWarning, EmsegError
from .._shared.estimator import EstimatorMixin, check_is_fitted
from .._shared.validation import (
    as_generator,
    check_data,
    check_int,
    check_sample_weight,
    is_auto,
)
from .checks import check_feature_names, check_mixture_parameters, feature_names
from .em import run_em
from .gaussian import COVARIANCE_TYPES  # noqa: F401 (workflows.tables imports it from here)
from .gaussian import (
    GaussianParams,
    cholesky_of_covariances,
    cholesky_of_precisions,
    covariances_from_cholesky,
    dense_covariances,
    diagonal_variances,
    logsumexp_rows,
    m_step,
    n_parameters,
    precisions_from_cholesky,
    stats_from_labels,
    stats_from_random,
    unit_weights,
    weighted_log_prob,
)
from .kmeans import kmeans_plusplus, lloyd
from .missing import CHUNK_ROWS, PatternParts, group_patterns
from .training_data import TrainingData

# reg_covar="auto": the covariance floor of each feature is this fraction of its variance
RELATIVE_FLOOR = 1e-6
# reg_covar=0: the floor is this multiple of each feature's mean square (16 float64 ulps)
ZERO_FLOOR = 16 * np.finfo(np.float64).eps
# n_init="auto": restarts while a restart is cheap (rows x components x features^2)
_AUTO_RESTARTS = ((2e5, 10), (2e6, 3))


class GaussianMixture(EstimatorMixin):
    """Gaussian mixture fitted by Expectation-Maximization.

    Parameters follow :class:`sklearn.mixture.GaussianMixture`, with these defaults
    that differ, each chosen so the fit does not depend on how the data are stored and
    reaches a maximum at least as good as scikit-learn's:

    - ``reg_covar="auto"``: the covariance floor added to each feature's variance is
      ``1e-6`` times that feature's (weighted) variance in the data, so multiplying a
      column by 1e-4 or 1e4 gives the same fit. A number is an absolute floor, as in
      scikit-learn (``reg_covar=1e-6`` reproduces scikit-learn's fit exactly); 0 is
      16 float64 rounding steps of each feature's mean square (``ZERO_FLOOR``), so a
      component on one row is fitted, as scikit-learn's rounding lets it be.
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

    scikit-learn's protocol (see :mod:`emseg._shared.estimator`): ``get_params`` /
    ``set_params``, ``clone``, Pipeline and GridSearchCV work; ``fit(X, y=None,
    sample_weight=None)`` ignores ``y``; ``n_features_in_`` (and ``feature_names_in_``
    for a DataFrame with string column names); float32 ``X`` gives float32 parameters
    and float32 ``score_samples`` / ``predict_proba`` (the statistics are accumulated in
    float64 all the same), as scikit-learn >= 1.7; ``random_state=None`` draws from
    numpy's global RandomState, so ``np.random.seed`` makes it reproducible, as
    scikit-learn's ``check_random_state``. A model used before it is fitted raises
    :class:`emseg.NotFittedError`.
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

    def fit(self, X, y=None, sample_weight=None):
        """Fit the mixture to the rows of ``X`` (NaN marks a missing value); ``y`` is
        ignored (scikit-learn's signature); returns ``self``.

        A dask array is fitted chunk by chunk: see :mod:`emseg.mixture.dask_fit`.
        """
        names = feature_names(X)
        if _is_dask(X):
            data, n_rows, warm = self._chunked_data(X, sample_weight)
        else:
            X = check_data(X)
            w = check_sample_weight(sample_weight, X.shape[0])
            check_mixture_parameters(self, X.shape[1])
            data = self._prepare(X, w)
            warm = self._check_warm_start(X.shape[1])
            n_rows = data.n_rows
        if warm:  # the kernels take float64 parameters (float32 after a float32 fit)
            self._set_params(self._params64())
        self.reg_covar_ = self._covariance_floor(data)
        n_init, self.max_iter_, self.tol_ = self._settings(n_rows, data.n_features)
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
        return self._finish_fit(result, X.dtype, names)

    def _chunked_data(self, X, sample_weight):
        """``(data, n_rows, warm)`` for a dask array ``X``: checks, then the first pass
        over its chunks (a :class:`~emseg.mixture.dask_fit.ChunkedData`)."""
        from .dask_fit import ChunkedData, check_dask_input

        X, w = check_dask_input(X, sample_weight)
        check_mixture_parameters(self, X.shape[1])
        warm = self._check_warm_start(X.shape[1])
        data = ChunkedData.from_array(X, w, self.n_components, supplied=self._init_given(),
                                      merge=self._merge_repeated_rows)
        return data, int(X.shape[0]), warm

    def _check_warm_start(self, n_features):
        """Whether this fit starts from the current parameters (refusing other features)."""
        warm = self.warm_start and hasattr(self, "converged_")
        if warm and self.means_.shape[1] != n_features:
            raise EmsegError(
                f"warm_start: the model has {self.means_.shape[1]} features, X has "
                f"{n_features}; refit with warm_start=False"
            )
        return warm

    def _settings(self, n_rows, n_features):
        """``(n_init, max_iter, tol)`` as numbers: each "auto" one by the cost of a pass
        over the rows, rows x components x features^2 (see the class doc)."""
        work = n_rows * self.n_components * n_features**2
        cheap = work <= _AUTO_RESTARTS[-1][0]
        n_init = next((n for limit, n in _AUTO_RESTARTS if work <= limit), 1)
        if self._init_given():
            n_init = 1  # every restart would start from the same given parameters
        return (
            n_init if is_auto(self.n_init) else self.n_init,
            (1000 if cheap else 100) if is_auto(self.max_iter) else self.max_iter,
            (1e-6 if cheap else 1e-3) if is_auto(self.tol) else self.tol,
        )

    def _init_given(self):
        """Whether all three ``*_init`` are given (then they are where EM starts)."""
        given = (self.weights_init, self.means_init, self.precisions_init)
        return all(p is not None for p in given)

    def _covariance_floor(self, data):
        """The covariance floor per feature: ``reg_covar``, or with "auto" a fraction
        ``RELATIVE_FLOOR`` of each feature's weighted variance in ``data``."""
        if not is_auto(self.reg_covar) and self.reg_covar > 0:
            return np.full(data.n_features, float(self.reg_covar))
        n, mean, m2 = data.column_moments()
        var = m2 / np.maximum(n, 1e-300)
        if is_auto(self.reg_covar):
            return np.where(var > 0, RELATIVE_FLOOR * var, RELATIVE_FLOOR)
        # reg_covar=0: the rounding error of the values themselves, so a component
        # collapsed onto one row stays a (very narrow) Gaussian, as in scikit-learn,
        # whose variances from raw moments keep a rounding error of this size
        scale = var + mean**2
        return np.where(scale > 0, ZERO_FLOOR * scale, np.finfo(np.float64).tiny)

    def _finish_fit(self, result, dtype, names):
        """Sort the components, store them in float32 for float32 data (as
        scikit-learn), and record how EM went and the data's column ``names``."""
        self._sort_components()
        self.__dict__.pop("feature_names_in_", None)
        if names is not None:
            self.feature_names_in_ = names
        if dtype == np.float32:
            self._set_params([p.astype(np.float32) for p in self._get_params()])
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = float(result.lower_bound)
        self.history_ = np.asarray(result.history, dtype=np.float64)
        self.n_init_ = len(result.restarts)
        self.restart_lower_bounds_ = np.asarray(result.restarts, dtype=np.float64)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then label each row with its most probable component (``y`` ignored)."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def _prepare(self, X, w):
        """Split rows into complete ones (merged when repeated) and missingness groups."""
        return TrainingData.from_rows(X, w, self.n_components, self._merge_repeated_rows)

    # --- the EM protocol (see emseg.mixture.em) ----------------------------------------------

    def _initialize(self, data, rng):
        if self._init_given():
            self._set_initial(self.weights_init, self.means_init, self.precisions_init)
            return
        if not isinstance(data, TrainingData):
            # a dask array's ChunkedData: start from its subsample, in memory; then, as
            # the in-memory fit does on large data, EM on the subsample first (cheap), so
            # the passes over all the chunks start near a maximum
            self._initialize(data.sample, rng)
            if data.prefit:
                self._prefit(data.sample, rng)
            return
        K = self.n_components
        # many rows: seed and iterate on a weighted subsample first (see _subsample)
        large = data.X.shape[0] > self._presubsample_rows and not data.patterns
        start = self._subsample(data, rng) if large else data
        X, w = start.init_view()
        full = self.covariance_type in ("full", "tied")  # else only the diagonal of sxx
        if self.means_init is not None:
            centres = np.asarray(self.means_init, dtype=np.float64)
            stats = stats_from_labels(X, w, kern.nearest_centre(X, centres)[0], centres, full)
        elif self.init_params == "random":
            stats = stats_from_random(X, w, K, rng, full)
        else:
            if self.init_params == "random_from_data":
                p = unit_weights(w, X.shape[0])
                centres = X[rng.choice(X.shape[0], K, replace=False, p=p / p.sum())]
                centres = centres.astype(np.float64)
            else:
                centres = kmeans_plusplus(X, w, K, rng)
            if self.init_params == "kmeans":
                centres, labels = lloyd(X, w, centres)
            else:
                labels = kern.nearest_centre(X, centres)[0]
            stats = stats_from_labels(X, w, labels, centres, full)
        self._m_step(stats, data)
        self._set_initial(self.weights_init, self.means_init, self.precisions_init)
        if large:
            self._prefit(start, rng)

    def _prefit(self, start, rng):
        """EM on the in-memory subsample ``start`` from the current parameters (no
        convergence warning: this only chooses where the fit on all the rows starts)."""
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
        X, w = data.X, unit_weights(data.w, data.X.shape[0])
        m = self._presubsample_rows // 2
        picks = rng.choice(X.shape[0], size=m, p=w / w.sum())
        rows, counts = np.unique(picks, return_counts=True)
        return TrainingData(np.ascontiguousarray(X[rows]), counts.astype(np.float64), [],
                            float(m), drawn_from=data)

    def _set_initial(self, weights, means, precisions):
        """Overwrite the starting parameters the caller supplied (copies, never views)."""
        if weights is not None:
            self.weights_ = np.array(weights, dtype=np.float64)
        if means is not None:
            self.means_ = np.array(means, dtype=np.float64)
        if precisions is not None:
            prec = np.array(precisions, dtype=np.float64)
            self.precisions_cholesky_ = cholesky_of_precisions(prec, self.covariance_type)
            self.covariances_ = covariances_from_cholesky(
                self.precisions_cholesky_, self.covariance_type
            )

    def _e_step(self, data):
        stats = data.stats(self._get_params(), self.covariance_type)
        return stats, stats.loglik / data.total_weight

    def _m_step(self, stats, data):
        """New parameters from ``stats``; an emptied component is re-seeded on ``data``'s
        rows (see :func:`emseg.mixture.gaussian.m_step`)."""
        self._set_params(m_step(stats, self.covariance_type, self.reg_covar_, data))

    def _get_params(self):
        return GaussianParams(self.weights_, self.means_, self.covariances_,
                              self.precisions_cholesky_)

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
            chol = cholesky_of_covariances(cov, self.covariance_type)
        except EmsegError:
            return None
        return GaussianParams(weights / weights.sum(), means, cov, chol)

    def _set_params(self, params):
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = params

    def _sort_components(self):
        reorder_components(self, np.argsort(self.means_[:, 0], kind="stable"))

    # --- using a fitted model -------------------------------------------------------

    def _check_fitted(self, X):
        self._require_fitted()
        check_feature_names(self, X)
        one_d = np.ndim(X) == 1
        X = check_data(X)
        self._require_fitted(X.shape[1], one_d)
        return X

    def _fitted_attributes(self):
        return ("weights_", "means_", "covariances_", "precisions_cholesky_")

    def _require_fitted(self, n_features=None, one_d=False):
        """Refuse an unfitted model (:class:`emseg.NotFittedError`), or data with
        another number of features (``one_d``: ``X`` was 1-D, read as one feature)."""
        check_is_fitted(self)
        if n_features is not None and n_features != self.means_.shape[1]:
            hint = "; a 1-D X is one feature: Reshape your data with X.reshape(1, -1) " \
                "if it is one row" if one_d else ""
            raise EmsegError(
                f"X has {n_features} features, but GaussianMixture is expecting "
                f"{self.means_.shape[1]} features as input{hint}"
            )

    @property
    def n_features_in_(self):
        """The number of features the model was fitted on (scikit-learn's name)."""
        check_is_fitted(self)
        return self.means_.shape[1]

    def _params64(self):
        """The parameters in float64, as the kernels take them (no copy when they are)."""
        return GaussianParams(*(np.asarray(p, dtype=np.float64) for p in self._get_params()))

    def _emseg_tags(self):
        return dict(super()._emseg_tags(), estimator_type="density_estimator",
                    allow_nan=True, preserves_float32=True)

    def _weighted_log_prob(self, X):
        """``log w_k + log p(x_obs | k)`` for every row, (N, K); NaN rows use their marginal."""
        weights, means, _, chol = self._params64()
        params = (weights, means, chol, self.covariance_type)
        missing = np.isnan(X)
        incomplete = missing.any(axis=1)
        if not incomplete.any():
            return weighted_log_prob(X, *params)
        out = np.empty((X.shape[0], self.n_components_))
        complete = ~incomplete
        if complete.any():
            out[complete] = weighted_log_prob(np.ascontiguousarray(X[complete]), *params)
        for rows, observed in group_patterns(missing, incomplete):
            out[rows] = self._pattern_parts(observed).log_prob(X[rows])[0]
        return out

    def _pattern_parts(self, observed):
        weights, means, cov, _ = self._params64()
        return PatternParts(observed, weights, means, cov, self.covariance_type)

    @property
    def n_components_(self):
        return self.means_.shape[0]

    def _map_rows(self, X, method):
        """``self.<method>(X)`` for a dask array: lazy, chunk by chunk of rows."""
        from .dask_fit import check_dask_input, map_rows

        self._require_fitted()
        X, _ = check_dask_input(X)
        self._require_fitted(X.shape[1])
        return map_rows(self, X, method)

    def score_samples(self, X):
        """Log-likelihood of each row (of its observed values, when some are NaN).
        For a dask array: a lazy dask array, computed chunk by chunk."""
        if _is_dask(X):
            return self._map_rows(X, "score_samples")
        X = self._check_fitted(X)
        return kern.normalise_rows(self._weighted_log_prob(X)).astype(X.dtype, copy=False)

    def score(self, X, y=None, sample_weight=None):
        """Weighted mean log-likelihood of the rows, a float (``y`` ignored; a dask
        array: chunk by chunk)."""
        if _is_dask(X):
            from .dask_fit import mean_score

            return mean_score(self, X, sample_weight)
        X = self._check_fitted(X)
        w = check_sample_weight(sample_weight, X.shape[0])
        return float(np.average(kern.normalise_rows(self._weighted_log_prob(X)), weights=w))

    def predict_proba(self, X):
        """Posterior probability of each component for each row, (N, K).
        For a dask array: a lazy dask array, computed chunk by chunk."""
        if _is_dask(X):
            return self._map_rows(X, "predict_proba")
        X = self._check_fitted(X)
        lp = self._weighted_log_prob(X)
        kern.normalise_rows(lp)
        return lp.astype(X.dtype, copy=False)

    def predict(self, X):
        """Most probable component of each row.
        For a dask array: a lazy dask array, computed chunk by chunk."""
        if _is_dask(X):
            return self._map_rows(X, "predict")
        return self._weighted_log_prob(self._check_fitted(X)).argmax(axis=1)

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better)."""
        n = X.shape[0] if _is_dask(X) else self._check_fitted(X).shape[0]
        p = n_parameters(self.covariance_type, *self.means_.shape)
        return -2 * self.score(X) * n + p * np.log(n)

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better)."""
        n = X.shape[0] if _is_dask(X) else self._check_fitted(X).shape[0]
        p = n_parameters(self.covariance_type, *self.means_.shape)
        return -2 * self.score(X) * n + 2 * p

    @property
    def precisions_(self):
        return precisions_from_cholesky(self.precisions_cholesky_, self.covariance_type)

    def sample(self, n_samples=1):
        """Draw ``n_samples`` rows; returns ``(X, labels)``, ``X`` in float64 (as
        scikit-learn)."""
        check_is_fitted(self)
        check_int(n_samples, "n_samples", 1)
        rng = as_generator(self.random_state)
        weights, means, cov, _ = self._params64()
        counts = rng.multinomial(n_samples, weights / weights.sum())
        if self.covariance_type in ("diag", "spherical"):  # independent coordinates
            D = means.shape[1]
            sd = np.sqrt(diagonal_variances(cov, self.covariance_type, D))
            X = np.concatenate(
                [m + s * rng.standard_normal((int(n), m.size))
                 for m, s, n in zip(means, sd, counts)]
            )
        else:
            cov = dense_covariances(cov, self.covariance_type, *means.shape)
            X = np.concatenate(
                [rng.multivariate_normal(m, c, int(n)) for m, c, n in zip(means, cov, counts)]
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
        means = self._params64().means
        missing = np.isnan(out)
        incomplete = missing.any(axis=1)
        for rows, observed in group_patterns(missing, incomplete):
            parts = self._pattern_parts(observed)
            for start in range(0, rows.size, CHUNK_ROWS):
                idx = rows[start : start + CHUNK_ROWS]
                lp, centred = parts.log_prob(out[idx])
                resp = np.exp(lp - logsumexp_rows(lp)[:, None])
                fill = np.zeros((idx.size, parts.m.size))
                for k in range(self.n_components_):
                    fill += resp[:, k, None] * (means[k, parts.m] + parts.fill(k, centred[k]))
                block = out[idx]
                block[:, parts.m] = fill
                out[idx] = block
        return out.astype(X.dtype, copy=False)


# --- helpers ---------------------------------------------------------------------------


def reorder_components(gm, order):
    """Permute the components of the fitted mixture ``gm`` in place (``order[i]`` becomes
    component ``i``), as ``fit`` does to sort them: for callers that order them by
    another rule (image segmentation: by luminance)."""
    gm.weights_ = gm.weights_[order]
    gm.means_ = gm.means_[order]
    if gm.covariance_type != "tied":
        gm.covariances_ = gm.covariances_[order]
        gm.precisions_cholesky_ = gm.precisions_cholesky_[order]


def update_parameters(gm, stats, data=None):
    """One M-step on the fitted mixture ``gm``, in place: its parameters from ``stats``
    (:class:`~emseg.mixture.gaussian.GaussianStats` under its current parameters) with
    its covariance floor ``reg_covar_``, a component that lost its weight re-seeded on
    ``data``'s rows (see :func:`emseg.mixture.gaussian.m_step`). For code that computes
    the statistics itself: the MRF's E-step (:mod:`emseg.image.mrf`)."""
    params = m_step(stats, gm.covariance_type, gm.reg_covar_, data)
    gm.weights_, gm.means_, gm.covariances_, gm.precisions_cholesky_ = params


def full_covariances(gm):
    """The fitted covariances of ``gm`` as a (K, D, D) array, whatever its type.

    Diag and spherical models are made dense: refused when that needs more than the
    free memory (see :func:`emseg.mixture.gaussian.dense_covariances`)."""
    return dense_covariances(gm.covariances_, gm.covariance_type, *gm.means_.shape)


def _is_dask(X):
    """True for a dask array (checked without importing dask)."""
    return type(X).__module__.startswith("dask.")
