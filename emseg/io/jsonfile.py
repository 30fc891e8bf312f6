"""JSON files: model files, reports and journals, written atomically and read with
limits (size, depth, integer range) so a hostile file costs a one-line error."""

import json
import math
import os
import re

import numpy as np

from .._shared.errors import EmsegError
from .._shared.jsonfields import check_tree
from .atomic import open_temp, writing

_SURROGATE = re.compile("[\ud800-\udfff]")

def save_json(path, obj, *, overwrite=False):
    """Write ``obj`` as JSON at ``path``, atomically (see :func:`write_json`).

    Refuses to replace an existing file unless ``overwrite``.
    """
    write_json(path, obj, overwrite=overwrite)


# The largest JSON file emseg reads, checked before reading. The largest segmentation
# model emseg writes (MAX_CLASSES full-covariance classes over 6 features: about 80
# numbers of at most 25 characters per class) is about 140 MB; a tabular mixture ('emseg
# gmm fit --model') stores 2 K D^2 numbers, so 256 MiB also holds 8 full components
# over 1,000 columns. Parsing holds about three times the file in memory (bytes, text,
# Python floats), so the limit also bounds load_json to about 1 GB.
MAX_JSON_BYTES = 256 * 2**20


def load_json(path, *, max_bytes=MAX_JSON_BYTES, where="file"):
    """Read the JSON file at ``path``.

    Raises :class:`~emseg.EmsegError` (one line, naming the file) when it is missing,
    a folder, empty, larger than ``max_bytes`` (checked before reading; see
    ``MAX_JSON_BYTES``), not UTF-8, not valid JSON (NaN and Infinity included), nested
    more than 32 levels deep, or holds an integer beyond +-2**63 or a number that
    overflows to infinity (``1e999``); the last two name the place, starting from
    ``where``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise EmsegError(f"{path} does not exist; check the path")
    if os.path.isdir(path):
        raise EmsegError(f"{path} is a folder, not a JSON file")
    too_big = (
        f"{path} is larger than {max_bytes / 2**20:.3g} MiB, the most emseg reads as a "
        "JSON model; it is not a model emseg wrote"
    )
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > max_bytes:
                raise EmsegError(too_big)
            raw = f.read(max_bytes + 1)  # a pipe or /proc file has no size to check
    except OSError as exc:
        raise EmsegError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise EmsegError(too_big)
    if not raw.strip():
        raise EmsegError(f"{path} is empty; it is not a model file (re-create it)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EmsegError(f"{path} is not a text (UTF-8) file; it is not a JSON model") from None
    del raw
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise EmsegError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}); the file is corrupt or truncated"
        ) from None
    except RecursionError:
        raise EmsegError(f"{path} is not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise EmsegError(f"{path} is not valid JSON ({exc})") from None
    try:
        check_tree(obj, where)
    except EmsegError as exc:
        raise EmsegError(f"{path}: {exc}") from None
    return obj


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def write_json(path, obj, *, overwrite=False):
    """Write ``obj`` as JSON: indent 2, sorted keys, a newline at the end.

    numpy scalars and arrays become numbers and lists; NaN and infinity become
    ``null`` (JSON has no such numbers); tuples become lists; paths become strings.
    A file name's bytes that are not UTF-8 (Python's surrogate escapes) are written as
    ``\\udcNN`` escapes, which :func:`json.loads` turns back into the same path.
    """
    path = os.fspath(path)
    text = json.dumps(
        _json_safe(obj, path, "the top level"),
        indent=2,
        sort_keys=True,
        allow_nan=False,
        ensure_ascii=False,
    )
    # a lone surrogate can only be inside a JSON string, where its escape is valid
    text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    with writing(path, overwrite) as tmp:
        with open_temp(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text + "\n")


def _json_safe(obj, path, where):
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {
            _json_key(k, path, where): _json_safe(v, path, f"{where}[{k!r}]")
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v, path, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise EmsegError(
        f"cannot write {path}: {type(obj).__name__} value at {where} is not "
        "JSON-serialisable; convert it to a number, string, list or dict"
    )


def _json_key(key, path, where):
    if isinstance(key, np.generic):
        key = key.item()
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or key is None:
        return json.dumps(key)
    if isinstance(key, (int, float)):
        return str(key)
    raise EmsegError(
        f"cannot write {path}: dict key {key!r} at {where} is not a string or number; "
        "use string keys"
    )
