"""Argument checks the HMMs share: sequence lengths, probability vectors and matrices,
Dirichlet priors, hmmlearn's ``params`` / ``init_params`` letters, and the model-file
fields built on them. Each returns a clean array or raises a one-line
:class:`~emseg.EmsegError` naming the argument."""

import warnings

import numpy as np

from .._shared.errors import EmsegError
from .._shared.jsonfields import field_array

__all__ = [
    "check_2d",
    "check_finite",
    "check_lengths",
    "check_letters",
    "check_prior",
    "check_probabilities",
    "field_probabilities",
    "plain_list",
    "probability_attribute",
    "y_or_lengths",
]

_SUM_TOL = 1e-6  # |sum - 1| allowed in supplied probability vectors


def check_2d(X, model, convert):
    """``convert(X)``, refused when ``X`` is 1-D: an HMM's ``X`` is
    (n_samples, n_features), as in hmmlearn (its ``check_array`` refuses a 1-D
    array), since a 1-D array could be one feature or one row. ``model`` names the
    estimator in the message; ``convert`` checks and converts a 2-D ``X``."""
    try:
        shape = np.shape(X)
    except Exception:  # ragged lists and the like: convert says why
        shape = None
    if shape is not None and len(shape) == 1:
        raise EmsegError(
            f"{model} needs a 2-D X (n_samples, n_features), as hmmlearn's, got a 1-D array "
            f"of {shape[0]} values; Reshape your data with X.reshape(-1, 1) if it is "
            "one feature or X.reshape(1, -1) if it is one row"
        )
    return convert(X)


def check_lengths(lengths, n_rows):
    """``(starts, lengths)`` as int64 arrays; one sequence when ``lengths`` is None.
    ``lengths`` gives each sequence's number of rows (hmmlearn's): whole numbers >= 1
    that sum to ``n_rows``."""
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


def y_or_lengths(y, lengths, n_rows):
    """The sequence lengths of ``fit(X, y=None, lengths=None)`` and ``score``: their
    second argument is named ``y`` (scikit-learn's rule, so Pipelines and model checks
    can pass a target there) while hmmlearn's users pass ``lengths`` there by position.

    ``y`` is read as what it can be: with one value per row of ``X`` (and not all
    ones) it is a target, which an unsupervised model ignores (with a ``UserWarning``
    unless ``lengths`` is given too, since sequence ids per row are a common mistake
    for lengths); otherwise it is hmmlearn's positional ``lengths``. One value per row,
    all ones, with more than one row is both (``n`` sequences of one row, or a constant
    target) and is refused, as is a ``y`` that is not a target next to ``lengths``.
    Returns ``(starts, lengths)`` as :func:`check_lengths`.
    """
    if y is None:
        return check_lengths(lengths, n_rows)
    shape = np.shape(y)
    per_row = len(shape) in (1, 2) and shape[0] == n_rows
    if lengths is not None:
        if not per_row:
            raise EmsegError(
                f"fit and score take the sequence lengths once: got lengths and a second "
                f"argument y of shape {shape} that is not a target (one value per row of "
                f"X, {n_rows}); pass only lengths"
            )
        return check_lengths(lengths, n_rows)
    if not per_row:
        return check_lengths(y, n_rows)  # hmmlearn's fit(X, lengths), by position
    if n_rows == 1:  # one row: a target and lengths [1] both mean one sequence
        return check_lengths(None, n_rows)
    if len(shape) == 1 and bool(np.all(np.asarray(y) == 1)):
        raise EmsegError(
            f"the second argument is {n_rows} ones, one per row of X: as hmmlearn's "
            f"lengths it makes {n_rows} sequences of one row, as scikit-learn's y it is "
            "ignored; pass lengths=... by keyword for the first, leave it out for the second"
        )
    warnings.warn(
        f"y has one value per row of X ({n_rows}) and is not all ones, so it is taken as "
        "scikit-learn's target and ignored (X is one sequence); to give "
        "sequences pass each one's number of rows, e.g. lengths=[300, 200]",
        UserWarning,
        stacklevel=3,
    )
    return check_lengths(None, n_rows)


def check_letters(value, name, allowed):
    """hmmlearn's ``params`` / ``init_params``: a string of letters from ``allowed``
    (``"stmc"``: startprob, transmat, means, covars); returns it."""
    if not isinstance(value, str):
        raise EmsegError(
            f"{name} must be a string of the letters {allowed!r} (hmmlearn's), got {value!r}"
        )
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise EmsegError(
            f"{name} may contain only the letters {allowed!r}, got {unknown[0]!r} in {value!r}"
        )
    return value


def check_finite(value, name, shape):
    """A float64 copy of ``value``, checked to have ``shape`` and only finite numbers;
    messages name the argument ``name``."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise EmsegError(f"{name} must be a numeric array of shape {shape}") from None
    if arr.shape != shape:
        raise EmsegError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise EmsegError(f"{name} contains NaN or infinity")
    return arr


def check_probabilities(value, name, shape):
    """A copy of ``value`` checked to hold probabilities (rows summing to 1), renormalised."""
    arr = check_finite(value, name, shape)
    return _normalised_rows(arr, name)


def probability_attribute(value, name, shape):
    """A model's probability attribute (``startprob_``, ``transmat_``, ...), set by
    ``fit``, by a model file or by hand as in hmmlearn: ``value`` as a float64 array
    (the same object when it is one already), checked and used as it is."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise EmsegError(f"{name} must be a numeric array of shape {shape}") from None
    if arr.shape != shape:
        raise EmsegError(
            f"{name} must have shape {shape} (n_components={shape[0]}), got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise EmsegError(f"{name} contains NaN or infinity")
    return _normalised_rows(arr, name, False)


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


def check_prior(value, name, shape, nonnegative=True):
    """A prior parameter ``value`` (a number or an array of ``shape``), checked finite
    (and >= 0 when ``nonnegative``), broadcast to ``shape`` (read-only)."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise EmsegError(f"{name} must be a number or an array of shape {shape}") from None
    if arr.ndim and arr.shape != shape:
        raise EmsegError(f"{name} must be a number or have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all() or (nonnegative and (arr < 0).any()):
        raise EmsegError(f"{name} must be finite{' and >= 0' if nonnegative else ''}")
    return np.broadcast_to(arr, shape)


def plain_list(arr):
    """``arr`` as nested lists of Python floats (JSON-safe), for ``to_dict``."""
    return np.asarray(arr, dtype=np.float64).tolist()


def field_probabilities(d, name, shape, where):
    """Model-file field ``d[name]``: an array of ``shape`` holding probabilities (rows
    summing to 1), kept exactly as written; errors name ``where.name``."""
    return _normalised_rows(field_array(d, name, shape, where), f"{where}.{name}", False)
