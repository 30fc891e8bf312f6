"""The first line of a text table: where the data start, the delimiter, the column names.

Private to the table reader (:func:`emseg.io.tables.read_table`); every problem is an
:class:`~emseg.EmsegError` with one line that names the file.
"""

import csv
import math
import os

import numpy as np

from .._shared.errors import EmsegError

DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "bar"}
_EXTENSION_DELIMITER = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def read_header(path, data):
    """(offset of the first data line, delimiter, column names) of the file's bytes ``data``.

    The delimiter is the extension's (comma for ``.csv``, tab for ``.tsv`` and ``.tab``)
    when the header holds it, else the most frequent of comma, tab, semicolon and bar in
    the header. Names are stripped of spaces; an empty name is allowed (pandas' index
    column), a repeated one is not, and a first line of numbers is refused as data.
    """
    body_start, header_text = _header_line(path, data)
    delimiter = _choose_delimiter(path, header_text)
    return body_start, delimiter, _parse_header(path, header_text, delimiter)


def _header_line(path, data):
    end = data.find(b"\n")
    line = data[: len(data) if end < 0 else end]
    body_start = len(data) if end < 0 else end + 1
    if line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    line = line.rstrip(b"\r")
    if b"\r" in line:
        raise EmsegError(
            f"{path} uses carriage returns (CR) alone to end lines; convert it to LF or "
            "CRLF line endings"
        )
    if not line.strip():
        raise EmsegError(
            f"{path} starts with an empty line; the first line must be the header "
            "(the column names)"
        )
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise EmsegError(
            f"{path} is not UTF-8 text (its first line cannot be decoded); save it as "
            "UTF-8 CSV or TSV"
        ) from None
    return body_start, text


def _choose_delimiter(path, header_text):
    ext = os.path.splitext(path)[1].lower()
    preferred = _EXTENSION_DELIMITER.get(ext)
    if preferred is not None and preferred in header_text:
        return preferred
    counts = {d: header_text.count(d) for d in DELIMITER_NAMES}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] == 0:
        return preferred or ","  # one column
    return best


def _parse_header(path, header_text, delimiter):
    try:
        names = next(csv.reader([header_text], delimiter=delimiter, skipinitialspace=True))
    except csv.Error as exc:
        raise EmsegError(f"{path}: the header line cannot be parsed ({exc})") from None
    names = [n.strip() for n in names]
    _check_header(path, names)
    return names


def _check_header(path, names):
    seen = {}
    for i, name in enumerate(names):
        if name == "":
            continue
        if name in seen:
            raise EmsegError(
                f"column name {name!r} appears twice in the header of {path} (columns "
                f"{seen[name] + 1} and {i + 1}); rename one"
            )
        seen[name] = i
    numbers = all_numbers([n for n in names if n != ""])
    if numbers is not None and not all(n.lstrip("+-").isdigit() for n in names if n != ""):
        raise EmsegError(
            f"the first line of {path} looks like data ({', '.join(names[:4])}"
            f"{', ...' if len(names) > 4 else ''}), not a header; add a header row with "
            "the column names"
        )


def all_numbers(texts):
    """The texts as floats when every one is a finite number, else None."""
    values = []
    for t in texts:
        try:
            v = float(t)
        except ValueError:
            return None
        if not math.isfinite(v) or "_" in t:
            return None
        values.append(v)
    return np.array(values) if values else None
