"""The body of a large text table through pyarrow's CSV reader (the ``tables`` extra).

Private to the table reader (:func:`emseg.io.tables.read_table`). :func:`parse_body`
gives what :func:`emseg.io._table_text.parse_body` gives, or None when the table is
not one it reads exactly as that reader does; the caller then reads it there. So
pyarrow only makes reading faster and never changes a value, a column's kind or an
error (the tests read the same tables both ways and compare). Handed back:

- a body with a ``"`` that neither opens nor closes a field, or follows a space, or a
  quoted field over several lines (quoting rules differ there: pyarrow does not allow
  spaces before an opening quote, accepts text after a closing one, and joins a
  quoted field's lines even when told not to), or a CR that does not end a line;
- anything pyarrow refuses: a ragged row, a cell of a number column that is not a
  number (after spaces are stripped; pyarrow's number grammar is within ours, which a
  fuzz test checks; columns are given their type, never inferred);
- a number it reads that ours does not (``inf``, ``Infinity``, ``nAn``, an overflow to
  infinity): every value must be finite or one of our missing cells;
- a row whose cells are all missing, if its line is blank (pyarrow reads a blank line
  of a many-column table as a row of missing cells; we refuse it);
- a text column in which a cell looks like a number or a missing cell once spaces are
  stripped (a mixed column: the reader of reference names the cell).

Numbers: pyarrow's conversion to float64 is correctly rounded (fast_float), like
Python's ``float``.
"""

import numpy as np

from ._table_text import BLANK, MISSING, MISSING_TOKENS, NUMBER_PATTERN, Codes, Scan

_NUMBER_OR_MISSING = (
    rf"^[ \t]*(?:{NUMBER_PATTERN}|"
    + "|".join(t.replace(".", r"\.") for t in MISSING_TOKENS if t)
    + r")?[ \t]*$"
)


def available():
    """True when pyarrow can be imported (checked once; imports it)."""
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return False
    return True


def parse_body(data, body_start, body_end, delimiter, n_cols, numeric, texts, guess_text):
    """``(n_rows, scans, codes)`` as :func:`emseg.io._table_text.parse_body`, or None
    to hand the table back. ``guess_text``: positions of ``numeric`` to read as text
    first (their cells at the top of the file are not numbers); their scan is a text
    column's, or the table is handed back."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    body = memoryview(data)[body_start:body_end]
    quoted = data.find(b'"', body_start, body_end) >= 0
    if quoted and not _plain_quotes(data, body_start, body_end, delimiter):
        return None
    if data.find(b"\r", body_start, body_end) >= 0 and not _cr_ends_lines(data, body_start,
                                                                          body_end):
        return None
    names = [f"c{i}" for i in range(n_cols)]
    wanted = sorted(set(numeric) | set(texts))
    types = {}
    for j in wanted:
        types[names[j]] = pa.string() if (j in texts or j in guess_text) else pa.float64()
    try:
        table = pa_csv.read_csv(
            pa.BufferReader(pa.py_buffer(body)),
            read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter, quote_char='"', double_quote=True, escape_char=False,
                newlines_in_values=False, ignore_empty_lines=False,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=types, include_columns=[names[j] for j in wanted],
                null_values=list(MISSING_TOKENS), strings_can_be_null=True,
                check_utf8=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    n_rows = table.num_rows
    if quoted and n_rows != _count_newlines(data, body_start, body_end) + 1:
        return None  # a quoted field over several lines
    scans = {}
    for j in numeric:
        column = table.column(names[j])
        if j in guess_text:
            if _looks_numeric_or_missing(column):
                return None
            scans[j] = Scan.not_numbers(None, has_number=False)
            continue
        pieces = []
        for chunk in column.chunks:
            piece = chunk.to_numpy(zero_copy_only=False)
            if chunk.null_count != int(np.isnan(piece).sum()) or np.isinf(piece).any():
                return None  # a NaN or infinity pyarrow read from text that is not missing
            pieces.append(piece)
        scans[j] = Scan(pieces, column.null_count)
    columns = [table.column(names[j]) for j in wanted]
    if n_cols > 1 and all(c.null_count for c in columns):
        empty_rows = np.flatnonzero(np.logical_and.reduce(
            [c.is_null().to_numpy(zero_copy_only=False) for c in columns]))
        if empty_rows.size and _any_blank_line(data, body_start, body_end, empty_rows):
            return None
    codes = {}
    for j in texts:
        found = _codes(table.column(names[j]))
        if found is None:
            return None
        codes[j] = found
    return n_rows, scans, codes


def _bytes(data, body_start, body_end):
    """The body as a uint8 array (no copy; ``data`` is bytes or a memory map)."""
    return np.frombuffer(data, dtype=np.uint8, count=body_end - body_start, offset=body_start)


def _count_newlines(data, body_start, body_end):
    return int(np.count_nonzero(_bytes(data, body_start, body_end) == 10))


def _cr_ends_lines(data, body_start, body_end):
    """Whether every CR of the body is followed by a LF."""
    buf = _bytes(data, body_start, body_end)
    cr = np.flatnonzero(buf == 13)
    return bool(cr[-1] + 1 < buf.size and np.all(buf[cr + 1] == 10))


def _plain_quotes(data, body_start, body_end, delimiter):
    """Whether every ``"`` of the body either opens a field (right after a delimiter or
    a line start) or closes one (right before a delimiter or a line end), and none
    follows a space: then pyarrow and the csv module split the lines alike. Doubled
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


def _looks_numeric_or_missing(column):
    """True when a cell of a text column is a number or a missing cell with blanks
    around it (so the column is not plain text)."""
    import pyarrow.compute as pc  # only for text columns: its import costs 0.1-0.2 s

    chunks = column.drop_null()
    if len(chunks) == 0:
        return True  # every cell missing: the reader of reference says so
    hits = pc.match_substring_regex(chunks, _NUMBER_OR_MISSING)
    return bool(pc.any(hits).as_py())


def _any_blank_line(data, body_start, body_end, rows):
    """Whether any of the body's lines ``rows`` (sorted) is blank."""
    buf = _bytes(data, body_start, body_end)
    newlines = np.flatnonzero(buf == 10)
    starts = np.concatenate([[0], newlines + 1])[rows]
    stops = np.concatenate([newlines, [buf.size]])[rows]
    for a, b in zip(starts.tolist(), stops.tolist()):
        if not data[body_start + a : body_start + b].strip(b"\r"):
            return True
    return False


def _codes(column):
    """:class:`Codes` of a text column, or None when it needs the reader of reference
    (a missing cell, text that is not UTF-8)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        return None
    encoded = pc.dictionary_encode(column.combine_chunks().cast(pa.binary()))
    try:
        texts = [v.decode("utf-8").strip(BLANK) for v in encoded.dictionary.to_pylist()]
    except UnicodeDecodeError:
        return None
    # the dictionary is in order of first appearance; texts that differ only by the
    # blanks around them are one symbol, as in the reader of reference
    index = {}
    remap = np.array([index.setdefault(t, len(index)) for t in texts], dtype=np.int64)
    if any(t in MISSING for t in index):
        return None
    codes = remap[encoded.indices.to_numpy(zero_copy_only=False)]
    return Codes(codes.astype(np.int64), list(index), None)


