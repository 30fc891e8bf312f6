"""The body of a large text table through pandas' C reader (the ``tables`` extra).

Private to the table reader (:func:`emseg.io.tables.read_table`). :func:`parse_body`
gives what :func:`emseg.io._table_text.parse_body` gives, or None when the table is
not one it reads exactly as that reader does; the caller then reads it there. So
pandas only makes reading faster and never changes a value, a column's kind or an
error (the tests read the same tables both ways and compare). pandas 3.1 or later:
from 3.1 every float is converted by fast_float (correctly rounded, like Python's
``float``); earlier versions' default converter is not always correctly rounded and
their ``round_trip`` one reads ``nAn`` as a missing value.

Handed back because of a byte in the body (looked for first, in one pass over the
file; the checks below run only when the byte is there):

- a vertical tab or form feed (pandas skips them around a number; our blanks are
  space and tab);
- a ``+`` that is not an exponent's sign: a leading ``+`` sends pandas to its older
  converter, which is not correctly rounded and allows blanks inside the exponent;
- a ``"`` that neither opens nor closes a field, or follows a space (quoting rules
  differ there: pandas takes a quote after a space as text and joins text after a
  closing quote to the field), or a CR that does not end a line (pandas ends a line
  there).

Handed back after:

- anything pandas refuses: a row longer than the header, a cell of a number column
  that is not a number (columns are given their type, never inferred), text that is
  not UTF-8 in a column read as text;
- a row shorter than the header: pandas fills it with missing cells silently, so
  every row whose last cell is missing has its fields counted (a blank line is such
  a row, with one field);
- a quoted field over several lines (fewer rows than lines);
- an infinite value (``inf``, ``Infinity``, an overflow): the reference names it.
  pandas gives NaN only for the missing-cell texts it is given (checked by a fuzz
  test: ``nAn``, ``+nan`` are refused);
- a text column with a missing cell or a cell that is a number or missing-cell text
  once blanks are stripped (a mixed column: the reader of reference names the cell).
"""

import re
import warnings

import numpy as np

from .._shared.errors import EmsegError
from ._table_data import in_threads, line_starts
from ._table_text import BLANK, MISSING, MISSING_TOKENS, NUMBER_PATTERN, Codes, Scan, field_spans

#: the bytes whose presence in the body needs a closer look: NUL, quote, CR, vertical
#: tab, form feed, plus
SPECIAL = b'\x00"\r\x0b\x0c+'
_CHUNK = 1 << 18
_NUMBER_OR_MISSING = (  # compiled on first use
    rf"[ \t]*(?:{NUMBER_PATTERN}|"
    + "|".join(re.escape(t) for t in MISSING_TOKENS if t)
    + r")?[ \t]*"
)


def available():
    """True when pandas 3.1 or later can be imported (imports it)."""
    try:
        import pandas
    except ImportError:
        return False
    version = re.match(r"(\d+)\.(\d+)", pandas.__version__)
    return version is not None and (int(version[1]), int(version[2])) >= (3, 1)


def special_bytes(data, start, end):
    """The :data:`SPECIAL` bytes (as ints) in ``data[start:end]`` (bytes or a memory
    map): one pass over memory, a chunk at a time, each chunk searched for every byte
    still missing while it is in the cache."""
    wanted = [bytes((b,)) for b in SPECIAL]
    found = set()
    for a in range(start, end, _CHUNK):
        b = min(a + _CHUNK, end)
        for byte in [w for w in wanted if data.find(w, a, b) >= 0]:
            found.add(byte[0])
            wanted.remove(byte)
        if not wanted:
            break
    return found


class _Body:
    """``data[start:end]`` as the file object pandas reads (it calls ``read(n)``)."""

    mode = "rb"

    def __init__(self, data, start, end):
        self._data, self._pos, self._end = data, start, end

    def read(self, size=-1):
        stop = self._end if size is None or size < 0 else min(self._end, self._pos + size)
        chunk = bytes(self._data[self._pos : stop])
        self._pos = stop
        return chunk


def parse_body(path, data, body_start, body_end, delimiter, n_cols, numeric, texts,
               guess_text):
    """``(n_rows, scans, codes)`` as :func:`emseg.io._table_text.parse_body`, or None
    to hand the table back. ``guess_text``: positions of ``numeric`` to read as text
    (their cells at the top of the file are not numbers); their scan is a text
    column's, or the table is handed back (as it is when the body holds a NUL: the
    caller then says the file is binary). ``data`` holds the bytes of the file at
    ``path``. pandas reads the file itself (with a thread per core) when the header
    is its first line and at most one line end follows the body; else ``data``'s
    body, in one thread."""
    special = special_bytes(data, body_start, body_end)
    if not _plain_bytes(data, body_start, body_end, delimiter, special):
        return None
    import pandas as pd

    quoted = 34 in special
    names = [f"c{i}" for i in range(n_cols)]
    as_text = set(texts) | set(guess_text)
    if len([j for j in numeric if j not in as_text]) == n_cols:
        types = np.float64  # every column a number: one block
    else:
        types = {names[j]: (object if j in as_text else np.float64)
                 for j in set(numeric) | set(texts)}
    if data.find(b'"', 0, body_start) < 0 and bytes(data[body_end:]) in (b"", b"\n",
                                                                         b"\r\n"):
        source, skip = path, 1
    else:
        source, skip = _Body(data, body_start, body_end), 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)  # a long first row
        warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # columns not used
        try:
            frame = pd.read_csv(
                source, engine="c", sep=delimiter, header=None, skiprows=skip,
                names=names, index_col=False, dtype=types, na_values=list(MISSING_TOKENS),
                keep_default_na=False, skip_blank_lines=False, quotechar='"',
                doublequote=True, escapechar=None, comment=None, skipinitialspace=False,
                thousands=None, decimal=".", encoding="utf-8", encoding_errors="strict",
                on_bad_lines="error",
            )
        except (ValueError, pd.errors.ParserWarning):  # ParserError, UnicodeDecodeError
            return None
    n_rows = len(frame)
    if quoted and n_rows != _count_newlines(data, body_start, body_end) + 1:
        return None  # a quoted field over several lines
    if n_cols > 1 and not _rows_complete(data, body_start, body_end, delimiter, n_cols,
                                         quoted, frame[names[-1]]):
        return None
    scans = {}
    floats = [j for j in numeric if j not in guess_text]
    values = [frame[names[j]].to_numpy(dtype=np.float64, copy=False) for j in floats]
    for j, column, total in zip(floats, values, in_threads(np.sum, values)):
        n_missing = 0
        if not np.isfinite(total):  # one pass when every value is finite
            if np.isinf(column).any():
                return None  # the reader of reference names the cell
            n_missing = int(np.count_nonzero(np.isnan(column)))
        scans[j] = Scan([column], n_missing)
    for j in guess_text:
        if _looks_numeric_or_missing(frame[names[j]]):
            return None
        scans[j] = Scan.not_numbers(None, has_number=False)
    codes = {}
    for j in texts:
        found = _codes(frame[names[j]])
        if found is None:
            return None
        codes[j] = found
    return n_rows, scans, codes


def _plain_bytes(data, body_start, body_end, delimiter, special):
    """Whether the body's special bytes (``special``) are ones pandas reads as the
    reference does."""
    if special & {0, 11, 12}:
        return False  # NUL (a binary file), vertical tab, form feed
    if 43 in special and not _plus_in_exponents(data, body_start, body_end):
        return False
    if 34 in special and not _plain_quotes(data, body_start, body_end, delimiter):
        return False
    if 13 in special and not _cr_ends_lines(data, body_start, body_end):
        return False
    return True


def _bytes(data, body_start, body_end):
    """The body as a uint8 array (no copy; ``data`` is bytes or a memory map)."""
    return np.frombuffer(data, dtype=np.uint8, count=body_end - body_start, offset=body_start)


def _count_newlines(data, body_start, body_end):
    return int(np.count_nonzero(_bytes(data, body_start, body_end) == 10))


def _plus_in_exponents(data, body_start, body_end):
    """Whether every ``+`` of the body follows an ``e`` or ``E``."""
    buf = _bytes(data, body_start, body_end)
    at = np.flatnonzero(buf == 43)
    if at.size and at[0] == 0:
        return False
    before = buf[at - 1]
    return bool(np.all((before == 101) | (before == 69)))


def _cr_ends_lines(data, body_start, body_end):
    """Whether every CR of the body is followed by a LF."""
    buf = _bytes(data, body_start, body_end)
    cr = np.flatnonzero(buf == 13)
    return bool(cr[-1] + 1 < buf.size and np.all(buf[cr + 1] == 10))


def _plain_quotes(data, body_start, body_end, delimiter):
    """Whether every ``"`` of the body either opens a field (right after a delimiter or
    a line start) or closes one (right before a delimiter or a line end), and none
    follows a space: then pandas and the csv module split the lines alike. Doubled
    quotes inside a field, spaces around quotes, text after a closing quote are left
    to the csv module."""
    buf = _bytes(data, body_start, body_end)
    at = np.flatnonzero(buf == 34)
    before = buf[np.maximum(at - 1, 0)]
    before[at == 0] = 10  # the body starts a line
    after = buf[np.minimum(at + 1, buf.size - 1)]
    after[at == buf.size - 1] = 10
    delim = ord(delimiter)
    opens = (before == delim) | (before == 10)
    closes = (after == delim) | (after == 10) | (after == 13)
    return bool(np.all(opens | closes) and not np.any(before == 32))


def _rows_complete(data, body_start, body_end, delimiter, n_cols, quoted, last):
    """Whether every row whose ``last`` cell is missing has ``n_cols`` fields in the
    file (pandas fills a short row with missing cells); row ``r`` is line ``r`` of the
    body (the caller checked that no quoted field spans lines)."""
    rows = np.flatnonzero(last.isna().to_numpy())
    if not rows.size:
        return True
    starts = line_starts(data, body_start, len(last))
    ends = np.append(starts[1:] - 1, body_end)
    delim = delimiter.encode()
    for row in rows.tolist():
        text = data[starts[row] : ends[row]]
        if quoted and b'"' in text:
            try:
                n = len(field_spans("", text, delimiter, row))
            except EmsegError:
                return False
        else:
            n = text.count(delim) + 1
        if n != n_cols:
            return False
    return True


def _looks_numeric_or_missing(column):
    """True when a cell of a text column is a number or a missing cell with blanks
    around it (so the column is not plain text), or every cell is missing."""
    import pandas as pd

    values = pd.unique(column.dropna())
    if len(values) == 0:
        return True  # every cell missing: the reader of reference says so
    pattern = re.compile(_NUMBER_OR_MISSING)
    return any(pattern.fullmatch(v) for v in values)


def _codes(column):
    """:class:`Codes` of a text column, or None when it needs the reader of reference
    (a missing cell)."""
    import pandas as pd

    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    if codes.size and codes.min() < 0:
        return None
    # uniques are in order of first appearance; texts that differ only by the blanks
    # around them are one symbol, as in the reader of reference
    index = {}
    remap = np.array([index.setdefault(str(t).strip(BLANK), len(index)) for t in uniques],
                     dtype=np.int64)
    if any(t in MISSING for t in index):
        return None
    return Codes(remap[codes], list(index), None)
