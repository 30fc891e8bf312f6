"""Checks of a :class:`~emseg.GaussianMixture`'s parameters and of the names of its
input's columns; each returns quietly or raises a one-line EmsegError."""

import numpy as np

from .._shared.errors import EmsegError
from .._shared.validation import check_choice, check_float, check_int, is_auto
from .gaussian import COVARIANCE_TYPES

# init_params: emseg's spellings and scikit-learn's ("kmeans", "k-means++", "random",
# "random_from_data")
INIT_METHODS = ("kmeans", "kmeans++", "k-means++", "random", "random_from_data")


def check_mixture_parameters(gm, n_features):
    """Check the constructor parameters of the mixture ``gm`` for data with
    ``n_features`` features (they are stored unchecked, as scikit-learn's)."""
    check_int(gm.n_components, "n_components", 1)
    check_choice(gm.covariance_type, "covariance_type", COVARIANCE_TYPES)
    if not is_auto(gm.tol):
        check_float(gm.tol, "tol")
    if not is_auto(gm.reg_covar):
        check_float(gm.reg_covar, "reg_covar")
    if not is_auto(gm.max_iter):
        check_int(gm.max_iter, "max_iter", 0)
    if not is_auto(gm.n_init):
        check_int(gm.n_init, "n_init", 1)
    check_choice(gm.init_params, "init_params", INIT_METHODS)
    if not isinstance(gm.accelerate, bool):
        raise EmsegError(f"accelerate must be True or False, got {gm.accelerate!r}")
    if gm.callback is not None and not callable(gm.callback):
        raise EmsegError(f"callback must be callable, got {gm.callback!r}")
    K, D = gm.n_components, n_features
    if gm.weights_init is not None:
        wi = _check_init(gm.weights_init, "weights_init", (K,))
        if (wi < 0).any() or abs(wi.sum() - 1) > 1e-6:
            raise EmsegError(
                "weights_init must be non-negative and sum to 1, got sum "
                f"{wi.sum():g}"
            )
    if gm.means_init is not None:
        _check_init(gm.means_init, "means_init", (K, D))
    if gm.precisions_init is not None:
        shape = {
            "full": (K, D, D),
            "tied": (D, D),
            "diag": (K, D),
            "spherical": (K,),
        }[gm.covariance_type]
        _check_init(gm.precisions_init, "precisions_init", shape)


def feature_names(X):
    """The column names of a DataFrame ``X`` when they are all strings (scikit-learn's
    ``feature_names_in_``), else None; read without importing pandas."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "iloc"):
        return None
    names = np.asarray(list(columns), dtype=object)
    return names if names.size and all(isinstance(n, str) for n in names) else None


def check_feature_names(gm, X):
    """Refuse a DataFrame ``X`` whose column names differ from those ``gm`` was fitted
    on (``feature_names_in_``); data without names are taken as they are."""
    fitted = getattr(gm, "feature_names_in_", None)
    names = feature_names(X)
    if fitted is None or names is None:
        return
    if names.shape != fitted.shape or (names != fitted).any():
        raise EmsegError(
            f"X's columns {_shown(list(names))} do not match those the model was fitted "
            f"on {_shown(list(fitted))}; pass the same columns in the same order"
        )


def _shown(names):
    text = repr(names)
    return text if len(text) <= 80 else text[:76] + "...]"


def _check_init(value, name, shape):
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise EmsegError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise EmsegError(f"{name} contains NaN or infinity")
    return arr
