"""A fitted :class:`~emseg.GaussianMixture` as plain JSON-safe data, and back.

A model file is data, never code: :func:`mixture_from_dict` checks every type, shape
and value and refuses anything else with a one-line :class:`~emseg.EmsegError` that
names the field (``mixture.covariances_[2] is not symmetric``). Python's ``float``
repr round-trips every float64, so a saved mixture is the same mixture.
"""

import math

import numpy as np

from .._shared.errors import EmsegError
from .._shared.jsonfields import check_header, field_array, field_int, fit_info
from .gaussian import COVARIANCE_TYPES
from .gaussian_mixture import GaussianMixture

MIXTURE_FORMAT = "emseg.GaussianMixture"
MIXTURE_FORMAT_VERSION = 1

# relative tolerance on sum(weights) == 1 and on covariance @ precision == identity
_WEIGHT_TOL = 1e-6
_INVERSE_TOL = 1e-6


# --------------------------------------------------------------------------- mixtures


def mixture_to_dict(gm):
    """The fitted state of ``gm`` as a dict of plain numbers and lists (JSON-safe).

    Holds ``weights_``, ``means_``, ``covariances_``, ``precisions_cholesky_``,
    ``covariance_type``, ``n_components``, ``converged_``, ``n_iter_`` and
    ``lower_bound_`` (None when not finite), plus ``format`` and ``format_version``.
    """
    if not hasattr(gm, "precisions_cholesky_"):
        raise EmsegError("this GaussianMixture is not fitted yet; call fit(X) first")
    lower = float(gm.lower_bound_) if hasattr(gm, "lower_bound_") else math.nan
    return {
        "format": MIXTURE_FORMAT,
        "format_version": MIXTURE_FORMAT_VERSION,
        "covariance_type": str(gm.covariance_type),
        "n_components": int(gm.means_.shape[0]),
        "n_features": int(gm.means_.shape[1]),
        "weights_": np.asarray(gm.weights_, dtype=np.float64).tolist(),
        "means_": np.asarray(gm.means_, dtype=np.float64).tolist(),
        "covariances_": np.asarray(gm.covariances_, dtype=np.float64).tolist(),
        "precisions_cholesky_": np.asarray(gm.precisions_cholesky_, dtype=np.float64).tolist(),
        "converged_": bool(getattr(gm, "converged_", False)),
        "n_iter_": int(getattr(gm, "n_iter_", 0)),
        "lower_bound_": lower if math.isfinite(lower) else None,
    }


def mixture_from_dict(d, *, where="mixture"):
    """A fitted :class:`~emseg.GaussianMixture` from :func:`mixture_to_dict`'s dict.

    Checks the format, the types and shapes of every array, that all values are
    finite, that the weights are >= 0 and sum to 1, that the covariances are positive
    definite (symmetric for full and tied) and that ``precisions_cholesky_`` inverts
    them. ``where`` names the object in error messages. Raises
    :class:`~emseg.EmsegError` with one line otherwise.
    """
    check_header(d, MIXTURE_FORMAT, MIXTURE_FORMAT_VERSION, where, "mixture")
    ctype = d.get("covariance_type")
    if ctype not in COVARIANCE_TYPES:
        raise EmsegError(
            f"{where}.covariance_type must be one of {', '.join(COVARIANCE_TYPES)}, got {ctype!r}"
        )
    K = field_int(d, "n_components", where, 1)
    D = field_int(d, "n_features", where, 1)
    weights = field_array(d, "weights_", (K,), where)
    means = field_array(d, "means_", (K, D), where)
    shape = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[ctype]
    cov = field_array(d, "covariances_", shape, where)
    prec_chol = field_array(d, "precisions_cholesky_", shape, where)
    converged, n_iter, lower = fit_info(d, where)

    if (weights < 0).any() or abs(weights.sum() - 1.0) > _WEIGHT_TOL:
        raise EmsegError(
            f"{where}.weights_ must be >= 0 and sum to 1, got sum {weights.sum():.9g} "
            f"and minimum {weights.min():.3g}"
        )
    _check_covariances(cov, prec_chol, ctype, where)

    gm = GaussianMixture(K, covariance_type=ctype)
    gm.weights_ = weights
    gm.means_ = means
    gm.covariances_ = cov
    gm.precisions_cholesky_ = prec_chol
    gm.converged_ = converged
    gm.n_iter_ = n_iter
    gm.lower_bound_ = lower
    gm.history_ = np.empty(0)
    return gm


def _check_covariances(cov, prec_chol, ctype, where):
    if ctype in ("diag", "spherical"):
        if (cov <= 0).any():
            raise EmsegError(f"{where}.covariances_ must be positive, got minimum {cov.min():.3g}")
        if (prec_chol <= 0).any():
            raise EmsegError(f"{where}.precisions_cholesky_ must be positive")
        error = np.abs(cov * prec_chol**2 - 1.0).max()
    else:
        covs = cov[None] if ctype == "tied" else cov
        pcs = prec_chol[None] if ctype == "tied" else prec_chol
        D = covs.shape[-1]
        error = 0.0
        for k, (S, U) in enumerate(zip(covs, pcs)):
            label = f"{where}.covariances_" + ("" if ctype == "tied" else f"[{k}]")
            if np.abs(S - S.T).max() > 1e-9 * max(np.abs(S).max(), 1e-300):
                raise EmsegError(f"{label} is not symmetric")
            try:
                np.linalg.cholesky(S)
            except np.linalg.LinAlgError:
                raise EmsegError(f"{label} is not positive definite") from None
            if np.abs(np.tril(U, -1)).max(initial=0.0) > 0 or (np.diag(U) <= 0).any():
                raise EmsegError(
                    f"{where}.precisions_cholesky_ must be upper triangular with a "
                    "positive diagonal"
                )
            error = max(error, np.abs(S @ (U @ U.T) - np.eye(D)).max())
    if error > _INVERSE_TOL:
        raise EmsegError(
            f"{where}.precisions_cholesky_ does not match covariances_ (covariance x "
            f"precision is off the identity by {error:.3g}); the file was edited or is corrupt"
        )
