"""Hidden Markov models fitted by Baum-Welch: :class:`GaussianHMM` and :class:`CategoricalHMM`.

The model is hmmlearn's (``hmmlearn.hmm.GaussianHMM`` and ``CategoricalHMM``): from the
same starting parameters both reach the same estimates and the same Viterbi paths.
What differs is how it is computed, and a few conventions:

- **Shared EM loop.** Each model supplies its E-step statistics and M-step to
  :func:`emseg.mixture.em.run_em`, which owns restarts (``n_init``), the stopping rule, the
  log-likelihood history and the convergence warning.
- **Compiled forward-backward** (:mod:`emseg.hmm._kernels`): probability space with
  each frame's maximum log-density subtracted before exponentiating, so it runs at the
  speed of hmmlearn's "scaling" implementation without its underflow on outliers;
  sequences are spread over the cores. Viterbi is compiled and parallel too, and
  breaks ties as hmmlearn does.
- **Stopping rule.** ``tol`` applies to the *mean log-likelihood per sample* (as in
  :class:`emseg.GaussianMixture` and scikit-learn), not to the total log-likelihood
  as in hmmlearn, so one ``tol`` means the same on 1,000 rows and on 10 million:
  hmmlearn's ``tol=1e-2`` on a million rows corresponds to ``tol=1e-8`` here. The
  fit stops when the mean changes by less than ``tol``; ``converged_`` is False when
  ``n_iter`` iterations ran out first (hmmlearn reports that as converged).
- **Units.** ``history_`` and ``lower_bound_`` are mean log-likelihoods per sample
  (the shared EM loop's unit); ``score`` and ``score_samples`` return the total
  log-likelihood of ``X``, as hmmlearn's do, and ``bic``/``aic`` use the total.
- **Covariances.** Maximum likelihood with a floor: every M-step raises any
  eigenvalue of a covariance below ``min_covar`` to ``min_covar`` (the exact
  constrained maximiser, so the likelihood still never falls). hmmlearn instead
  adds a conjugate prior (``covars_prior=1e-2``) and applies ``min_covar`` only at
  initialisation; it gives the same estimates with ``covars_prior=0`` whenever no
  eigenvalue reaches the floor. ``covars_`` has the shape of ``covariance_type``
  ((K,) spherical, (K, D) diag, (K, D, D) full, (D, D) tied), where hmmlearn's
  ``covars_`` always returns full matrices.
- **Priors** on ``startprob_`` and ``transmat_`` (and ``emissionprob_``) are
  hmmlearn's Dirichlet priors: ``max(prior - 1 + expected counts, 0)``, normalised,
  and a probability that is exactly 0 stays 0 (a left-right model stays left-right).
  A state that receives no posterior weight keeps its emission parameters, and a
  transition row with no expected counts keeps its probabilities.
- **MAP decoding** returns the sum over frames of the log posterior probability of
  the chosen state (hmmlearn returns a sum of probabilities).
- **State order.** States are sorted after fitting: Gaussian states by the mean of
  their first feature, categorical states by their expected symbol
  ``sum_v v * emissionprob_[k, v]``; ties keep the fitted order.
- **Model files.** :meth:`to_dict` / :meth:`from_dict` give plain JSON-safe dicts
  and refuse malformed ones with a one-line :class:`~emseg.EmsegError`.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..hmm import _kernels as hk
from .._shared import compute as kern
from .._shared.errors import EmptyComponentWarning, EmsegError
from .._shared.jsonfields import check_header, field_array, field_int, fit_info, kind
from ..mixture.kmeans import kmeans_plusplus, lloyd
from .._shared.validation import as_generator, check_choice, check_data, check_float, check_int
from ..mixture.em import run_em

__all__ = ["CategoricalHMM", "GaussianHMM", "hmm_from_dict"]

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
DECODERS = ("viterbi", "map")
FORMAT_VERSION = 1
_LOG_2PI = np.log(2 * np.pi)
_SUM_TOL = 1e-6  # |sum - 1| allowed in supplied probability vectors
_INIT_ROWS = 100_000  # k-means for the starting means runs on at most this many rows


@dataclass
class _Sequences:
    """Training data and the work arrays reused by every E-step."""

    X: np.ndarray  # (N, D) float64, or (N,) int64 symbols
    starts: np.ndarray  # int64 (S,)
    lengths: np.ndarray  # int64 (S,)
    post: np.ndarray  # (N, K) posteriors
    work: np.ndarray  # (N,) scale factors


@dataclass
class HMMStats:
    """Sufficient statistics of one E-step.

    ``start`` (K,) and ``trans`` (K, K) are the expected initial states and
    transitions; ``emission`` is model-specific (Gaussian: ``(nk, sx, sxx)`` centred on
    ``shift``, the means used; categorical: ``(counts,)``). Statistics computed under
    the same parameters add up with ``+``.
    """

    start: np.ndarray
    trans: np.ndarray
    emission: tuple
    shift: object
    loglik: float
    n_samples: int

    def __add__(self, other):
        return HMMStats(
            self.start + other.start,
            self.trans + other.trans,
            tuple(a + b for a, b in zip(self.emission, other.emission)),
            self.shift,
            self.loglik + other.loglik,
            self.n_samples + other.n_samples,
        )


class _BaseHMM:
    """What Gaussian and categorical HMMs share: transitions, the E-step driver,
    decoding, scoring, sampling, and the EM protocol's bookkeeping."""

    _format = None

    # --- fitting -------------------------------------------------------------------

    def fit(self, X, lengths=None):
        """Fit by Baum-Welch to the sequences in ``X`` (rows of all sequences stacked;
        ``lengths`` gives each sequence's row count, default one sequence)."""
        X = self._check_X(X, fitted=False)
        n = X.shape[0]
        starts, lengths = _check_lengths(lengths, n)
        self._prepare_fit(X)  # checks every parameter, once
        K = self.n_components
        data = _Sequences(X, starts, lengths, np.empty((n, K)), np.empty(n))
        try:
            result = run_em(
                self,
                data,
                n_init=self.n_init,
                max_iter=self.n_iter,
                tol=self.tol,
                rng=as_generator(self.random_state),
                callback=self.callback,
                iter_name="n_iter",
            )
        finally:
            del self._fit_setup
        self._reorder(self._state_order())
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = float(result.lower_bound)
        self.history_ = np.asarray(result.history, dtype=np.float64)
        return self

    def fit_predict(self, X, lengths=None):
        """Fit, then return the Viterbi path of ``X``."""
        return self.fit(X, lengths).predict(X, lengths)

    def _check_common_parameters(self, n_samples):
        K = check_int(self.n_components, "n_components", 1)
        if K > n_samples:
            raise EmsegError(
                f"n_components={K} is larger than the number of samples ({n_samples}); "
                "lower n_components"
            )
        check_int(self.n_iter, "n_iter", 0)
        check_float(self.tol, "tol")
        check_int(self.n_init, "n_init", 1)
        if self.callback is not None and not callable(self.callback):
            raise EmsegError(f"callback must be callable, got {self.callback!r}")
        setup = {
            "startprob_prior": _check_prior(self.startprob_prior, "startprob_prior", (K,)),
            "transmat_prior": _check_prior(self.transmat_prior, "transmat_prior", (K, K)),
            "startprob": None,
            "transmat": None,
        }
        if self.startprob_init is not None:
            setup["startprob"] = _check_probabilities(self.startprob_init, "startprob_init", (K,))
        if self.transmat_init is not None:
            setup["transmat"] = _check_probabilities(self.transmat_init, "transmat_init", (K, K))
        return setup

    # --- the EM protocol (see emseg.mixture.em) ---------------------------------------------

    def _initialize(self, data, rng):
        K = self.n_components
        setup = self._fit_setup
        uniform = np.full(K, 1.0 / K)
        start = setup["startprob"]
        trans = setup["transmat"]
        self.startprob_ = uniform.copy() if start is None else start.copy()
        if trans is None:
            # half on staying put, half random: breaks the symmetry of a uniform matrix
            # (whose first steps crawl along a saddle) and suits the persistent states
            # HMMs are mostly fitted to
            trans = 0.5 * np.eye(K) + 0.5 * rng.dirichlet(np.ones(K), size=K)
        self.transmat_ = trans.copy()
        self._initialize_emission(data, rng)

    def _e_step(self, data):
        xi, loglik = self._forward_backward(data.X, data.starts, data.lengths, data.post, data.work)
        bad = np.flatnonzero(~np.isfinite(loglik))
        if bad.size:
            raise EmsegError(
                f"sequence {int(bad[0])} has probability zero under the current "
                "parameters (a zero start, transition or emission probability rules it "
                "out); check startprob_init, transmat_init and the emission parameters"
            )
        n = data.X.shape[0]
        total = float(loglik.sum())
        stats = HMMStats(
            data.post[data.starts].sum(0),
            xi.sum(0),
            self._emission_stats(data.X, data.post),
            self._stats_shift(),
            total,
            n,
        )
        return stats, total / n

    def _m_step(self, stats, data):
        setup = self._fit_setup
        self.startprob_ = _dirichlet_update(self.startprob_, stats.start, setup["startprob_prior"])
        self.transmat_ = _dirichlet_update(self.transmat_, stats.trans, setup["transmat_prior"])
        self._m_step_emission(stats)

    def _get_params(self):
        return (self.startprob_, self.transmat_) + self._get_emission_params()

    def _set_params(self, params):
        self.startprob_, self.transmat_ = params[0], params[1]
        self._set_emission_params(params[2:])

    def _reorder(self, order):
        """Permute the states (``order[i]`` becomes state ``i``)."""
        self.startprob_ = self.startprob_[order]
        self.transmat_ = self.transmat_[np.ix_(order, order)]
        self._reorder_emission(order)

    # --- compiled recursions ----------------------------------------------------------

    def _log_start_trans(self):
        with np.errstate(divide="ignore"):
            return np.log(self.startprob_), np.log(self.transmat_)

    def _forward_backward(self, X, starts, lengths, post, work):
        """Posteriors into ``post``; per sequence, expected transitions and log-likelihood.

        The fast scaled recursion first; a sequence it cannot represent (see
        :mod:`emseg.hmm._kernels`) is redone in log space.
        """
        e = self._emission_log_prob(X)
        top = hk.shift_rows(e)
        np.exp(e, out=e)
        xi, loglik, ok = hk.forward_backward(
            e,
            top,
            starts,
            lengths,
            np.ascontiguousarray(self.startprob_, dtype=np.float64),
            np.ascontiguousarray(self.transmat_, dtype=np.float64),
            post,
            work,
        )
        if not ok.all():
            log_start, log_trans = self._log_start_trans()
            for s in np.flatnonzero(~ok):
                rows = slice(starts[s], starts[s] + lengths[s])
                xi[s], loglik[s] = hk.forward_backward_log(
                    self._emission_log_prob(X[rows]), log_start, log_trans, post[rows]
                )
        return xi, loglik

    # --- using a fitted model -------------------------------------------------------

    def _check_fitted(self):
        if not hasattr(self, "startprob_"):
            raise EmsegError(
                f"this {type(self).__name__} is not fitted yet; call fit(X) first"
            )

    def _prepare(self, X, lengths):
        self._check_fitted()
        X = self._check_X(X, fitted=True)
        starts, lengths = _check_lengths(lengths, X.shape[0])
        return X, starts, lengths

    def _posteriors(self, X, starts, lengths):
        n = X.shape[0]
        post = np.empty((n, self.n_components_))
        _, loglik = self._forward_backward(X, starts, lengths, post, np.empty(n))
        return float(loglik.sum()), post

    def score_samples(self, X, lengths=None):
        """``(log_prob, posteriors)``: the total log-likelihood of ``X`` and each
        row's posterior state probabilities, (N, K). A sequence the model gives
        probability zero scores -inf and gets NaN posteriors."""
        return self._posteriors(*self._prepare(X, lengths))

    def score(self, X, lengths=None):
        """Total log-likelihood of the sequences in ``X`` (as hmmlearn's ``score``)."""
        return self.score_samples(X, lengths)[0]

    def predict_proba(self, X, lengths=None):
        """Posterior state probabilities of each row, (N, K)."""
        return self.score_samples(X, lengths)[1]

    def decode(self, X, lengths=None, algorithm="viterbi"):
        """``(log_prob, states)``.

        ``"viterbi"``: the most probable state path and its joint log-probability
        ``log p(X, path)``, summed over sequences. ``"map"``: each row's most probable
        state given all of its sequence, and the sum of the log posterior
        probabilities of the chosen states (the log of the product of those
        marginal probabilities; at most 0).
        """
        check_choice(algorithm, "algorithm", DECODERS)
        if algorithm == "map":
            _, post = self.score_samples(X, lengths)
            states = post.argmax(axis=1)
            with np.errstate(divide="ignore"):
                log_prob = float(np.log(post[np.arange(post.shape[0]), states]).sum())
            return log_prob, states
        X, starts, lengths = self._prepare(X, lengths)
        log_start, log_trans = self._log_start_trans()
        states, logprob = hk.viterbi(
            self._emission_log_prob(X), starts, lengths, log_start, log_trans
        )
        return float(logprob.sum()), states

    def predict(self, X, lengths=None):
        """The Viterbi path of ``X``."""
        return self.decode(X, lengths)[1]

    def _n_parameters(self):
        K = self.n_components_
        return (K - 1) + K * (K - 1) + self._n_emission_parameters()

    def bic(self, X, lengths=None):
        """Bayesian information criterion on ``X`` (lower is better)."""
        X, starts, lengths = self._prepare(X, lengths)
        log_prob, _ = self._posteriors(X, starts, lengths)
        return -2 * log_prob + self._n_parameters() * np.log(X.shape[0])

    def aic(self, X, lengths=None):
        """Akaike information criterion on ``X`` (lower is better)."""
        return -2 * self.score(X, lengths) + 2 * self._n_parameters()

    @property
    def n_components_(self):
        return self.startprob_.shape[0]

    def sample(self, n_samples=1, random_state=None):
        """Draw one sequence of ``n_samples`` rows: ``(X, states)``.

        ``random_state`` (None, an int or a Generator) defaults to the estimator's
        ``random_state``; the same seed gives the same draw.
        """
        self._check_fitted()
        n = check_int(n_samples, "n_samples", 1)
        rng = as_generator(self.random_state if random_state is None else random_state)
        start_cdf = np.cumsum(self.startprob_)
        trans_cdf = np.cumsum(self.transmat_, axis=1)
        states = hk.sample_states(start_cdf, trans_cdf, rng.random(n))
        return self._sample_emissions(states, rng), states

    # --- model files ----------------------------------------------------------------

    def _fit_info(self):
        lower = float(getattr(self, "lower_bound_", math.nan))
        return {
            "converged_": bool(getattr(self, "converged_", False)),
            "n_iter_": int(getattr(self, "n_iter_", 0)),
            "lower_bound_": lower if math.isfinite(lower) else None,
        }

    @classmethod
    def _start_from_dict(cls, d, where, fields):
        """Check the format header and the fields every HMM has; returns (K, start, trans,
        fit info)."""
        check_header(d, cls._format, FORMAT_VERSION, where, cls.__name__)
        known = set(fields) | {
            "format",
            "format_version",
            "n_components",
            "startprob_",
            "transmat_",
            "converged_",
            "n_iter_",
            "lower_bound_",
        }
        unknown = sorted(set(d) - known, key=str)
        if unknown:
            raise EmsegError(f"{where} has an unknown field {unknown[0]!r}")
        K = field_int(d, "n_components", where, 1)
        start = _field_probabilities(d, "startprob_", (K,), where)
        trans = _field_probabilities(d, "transmat_", (K, K), where)
        return K, start, trans, fit_info(d, where, required=False)

    def _finish_from_dict(self, start, trans, info):
        self.startprob_ = start
        self.transmat_ = trans
        self.converged_, self.n_iter_, self.lower_bound_ = info
        self.history_ = np.empty(0)
        return self


class GaussianHMM(_BaseHMM):
    """Hidden Markov model with Gaussian emissions, fitted by Baum-Welch.

    Parameters follow ``hmmlearn.hmm.GaussianHMM`` (see the module docstring for the
    differences). ``n_iter`` is the maximum number of EM iterations; ``tol`` the
    stopping threshold on the mean log-likelihood per sample; ``min_covar`` the floor
    on covariance eigenvalues; ``startprob_prior`` / ``transmat_prior`` Dirichlet
    parameters (a number or an array of shape (K,) / (K, K)); ``n_init`` the number
    of restarts (the best log-likelihood wins). Starting values: ``startprob_init``
    (K,), ``transmat_init`` (K, K), ``means_init`` (K, D) and ``covars_init`` (shape
    of ``covariance_type``). Those not given start as: ``startprob_`` uniform;
    ``transmat_`` rows half on the diagonal, half a random Dirichlet(1) draw; means
    from k-means++ and Lloyd (on at most 100,000 random rows); covariances the data's
    covariance plus ``min_covar`` (hmmlearn's choice).
    ``callback(iteration, mean_loglik)`` is called after every iteration.

    After ``fit``: ``startprob_``, ``transmat_``, ``means_``, ``covars_``,
    ``precisions_cholesky_``, ``converged_``, ``n_iter_``, ``lower_bound_`` and
    ``history_`` (mean log-likelihood per sample before each iteration's M-step).
    """

    _format = "emseg.GaussianHMM"

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
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_float(self.min_covar, "min_covar")
        setup = self._check_common_parameters(X.shape[0])
        K, D = self.n_components, X.shape[1]
        setup["means"] = None
        setup["covars"] = None
        if self.means_init is not None:
            setup["means"] = _check_finite(self.means_init, "means_init", (K, D))
        if self.covars_init is not None:
            shape = _covars_shape(self.covariance_type, K, D)
            covars = _check_finite(self.covars_init, "covars_init", shape)
            _check_symmetric(covars, self.covariance_type, "covars_init")
            _precision_cholesky(covars, self.covariance_type, "covars_init")
            setup["covars"] = covars
        self._fit_setup = setup

    # --- the EM protocol -------------------------------------------------------------

    def _initialize_emission(self, data, rng):
        setup = self._fit_setup
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
        K, D = self.means_.shape
        pc = self.precisions_cholesky_
        ctype = self.covariance_type
        if ctype == "full":
            log_det = np.log(np.diagonal(pc, axis1=1, axis2=2)).sum(1)
            prec = pc
        elif ctype == "tied":
            log_det = np.full(K, np.log(np.diag(pc)).sum())
            prec = np.broadcast_to(pc, (K, D, D))
        elif ctype == "diag":
            log_det = np.log(pc).sum(1)
            prec = pc
        else:
            log_det = D * np.log(pc)
            prec = np.broadcast_to(pc[:, None], (K, D))
        log_norm = log_det - 0.5 * D * _LOG_2PI
        means = np.ascontiguousarray(self.means_, dtype=np.float64)
        prec = np.ascontiguousarray(prec, dtype=np.float64)
        if ctype in ("full", "tied"):
            return kern.log_prob_full(X, log_norm, means, prec)
        return kern.log_prob_diag(X, log_norm, means, prec)

    def _emission_stats(self, X, post):
        means = np.ascontiguousarray(self.means_, dtype=np.float64)
        if self.covariance_type in ("full", "tied"):
            return hk.gaussian_stats_full(X, post, means)
        return hk.gaussian_stats_diag(X, post, means)

    def _stats_shift(self):
        return self.means_

    def _m_step_emission(self, stats):
        nk, sx, sxx = stats.emission
        ctype = self.covariance_type
        total = nk.sum()
        empty = nk <= 1e-10 * total
        safe = np.where(empty, 1.0, nk)
        shift = sx / safe[:, None]
        means = stats.shift + shift
        if ctype in ("full", "tied"):
            scatter = sxx - nk[:, None, None] * shift[:, :, None] * shift[:, None, :]
            scatter = 0.5 * (scatter + scatter.transpose(0, 2, 1))
            cov = scatter / safe[:, None, None] if ctype == "full" else scatter.sum(0) / total
        else:
            var = sxx / safe[:, None] - shift**2
            cov = var if ctype == "diag" else var.mean(1)
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
        cov = {
            "full": K * D * (D + 1) // 2,
            "tied": D * (D + 1) // 2,
            "diag": K * D,
            "spherical": K,
        }[self.covariance_type]
        return K * D + cov

    def _full_covars(self):
        """(K, D, D) covariances whatever ``covariance_type``."""
        return _full_covariances(self.covars_, self.covariance_type, *self.means_.shape)

    def _sample_emissions(self, states, rng):
        n = states.shape[0]
        K, D = self.means_.shape
        z = rng.standard_normal((n, D))
        X = np.empty((n, D))
        cov = self._full_covars()
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
            "startprob_": _plain(self.startprob_),
            "transmat_": _plain(self.transmat_),
            "means_": _plain(self.means_),
            "covars_": _plain(self.covars_),
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
                f"{where}.covariance_type must be one of {', '.join(COVARIANCE_TYPES)}, "
                f"got {ctype!r}"
            )
        D = field_int(d, "n_features", where, 1)
        means = field_array(d, "means_", (K, D), where)
        covars = field_array(d, "covars_", _covars_shape(ctype, K, D), where)
        _check_symmetric(covars, ctype, f"{where}.covars_")
        prec_chol = _precision_cholesky(covars, ctype, f"{where}.covars_")
        model = cls(K, covariance_type=ctype)
        model.means_ = means
        model.covars_ = covars
        model.precisions_cholesky_ = prec_chol
        return model._finish_from_dict(start, trans, info)


class CategoricalHMM(_BaseHMM):
    """Hidden Markov model with categorical emissions (symbol sequences).

    ``X`` holds integer symbols ``0 .. n_features - 1``, as a 1-D array or one column.
    ``n_features`` is the number of symbols (default: from ``emissionprob_init``, else
    the largest symbol in the training data plus one). ``emissionprob_prior`` is a
    Dirichlet parameter for each state's emission distribution (a number or (K, V)),
    ``emissionprob_init`` the starting emission probabilities (K, V; default uniform
    random numbers, rows normalised). The other parameters, and the other starting
    values, are :class:`GaussianHMM`'s.

    After ``fit``: ``startprob_``, ``transmat_``, ``emissionprob_``, ``n_features_``,
    ``converged_``, ``n_iter_``, ``lower_bound_``, ``history_``. States are ordered by
    their expected symbol ``sum_v v * emissionprob_[k, v]``.
    """

    _format = "emseg.CategoricalHMM"

    def __init__(
        self,
        n_components=1,
        *,
        n_features=None,
        n_iter=100,
        tol=1e-4,
        startprob_prior=1.0,
        transmat_prior=1.0,
        emissionprob_prior=1.0,
        n_init=1,
        random_state=None,
        startprob_init=None,
        transmat_init=None,
        emissionprob_init=None,
        callback=None,
    ):
        self.n_components = n_components
        self.n_features = n_features
        self.n_iter = n_iter
        self.tol = tol
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.emissionprob_prior = emissionprob_prior
        self.n_init = n_init
        self.random_state = random_state
        self.startprob_init = startprob_init
        self.transmat_init = transmat_init
        self.emissionprob_init = emissionprob_init
        self.callback = callback

    # --- checks ---------------------------------------------------------------------

    def _check_X(self, X, *, fitted):
        try:
            arr = np.asarray(X)
        except Exception as exc:  # ragged lists and the like
            raise EmsegError(f"X could not be read as an array of symbols ({exc})") from None
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise EmsegError(
                f"X must be a 1-D array of symbols or one column (n_samples, 1), got "
                f"shape {arr.shape}"
            )
        if arr.shape[0] == 0:
            raise EmsegError("X is empty; pass at least one symbol")
        if arr.dtype == bool:
            arr = arr.astype(np.int64)
        elif arr.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                raise EmsegError(
                    f"X contains NaN or infinity (first in row {int(bad[0])}); "
                    "CategoricalHMM cannot use missing values: drop those rows"
                )
            bad = np.flatnonzero(arr != np.round(arr))
            if bad.size:
                raise EmsegError(
                    f"X must hold integer symbols, got {float(arr[bad[0]]):g} in row {int(bad[0])}"
                )
        elif arr.dtype.kind not in "iu":
            raise EmsegError(f"X must hold integer symbols, got dtype {arr.dtype}")
        if arr.min() < 0:
            row = int(np.argmin(arr))
            raise EmsegError(f"symbols must be >= 0, got {arr[row]} in row {row}")
        if arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
            raise EmsegError(f"symbols must be below 2**63, got {arr.max()}")
        arr = np.ascontiguousarray(arr, dtype=np.int64)
        if fitted:
            V = self.emissionprob_.shape[1]
            if arr.max() >= V:
                row = int(np.argmax(arr))
                raise EmsegError(
                    f"symbol {arr[row]} in row {row} is outside the model's "
                    f"{V} symbols (0..{V - 1})"
                )
        return arr

    def _prepare_fit(self, X):
        if self.n_features is not None:
            check_int(self.n_features, "n_features", 1)
        setup = self._check_common_parameters(X.shape[0])
        K = self.n_components
        V = self.n_features
        source = f"n_features={V}"
        emission = None
        if self.emissionprob_init is not None:
            if V is None:
                if np.ndim(self.emissionprob_init) != 2:
                    raise EmsegError(
                        "emissionprob_init must be 2-D (n_components, n_features), got "
                        f"shape {np.shape(self.emissionprob_init)}"
                    )
                V = np.shape(self.emissionprob_init)[1]
                source = f"emissionprob_init's {V} columns"
            emission = _check_probabilities(self.emissionprob_init, "emissionprob_init", (K, V))
        largest = int(X.max())
        if V is None:
            V = largest + 1
        elif largest >= V:
            raise EmsegError(
                f"X contains symbol {largest}, outside the 0..{V - 1} allowed by {source}; "
                "raise n_features"
            )
        setup["emissionprob"] = emission
        setup["emissionprob_prior"] = _check_prior(
            self.emissionprob_prior, "emissionprob_prior", (K, V)
        )
        setup["n_symbols"] = V
        self._fit_setup = setup

    # --- the EM protocol -------------------------------------------------------------

    def _initialize_emission(self, data, rng):
        setup = self._fit_setup
        if setup["emissionprob"] is not None:
            self.emissionprob_ = setup["emissionprob"].copy()
        else:
            e = rng.uniform(size=(self.n_components, setup["n_symbols"]))
            self.emissionprob_ = e / e.sum(1, keepdims=True)

    def _emission_log_prob(self, X):
        with np.errstate(divide="ignore"):
            log_e = np.log(self.emissionprob_)
        return hk.categorical_log_prob(X, np.ascontiguousarray(log_e))

    def _emission_stats(self, X, post):
        return (hk.symbol_counts(X, post, self.emissionprob_.shape[1]),)

    def _stats_shift(self):
        return None

    def _m_step_emission(self, stats):
        (counts,) = stats.emission
        prior = self._fit_setup["emissionprob_prior"]
        new = np.maximum(prior - 1 + counts, 0)
        rows = new.sum(1)
        keep = rows <= 0
        rows[keep] = 1.0
        new = new / rows[:, None]
        new[keep] = self.emissionprob_[keep]
        self.emissionprob_ = new

    def _get_emission_params(self):
        return (self.emissionprob_,)

    def _set_emission_params(self, params):
        (self.emissionprob_,) = params

    def _state_order(self):
        expected = self.emissionprob_ @ np.arange(self.emissionprob_.shape[1])
        return np.argsort(expected, kind="stable")

    def _reorder_emission(self, order):
        self.emissionprob_ = self.emissionprob_[order]

    # --- using a fitted model -------------------------------------------------------

    @property
    def n_features_(self):
        return self.emissionprob_.shape[1]

    def _n_emission_parameters(self):
        K, V = self.emissionprob_.shape
        return K * (V - 1)

    def _sample_emissions(self, states, rng):
        cdf = np.cumsum(self.emissionprob_, axis=1)
        return hk.sample_symbols(cdf, states, rng.random(states.shape[0]))[:, None]

    # --- model files ----------------------------------------------------------------

    def to_dict(self):
        """The fitted model as a dict of plain numbers and lists (JSON-safe)."""
        self._check_fitted()
        K, V = self.emissionprob_.shape
        return {
            "format": self._format,
            "format_version": FORMAT_VERSION,
            "n_components": int(K),
            "n_features": int(V),
            "startprob_": _plain(self.startprob_),
            "transmat_": _plain(self.transmat_),
            "emissionprob_": _plain(self.emissionprob_),
            **self._fit_info(),
        }

    @classmethod
    def from_dict(cls, d, *, where="model"):
        """A fitted CategoricalHMM from :meth:`to_dict`'s dict, checked field by field
        (see :meth:`GaussianHMM.from_dict`)."""
        K, start, trans, info = cls._start_from_dict(d, where, ("n_features", "emissionprob_"))
        V = field_int(d, "n_features", where, 1)
        emission = _field_probabilities(d, "emissionprob_", (K, V), where)
        model = cls(K, n_features=V)
        model.emissionprob_ = emission
        return model._finish_from_dict(start, trans, info)


def hmm_from_dict(d, *, where="model"):
    """A fitted :class:`GaussianHMM` or :class:`CategoricalHMM`, chosen by ``d["format"]``."""
    if not isinstance(d, dict):
        raise EmsegError(f"{where} must be a JSON object, got {kind(d)}")
    for cls in (GaussianHMM, CategoricalHMM):
        if d.get("format") == cls._format:
            return cls.from_dict(d, where=where)
    raise EmsegError(
        f"{where} is not an emseg HMM (format {d.get('format')!r}, expected "
        f"{GaussianHMM._format!r} or {CategoricalHMM._format!r})"
    )


# --- helpers ---------------------------------------------------------------------------


def _check_lengths(lengths, n_rows):
    """``(starts, lengths)`` as int64 arrays; one sequence when ``lengths`` is None."""
    if lengths is None:
        return np.zeros(1, dtype=np.int64), np.array([n_rows], dtype=np.int64)
    try:
        arr = np.asarray(lengths)
    except Exception as exc:
        raise EmsegError(f"lengths could not be read as a list of integers ({exc})") from None
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise EmsegError(
            f"lengths must be a non-empty 1-D list of sequence lengths, got shape {arr.shape}"
        )
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise EmsegError(f"lengths must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not (np.isfinite(arr) & (arr == np.round(arr))).all():
        raise EmsegError("lengths must be whole numbers")
    arr = arr.astype(np.int64)
    if (arr < 1).any():
        i = int(np.argmin(arr))
        raise EmsegError(
            f"lengths must be >= 1, got {arr[i]} for sequence {i}; drop empty sequences"
        )
    total = int(arr.sum())
    if total != n_rows:
        raise EmsegError(
            f"lengths sum to {total} but X has {n_rows} rows; they must be equal"
        )
    starts = np.zeros(arr.shape[0], dtype=np.int64)
    np.cumsum(arr[:-1], out=starts[1:])
    return starts, np.ascontiguousarray(arr)


def _check_finite(value, name, shape):
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise EmsegError(f"{name} must be a numeric array of shape {shape}") from None
    if arr.shape != shape:
        raise EmsegError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise EmsegError(f"{name} contains NaN or infinity")
    return arr


def _check_probabilities(value, name, shape):
    """A copy of ``value`` checked to hold probabilities (rows summing to 1), renormalised."""
    arr = _check_finite(value, name, shape)
    return _normalised_rows(arr, name)


def _normalised_rows(arr, name, renormalise=True):
    """``arr`` checked to be >= 0 with rows summing to 1 within 1e-6; divided by the
    row sums when ``renormalise`` (model files are kept as written, so that saving and
    loading gives back exactly the same model)."""
    if (arr < 0).any():
        raise EmsegError(f"{name} must be >= 0, got minimum {arr.min():.3g}")
    sums = arr.sum(axis=-1)
    bad = np.flatnonzero(np.abs(np.atleast_1d(sums) - 1.0) > _SUM_TOL)
    if bad.size:
        where = "" if arr.ndim == 1 else f" (row {int(bad[0])})"
        value = float(np.atleast_1d(sums)[bad[0]])
        raise EmsegError(f"{name} must sum to 1{where}, got {value:.9g}")
    if not renormalise:
        return arr
    return arr / sums[..., None] if arr.ndim > 1 else arr / sums


def _check_prior(value, name, shape):
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise EmsegError(f"{name} must be a number or an array of shape {shape}") from None
    if arr.ndim and arr.shape != shape:
        raise EmsegError(f"{name} must be a number or have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise EmsegError(f"{name} must be finite and >= 0")
    return np.broadcast_to(arr, shape)


def _dirichlet_update(current, counts, prior):
    """hmmlearn's MAP update: ``max(prior - 1 + counts, 0)`` normalised, zeros kept zero.
    A row left without mass keeps its current probabilities."""
    new = np.maximum(prior - 1 + counts, 0)
    new = np.where(current == 0, 0, new)
    sums = new.sum(axis=-1, keepdims=True)
    keep = sums <= 0
    out = new / np.where(keep, 1.0, sums)
    return np.where(keep, current, out)


def _covars_shape(ctype, K, D):
    return {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[ctype]


def _full_covariances(covars, ctype, K, D):
    if ctype == "full":
        return covars
    if ctype == "tied":
        return np.broadcast_to(covars, (K, D, D))
    if ctype == "diag":
        return np.einsum("kd,de->kde", covars, np.eye(D))
    return covars[:, None, None] * np.eye(D)


def _check_symmetric(covars, ctype, name):
    if ctype not in ("full", "tied"):
        return
    mats = covars[None] if ctype == "tied" else covars
    for k, S in enumerate(mats):
        if np.abs(S - S.T).max() > 1e-9 * max(np.abs(S).max(), 1e-300):
            label = "" if ctype == "tied" else f"[{k}]"
            raise EmsegError(f"{name}{label} is not symmetric")


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


def _plain(arr):
    return np.asarray(arr, dtype=np.float64).tolist()


def _field_probabilities(d, name, shape, where):
    return _normalised_rows(field_array(d, name, shape, where), f"{where}.{name}", False)
