"""Hidden Markov model with categorical emissions (symbol sequences):
:class:`CategoricalHMM` (as ``hmmlearn.hmm.CategoricalHMM``).

What every emseg HMM shares, and how it differs from hmmlearn, is in
:mod:`emseg.hmm.base`. Specific to categorical emissions: ``emissionprob_`` takes
hmmlearn's Dirichlet prior (``emissionprob_prior``); when emseg chose every starting
value, states are sorted after fitting by their expected symbol
``sum_v v * emissionprob_[k, v]`` (ties keep the fitted order); ``n_features`` is never
changed by ``fit`` (hmmlearn sets it from the data; here ``n_features_`` holds it).

**Several columns.** ``X`` is (n_samples, n_columns) symbols, as hmmlearn's
(n_samples, 1). With more than one column, each column is its own categorical
variable, independent of the others given the state (the multivariate categorical HMM of
depmixS4's several responses or pomegranate's ``IndependentComponents``):
``emissionprob_`` is then (n_components, n_columns, n_features), with one distribution
per state and column over the same symbols ``0 .. n_features - 1``. One column keeps
hmmlearn's (n_components, n_features). hmmlearn has no such model: it flattens extra
columns into one stream of symbols (deprecated there), which leaves the posteriors
without one row per sample.
"""

import numpy as np

from . import _kernels as hk
from .._shared.errors import EmsegError
from .._shared.jsonfields import field_int
from .._shared.validation import check_data, check_int
from .base import FORMAT_VERSION, BaseHMM
from .checks import (
    check_2d,
    check_prior,
    check_probabilities,
    field_probabilities,
    plain_list,
    probability_attribute,
)

__all__ = ["CATEGORICAL_FORMAT", "CategoricalHMM"]

CATEGORICAL_FORMAT = "emseg.CategoricalHMM"  # the "format" field of its model files


class CategoricalHMM(BaseHMM):
    """Hidden Markov model with categorical emissions (symbol sequences).

    The parameters are ``hmmlearn.hmm.CategoricalHMM``'s, in its order and with its
    defaults but ``tol``. ``X`` holds integer symbols ``0 .. n_features - 1`` (integer
    values stored as floats are accepted), one column as in hmmlearn, (n_samples, 1), or
    several independent columns (see the module docstring); a 1-D ``X`` is refused, as
    in hmmlearn. ``n_features`` is the number of symbols (default: from the starting
    emission probabilities, else the largest symbol in the training data plus one).
    ``emissionprob_prior`` is a Dirichlet parameter for each state's emission
    distribution (a number or an array of the shape of ``emissionprob_``). ``params`` /
    ``init_params`` letters: ``s`` startprob, ``t`` transmat, ``e`` emissionprob.
    ``emissionprob_init`` (emseg's, keyword-only) gives the starting emission
    probabilities (K, V, or K, n_columns, V; default uniform random numbers,
    normalised). The other parameters, and the other starting values, are
    :class:`~emseg.hmm.gaussian.GaussianHMM`'s.

    After ``fit`` (or set by hand, as in hmmlearn): ``startprob_``, ``transmat_``,
    ``emissionprob_``; after ``fit`` also ``n_features_``, ``n_features_in_`` (the
    number of columns), ``converged_``, ``n_iter_``, ``lower_bound_``, ``history_``.
    """

    _format = CATEGORICAL_FORMAT
    _emission_letters = "e"
    _emission_attributes = ("emissionprob_",)

    def __init__(
        self,
        n_components=1,
        startprob_prior=1.0,
        transmat_prior=1.0,
        *,
        emissionprob_prior=1.0,
        n_features=None,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-4,
        verbose=False,
        params="ste",
        init_params="ste",
        implementation="log",
        n_init=1,
        startprob_init=None,
        transmat_init=None,
        emissionprob_init=None,
        callback=None,
    ):
        super().__init__(n_components, startprob_prior, transmat_prior, algorithm,
                         random_state, n_iter, tol, verbose, params, init_params,
                         implementation, n_init, startprob_init, transmat_init, callback)
        self.emissionprob_prior = emissionprob_prior
        self.n_features = n_features
        self.emissionprob_init = emissionprob_init

    def __sklearn_tags__(self):
        """scikit-learn's tags: X holds categories (non-negative integers)."""
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.positive_only = True
        return tags

    # --- checks ---------------------------------------------------------------------

    def _check_X(self, X, *, fitted):
        X = check_2d(X, type(self).__name__, _symbols)
        if fitted:
            D = _n_columns(self.emissionprob_)
            if X.shape[1] != D:
                raise EmsegError(
                    f"X has {X.shape[1]} features, but {type(self).__name__} is "
                    f"expecting {D} features as input"
                )
            V = self.emissionprob_.shape[-1]
            if X.max() >= V:
                row, col = np.unravel_index(np.argmax(X), X.shape)
                raise EmsegError(
                    f"symbol {X[row, col]} in row {row} is outside the model's "
                    f"{V} symbols (0..{V - 1})"
                )
        return X

    def _prepare_fit(self, X):
        if self.n_features is not None:
            check_int(self.n_features, "n_features", 1)
        setup = self._check_common_parameters(X.shape[0])
        K = self.n_components
        V = self.n_features
        source = f"n_features={V}"
        value, name = self.emissionprob_init, "emissionprob_init"
        if value is None and "e" not in setup["init_params"] and hasattr(self, "emissionprob_"):
            value, name = self.emissionprob_, "emissionprob_"
        D = X.shape[1]
        emission = None
        if value is not None:
            if V is None:
                if np.ndim(value) != _emission_ndim(D):
                    raise EmsegError(
                        f"{name} must have shape {_emission_shape(K, D, 'n_features')} "
                        f"for {D} column(s) of X, got shape {np.shape(value)}"
                    )
                V = np.shape(value)[-1]
                source = f"{name}'s {V} symbols"
            emission = check_probabilities(value, name, _emission_shape(K, D, V))
        largest = int(X.max())
        if V is None:
            V = largest + 1
        elif largest >= V:
            raise EmsegError(
                f"X contains symbol {largest}, outside the 0..{V - 1} allowed by {source}; "
                "raise n_features"
            )
        setup["emissionprob"] = emission
        starts = (setup["startprob"], setup["transmat"], emission)
        setup["sort_states"] = all(value is None for value in starts)
        setup["emissionprob_prior"] = check_prior(
            self.emissionprob_prior, "emissionprob_prior", _emission_shape(K, D, V)
        )
        setup["n_symbols"] = V
        return setup

    def _check_emission(self, K):
        shape = np.shape(self.emissionprob_)
        V = self.n_features
        if V is None:
            V = shape[-1] if len(shape) in (2, 3) else 0
        else:
            V = check_int(V, "n_features", 1)
        D = shape[1] if len(shape) == 3 else 1
        self.emissionprob_ = probability_attribute(
            self.emissionprob_, "emissionprob_", _emission_shape(K, D, V)
        )

    # --- the EM protocol -------------------------------------------------------------

    def _initialize_emission(self, data, rng):
        setup = data.setup
        if setup["emissionprob"] is not None:
            self.emissionprob_ = setup["emissionprob"].copy()
        else:
            shape = _emission_shape(self.n_components, data.X.shape[1], setup["n_symbols"])
            e = rng.uniform(size=shape)
            self.emissionprob_ = e / e.sum(-1, keepdims=True)

    def _emission_log_prob(self, X):
        with np.errstate(divide="ignore"):
            log_e = np.log(_by_column(self.emissionprob_))
        out = hk.categorical_log_prob(
            np.ascontiguousarray(X[:, 0]), np.ascontiguousarray(log_e[:, 0])
        )
        for j in range(1, X.shape[1]):  # columns independent given the state
            out += hk.categorical_log_prob(
                np.ascontiguousarray(X[:, j]), np.ascontiguousarray(log_e[:, j])
            )
        return out

    def _emission_stats(self, X, post):
        V = self.emissionprob_.shape[-1]
        if X.shape[1] == 1:
            return (hk.symbol_counts(X[:, 0], post, V),)
        return (np.stack([hk.symbol_counts(np.ascontiguousarray(X[:, j]), post, V)
                          for j in range(X.shape[1])], axis=1),)

    def _stats_shift(self):
        return None

    def _m_step_emission(self, stats, data):
        (counts,) = stats.emission
        prior = data.setup["emissionprob_prior"]
        new = np.maximum(prior - 1 + counts, 0)
        rows = new.sum(-1)
        keep = rows <= 0  # a state (and column) without counts keeps its distribution
        rows[keep] = 1.0
        new = new / rows[..., None]
        new[keep] = self.emissionprob_[keep]
        self.emissionprob_ = new

    def _get_emission_params(self):
        return (self.emissionprob_,)

    def _set_emission_params(self, params):
        (self.emissionprob_,) = params

    def _state_order(self):
        first = _by_column(self.emissionprob_)[:, 0]  # the first column's distributions
        expected = first @ np.arange(first.shape[1])
        return np.argsort(expected, kind="stable")

    def _reorder_emission(self, order):
        self.emissionprob_ = self.emissionprob_[order]

    # --- using a fitted model -------------------------------------------------------

    @property
    def n_features_(self):
        """The number of symbols, ``0 .. n_features_ - 1``."""
        return self.emissionprob_.shape[-1]

    @property
    def n_features_in_(self):
        """The number of columns of ``X`` (scikit-learn's name): 1 as in hmmlearn, or
        the number of independent categorical columns."""
        self._check_fitted()
        return _n_columns(self.emissionprob_)

    def _n_emission_parameters(self):
        K, D, V = _by_column(self.emissionprob_).shape
        return K * D * (V - 1)

    def _sample_emissions(self, states, rng):
        cdf = np.cumsum(_by_column(self.emissionprob_), axis=-1)
        columns = [hk.sample_symbols(np.ascontiguousarray(cdf[:, j]), states,
                                     rng.random(states.shape[0]))
                   for j in range(cdf.shape[1])]
        return np.stack(columns, axis=1)

    # --- model files ----------------------------------------------------------------

    def to_dict(self):
        """The fitted model as a dict of plain numbers and lists (JSON-safe)."""
        self._check_model()
        K, D, V = _by_column(self.emissionprob_).shape
        columns = {} if D == 1 else {"n_columns": int(D)}  # one column: as before
        return {
            "format": self._format,
            "format_version": FORMAT_VERSION,
            "n_components": int(K),
            "n_features": int(V),
            **columns,
            "startprob_": plain_list(self.startprob_),
            "transmat_": plain_list(self.transmat_),
            "emissionprob_": plain_list(self.emissionprob_),
            **self._fit_info(),
        }

    @classmethod
    def from_dict(cls, d, *, where="model"):
        """A fitted CategoricalHMM from :meth:`to_dict`'s dict, checked field by field
        (see :meth:`~emseg.hmm.gaussian.GaussianHMM.from_dict`)."""
        K, start, trans, info = cls._start_from_dict(
            d, where, ("n_features", "n_columns", "emissionprob_")
        )
        V = field_int(d, "n_features", where, 1)
        D = field_int(d, "n_columns", where, 1) if "n_columns" in d else 1
        emission = field_probabilities(d, "emissionprob_", _emission_shape(K, D, V), where)
        model = cls(K, n_features=V)
        model.emissionprob_ = emission
        return model._finish_from_dict(start, trans, info)


# --- symbols and emission shapes ---------------------------------------------------------


def _symbols(X):
    """``X`` as a C-contiguous (n_samples, n_columns) int64 array of symbols >= 0 (a
    1-D ``X`` as one column; :func:`~emseg.hmm.checks.check_2d` refuses it). Integers
    are read as they are; anything else (floats, numbers held as objects) through
    :func:`~emseg._shared.validation.check_data`, with its messages, and must hold
    whole numbers."""
    arr = None
    if not type(X).__module__.startswith("scipy.sparse"):
        try:
            arr = np.asarray(X)
        except Exception:  # ragged lists and the like: check_data says why
            arr = None
    if arr is not None and arr.dtype.kind in "iub":
        arr = arr[:, None] if arr.ndim == 1 else arr
        if arr.ndim != 2 or 0 in arr.shape:
            arr = check_data(arr.astype(np.float64))  # its messages for the shape
    else:
        arr = check_data(X)  # floats, or one line on sparse, complex, text, infinity
        bad = np.flatnonzero(np.isnan(arr).any(axis=1))
        if bad.size:
            raise EmsegError(
                f"X contains NaN (first in row {int(bad[0])}); CategoricalHMM cannot use "
                "missing values: drop those rows"
            )
        bad = np.argwhere(arr != np.round(arr))
        if bad.size:
            row, col = (int(i) for i in bad[0])
            raise EmsegError(
                f"X must hold integer symbols, got {float(arr[row, col]):g} in row {row}"
            )
    if arr.min() < 0:  # "Negative values in data": scikit-learn's words for it
        row, col = np.unravel_index(np.argmin(arr), arr.shape)
        raise EmsegError(
            f"Negative values in data passed to CategoricalHMM: symbol {arr[row, col]:g} "
            f"in row {row}; symbols must be >= 0"
        )
    if arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
        raise EmsegError(f"symbols must be below 2**63, got {arr.max()}")
    if arr.dtype.kind == "f" and arr.max() >= 2.0**62:
        raise EmsegError(f"symbols must be below 2**62, got {arr.max():g}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _emission_shape(K, D, V):
    """The shape of ``emissionprob_`` for ``D`` columns: hmmlearn's (K, V) for one."""
    return (K, V) if D == 1 else (K, D, V)


def _emission_ndim(D):
    return 2 if D == 1 else 3


def _by_column(emission):
    """``emissionprob_`` as (K, D, V), a view."""
    return emission[:, None, :] if emission.ndim == 2 else emission


def _n_columns(emission):
    return 1 if np.ndim(emission) == 2 else np.shape(emission)[1]
