"""Hidden Markov model with Gaussian emissions: :class:`GaussianHMM` (as
``hmmlearn.hmm.GaussianHMM``). Its Gaussian algebra (shapes, log-densities, parameter
counts) is :mod:`emseg.mixture.gaussian`'s, in the same layouts; what is the HMM's own
is below.

What every emseg HMM shares, and how it differs from hmmlearn, is in
:mod:`emseg.hmm.base`. Specific to Gaussian emissions:

- **M-step.** hmmlearn's, priors included: ``means_prior`` / ``means_weight`` (a
  normal prior on the means) and ``covars_prior`` / ``covars_weight`` (inverse gamma
  for diag and spherical, inverse Wishart for full and tied), with hmmlearn's defaults
  (``covars_prior=1e-2``), computed from statistics centred on the current means. Then
  a floor: any eigenvalue of a covariance below ``min_covar`` is raised to
  ``min_covar`` in every M-step (hmmlearn applies ``min_covar`` only when initialising).
  With ``covars_prior=0`` the M-step is maximum likelihood.
- **Covariances.** ``covars_`` reads back as (K, D, D) matrices whatever
  ``covariance_type`` (as hmmlearn's) and is set in the shape of ``covariance_type``
  ((K,) spherical, (K, D) diag, (K, D, D) full, (D, D) tied; the full matrices are
  accepted too). The precision factors (``precisions_cholesky_``) are computed from
  it each time the model is used, so an edit of ``covars_`` or ``means_`` after
  ``fit`` counts; they come from a compiled Cholesky
  (:func:`emseg.hmm._kernels.precision_factors`: 0.03 ms a 3 x 3 matrix where a
  threaded LAPACK call was measured at ~15 ms on busy cores).
- **State order.** Sorted after fitting by the mean of their first feature when emseg
  chose every starting value; ties keep the fitted order.
"""

import warnings

import numpy as np

from . import _kernels as hk
from .._shared.errors import EmptyComponentWarning, EmsegError
from .._shared.jsonfields import field_array, field_int
from .._shared.validation import check_choice, check_data, check_float
from ..mixture.gaussian import (
    COVARIANCE_TYPES,
    check_symmetric,
    covariance_shape,
    dense_covariances,
    n_parameters,
    weighted_log_prob,
)
from ..mixture.kmeans import kmeans_plusplus, lloyd
from .base import FORMAT_VERSION, BaseHMM
from .checks import check_2d, check_finite, check_prior, plain_list

__all__ = ["GAUSSIAN_FORMAT", "GaussianHMM"]

GAUSSIAN_FORMAT = "emseg.GaussianHMM"  # the "format" field of its model files
# The mixture's covariance types in hmmlearn's order (tied last): the order GaussianHMM's
# messages have always listed them in ("covariance_type must be one of ...").
_TYPES_IN_MESSAGES = tuple(t for t in COVARIANCE_TYPES if t != "tied") + ("tied",)
_INIT_ROWS = 100_000  # k-means for the starting means runs on at most this many rows


class GaussianHMM(BaseHMM):
    """Hidden Markov model with Gaussian emissions, fitted by Baum-Welch.

    The parameters are ``hmmlearn.hmm.GaussianHMM``'s, in its order and with its
    defaults but ``tol`` (see the docstrings of this module and of
    :mod:`emseg.hmm.base` for the differences): ``covariance_type``; ``min_covar``, the
    floor on covariance eigenvalues; the priors ``startprob_prior`` / ``transmat_prior``
    (Dirichlet), ``means_prior`` / ``means_weight`` and ``covars_prior`` /
    ``covars_weight``; ``algorithm`` (``"viterbi"`` or ``"map"``, what ``predict`` and
    ``decode`` use); ``random_state``; ``n_iter``, the maximum number of EM iterations;
    ``tol``, the stopping threshold on the mean log-likelihood per sample; ``verbose``
    (print each iteration to stderr); ``params`` / ``init_params``, the parameters
    updated by the M-step / initialised by ``fit`` (letters: ``s`` startprob, ``t``
    transmat, ``m`` means, ``c`` covars); ``implementation`` (``"log"`` or
    ``"scaling"``, accepted for hmmlearn's sake: both run the same code).

    emseg's own, keyword-only: ``n_init`` restarts (the best log-likelihood wins);
    starting values ``startprob_init`` (K,), ``transmat_init`` (K, K), ``means_init``
    (K, D) and ``covars_init`` (shape of ``covariance_type``), which take precedence
    over ``init_params``; ``callback(iteration, mean_loglik)``, called after every
    iteration. A parameter without a starting value starts as: ``startprob_`` uniform;
    ``transmat_`` rows half on the diagonal, half a random Dirichlet(1) draw; means from
    k-means++ and Lloyd (on at most 100,000 random rows); covariances the data's
    covariance plus ``min_covar`` (hmmlearn's choice).

    After ``fit`` (or set by hand, as in hmmlearn): ``startprob_``, ``transmat_``,
    ``means_``, ``covars_``; after ``fit`` also ``converged_``, ``n_iter_``,
    ``lower_bound_`` and ``history_`` (mean log-likelihood per sample before each
    iteration's M-step).
    """

    _format = GAUSSIAN_FORMAT
    _emission_letters = "mc"
    _emission_attributes = ("means_", "covars_")

    def __init__(
        self,
        n_components=1,
        covariance_type="diag",
        min_covar=1e-3,
        startprob_prior=1.0,
        transmat_prior=1.0,
        means_prior=0,
        means_weight=0,
        covars_prior=1e-2,
        covars_weight=1,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-4,
        verbose=False,
        params="stmc",
        init_params="stmc",
        implementation="log",
        *,
        n_init=1,
        startprob_init=None,
        transmat_init=None,
        means_init=None,
        covars_init=None,
        callback=None,
    ):
        super().__init__(n_components, startprob_prior, transmat_prior, algorithm,
                         random_state, n_iter, tol, verbose, params, init_params,
                         implementation, n_init, startprob_init, transmat_init, callback)
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight
        self.means_init = means_init
        self.covars_init = covars_init

    # --- covariances in hmmlearn's shapes ---------------------------------------------

    @property
    def covars_(self):
        """The covariances as (K, D, D) matrices, whatever ``covariance_type`` (as
        hmmlearn's); set them in the shape of ``covariance_type`` (or as matrices)."""
        check_choice(self.covariance_type, "covariance_type", _TYPES_IN_MESSAGES)
        K, D = self.n_components, self._n_dims()
        covars = _compact_covars(self._covars_, self.covariance_type, K, D, "covars_")
        if self.covariance_type == "full":
            return covars
        return np.array(dense_covariances(covars, self.covariance_type, K, D))

    @covars_.setter
    def covars_(self, value):
        self._covars_ = np.array(value, dtype=np.float64)

    @property
    def precisions_cholesky_(self):
        """Upper-triangular factors of the precisions (1 / standard deviation for diag
        and spherical), computed from ``covars_`` on each access."""
        self._check_model()
        return _precision_cholesky(self._covars_, self.covariance_type)

    def _n_dims(self):
        if hasattr(self, "means_"):
            return np.shape(self.means_)[-1]
        shape = np.shape(self._covars_)
        return 1 if self.covariance_type == "spherical" or not shape else shape[-1]

    # --- checks ---------------------------------------------------------------------

    def _check_X(self, X, *, fitted):
        X = check_2d(X, type(self).__name__, check_data)
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
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.means_.shape[1]} features as input"
            )
        return np.ascontiguousarray(X, dtype=np.float64)

    def _check_emission(self, K):
        ctype = check_choice(self.covariance_type, "covariance_type", _TYPES_IN_MESSAGES)
        means = np.asarray(self.means_, dtype=np.float64)
        if means.ndim != 2 or means.shape[0] != K:
            raise EmsegError(
                f"means_ must have shape (n_components, n_features) = ({K}, D), got "
                f"{means.shape}"
            )
        if not np.isfinite(means).all():
            raise EmsegError("means_ contains NaN or infinity")
        self.means_ = means
        covars = _compact_covars(self._covars_, ctype, K, means.shape[1], "covars_")
        _precision_cholesky(covars, ctype, "covars_")
        self._covars_ = covars

    def _prepare_fit(self, X):
        ctype = check_choice(self.covariance_type, "covariance_type", _TYPES_IN_MESSAGES)
        check_float(self.min_covar, "min_covar")
        setup = self._check_common_parameters(X.shape[0])
        K, D = self.n_components, X.shape[1]
        init_params = setup["init_params"]
        setup["means"] = self._start_value("m", "means", (K, D), init_params, check_finite)

        def covars(value, name, shape):
            return _compact_covars(value, ctype, K, D, name, check=True)

        setup["covars"] = None
        if self.covars_init is not None:
            setup["covars"] = covars(self.covars_init, "covars_init", None)
        elif "c" not in init_params and hasattr(self, "_covars_"):
            setup["covars"] = covars(self._covars_, "covars_", None)
        starts = ("startprob", "transmat", "means", "covars")
        setup["sort_states"] = all(setup[name] is None for name in starts)
        if setup["covars"] is None and X.shape[0] < 2:
            raise EmsegError(
                "GaussianHMM needs at least 2 samples to start its covariances from the "
                f"data's, got n_samples={X.shape[0]}; give covars_init"
            )
        setup["means_prior"] = check_prior(self.means_prior, "means_prior", (K, D), False)
        weight = check_prior(self.means_weight, "means_weight", (K,))
        setup["means_weight"] = weight[:, None]
        setup["covars_prior"] = check_prior(  # a matrix may have negative entries
            self.covars_prior, "covars_prior", covariance_shape(ctype, K, D),
            ctype in ("diag", "spherical"),
        )
        setup["covars_weight"] = check_float(self.covars_weight, "covars_weight", -np.inf)
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
            _precision_cholesky(covars, self.covariance_type)
        self.means_ = np.array(means, dtype=np.float64)
        self._covars_ = covars

    def _emission_log_prob(self, X):
        """Log-density of every row under every state, (N, K)."""
        ctype = self.covariance_type
        return weighted_log_prob(
            X,
            None,
            np.ascontiguousarray(self.means_, dtype=np.float64),
            _precision_cholesky(self._covars_, ctype),
            ctype,
        )

    def _emission_stats(self, X, post):
        means = np.ascontiguousarray(self.means_, dtype=np.float64)
        if self.covariance_type in ("full", "tied"):
            return hk.gaussian_stats_full(X, post, means)
        return hk.gaussian_stats_diag(X, post, means)

    def _stats_shift(self):
        return self.means_

    def _m_step_emission(self, stats, data):
        setup = data.setup
        update = setup["params"]
        means, cov, empty = _map_estimate(
            stats.emission, stats.shift, self._covars_, self.covariance_type, setup,
            "m" in update, "c" in update,
        )
        if empty.any():
            means[empty] = self.means_[empty]
            if self.covariance_type != "tied":
                cov[empty] = self._covars_[empty]
            warnings.warn(
                f"{int(empty.sum())} HMM state(s) received no posterior weight and kept "
                "their emission parameters; consider fewer components",
                EmptyComponentWarning,
                stacklevel=5,  # the caller of fit
            )
        if "c" in update:
            cov = _floor_covariances(cov, self.covariance_type, self.min_covar)
            _precision_cholesky(cov, self.covariance_type)  # a collapsed state: say so
        self.means_ = means
        self._covars_ = cov

    def _get_emission_params(self):
        return (self.means_, self._covars_)

    def _set_emission_params(self, params):
        self.means_, self._covars_ = params

    def _state_order(self):
        return np.argsort(self.means_[:, 0], kind="stable")

    def _reorder_emission(self, order):
        self.means_ = self.means_[order]
        if self.covariance_type != "tied":
            self._covars_ = self._covars_[order]

    # --- using a fitted model -------------------------------------------------------

    @property
    def n_features_(self):
        return self.means_.shape[1]

    @property
    def n_features_in_(self):
        """The number of features of ``X`` (scikit-learn's name)."""
        self._check_fitted()
        return np.shape(self.means_)[1]

    def _n_emission_parameters(self):
        K, D = self.means_.shape
        # a mixture's parameters but its K - 1 free weights
        return n_parameters(self.covariance_type, K, D) - (K - 1)

    def _sample_emissions(self, states, rng):
        n = states.shape[0]
        K, D = self.means_.shape
        z = rng.standard_normal((n, D))
        X = np.empty((n, D))
        cov = dense_covariances(self._covars_, self.covariance_type, K, D)
        for k in range(K):
            rows = states == k
            L = np.linalg.cholesky(cov[k])
            X[rows] = self.means_[k] + z[rows] @ L.T
        return X

    # --- model files ----------------------------------------------------------------

    def to_dict(self):
        """The fitted model as a dict of plain numbers and lists (JSON-safe); the
        covariances in the shape of ``covariance_type``."""
        self._check_model()
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
            "covars_": plain_list(self._covars_),
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
        _precision_cholesky(covars, ctype, f"{where}.covars_")
        model = cls(K, covariance_type=ctype)
        model.means_ = means
        model._covars_ = covars
        return model._finish_from_dict(start, trans, info)


# --- the HMM's own covariance rules (the shared algebra is emseg.mixture.gaussian's) ---


def _map_estimate(emission, shift, old_cov, ctype, setup, update_means, update_covars):
    """hmmlearn's M-step for the emissions, priors included, from statistics
    ``(nk, sx, sxx)`` centred on ``shift`` (the current means): ``(means, covariances,
    empty)``; ``empty`` marks the states with no posterior weight (their values are
    meaningless, for the caller to replace)."""
    nk, sx, sxx = emission
    empty = nk <= 1e-10 * nk.sum()
    safe = np.where(empty, 1.0, nk)
    weight, prior = setup["means_weight"], setup["means_prior"]
    if update_means:
        means = shift + (weight * (prior - shift) + sx) / (weight + safe[:, None])
    else:
        means = np.array(shift, dtype=np.float64)
    if not update_covars:
        return means, np.array(old_cov), empty
    d = means - shift  # the scatter about the new means, from that about the old
    dev = means - prior
    cp, cw = setup["covars_prior"], setup["covars_weight"]
    if ctype in ("diag", "spherical"):
        diag = sxx if sxx.ndim == 2 else np.einsum("kii->ki", sxx)
        c_n = weight * dev**2 + diag - 2 * d * sx + nk[:, None] * d**2
        c_d = np.maximum(max(cw - 1, 0) + safe, 1e-5)[:, None]
        if ctype == "diag":
            return means, (cp + c_n) / c_d, empty
        return means, ((cp[:, None] + c_n) / c_d).mean(1), empty
    scatter = 0.5 * (sxx + sxx.transpose(0, 2, 1))
    cross = d[:, :, None] * sx[:, None, :]
    c_n = (
        weight[:, :, None] * dev[:, :, None] * dev[:, None, :]
        + scatter
        - cross
        - cross.transpose(0, 2, 1)
        + nk[:, None, None] * d[:, :, None] * d[:, None, :]
    )
    extra = max(cw - means.shape[1], 0)
    if ctype == "full":
        return means, (cp + c_n) / (extra + safe)[:, None, None], empty
    return means, (cp + c_n.sum(0)) / (extra + nk.sum()), empty




def _compact_covars(value, ctype, K, D, name, check=False):
    """Covariances in the shape of ``ctype`` from hmmlearn's accepted shapes (that
    shape, or (K, D, D) matrices; spherical also any K values, or (K, D) equal
    columns): the same array when it is already right. With ``check``, a float64
    copy checked finite, symmetric and positive definite."""
    arr = np.asarray(value, dtype=np.float64)
    shape = covariance_shape(ctype, K, D)
    if arr.shape != shape:
        arr = _reshape_covars(arr, ctype, K, D, name, shape)
    if check:
        arr = check_finite(arr, name, shape)
        check_symmetric(arr, ctype, name)
        _precision_cholesky(arr, ctype, name)
    return arr


def _reshape_covars(arr, ctype, K, D, name, shape):
    full = arr.shape == (K, D, D)
    off = full and bool((arr * (1 - np.eye(D))).any())
    if ctype == "spherical" and arr.size == K:
        return arr.reshape(K)
    if ctype == "spherical" and arr.shape == (K, D) and (arr == arr[:, :1]).all():
        return arr[:, 0].copy()
    diag = np.einsum("kii->ki", arr) if full and not off else None
    if ctype == "spherical" and diag is not None and (diag == diag[:, :1]).all():
        return diag[:, 0].copy()
    if ctype == "diag" and diag is not None:
        return diag
    if ctype == "tied" and full and (arr == arr[:1]).all():
        return arr[0].copy()
    raise EmsegError(
        f"{name} must have shape {shape} for covariance_type={ctype!r} (or be "
        f"{(K, D, D)} matrices of that kind), got {arr.shape}"
    )


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
