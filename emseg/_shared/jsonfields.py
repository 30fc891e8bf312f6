"""Checks for the fields of JSON model files, shared by :mod:`emseg.image.model`,
:mod:`emseg.mixture.serialize` and the HMMs (:mod:`emseg.hmm`).

A model file is data, never code: every field is checked for type, shape and value,
and anything else is refused with a one-line :class:`~emseg.EmsegError` naming the
field (``where.key``, with ``[i][j]`` for a position inside an array) and the fix.
"""

import math
import numbers

import numpy as np

from .errors import EmsegError


def is_int(value):
    """True for an integer that is not a bool (JSON ``true`` is not a count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value):
    """True for a real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# Integers in a model file are counts, labels and seeds: none comes near 2**63. A larger
# one (a 401-digit integer) cannot even become a float64, so it is refused by name.
MAX_INT = 2**63 - 1
# emseg's own files nest at most 6 deep (model.mixture.covariances_[k][i][j]); a file
# nested deeper is refused at load rather than failing later on every image, when the
# model is copied into a report.
MAX_DEPTH = 32


def is_finite_number(value):
    """True for a finite real number (not a bool): huge integers (|v| > 2**63) and
    NaN/infinity are not."""
    if not is_number(value):
        return False
    if isinstance(value, numbers.Integral):
        return -MAX_INT <= value <= MAX_INT
    return math.isfinite(value)


def describe_number(value):
    """A short, one-line text for a bad number in a message (a 401-digit integer is not
    printed in full)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and abs(value) > MAX_INT:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_tree(obj, where, *, max_depth=MAX_DEPTH):
    """Refuse a parsed JSON document that nests deeper than ``max_depth``, or holds an
    integer beyond +-2**63 or a non-finite number (JSON ``1e999`` parses as infinity)
    anywhere, with one line naming the place (``where.key[i]``). Iterative: any depth
    is safe to check."""
    stack = [(obj, where, 0)]
    while stack:
        value, label, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= max_depth:
                raise EmsegError(
                    f"{label} is nested more than {max_depth} levels deep; emseg never "
                    "writes such a file, it is corrupt or not a model"
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                sub = f"{label}.{key}" if isinstance(value, dict) else f"{label}[{key}]"
                stack.append((item, sub, depth + 1))
        elif is_number(value) and not is_finite_number(value):
            raise EmsegError(
                f"{label} is {describe_number(value)}, not a finite number within "
                f"+-2**63; the file is corrupt"
            )


def kind(value):
    """What a JSON value is, for messages: "an object", "a list", "null", ..."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def check_header(d, expected_format, max_version, where, what, hint=""):
    """Refuse ``d`` unless it is an object whose ``format`` is ``expected_format`` and
    whose ``format_version`` is an integer from 1 to ``max_version``. ``what`` names
    the kind of file ("mixture"); ``hint`` is appended to the wrong-format message."""
    if not isinstance(d, dict):
        raise EmsegError(f"{where} must be a JSON object, got {kind(d)}")
    fmt = d.get("format")
    if fmt != expected_format:
        raise EmsegError(
            f"{where} is not an emseg {what} (format {fmt!r}, expected {expected_format!r})"
            + (f"; {hint}" if hint else "")
        )
    version = d.get("format_version")
    if not is_int(version) or not 1 <= version <= MAX_INT:
        raise EmsegError(
            f"{where}.format_version must be a positive integer, got {describe_number(version)}"
        )
    if version > max_version:
        raise EmsegError(
            f"{where} has format version {version}, newer than this emseg reads "
            f"({max_version}); upgrade emseg"
        )


def field_int(d, key, where, minimum):
    """``d[key]`` as an int >= ``minimum``."""
    value = d.get(key)
    if not is_int(value) or not minimum <= value <= MAX_INT:
        raise EmsegError(
            f"{where}.{key} must be an integer >= {minimum}, got {describe_number(value)}"
        )
    return int(value)


def field_array(d, key, shape, where):
    """``d[key]`` as a float64 array of exactly ``shape``: nested lists of finite
    numbers only (no bools, strings or nulls)."""
    name = f"{where}.{key}"
    if key not in d:
        raise EmsegError(f"{name} is missing")
    _check_nested(d[key], shape, name, name, shape)
    arr = np.array(d[key], dtype=np.float64).reshape(shape)
    if not np.isfinite(arr).all():
        raise EmsegError(f"{name} contains NaN or infinity")
    return arr


def _check_nested(value, shape, label, name, full_shape):
    """Check that ``value``, found at ``label`` inside the field ``name`` of
    ``full_shape``, is nested lists of numbers of exactly ``shape``."""
    if value is None:
        raise EmsegError(
            f"{label} is null (how NaN or infinity is written); the model is not usable"
        )
    if not shape:
        if isinstance(value, list):
            raise EmsegError(f"{label} must be a number, got a list (nested too deeply)")
        if not is_number(value):
            raise EmsegError(f"{label} must be a number, got {describe_number(value)}")
        if is_int(value) and abs(value) > MAX_INT:  # NaN and infinity: checked below
            raise EmsegError(
                f"{label} is {describe_number(value)}, not a finite number within +-2**63; "
                "the model is not usable"
            )
        return
    if not isinstance(value, list):
        raise EmsegError(f"{label} must be a list of length {shape[0]}, got {kind(value)}")
    if len(value) != shape[0]:
        where = "it" if label == name else label
        raise EmsegError(
            f"{name} must have shape {full_shape}, but {where} has length {len(value)}"
        )
    for i, item in enumerate(value):
        _check_nested(item, shape[1:], f"{label}[{i}]", name, full_shape)


def fit_info(d, where, *, required=True):
    """``(converged_, n_iter_, lower_bound_)`` of a fitted model; ``lower_bound_`` may
    be null (NaN). When not ``required``, a missing ``converged_`` is False and a
    missing ``n_iter_`` is 0."""
    converged = d.get("converged_") if required else d.get("converged_", False)
    if not isinstance(converged, bool):
        raise EmsegError(f"{where}.converged_ must be true or false, got {converged!r}")
    n_iter = field_int(d, "n_iter_", where, 0) if required or "n_iter_" in d else 0
    lower = d.get("lower_bound_")
    if lower is None:
        lower = math.nan
    elif not is_finite_number(lower):
        raise EmsegError(
            f"{where}.lower_bound_ must be a finite number or null, got {describe_number(lower)}"
        )
    return converged, n_iter, float(lower)
