"""The body of a text table through the standard library's :mod:`csv` module.

Private to the table reader (:func:`emseg.io.tables.read_table`). This is the reader of
reference: every table can be read here, of any size (15-35 s per million rows of ten
numbers on a busy 2-core machine, against under 1 s through pandas, see
:mod:`emseg.io._table_pandas` and benchmarks/README.md); the pandas path only ever
gives the same result faster, and hands a table it has any doubt about back to this
one.

What a cell is
    A record is one line (a quoted field may not span lines). Fields are separated by
    the delimiter; a field may be quoted with ``"`` (``""`` for a quote inside), with
    spaces before the opening quote and spaces after the closing one; anything else
    after a closing quote is an error. Spaces and tabs around a cell's text are not
    part of it.

What a number is
    ``[+-] digits [. digits] [(e|E) [+-] digits]`` with at least one digit, in ASCII
    (``5.``, ``.5``, ``+3``, ``007``, ``1E-05``). Not numbers: digit separators
    (``1_000``, ``1,000``), ``inf``, hexadecimal, other scripts' digits (Python's
    ``float`` accepts all of these; this grammar does not). The value is Python's
    ``float`` of the text: correctly rounded.

What a missing cell is
    :data:`MISSING_TOKENS`: the empty cell and pandas' default ``na_values`` (``NA``,
    ``N/A``, ``NaN``, ``nan``, ``null``, ``NULL``, ``None``, ``#N/A``, ...), plus ``NAN``.
    Not missing: ``?``, ``-``, ``.``, ``missing``: a column holding them beside numbers is
    reported, not dropped.
"""

import csv
import math
import re

import numpy as np

from .._shared.errors import EmsegError
from ._table_header import DELIMITER_NAMES

#: the texts that mark a missing cell (after spaces are stripped): pandas' default
#: ``na_values`` (``pandas._libs.parsers.STR_NA_VALUES``) and ``NAN``
MISSING_TOKENS = (
    "", "NA", "N/A", "n/a", "NaN", "nan", "NAN", "-NaN", "-nan", "null", "NULL", "None",
    "<NA>", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN",
)
MISSING = frozenset(MISSING_TOKENS)
BLANK = " \t"  # stripped around a cell's text

NUMBER_PATTERN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
NUMBER_RE = re.compile(NUMBER_PATTERN)
_NUMBER_CHARS = b"0123456789+-.eE \t"


def is_number(text):
    """True when ``text`` (already stripped) is a number of the grammar above."""
    return NUMBER_RE.fullmatch(text) is not None


class Scan:
    """What one column of a table holds.

    ``values``: when every non-missing cell is a number, the float64 values (NaN where
    missing) as a list of 1-D arrays, consecutive pieces of the column; else None.
    ``n_missing``: how many cells are missing; ``first_inf``: the first row whose value
    is infinite, or None. ``first_bad``: the first row whose cell is neither a number
    nor missing (None if none); ``has_number``: whether any cell is a number. A column
    with ``values`` None and no number is text; with both, it mixes numbers and text.
    """

    __slots__ = ("values", "n_missing", "first_inf", "first_bad", "has_number")

    def __init__(self, values, n_missing=0, first_inf=None, first_bad=None, has_number=True):
        self.values = values
        self.n_missing = n_missing
        self.first_inf = first_inf
        self.first_bad = first_bad
        self.has_number = has_number

    @classmethod
    def numbers(cls, values):
        """The scan of a numeric column from its values (one array)."""
        inf = np.flatnonzero(np.isinf(values))
        return cls([values], int(np.isnan(values).sum()), int(inf[0]) if inf.size else None)

    @classmethod
    def not_numbers(cls, first_bad, has_number):
        """The scan of a column with a cell that is not a number."""
        return cls(None, first_bad=first_bad, has_number=has_number)


class Codes:
    """A text column coded as integers: ``codes`` (int64, one per row) index ``vocab``
    (texts, in order of first appearance); ``first_missing``: the first row whose cell
    is missing, or None."""

    __slots__ = ("codes", "vocab", "first_missing")

    def __init__(self, codes, vocab, first_missing):
        self.codes = codes
        self.vocab = vocab
        self.first_missing = first_missing


def scan_numbers(cells):
    """The :class:`Scan` of a column given as a sequence of cell texts (as parsed).

    A cell is a number when Python's ``float`` reads it and it is written with the
    characters of the grammar alone (``0-9 + - . e E``, blanks): the same set as
    :data:`NUMBER_RE` (a test checks this), and checked for a whole column at once.
    """
    try:
        values = list(map(float, cells))
        plain = not "".join(cells).encode("ascii").translate(None, _NUMBER_CHARS)
    except (ValueError, UnicodeEncodeError):
        plain = False
    if plain:
        return Scan.numbers(np.array(values, dtype=np.float64))
    values = np.empty(len(cells), dtype=np.float64)
    first_bad = None
    has_number = False
    for row, cell in enumerate(cells):
        text = cell.strip(BLANK)
        if text in MISSING:
            values[row] = math.nan
        elif is_number(text):
            values[row] = float(text)
            has_number = True
        elif first_bad is None:
            first_bad = row
    if first_bad is not None:
        return Scan.not_numbers(first_bad, has_number)
    return Scan.numbers(values)


def encode_texts(cells):
    """The :class:`Codes` of a column of texts (stripped of spaces)."""
    index = {}
    codes = [index.setdefault(c.strip(BLANK), len(index)) for c in cells]
    first_missing = None
    for token in MISSING:
        if token in index:
            row = codes.index(index[token])
            first_missing = row if first_missing is None else min(first_missing, row)
    return Codes(np.array(codes, dtype=np.int64), list(index), first_missing)


def read_rows(path, text, delimiter, n_cols, first_line):
    """The records of ``text`` (the body, lines split by ``\\n``), each a list of
    ``n_cols`` cell texts; a one-column table's blank line is one empty cell.
    ``first_line``: the file's line number of the body's first line (for messages)."""
    lines = text.split("\n")
    reader = csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True,
                        skipinitialspace=True, strict=True)
    try:
        rows = list(reader)
        clean = reader.line_num == len(lines) == len(rows)
    except csv.Error:
        clean = False
    if not clean:  # odd quoting or a CR inside a line: record by record, to say where
        rows = _rows_one_by_one(path, lines, delimiter, first_line)
    if n_cols == 1:
        rows = [r if r else [""] for r in rows]
    bad = next((i for i, r in enumerate(rows) if len(r) != n_cols), None)
    if bad is not None:
        line = first_line + bad
        if not lines[bad].strip("\r"):
            raise EmsegError(
                f"line {line} of {path} is empty but the header has {n_cols} columns; "
                "remove blank lines"
            )
        name = DELIMITER_NAMES[delimiter]
        raise EmsegError(
            f"line {line} of {path} has {len(rows[bad])} fields but the header has "
            f"{n_cols} ({name}-separated); fix that row"
        )
    return rows


def _rows_one_by_one(path, lines, delimiter, first_line):
    reader = csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True,
                        skipinitialspace=True, strict=True)
    rows = []
    while True:
        expected = len(rows) + 1
        try:
            row = next(reader)
        except StopIteration:
            return rows
        except csv.Error:
            row = None
        if row is None or reader.line_num != expected:
            line = lines[expected - 1].encode("utf-8", "surrogateescape")
            spans = field_spans(path, line, delimiter, first_line + expected - 1)
            row = [_field_text(line, a, b, quoted) for a, b, quoted in spans]
            if reader.line_num != expected:  # pragma: no cover - field_spans refused it
                raise EmsegError(f"line {first_line + expected - 1} of {path} cannot be read")
        rows.append(row)


def _field_text(line, a, b, quoted):
    text = line[a:b].decode("utf-8", "surrogateescape")
    return text.replace('""', '"') if quoted else text


def field_spans(path, line, delimiter, line_number):
    """``[(start, end, quoted), ...]``: where the text of each field of ``line`` (bytes,
    without its newline) is, without quotes and surrounding blanks; in a quoted field
    ``""`` stands for one quote. Raises an :class:`EmsegError` naming ``line_number``
    for a quoted field that is not closed on the line or is followed by text, or a CR
    inside the line."""
    delim = delimiter.encode()
    blank = b" \t".replace(delim, b"")
    end = len(line)
    if line.endswith(b"\r"):
        end -= 1
    if b"\r" in line[:end]:
        raise EmsegError(
            f"line {line_number} of {path} holds a carriage return (CR) inside it; save "
            "the file with LF or CRLF line endings"
        )
    spans = []
    pos = 0
    while True:
        a = pos
        while a < end and line[a] == 32:
            a += 1
        if a < end and line[a] == 34:  # a quoted field
            q = a + 1
            while True:
                q = line.find(b'"', q, end)
                if q < 0:
                    raise _quote_error(path, line_number)
                if q + 1 < end and line[q + 1] == 34:
                    q += 2
                    continue
                break
            spans.append((a + 1, q, True))
            stop = q + 1
            while stop < end and line[stop] in blank:
                stop += 1
            if stop < end and line[stop : stop + 1] != delim:
                raise _quote_error(path, line_number)
        else:
            stop = line.find(delim, a, end)
            if stop < 0:
                stop = end
            b = stop
            while a < b and line[a] in blank:
                a += 1
            while b > a and line[b - 1] in blank:
                b -= 1
            spans.append((a, b, False))
        if stop >= end:
            return spans
        pos = stop + 1


def _quote_error(path, line_number):
    return EmsegError(
        f"line {line_number} of {path} has a quoted field that is not closed on that "
        "line (or text after a closing quote); fields may not span lines"
    )


def parse_body(path, data, body_start, body_end, delimiter, n_cols, numeric, texts):
    """Scan the body ``data[body_start:body_end]``: ``(n_rows, scans, codes)`` with a
    :class:`Scan` for each column position in ``numeric`` and :class:`Codes` for each
    in ``texts`` (dicts by position)."""
    text = data[body_start:body_end].decode("utf-8", "surrogateescape")
    first_line = data[:body_start].count(b"\n") + 1
    rows = read_rows(path, text, delimiter, n_cols, first_line)
    columns = list(zip(*rows))
    scans = {j: scan_numbers(columns[j]) for j in numeric}
    codes = {j: encode_texts(columns[j]) for j in texts}
    return len(rows), scans, codes


def not_numeric_message(path, name, value, row, default, n_cols, has_number):
    """The one-line error for column ``name`` whose cell ``value`` on data row ``row`` is
    not a number (``default``: the column was not asked for; ``has_number``: it holds
    numbers too)."""
    line = row + 2
    if value.lower().lstrip("+-") in ("inf", "infinity"):
        return (
            f"column {name!r} of {path} has an infinite value {value!r} on line {line}; "
            "remove or clip it"
        )
    if default or has_number:
        hint = "fix that value, or leave the column out with --columns"
    else:
        hint = "choose numeric columns with --columns"
    if has_number and not any(c.isdigit() for c in value):
        hint += (" (the column holds numbers; a missing value is an empty cell or one "
                 "of NA, NaN, null)")
    elif has_number and ("_" in value or "," in value):
        hint += " (write numbers without digit separators)"
    if n_cols == 1 and any(c in value for c in " ;|,\t"):
        hint += " (is the file separated by another delimiter?)"
    return f"column {name!r} of {path} is not numeric (value {value!r} on line {line}); {hint}"


def check_text_column(path, found, name, what):
    """``found`` (:class:`Codes` of column ``name``), checked: no missing cell (every
    row needs its ``what``), only UTF-8 text."""
    if found.first_missing is not None:
        raise EmsegError(
            f"column {name!r} of {path} has no {what} on line {found.first_missing + 2} "
            "(empty or NA); every row needs one"
        )
    for text in found.vocab:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise EmsegError(
                f"column {name!r} of {path} holds text that is not UTF-8; save the file "
                "as UTF-8"
            ) from None
    return found
