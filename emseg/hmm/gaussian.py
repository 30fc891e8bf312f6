"""Hidden Markov model with Gaussian emissions: :class:`GaussianHMM` (as
``hmmlearn.hmm.GaussianHMM``). Its Gaussian algebra (shapes, log-densities, the
maximum-likelihood estimate, parameter counts) is :mod:`emseg.mixture.gaussian`'s, in the
same layouts; what is the HMM's own is below.

What every emseg HMM shares, and how it differs from hmmlearn, is in
:mod:`emseg.hmm.base`. Specific to Gaussian emissions:

- **Covariances.** Maximum likelihood with a floor: every M-step raises any
  eigenvalue of a covariance below ``min_covar`` to ``min_covar`` (the exact
  constrained maximiser, so the likelihood still never falls). hmmlearn instead
  adds a conjugate prior (``covars_prior=1e-2``) and applies ``min_covar`` only at
  initialisation; it gives the same estimates with ``covars_prior=0`` whenever no
  eigenvalue reaches the floor. ``covars_`` has the shape of ``covariance_type``
  ((K,) spherical, (K, D) diag, (K, D, D) full, (D, D) tied), where hmmlearn's
  ``covars_`` always returns full matrices.
- **Precision factors** come from a compiled Cholesky
  (:func:`emseg.hmm._kernels.precision_factors`: 0.03 ms a 3 x 3 matrix where a threaded
  LAPACK call was measured at ~15 ms on busy cores), not from the mixture's
  :func:`~emseg.mixture.gaussian.cholesky_of_covariances` (LAPACK, which differs in the
  last bits), with messages naming ``covars_init`` or the model-file field. The
  eigenvalue floor above is the HMM's own too.
- **State order.** States are sorted after fitting by the mean of their first
  feature; ties keep the fitted order.
"""

import warnings

import numpy as np

from . import _kernels as hk
from .._shared.errors import EmptyComponentWarning, EmsegError
from .._shared.jsonfields import field_array, field_int
from .._shared.validation import check_choice, check_data, check_float
from ..mixture.gaussian import (
    COVARIANCE_TYPES,
    GaussianStats,
    check_symmetric,
    covariance_shape,
    dense_covariances,
    estimate_gaussian_parameters,
    n_parameters,
    weighted_log_prob,
)
from ..mixture.kmeans import kmeans_plusplus, lloyd
from .base import FORMAT_VERSION, BaseHMM, check_finite, plain_list

__all__ = ["GAUSSIAN_FORMAT", "GaussianHMM"]

GAUSSIAN_FORMAT = "emseg.GaussianHMM"  # the "format" field of its model files
# The mixture's covariance types in hmmlearn's order (tied last): the order GaussianHMM's
# messages have always listed them in ("covariance_type must be one of ...").
_TYPES_IN_MESSAGES = tuple(t for t in COVARIANCE_TYPES if t != "tied") + ("tied",)
_INIT_ROWS = 100_000  # k-means for the starting means runs on at most this many rows


class GaussianHMM(BaseHMM):
    """Hidden Markov model with Gaussian emissions, fitted by Baum-Welch.

    Parameters follow ``hmmlearn.hmm.GaussianHMM`` (see the docstrings of this module
    and of :mod:`emseg.hmm.base` for the differences). ``n_iter`` is the maximum number
    of EM iterations; ``tol`` the stopping threshold on the mean log-likelihood per
    sample; ``min_covar`` the floor on covariance eigenvalues; ``startprob_prior`` /
    ``transmat_prior`` Dirichlet parameters (a number or an array of shape (K,) /
    (K, K)); ``n_init`` the number of restarts (the best log-likelihood wins). Starting
    values: ``startprob_init`` (K,), ``transmat_init`` (K, K), ``means_init`` (K, D) and
    ``covars_init`` (shape of ``covariance_type``). Those not given start as:
    ``startprob_`` uniform; ``transmat_`` rows half on the diagonal, half a random
    Dirichlet(1) draw; means from k-means++ and Lloyd (on at most 100,000 random rows);
    covariances the data's covariance plus ``min_covar`` (hmmlearn's choice).
    ``callback(iteration, mean_loglik)`` is called after every iteration.

    After ``fit``: ``startprob_``, ``transmat_``, ``means_``, ``covars_``,
    ``precisions_cholesky_``, ``converged_``, ``n_iter_``, ``lower_bound_`` and
    ``history_`` (mean log-likelihood per sample before each iteration's M-step).
    """

    _format = GAUSSIAN_FORMAT

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        n_iter=100,
        tol=1e-4,
        min_covar=1e-3,
        startprob_prior=1.0,
        transmat_prior=1.0,
        n_init=1,
        random_state=None,
        startprob_init=None,
        transmat_init=None,
        means_init=None,
        covars_init=None,
        callback=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.n_iter = n_iter
        self.tol = tol
        self.min_covar = min_covar
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.n_init = n_init
        self.random_state = random_state
        self.startprob_init = startprob_init
        self.transmat_init = transmat_init
        self.means_init = means_init
        self.covars_init = covars_init
        self.callback = callback

    # --- checks ---------------------------------------------------------------------

    def _check_X(self, X, *, fitted):
        X = check_data(X)
        nan_rows = []
        # one fast reduction tells whether to look for a NaN row (check_data refused
        # infinity; a sum of huge values of both signs can be NaN without one)
        if np.isnan(X.sum(dtype=np.float64)):
            nan_rows = np.flatnonzero(np.isnan(X).any(axis=1))
        if len(nan_rows):
            raise EmsegError(
                f"X contains NaN (first in row {int(nan_rows[0])}); {type(self).__name__} "
                "cannot use missing values: drop or fill those rows"
            )
        if fitted and X.shape[1] != self.means_.shape[1]:
            raise EmsegError(
                f"X has {X.shape[1]} features but the model was fitted with "
                f"{self.means_.shape[1]}"
            )
        return np.ascontiguousarray(X, dtype=np.float64)

    def _prepare_fit(self, X):
        check_choice(self.covariance_type, "covariance_type", _TYPES_IN_MESSAGES)
        check_float(self.min_covar, "min_covar")
        setup = self._check_common_parameters(X.shape[0])
        K, D = self.n_components, X.shape[1]
        setup["means"] = None
        setup["covars"] = None
        if self.means_init is not None:
            setup["means"] = check_finite(self.means_init, "means_init", (K, D))
        if self.covars_init is not None:
            shape = covariance_shape(self.covariance_type, K, D)
            covars = check_finite(self.covars_init, "covars_init", shape)
            check_symmetric(covars, self.covariance_type, "covars_init")
            _precision_cholesky(covars, self.covariance_type, "covars_init")
            setup["covars"] = covars
        return setup

    # --- the EM protocol -------------------------------------------------------------

    def _initialize_emission(self, data, rng):
        setup = data.setup
        X = data.X
        K, D = self.n_components, X.shape[1]
        if setup["means"] is not None:
            means = setup["means"].copy()
        else:
            rows = X
            if X.shape[0] > _INIT_ROWS:
                rows = X[np.sort(rng.choice(X.shape[0], _INIT_ROWS, replace=False))]
            empty = np.empty(0)
            centres = kmeans_plusplus(rows, empty, K, rng)
            means, _ = lloyd(rows, empty, centres)
        if setup["covars"] is not None:
            covars = setup["covars"].copy()
        else:
            cv = np.atleast_2d(np.cov(X.T)) + self.min_covar * np.eye(D)
            covars = {
                "full": np.tile(cv, (K, 1, 1)),
                "tied": cv,
                "diag": np.tile(np.diag(cv), (K, 1)),
                "spherical": np.full(K, np.diag(cv).mean()),
            }[self.covariance_type]
        self.means_ = np.array(means, dtype=np.float64)
        self.covars_ = covars
        self.precisions_cholesky_ = _precision_cholesky(covars, self.covariance_type)

    def _emission_log_prob(self, X):
        """Log-density of every row under every state, (N, K)."""
        return weighted_log_prob(
            X, None, self.means_, self.precisions_cholesky_, self.covariance_type
        )

    def _emission_stats(self, X, post):
        means = np.ascontiguousarray(self.means_, dtype=np.float64)
        if self.covariance_type in ("full", "tied"):
            return hk.gaussian_stats_full(X, post, means)
        return hk.gaussian_stats_diag(X, post, means)

    def _stats_shift(self):
        return self.means_

    def _m_step_emission(self, stats, data):
        nk, sx, sxx = stats.emission
        ctype = self.covariance_type
        # maximum likelihood, no regularisation (the floor below replaces it); the
        # scatter is symmetrized, as the compiled statistics are symmetric only up to
        # rounding
        gaussian = GaussianStats(nk, sx, sxx, stats.shift, 0.0, 0.0)
        _, means, cov, empty = estimate_gaussian_parameters(gaussian, ctype, 0.0,
                                                            symmetrize=True)
        if empty.any():
            means[empty] = self.means_[empty]
            if ctype != "tied":
                cov[empty] = self.covars_[empty]
            warnings.warn(
                f"{int(empty.sum())} HMM state(s) received no posterior weight and kept "
                "their emission parameters; consider fewer components",
                EmptyComponentWarning,
                stacklevel=5,  # the caller of fit
            )
        cov = _floor_covariances(cov, ctype, self.min_covar)
        self.means_ = means
        self.covars_ = cov
        self.precisions_cholesky_ = _precision_cholesky(cov, ctype)

    def _get_emission_params(self):
        return (self.means_, self.covars_, self.precisions_cholesky_)

    def _set_emission_params(self, params):
        self.means_, self.covars_, self.precisions_cholesky_ = params

    def _state_order(self):
        return np.argsort(self.means_[:, 0], kind="stable")

    def _reorder_emission(self, order):
        self.means_ = self.means_[order]
        if self.covariance_type != "tied":
            self.covars_ = self.covars_[order]
            self.precisions_cholesky_ = self.precisions_cholesky_[order]

    # --- using a fitted model -------------------------------------------------------

    @property
    def n_features_(self):
        return self.means_.shape[1]

    def _n_emission_parameters(self):
        K, D = self.means_.shape
        # a mixture's parameters but its K - 1 free weights
        return n_parameters(self.covariance_type, K, D) - (K - 1)

    def _sample_emissions(self, states, rng):
        n = states.shape[0]
        K, D = self.means_.shape
        z = rng.standard_normal((n, D))
        X = np.empty((n, D))
        cov = dense_covariances(self.covars_, self.covariance_type, K, D)
        for k in range(K):
            rows = states == k
            L = np.linalg.cholesky(cov[k])
            X[rows] = self.means_[k] + z[rows] @ L.T
        return X

    # --- model files ----------------------------------------------------------------

    def to_dict(self):
        """The fitted model as a dict of plain numbers and lists (JSON-safe)."""
        self._check_fitted()
        K, D = self.means_.shape
        return {
            "format": self._format,
            "format_version": FORMAT_VERSION,
            "covariance_type": str(self.covariance_type),
            "n_components": int(K),
            "n_features": int(D),
            "startprob_": plain_list(self.startprob_),
            "transmat_": plain_list(self.transmat_),
            "means_": plain_list(self.means_),
            "covars_": plain_list(self.covars_),
            **self._fit_info(),
        }

    @classmethod
    def from_dict(cls, d, *, where="model"):
        """A fitted GaussianHMM from :meth:`to_dict`'s dict, checked field by field.

        Raises :class:`~emseg.EmsegError` (one line naming the field) for a wrong
        format, unknown fields, wrong types or shapes, non-finite numbers,
        probabilities that are negative or do not sum to 1, and covariances that are
        not symmetric positive definite. ``where`` names the object in messages.
        """
        fields = ("covariance_type", "n_features", "means_", "covars_")
        K, start, trans, info = cls._start_from_dict(d, where, fields)
        ctype = d.get("covariance_type")
        if not isinstance(ctype, str) or ctype not in COVARIANCE_TYPES:
            raise EmsegError(
                f"{where}.covariance_type must be one of {', '.join(_TYPES_IN_MESSAGES)}, "
                f"got {ctype!r}"
            )
        D = field_int(d, "n_features", where, 1)
        means = field_array(d, "means_", (K, D), where)
        covars = field_array(d, "covars_", covariance_shape(ctype, K, D), where)
        check_symmetric(covars, ctype, f"{where}.covars_")
        prec_chol = _precision_cholesky(covars, ctype, f"{where}.covars_")
        model = cls(K, covariance_type=ctype)
        model.means_ = means
        model.covars_ = covars
        model.precisions_cholesky_ = prec_chol
        return model._finish_from_dict(start, trans, info)


# --- the HMM's own covariance rules (the shared algebra is emseg.mixture.gaussian's) ---


def _floor_covariances(cov, ctype, floor):
    """Raise every eigenvalue below ``floor`` to ``floor`` (the likelihood's maximiser
    under that constraint); untouched when none is below."""
    if ctype in ("diag", "spherical"):
        return np.maximum(cov, floor)
    mats = cov[None] if ctype == "tied" else cov
    low = np.linalg.eigvalsh(mats).min(axis=1) < floor
    if low.any():
        mats = mats.copy()
        for k in np.flatnonzero(low):
            w, V = np.linalg.eigh(mats[k])
            mats[k] = (V * np.maximum(w, floor)) @ V.T
    return mats[0] if ctype == "tied" else mats


def _precision_cholesky(covars, ctype, name=None):
    """Upper-triangular ``U`` with precision ``U @ U.T`` (1/sigma for diag/spherical)."""
    fix = (
        f"{name} must be positive definite"
        if name
        else "a state's covariance collapsed; raise min_covar or use fewer components"
    )
    if ctype in ("diag", "spherical"):
        if not (covars > 0).all():
            raise EmsegError(fix if name is None else f"{name} must be positive")
        return 1.0 / np.sqrt(covars)
    mats = covars[None] if ctype == "tied" else covars
    out, ok = hk.precision_factors(np.ascontiguousarray(mats, dtype=np.float64))
    if not ok.all():
        raise EmsegError(fix)
    return out[0] if ctype == "tied" else out

