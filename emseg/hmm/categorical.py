"""Hidden Markov model with categorical emissions (symbol sequences):
:class:`CategoricalHMM` (as ``hmmlearn.hmm.CategoricalHMM``).

What every emseg HMM shares, and how it differs from hmmlearn, is in
:mod:`emseg.hmm.base`. Specific to categorical emissions: ``emissionprob_`` takes
hmmlearn's Dirichlet prior (``emissionprob_prior``); when emseg chose every starting
value, states are sorted after fitting by their expected symbol
``sum_v v * emissionprob_[k, v]`` (ties keep the fitted order); ``n_features`` is never
changed by ``fit`` (hmmlearn sets it from the data; here ``n_features_`` holds it).
"""

import numpy as np

from . import _kernels as hk
from .._shared.errors import EmsegError
from .._shared.jsonfields import field_int
from .._shared.validation import check_int
from .base import FORMAT_VERSION, BaseHMM
from .checks import (
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
    defaults but ``tol``. ``X`` holds integer symbols ``0 .. n_features - 1``, as a 1-D
    array or one column. ``n_features`` is the number of symbols (default: from the
    starting emission probabilities, else the largest symbol in the training data plus
    one). ``emissionprob_prior`` is a Dirichlet parameter for each state's emission
    distribution (a number or (K, V)). ``params`` / ``init_params`` letters: ``s``
    startprob, ``t`` transmat, ``e`` emissionprob. ``emissionprob_init`` (emseg's,
    keyword-only) gives the starting emission probabilities (K, V; default uniform
    random numbers, rows normalised). The other parameters, and the other starting
    values, are :class:`~emseg.hmm.gaussian.GaussianHMM`'s.

    After ``fit`` (or set by hand, as in hmmlearn): ``startprob_``, ``transmat_``,
    ``emissionprob_``; after ``fit`` also ``n_features_``, ``converged_``, ``n_iter_``,
    ``lower_bound_``, ``history_``.
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
        value, name = self.emissionprob_init, "emissionprob_init"
        if value is None and "e" not in setup["init_params"] and hasattr(self, "emissionprob_"):
            value, name = self.emissionprob_, "emissionprob_"
        emission = None
        if value is not None:
            if V is None:
                if np.ndim(value) != 2:
                    raise EmsegError(
                        f"{name} must be 2-D (n_components, n_features), got "
                        f"shape {np.shape(value)}"
                    )
                V = np.shape(value)[1]
                source = f"{name}'s {V} columns"
            emission = check_probabilities(value, name, (K, V))
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
            self.emissionprob_prior, "emissionprob_prior", (K, V)
        )
        setup["n_symbols"] = V
        return setup

    def _check_emission(self, K):
        V = self.n_features
        if V is None:
            V = np.shape(self.emissionprob_)[-1] if np.ndim(self.emissionprob_) == 2 else 0
        else:
            V = check_int(V, "n_features", 1)
        self.emissionprob_ = probability_attribute(self.emissionprob_, "emissionprob_", (K, V))

    # --- the EM protocol -------------------------------------------------------------

    def _initialize_emission(self, data, rng):
        setup = data.setup
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

    def _m_step_emission(self, stats, data):
        (counts,) = stats.emission
        prior = data.setup["emissionprob_prior"]
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

    @property
    def n_features_in_(self):
        """One: ``X`` is a single column of symbols (scikit-learn's name)."""
        self._check_fitted()
        return 1

    def _n_emission_parameters(self):
        K, V = self.emissionprob_.shape
        return K * (V - 1)

    def _sample_emissions(self, states, rng):
        cdf = np.cumsum(self.emissionprob_, axis=1)
        return hk.sample_symbols(cdf, states, rng.random(states.shape[0]))[:, None]

    # --- model files ----------------------------------------------------------------

    def to_dict(self):
        """The fitted model as a dict of plain numbers and lists (JSON-safe)."""
        self._check_model()
        K, V = self.emissionprob_.shape
        return {
            "format": self._format,
            "format_version": FORMAT_VERSION,
            "n_components": int(K),
            "n_features": int(V),
            "startprob_": plain_list(self.startprob_),
            "transmat_": plain_list(self.transmat_),
            "emissionprob_": plain_list(self.emissionprob_),
            **self._fit_info(),
        }

    @classmethod
    def from_dict(cls, d, *, where="model"):
        """A fitted CategoricalHMM from :meth:`to_dict`'s dict, checked field by field
        (see :meth:`~emseg.hmm.gaussian.GaussianHMM.from_dict`)."""
        K, start, trans, info = cls._start_from_dict(d, where, ("n_features", "emissionprob_"))
        V = field_int(d, "n_features", where, 1)
        emission = field_probabilities(d, "emissionprob_", (K, V), where)
        model = cls(K, n_features=V)
        model.emissionprob_ = emission
        return model._finish_from_dict(start, trans, info)

