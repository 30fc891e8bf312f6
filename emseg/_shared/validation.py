"""Argument checks shared by the estimators: each returns clean arrays or raises EmsegError."""

import numbers

import numpy as np

from .errors import EmsegError, NotANumberError


def check_data(X, *, name="X", allow_nan=True):
    """Return ``X`` as a C-contiguous 2-D float32/float64 array (1-D means one feature).

    NaN marks a missing value (when ``allow_nan``); infinity is always an error.
    """
    if type(X).__module__.startswith("scipy.sparse"):
        raise EmsegError(f"{name} is a sparse matrix, which is not supported; pass X.toarray()")
    try:
        arr = np.asarray(X)
        if arr.dtype == object:  # numbers held as objects (a pandas column of mixed types)
            arr = arr.astype(np.float64)
    except TypeError as exc:  # a cell that is not a number at all (a dict, a list)
        raise NotANumberError(f"{name} holds a value that is not a number ({exc})") from None
    except Exception as exc:  # ragged lists, strings that are not numbers
        raise EmsegError(f"{name} could not be read as a numeric array ({exc})") from None
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise EmsegError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):  # scikit-learn's wording
        raise EmsegError(f"Complex data not supported: {name} must be real-valued, got "
                         f"dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise EmsegError(
            f"{name} must be 1-D or 2-D (rows x features), got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise EmsegError(f"{name} is empty (shape {arr.shape}); pass at least one row")
    if arr.shape[1] == 0:  # scikit-learn's wording, which its check_estimator expects
        raise EmsegError(
            f"{name} is empty: 0 feature(s) (shape={arr.shape}) while a minimum of 1 is "
            "required; pass at least one column"
        )
    dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if np.isinf(arr).any():
        raise EmsegError(f"{name} contains infinity; remove or clip those values")
    if not allow_nan and np.isnan(arr).any():
        raise EmsegError(f"{name} contains NaN, which this method cannot use")
    return arr


def check_sample_weight(sample_weight, n_rows):
    """Return float64 weights of length ``n_rows``, or None for unit weights."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != n_rows:
        raise EmsegError(
            f"sample_weight must have one value per row ({n_rows}), got shape {w.shape}"
        )
    if not np.isfinite(w).all():
        raise EmsegError("sample_weight contains NaN or infinity")
    if (w < 0).any():
        raise EmsegError(
            f"sample_weight must be >= 0, got minimum {w.min():g}; drop or zero those rows"
        )
    if not (w > 0).any():
        raise EmsegError("sample_weight is zero for every row; at least one must be > 0")
    return w


def is_auto(value):
    """True for the string "auto" (and False, not an error, for an array)."""
    return isinstance(value, str) and value == "auto"


def _shown(value):
    """A value for a one-line message: arrays and long reprs by their type."""
    text = repr(value)
    return text if len(text) <= 60 and "\n" not in text else f"a {type(value).__name__}"


def check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise EmsegError(f"{name} must be an integer, got {_shown(value)}")
    if value < minimum:
        raise EmsegError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(value, name, minimum=0.0):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise EmsegError(f"{name} must be a finite number, got {_shown(value)}")
    if value < minimum:
        raise EmsegError(f"{name} must be >= {minimum}, got {value}")
    return float(value)


def check_choice(value, name, choices):
    if not any(isinstance(value, type(c)) and value == c for c in choices):
        options = ", ".join(repr(c) for c in choices)
        raise EmsegError(f"{name} must be one of {options}; got {_shown(value)}")
    return value


def as_generator(random_state):
    """A numpy Generator from None, an int, a Generator or a legacy RandomState.

    None draws the seed from numpy's global RandomState (as scikit-learn's
    ``check_random_state(None)``), so ``np.random.seed(0)`` makes it reproducible."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31 - 1))
    if random_state is None:  # numpy's global RandomState, as scikit-learn's check_random_state
        return np.random.default_rng(np.random.randint(2**31 - 1))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise EmsegError(f"random_state must be >= 0 (a seed), got {random_state}")
        return np.random.default_rng(random_state)
    raise EmsegError(
        f"random_state must be None, an integer or a numpy Generator, got {_shown(random_state)}"
    )


def check_beta(beta, allow_auto):
    """The Potts prior strength ``beta`` as a float >= 0, or None for ``"auto"``
    (when ``allow_auto``)."""
    if allow_auto and isinstance(beta, str) and beta == "auto":
        return None
    try:
        value = float(beta)
    except (TypeError, ValueError):
        extra = ' or "auto"' if allow_auto else ""
        raise EmsegError(f"beta must be a number >= 0{extra}, got {beta!r}") from None
    if not np.isfinite(value) or value < 0:
        raise EmsegError(f"beta must be >= 0 (0: no smoothing), got {beta!r}; use 0 or more")
    return value
