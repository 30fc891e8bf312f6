"""Fitted models as plain JSON: a mixture, or a whole segmentation model.

A model file is data, never code: loading one parses JSON (no pickle), checks every
type, shape and value, and refuses anything else with a one-line
:class:`~emseg.EmsegError` that names the field and the fix.

- :func:`mixture_to_dict` / :func:`mixture_from_dict`: a fitted
  :class:`~emseg.GaussianMixture` as JSON-safe lists and back, exactly (Python's
  ``float`` repr round-trips every float64).
- :func:`save_json` / :func:`load_json`: write through :func:`emseg.io.write_json`
  (a temporary file renamed into place) and read back, refusing corrupt JSON.
"""

import json
import math
import numbers
import os

import numpy as np

from ._errors import EmsegError

MIXTURE_FORMAT = "emseg.GaussianMixture"
MIXTURE_FORMAT_VERSION = 1

_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
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
    from .mixture import GaussianMixture

    if not isinstance(d, dict):
        raise EmsegError(f"{where} must be a JSON object, got {_kind(d)}")
    fmt = d.get("format")
    if fmt != MIXTURE_FORMAT:
        raise EmsegError(f"{where} is not an emseg mixture (format {fmt!r}, expected {MIXTURE_FORMAT!r})")
    version = d.get("format_version")
    if not _is_int(version) or version < 1:
        raise EmsegError(f"{where}.format_version must be a positive integer, got {version!r}")
    if version > MIXTURE_FORMAT_VERSION:
        raise EmsegError(
            f"{where} has format version {version}, newer than this emseg reads "
            f"({MIXTURE_FORMAT_VERSION}); upgrade emseg"
        )
    ctype = d.get("covariance_type")
    if ctype not in _COVARIANCE_TYPES:
        raise EmsegError(
            f"{where}.covariance_type must be one of {', '.join(_COVARIANCE_TYPES)}, got {ctype!r}"
        )
    K = _field_int(d, "n_components", where, 1)
    D = _field_int(d, "n_features", where, 1)
    weights = _field_array(d, "weights_", (K,), where)
    means = _field_array(d, "means_", (K, D), where)
    shape = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[ctype]
    cov = _field_array(d, "covariances_", shape, where)
    prec_chol = _field_array(d, "precisions_cholesky_", shape, where)
    converged = d.get("converged_")
    if not isinstance(converged, bool):
        raise EmsegError(f"{where}.converged_ must be true or false, got {converged!r}")
    n_iter = _field_int(d, "n_iter_", where, 0)
    lower = d.get("lower_bound_")
    if lower is None:
        lower = math.nan
    elif not _is_number(lower) or not math.isfinite(lower):
        raise EmsegError(f"{where}.lower_bound_ must be a finite number or null, got {lower!r}")

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
    gm.lower_bound_ = float(lower)
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


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _kind(value):
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _field_int(d, key, where, minimum):
    value = d.get(key)
    if not _is_int(value) or value < minimum:
        raise EmsegError(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _field_array(d, key, shape, where):
    """``d[key]`` as a float64 array of ``shape``: nested lists of finite numbers only."""
    name = f"{where}.{key}"
    if key not in d:
        raise EmsegError(f"{name} is missing")
    found = _nested_shape(d[key], name, len(shape))
    if found != shape:
        raise EmsegError(f"{name} must have shape {shape}, got {found}")
    arr = np.array(d[key], dtype=np.float64)
    if not np.isfinite(arr).all():
        raise EmsegError(f"{name} contains a value that is not a finite number")
    return arr


def _nested_shape(value, name, depth):
    """The shape of a rectangular nested list of numbers, at most ``depth`` deep;
    EmsegError for anything else."""
    if _is_number(value):
        return ()
    if value is None:
        raise EmsegError(f"{name} contains null (NaN or infinity when written); the model is not usable")
    if not isinstance(value, list):
        raise EmsegError(f"{name} must hold numbers in lists, found {_kind(value)}")
    if depth == 0:
        raise EmsegError(f"{name} is nested too deeply (a number was expected)")
    if not value:
        return (0,)
    inner = _nested_shape(value[0], name, depth - 1)
    for item in value[1:]:
        if _nested_shape(item, name, depth - 1) != inner:
            raise EmsegError(f"{name} is ragged (lists of different lengths)")
    return (len(value),) + inner


# --------------------------------------------------------------------------- JSON files


def save_json(path, obj, *, overwrite=False):
    """Write ``obj`` as JSON at ``path``, atomically (see :func:`emseg.io.write_json`).

    Refuses to replace an existing file unless ``overwrite``.
    """
    from . import io

    io.write_json(path, obj, overwrite=overwrite)


def load_json(path):
    """Read the JSON file at ``path``.

    Raises :class:`~emseg.EmsegError` (one line, naming the file) when it is missing,
    a folder, empty, not UTF-8, or not valid JSON (NaN and Infinity included).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise EmsegError(f"{path} does not exist; check the path")
    if os.path.isdir(path):
        raise EmsegError(f"{path} is a folder, not a JSON file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise EmsegError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not raw.strip():
        raise EmsegError(f"{path} is empty; it is not a model file (re-create it)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EmsegError(f"{path} is not a text (UTF-8) file; it is not a JSON model") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise EmsegError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}); the file is corrupt or truncated"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise EmsegError(f"{path} is not valid JSON ({exc or 'nested too deeply'})") from None


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number")
