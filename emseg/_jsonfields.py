"""Checks for the fields of JSON model files, shared by :mod:`emseg.model` and
:mod:`emseg.hmm`.

A model file is data, never code: every field is checked for type, shape and value,
and anything else is refused with a one-line :class:`~emseg.EmsegError` naming the
field (``where.key``, with ``[i][j]`` for a position inside an array) and the fix.
"""

import math
import numbers

import numpy as np

from ._errors import EmsegError


def is_int(value):
    """True for an integer that is not a bool (JSON ``true`` is not a count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value):
    """True for a real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


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
    if not is_int(version) or version < 1:
        raise EmsegError(f"{where}.format_version must be a positive integer, got {version!r}")
    if version > max_version:
        raise EmsegError(
            f"{where} has format version {version}, newer than this emseg reads "
            f"({max_version}); upgrade emseg"
        )


def field_int(d, key, where, minimum):
    """``d[key]`` as an int >= ``minimum``."""
    value = d.get(key)
    if not is_int(value) or value < minimum:
        raise EmsegError(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
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
            raise EmsegError(f"{label} must be a number, got {value!r}")
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
    elif not is_number(lower) or not math.isfinite(lower):
        raise EmsegError(f"{where}.lower_bound_ must be a finite number or null, got {lower!r}")
    return converged, n_iter, float(lower)
