"""Hidden Markov models fitted by Baum-Welch: :class:`BaseHMM`, what
:class:`~emseg.hmm.gaussian.GaussianHMM` and :class:`~emseg.hmm.categorical.CategoricalHMM`
share (as hmmlearn's ``base.py``): transitions, the E-step driver, decoding, scoring,
sampling, model-file fields.

The model and the API are hmmlearn's (``hmmlearn.hmm.GaussianHMM`` and
``CategoricalHMM``): the same constructor keywords in the same order, ``params`` /
``init_params`` letters, models built by assigning ``startprob_``, ``transmat_`` and
the emission attributes, and from the same starting parameters the same estimates and
the same Viterbi paths. What differs is how it is computed, and a few conventions:

- **Shared EM loop.** Each model supplies its E-step statistics and M-step to
  :func:`emseg.mixture.em.run_em`, which owns restarts (``n_init``), the stopping rule, the
  log-likelihood history and the convergence warning.
- **One forward-backward** (:mod:`emseg.hmm._kernels`), whatever ``implementation``
  says (``"log"`` and ``"scaling"`` are accepted and run the same code): probability
  space with each frame's maximum log-density subtracted before exponentiating, so it
  runs at the speed of hmmlearn's "scaling" implementation without its underflow on
  outliers; a sequence it cannot represent is redone in log space. Sequences are spread
  over the cores. Viterbi is compiled and parallel too, and breaks ties as hmmlearn does.
- **Stopping rule.** ``tol`` applies to the *mean log-likelihood per sample* (as in
  :class:`emseg.GaussianMixture` and scikit-learn), not to the total log-likelihood
  as in hmmlearn, so one ``tol`` means the same on 1,000 rows and on 10 million:
  hmmlearn's ``tol=1e-2`` on 100 rows is ``tol=1e-4`` here (the default). The
  fit stops when the mean changes by less than ``tol``; ``converged_`` is False when
  ``n_iter`` iterations ran out first (hmmlearn reports that as converged).
- **Units.** ``history_`` and ``lower_bound_`` are mean log-likelihoods per sample
  (the shared EM loop's unit); ``score`` and ``score_samples`` return the total
  log-likelihood of ``X``, as hmmlearn's do, and ``bic``/``aic`` use the total;
  ``verbose=True`` prints hmmlearn's three columns (iteration, total log-likelihood,
  change) to stderr.
- **Arguments.** ``fit``, ``score`` and ``fit_predict`` take ``(X, y=None,
  lengths=None)``: scikit-learn's signature, which its Pipelines and ``check_estimator``
  need, and hmmlearn's ``fit(X, lengths)`` still works, since a second argument that is
  not one value per row is read as ``lengths`` (:func:`emseg.hmm.checks.y_or_lengths`
  says what is a target and what is refused). ``X`` is 2-D, as hmmlearn's; a 1-D array
  is refused rather than guessed to be one feature or one row.
- **Priors** on ``startprob_`` and ``transmat_`` (and ``emissionprob_``) are
  hmmlearn's Dirichlet priors: ``max(prior - 1 + expected counts, 0)``, normalised,
  and a probability that is exactly 0 stays 0 (a left-right model stays left-right).
  A state that receives no posterior weight keeps its emission parameters, and a
  transition row with no expected counts keeps its probabilities.
- **Starting values.** Each parameter starts from, in this order: its ``*_init``
  keyword (emseg's; it survives ``sklearn.base.clone``), the attribute already on the
  model when ``init_params`` leaves its letter out (hmmlearn's rule), or emseg's
  initialisation (``startprob_`` uniform, ``transmat_`` half on the diagonal and half a
  Dirichlet(1) draw, where hmmlearn draws both from a Dirichlet(1/K)).
- **MAP decoding** returns the sum over frames of the log posterior probability of
  the chosen state (hmmlearn returns a sum of probabilities).
- **State order.** When emseg chose every starting value, states are sorted after
  fitting (Gaussian states by the mean of their first feature, categorical states by
  their expected symbol ``sum_v v * emissionprob_[k, v]``; ties keep the fitted order),
  so label 0 means the same thing across runs. When any parameter started from a value
  the caller gave (a ``*_init`` keyword, or an attribute kept by ``init_params``), the
  caller's order is kept: a left-right model stays left-right, state by state.
- **Model files.** :meth:`to_dict` / :meth:`from_dict` give plain JSON-safe dicts
  and refuse malformed ones with a one-line :class:`~emseg.EmsegError`.
"""

import math
import numbers
import sys
from dataclasses import dataclass

import numpy as np

from . import _kernels as hk
from .._shared.errors import EmsegError
from .._shared.estimator import EstimatorMixin, check_is_fitted
from .._shared.jsonfields import check_header, field_int, fit_info
from .._shared.validation import as_generator, check_choice, check_float, check_int
from ..mixture.em import run_em
from .checks import (
    check_lengths,
    check_letters,
    check_prior,
    check_probabilities,
    field_probabilities,
    probability_attribute,
    y_or_lengths,
)

__all__ = ["BaseHMM", "DECODERS", "FORMAT_VERSION", "HMMStats", "IMPLEMENTATIONS"]

DECODERS = ("viterbi", "map")
IMPLEMENTATIONS = ("log", "scaling")  # hmmlearn's names; both run the same code here
FORMAT_VERSION = 1


@dataclass
class _Sequences:
    """The ``data`` of :func:`~emseg.mixture.em.run_em` for an HMM: the training
    sequences, the work arrays reused by every E-step, and ``setup``, the fit's checked
    parameters (priors, ``params`` letters, and starting values or None) from
    ``_prepare_fit``, which ``_initialize`` and ``_m_step`` read, so nothing about the
    fit travels on the model."""

    X: np.ndarray  # (N, D) float64, or (N, D) int64 symbols
    starts: np.ndarray  # int64 (S,)
    lengths: np.ndarray  # int64 (S,)
    post: np.ndarray  # (N, K) posteriors
    work: np.ndarray  # (N,) scale factors
    setup: dict  # see _check_common_parameters and each family's _prepare_fit


@dataclass
class HMMStats:
    """Sufficient statistics of one E-step.

    ``start`` (K,) and ``trans`` (K, K) are the expected initial states and
    transitions; ``emission`` is model-specific (Gaussian: ``(nk, sx, sxx)`` centred on
    ``shift``, the means used; categorical: ``(counts,)``; empty when ``params`` updates
    no emission parameter). Statistics computed under the same parameters add up with ``+``.
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


class BaseHMM(EstimatorMixin):
    """What Gaussian and categorical HMMs share: transitions, the E-step driver,
    decoding, scoring, sampling, and the EM protocol's bookkeeping; scikit-learn's
    protocol (``get_params``, ``set_params``, ``clone``, tags) from
    :class:`~emseg._shared.estimator.EstimatorMixin`.

    An emission family subclasses it and supplies ``_format`` (the model-file format
    name), ``_emission_letters`` (its ``params`` letters), ``_emission_attributes``,
    ``_check_X``, ``_prepare_fit`` (which returns the fit's setup dict, built on
    :meth:`_check_common_parameters`; the fit passes it around as ``data.setup``),
    ``_check_emission`` (the emission attributes of a fitted or hand-built model),
    ``_initialize_emission(data, rng)``, ``_emission_log_prob``, ``_emission_stats``,
    ``_stats_shift``, ``_m_step_emission(stats, data)``, ``_get_emission_params``
    / ``_set_emission_params``, ``_state_order``, ``_reorder_emission``,
    ``_n_emission_parameters``, ``_sample_emissions``, ``n_features_``, ``to_dict`` and
    ``from_dict`` (built on :meth:`_start_from_dict` and :meth:`_finish_from_dict`).
    """

    _format = None
    _emission_letters = ""
    _emission_attributes = ()

    def __init__(self, n_components, startprob_prior, transmat_prior, algorithm,
                 random_state, n_iter, tol, verbose, params, init_params, implementation,
                 n_init, startprob_init, transmat_init, callback):
        """Store the parameters every family shares, unchanged (scikit-learn's rule:
        they are checked in ``fit``); each family's ``__init__`` lists them in
        hmmlearn's order, with its own, and passes these here."""
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = params
        self.init_params = init_params
        self.implementation = implementation
        self.n_init = n_init
        self.startprob_init = startprob_init
        self.transmat_init = transmat_init
        self.callback = callback

    # --- fitting -------------------------------------------------------------------

    def fit(self, X, y=None, lengths=None):
        """Fit by Baum-Welch to the sequences in ``X`` (rows of all sequences stacked;
        ``lengths`` gives each sequence's row count, default one sequence).

        The second argument is named ``y``, as scikit-learn requires, and takes
        hmmlearn's ``lengths`` by position too: ``fit(X, lengths)`` and
        ``fit(X, lengths=lengths)`` are hmmlearn's calls; a target ``y`` (one value
        per row, as a Pipeline passes) is ignored (see
        :func:`~emseg.hmm.checks.y_or_lengths`)."""
        X = self._check_X(X, fitted=False)
        n = X.shape[0]
        starts, lengths = y_or_lengths(y, lengths, n)
        setup = self._prepare_fit(X)  # checks every parameter, once
        K = self.n_components
        data = _Sequences(X, starts, lengths, np.empty((n, K)), np.empty(n), setup)
        result = run_em(
            self,
            data,
            n_init=self.n_init,
            max_iter=self.n_iter,
            tol=self.tol,
            rng=as_generator(self.random_state),
            callback=_with_report(self.callback, self.verbose, n),
            iter_name="n_iter",
        )
        if setup["sort_states"]:
            self._reorder(self._state_order())
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = float(result.lower_bound)
        self.history_ = np.asarray(result.history, dtype=np.float64)
        return self

    def fit_predict(self, X, y=None, lengths=None):
        """Fit, then return the decoded states of ``X`` (``algorithm``'s); ``y`` and
        ``lengths`` as in :meth:`fit`."""
        X = self._check_X(X, fitted=False)
        _, lengths = y_or_lengths(y, lengths, X.shape[0])
        return self.fit(X, lengths=lengths).predict(X, lengths)

    def _init(self, X, lengths=None):
        """hmmlearn's initialisation step on its own: set the starting parameters as
        ``fit`` would (``init_params`` and the ``*_init`` keywords), without iterating.
        Kept for code written against hmmlearn; ``lengths`` is not used (as there)."""
        X = self._check_X(X, fitted=False)
        n = X.shape[0]
        setup = self._prepare_fit(X)
        data = _Sequences(X, *check_lengths(None, n), None, None, setup)
        self._initialize(data, as_generator(self.random_state))

    def _check(self):
        """hmmlearn's name for the check of a model's parameters (see :meth:`_check_model`)."""
        self._check_model()

    def _check_common_parameters(self, n_samples):
        """Check the parameters every HMM has; returns the setup dict (the priors
        broadcast, the ``params`` letters, and ``startprob`` / ``transmat`` starting
        values or None) that each family's ``_prepare_fit`` completes."""
        K = check_int(self.n_components, "n_components", 1)
        if K > n_samples:
            raise EmsegError(
                f"n_components={K} is larger than the number of samples ({n_samples}); "
                "lower n_components"
            )
        check_int(self.n_iter, "n_iter", 0)
        check_float(self.tol, "tol")
        check_int(self.n_init, "n_init", 1)
        check_choice(self.algorithm, "algorithm", DECODERS)
        check_choice(self.implementation, "implementation", IMPLEMENTATIONS)
        if not isinstance(self.verbose, (bool, numbers.Integral)):
            raise EmsegError(f"verbose must be True or False, got {self.verbose!r}")
        if self.callback is not None and not callable(self.callback):
            raise EmsegError(f"callback must be callable, got {self.callback!r}")
        letters = "st" + self._emission_letters
        params = check_letters(self.params, "params", letters)
        init_params = check_letters(self.init_params, "init_params", letters)
        setup = {
            "params": params,
            "init_params": init_params,
            "startprob_prior": check_prior(self.startprob_prior, "startprob_prior", (K,)),
            "transmat_prior": check_prior(self.transmat_prior, "transmat_prior", (K, K)),
            "startprob": self._start_value("s", "startprob", (K,), init_params),
            "transmat": self._start_value("t", "transmat", (K, K), init_params),
        }
        return setup

    def _start_value(self, letter, name, shape, init_params, check=check_probabilities):
        """The starting value of one parameter, checked: the ``<name>_init`` keyword if
        given, else the model's ``<name>_`` attribute when ``init_params`` leaves out
        ``letter`` (hmmlearn's rule), else None (emseg initialises it)."""
        given = getattr(self, f"{name}_init")
        if given is not None:
            return check(given, f"{name}_init", shape)
        if letter not in init_params and hasattr(self, f"{name}_"):
            return check(getattr(self, f"{name}_"), f"{name}_", shape)
        return None

    # --- the EM protocol (see emseg.mixture.em) ---------------------------------------------

    def _initialize(self, data, rng):
        K = self.n_components
        setup = data.setup
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
                "out); check the starting values of startprob, transmat and the emissions"
            )
        n = data.X.shape[0]
        total = float(loglik.sum())
        update_emission = any(c in data.setup["params"] for c in self._emission_letters)
        stats = HMMStats(
            data.post[data.starts].sum(0),
            xi.sum(0),
            self._emission_stats(data.X, data.post) if update_emission else (),
            self._stats_shift(),
            total,
            n,
        )
        return stats, total / n

    def _m_step(self, stats, data):
        setup = data.setup
        if "s" in setup["params"]:
            self.startprob_ = _dirichlet_update(
                self.startprob_, stats.start, setup["startprob_prior"]
            )
        if "t" in setup["params"]:
            self.transmat_ = _dirichlet_update(
                self.transmat_, stats.trans, setup["transmat_prior"]
            )
        if stats.emission:
            self._m_step_emission(stats, data)

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

    # --- using a fitted (or hand-built) model -------------------------------------------

    def _fitted_attributes(self):
        return ("startprob_", "transmat_") + self._emission_attributes

    def _check_fitted(self):
        """:class:`~emseg.NotFittedError` (an EmsegError, and scikit-learn's
        NotFittedError when it is installed) naming the missing attributes."""
        check_is_fitted(self, self._fitted_attributes())

    def _check_model(self):
        """Check the parameters of a fitted model, or of one built by assigning its
        attributes (as in hmmlearn), each time it is used, so that an edit after
        ``fit`` counts; they are kept as float64 arrays (no copy when they are)."""
        self._check_fitted()
        K = check_int(self.n_components, "n_components", 1)
        self.startprob_ = probability_attribute(self.startprob_, "startprob_", (K,))
        self.transmat_ = probability_attribute(self.transmat_, "transmat_", (K, K))
        self._check_emission(K)

    def _prepare(self, X, lengths):
        self._check_model()
        X = self._check_X(X, fitted=True)
        starts, lengths = check_lengths(lengths, X.shape[0])
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

    def score(self, X, y=None, lengths=None):
        """Total log-likelihood of the sequences in ``X`` (as hmmlearn's ``score``);
        ``y`` and ``lengths`` as in :meth:`fit` (``score(X, lengths)`` is hmmlearn's
        call, a target ``y`` is ignored)."""
        self._check_model()
        X = self._check_X(X, fitted=True)
        starts, lengths = y_or_lengths(y, lengths, X.shape[0])
        return self._posteriors(X, starts, lengths)[0]

    def predict_proba(self, X, lengths=None):
        """Posterior state probabilities of each row, (N, K)."""
        return self.score_samples(X, lengths)[1]

    def decode(self, X, lengths=None, algorithm=None):
        """``(log_prob, states)``, with ``algorithm`` (default: the model's).

        ``"viterbi"``: the most probable state path and its joint log-probability
        ``log p(X, path)``, summed over sequences. ``"map"``: each row's most probable
        state given all of its sequence, and the sum of the log posterior
        probabilities of the chosen states (the log of the product of those
        marginal probabilities; at most 0).
        """
        algorithm = self.algorithm if algorithm is None else algorithm
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
        """The decoded states of ``X`` (``algorithm``'s: the Viterbi path by default)."""
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
        return -2 * self.score(X, lengths=lengths) + 2 * self._n_parameters()

    @property
    def n_components_(self):
        return self.startprob_.shape[0]

    def get_stationary_distribution(self):
        """The stationary distribution of the states: the left eigenvector of
        ``transmat_`` for its eigenvalue 1, normalised to sum to 1 (as hmmlearn's)."""
        self._check_model()
        values, vectors = np.linalg.eig(self.transmat_.T)
        vector = np.real_if_close(vectors[:, np.argmax(values.real)], tol=1e6).real
        return vector / vector.sum()

    def sample(self, n_samples=1, random_state=None, currstate=None):
        """Draw one sequence of ``n_samples`` rows: ``(X, states)``.

        ``random_state`` (None, an int, a Generator or a RandomState) defaults to the
        estimator's ``random_state``; the same seed gives the same draw. ``currstate``:
        the state of the first row (default: drawn from ``startprob_``), so
        ``X2, Z2 = model.sample(10, currstate=Z[-1])`` goes on from a previous draw
        (as hmmlearn's).
        """
        self._check_model()
        n = check_int(n_samples, "n_samples", 1)
        rng = as_generator(self.random_state if random_state is None else random_state)
        K = self.n_components_
        if currstate is None:
            start_cdf = np.cumsum(self.startprob_)
        else:
            state = check_int(currstate, "currstate", 0)
            if state >= K:
                raise EmsegError(f"currstate must be a state 0..{K - 1}, got {state}")
            start_cdf = (np.arange(K) >= state).astype(np.float64)
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
        start = field_probabilities(d, "startprob_", (K,), where)
        trans = field_probabilities(d, "transmat_", (K, K), where)
        return K, start, trans, fit_info(d, where, required=False)

    def _finish_from_dict(self, start, trans, info):
        self.startprob_ = start
        self.transmat_ = trans
        self.converged_, self.n_iter_, self.lower_bound_ = info
        self.history_ = np.empty(0)
        return self


# --- helpers ---------------------------------------------------------------------------


def _with_report(callback, verbose, n_samples):
    """``callback``, preceded when ``verbose`` by hmmlearn's ConvergenceMonitor report on
    stderr: iteration, total log-likelihood, change since the previous iteration."""
    if not verbose:
        return callback
    last = []

    def report(iteration, mean_loglik):
        total = mean_loglik * n_samples
        delta = total - last[-1] if last and iteration > 1 else math.nan
        last.append(total)
        print(f"{iteration:>10d} {total:>16.8f} {delta:>+16.8f}", file=sys.stderr)
        if callback is not None:
            callback(iteration, mean_loglik)

    return report


def _dirichlet_update(current, counts, prior):
    """hmmlearn's MAP update: ``max(prior - 1 + counts, 0)`` normalised, zeros kept zero.
    A row left without mass keeps its current probabilities."""
    new = np.maximum(prior - 1 + counts, 0)
    new = np.where(current == 0, 0, new)
    sums = new.sum(axis=-1, keepdims=True)
    keep = sums <= 0
    out = new / np.where(keep, 1.0, sums)
    return np.where(keep, current, out)
