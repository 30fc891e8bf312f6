"""Tables for ``emseg gmm`` and ``emseg hmm``: read CSV, TSV and .npy, write results.

This is the io stage for tabular data: it turns a file into a feature matrix (and the
sequence lengths or symbol codes an HMM needs), and results into files. It fits
nothing and never prints.

Reading
    :func:`read_table` reads a text table with a header row (CSV, TSV, or semicolon- or
    bar-separated) or a ``.npy`` array into a :class:`Table`. Empty cells and ``NA``,
    ``N/A``, ``NaN``, ``nan``, ``NAN`` are missing values (NaN in ``Table.X``). Text is
    parsed by a compiled, multi-threaded scanner with an exact number parser (the
    fast path is exact where it applies; other numbers go through the C library's
    correctly rounded ``strtod``), so values equal Python's ``float`` of the text and
    a 1,000,000 x 10 table reads in well under a second (``benchmarks/bench_table.py``).
    The header line is read by ``_table_header``, the body by ``_text_numbers`` (both
    private modules of this reader); this module checks what they found and says what
    is wrong in one line.

Row numbering
    Data rows are numbered from 0: row 0 is the first line after the header, so row
    ``r`` of a text table is line ``r + 2`` of the file. ``Table.X[r]``, the ``row``
    column of labels.csv and of states.csv all use this number. Error messages about a
    text file give its line number (1-based, as editors show it).

Sequences
    With ``sequence_col``, consecutive rows with the same id form one sequence, in the
    order of the file. The rows of a sequence must be contiguous: an id that appears
    again after another id is refused (sort the table by that column with a stable
    sort). Regrouping silently would join two stretches of rows as if one followed the
    other.

Writing
    :func:`write_labels`, :func:`write_states`, :func:`write_imputed` and
    :func:`check_imputed_target` live in :mod:`emseg.io.table_writers` and are
    re-exported here.
"""

import os
import time
from dataclasses import dataclass, field

import numpy as np

from .._shared.errors import EmsegError
from ._table_header import DELIMITER_NAMES, all_numbers, read_header
from ._text_numbers import (
    MISSING_BYTES,
    MISSING_TOKENS,
    NONE,
    cell_text,
    chunks,
    field_matrix,
    field_spans,
    line_bytes,
    parse_body,
    python_numbers,
    use_strtod,
)
from .atomic import reason
from .table_writers import check_imputed_target, write_imputed, write_labels, write_states

__all__ = [
    "MISSING_TOKENS",
    "Table",
    "check_imputed_target",
    "read_table",
    "write_imputed",
    "write_labels",
    "write_states",
]


@dataclass(eq=False)
class Table:
    """A table as read from a file.

    Attributes
    ----------
    path : str
        The file read.
    X : ndarray of float64, (n_rows, n_features), C-contiguous
        The feature columns; NaN marks a missing value. ``n_features`` is 0 when only
        a categorical column was asked for.
    columns : list of str
        The names of the feature columns, in the order of ``X``.
    header : list of str
        Every column name of the file, in file order (``"0"``, ``"1"``, ... for .npy).
    feature_index : list of int
        The position of each feature column in ``header``.
    delimiter : str or None
        The text delimiter (``","``, ``"\\t"``, ``";"``, ``"|"``); None for .npy.
    sequence_col, sequence_ids, lengths
        With ``sequence_col``: the id of each sequence in file order (text) and the
        number of rows in each (int64, summing to ``n_rows``); otherwise None.
    categorical, codes, symbols
        With ``categorical``: the code of each row (int64, index into ``symbols``) and
        the sorted vocabulary (numerically when every symbol is a number, otherwise
        by text); otherwise None.
    raw : bytes or ndarray
        The whole file as read (bytes of a text file, the array of a .npy file), so
        :func:`write_imputed` can rewrite it with only the missing cells changed.
    row_starts : ndarray of int64 or None
        For text: the byte offset in ``raw`` where each data row's line starts.
    read_seconds : float
        Wall time :func:`read_table` took, for reporting load time apart from fitting.
    """

    path: str
    X: np.ndarray
    columns: list
    header: list
    feature_index: list
    delimiter: str | None
    raw: object = field(repr=False)
    row_starts: np.ndarray | None = field(default=None, repr=False)
    sequence_col: str | None = None
    sequence_ids: list | None = None
    lengths: np.ndarray | None = None
    categorical: str | None = None
    codes: np.ndarray | None = None
    symbols: list | None = None
    read_seconds: float = 0.0

    @property
    def n_rows(self):
        return self.X.shape[0]

    @property
    def is_text(self):
        return self.delimiter is not None

    def line_number(self, row):
        """The 1-based line of the file that holds data row ``row``; None for .npy."""
        return int(row) + 2 if self.is_text else None

    def describe_row(self, row):
        """Where data row ``row`` is, for messages: ``"line 7"`` or ``"row index 5"``."""
        return f"line {int(row) + 2}" if self.is_text else f"row index {int(row)}"

    def row_text(self, row):
        """The text of data row ``row`` as in the file, without its line ending."""
        if not self.is_text:
            raise EmsegError(f"{self.path} is a .npy array; it has no text rows")
        if not 0 <= row < self.n_rows:
            raise EmsegError(f"row {row} is outside 0..{self.n_rows - 1}")
        return line_bytes(self.raw, self.row_starts, int(row)).decode("utf-8", errors="replace")

    def feature_spans(self, rows):
        """Where the feature cells of data rows ``rows`` (int array) are in ``raw``:
        int64 (len(rows), n_features, 2), the byte offsets (start, end) of each cell's
        content (without quotes or surrounding spaces), features in ``columns`` order.
        For text tables only (:func:`emseg.io.tables.write_imputed` rewrites these)."""
        if not self.is_text:
            raise EmsegError(f"{self.path} is a .npy array; it has no text cells")
        want = np.full(len(self.header), -1, dtype=np.int64)
        want[self.feature_index] = np.arange(len(self.feature_index))
        spans = np.empty((len(rows), len(self.feature_index), 2), dtype=np.int64)
        buf = np.frombuffer(self.raw, dtype=np.uint8)
        field_spans(buf, self.row_starts[rows], ord(self.delimiter), want, spans)
        return spans


# =========================================================================== reading


def read_table(path, columns=None, *, sequence_col=None, categorical=None):
    """Read a CSV/TSV table with a header row, or a .npy array, into a :class:`Table`.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy``: a 1-D or 2-D numeric array, columns named ``"0"``, ``"1"``, ...
        Anything else is text: UTF-8 (a byte-order mark is allowed), one record per
        line, the first line the header. The delimiter is a comma for ``.csv``, a tab
        for ``.tsv`` and ``.tab``, when the header holds it; otherwise the one of
        comma, tab, semicolon and bar that the header holds (the most frequent).
        Fields may be quoted with ``"`` (a quoted field may not span lines); spaces
        around fields are ignored.
    columns : list of str, optional
        The feature columns, in this order (an empty list: none, for a categorical
        column alone). Default: every numeric column except
        ``sequence_col``, ``categorical`` and columns with an empty name (such as the
        index column pandas writes); no column when ``categorical`` is given. A column
        is numeric when its first non-missing cell is a number; a later cell that is
        not a number is an error.
    sequence_col : str, optional
        The column of sequence ids (any text): see "Sequences" in the module notes.
    categorical : str, optional
        A column of symbols (any text) to code as integers for a categorical HMM.

    Raises
    ------
    EmsegError
        With one line naming the file and the problem: missing, empty, binary or not
        UTF-8; a header only, a header that looks like data, duplicated names; ragged
        rows or unclosed quotes (with the line); a chosen column that is unknown, not
        numeric (with the value and line), infinite or entirely missing; an unknown
        sequence or categorical column, or a missing id or symbol.
    """
    start = time.perf_counter()
    path = os.fspath(path)
    columns = _check_names_arg(columns, "columns")
    for name, value in (("sequence_col", sequence_col), ("categorical", categorical)):
        if value is not None and not isinstance(value, str):
            raise EmsegError(f"{name} must be a column name (a string), got {value!r}")
    if sequence_col is not None and sequence_col == categorical:
        raise EmsegError(
            f"column {sequence_col!r} cannot be both the sequence column and the "
            "categorical column"
        )
    _check_input_file(path)
    if path.lower().endswith(".npy"):
        table = _read_npy(path, columns, sequence_col, categorical)
    else:
        table = _read_text(path, columns, sequence_col, categorical)
    table.read_seconds = time.perf_counter() - start
    return table


def _check_names_arg(columns, name):
    if columns is None:
        return None
    if isinstance(columns, (str, int, np.integer)) and not isinstance(columns, bool):
        columns = [columns]
    try:
        columns = [
            str(c) if isinstance(c, (int, np.integer)) and not isinstance(c, bool) else c
            for c in columns
        ]
    except TypeError:
        raise EmsegError(f"{name} must be a list of column names, got {columns!r}") from None
    for c in columns:
        if not isinstance(c, str):
            raise EmsegError(f"{name} must be a list of column names, got {c!r} in it")
    seen = set()
    for c in columns:
        if c in seen:
            raise EmsegError(f"column {c!r} is given twice in {name}; name each column once")
        seen.add(c)
    return columns


def _check_input_file(path):
    if not os.path.exists(path):
        raise EmsegError(f"{path} does not exist; check the path")
    if os.path.isdir(path):
        raise EmsegError(f"{path} is a folder, not a table; pass a CSV, TSV or .npy file")
    if os.path.getsize(path) == 0:
        raise EmsegError(f"{path} is empty (0 bytes); a table needs a header row and data")


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise EmsegError(f"cannot read {path}: {exc.strerror or exc}") from None


def _list_names(names, limit=12):
    shown = [repr(n) for n in names[:limit]]
    if len(names) > limit:
        shown.append(f"... ({len(names)} in all)")
    return ", ".join(shown)


def _resolve(path, header, columns, sequence_col, categorical):
    """Positions of the features, the sequence column and the categorical column.

    Columns with an empty name cannot be chosen.
    """
    index = {name: i for i, name in enumerate(header) if name != ""}
    special = {}
    for what, name in (("sequence column", sequence_col), ("categorical column", categorical)):
        if name is None:
            continue
        if name not in index:
            raise EmsegError(
                f"{what} {name!r} is not in {path}; its columns are {_list_names(header)}"
            )
        special[name] = what
    if columns is None:
        return None, index.get(sequence_col), index.get(categorical)
    features = []
    for name in columns:
        if name not in index:
            raise EmsegError(
                f"column {name!r} is not in {path}; its columns are {_list_names(header)}"
            )
        if name in special:
            raise EmsegError(
                f"column {name!r} is the {special[name]}; it cannot also be a feature"
            )
        features.append(index[name])
    return features, index.get(sequence_col), index.get(categorical)


# --- .npy ------------------------------------------------------------------------------


def _read_npy(path, columns, sequence_col, categorical):
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise EmsegError(
                f"{path} holds Python objects, not numbers; save a numeric array"
            ) from None
        raise EmsegError(f"{path} is not a valid .npy file ({reason(exc)})") from None
    except (OSError, EOFError) as exc:
        raise EmsegError(f"{path} is not a valid .npy file ({reason(exc)})") from None
    if not isinstance(arr, np.ndarray):  # pragma: no cover - np.load of .npy gives arrays
        raise EmsegError(f"{path} is not a .npy array; save one with numpy.save")
    original = arr
    if arr.dtype.names is not None or not (
        arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)
        or np.issubdtype(arr.dtype, np.floating)
    ):
        raise EmsegError(
            f"{path} holds {arr.dtype} values; emseg reads real numbers (integer, "
            "float or bool arrays)"
        )
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise EmsegError(
            f"{path} is a {arr.ndim}-D array of shape {arr.shape}; save a 2-D array "
            "(rows x columns)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EmsegError(f"{path} is an empty array (shape {arr.shape}); it has no data")
    header = [str(i) for i in range(arr.shape[1])]
    features, seq_i, cat_i = _resolve(path, header, columns, sequence_col, categorical)
    if features is None:
        features = [] if categorical is not None else [
            i for i in range(arr.shape[1]) if i not in (seq_i, cat_i)
        ]
        if not features and categorical is None:
            raise EmsegError(
                f"{path} has no column left to use as a feature besides the sequence column"
            )
    X = np.ascontiguousarray(arr[:, features], dtype=np.float64)
    for j, col in enumerate(features):
        values = X[:, j]
        bad = np.flatnonzero(np.isinf(values))
        if bad.size:
            raise EmsegError(
                f"column {header[col]!r} of {path} has an infinite value at row index "
                f"{int(bad[0])}; remove or clip it"
            )
        if np.isnan(values).all():
            raise EmsegError(
                f"column {header[col]!r} of {path} has no value (every cell is NaN); "
                "leave it out with --columns"
            )
    table = Table(
        path=path, X=X, columns=[header[i] for i in features], header=header,
        feature_index=list(features), delimiter=None, raw=original,
    )
    if seq_i is not None:
        values = arr[:, seq_i].astype(np.float64)
        _no_missing_numbers(path, values, header[seq_i], "sequence id")
        change = np.flatnonzero(values[1:] != values[:-1]) + 1
        run_starts = np.concatenate([[0], change])
        ids = [_number_text(v) for v in values[run_starts]]
        _set_sequences(table, header[seq_i], ids, run_starts, lambda r: f"row index {r}")
    if cat_i is not None:
        values = arr[:, cat_i].astype(np.float64)
        _no_missing_numbers(path, values, header[cat_i], "symbol")
        vocab, codes = np.unique(values, return_inverse=True)
        table.categorical = header[cat_i]
        table.codes = codes.ravel().astype(np.int64)
        table.symbols = [_number_text(v) for v in vocab]
    return table


def _no_missing_numbers(path, values, name, what):
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise EmsegError(
            f"column {name!r} of {path} has no {what} at row index {int(bad[0])}; "
            f"every row needs one"
        )


def _number_text(v):
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


# --- text ------------------------------------------------------------------------------


def _read_text(path, columns, sequence_col, categorical):
    data = _read_bytes(path)
    if b"\x00" in data:
        raise EmsegError(
            f"{path} is a binary file, not a text table; pass a CSV, TSV or .npy file"
        )
    body_start, delimiter, header = read_header(path, data)
    n_cols = len(header)
    body_end = len(data)
    while body_end > body_start and data[body_end - 1] in b"\r\n":
        body_end -= 1  # blank lines at the end of the file are ignored
    if body_end <= body_start:
        raise EmsegError(f"{path} has a header but no data rows; add the data below the header")
    features, seq_i, cat_i = _resolve(path, header, columns, sequence_col, categorical)
    default = features is None
    if default:
        if categorical is not None:
            features = []
        else:
            features = [
                i for i, name in enumerate(header) if name != "" and i not in (seq_i, cat_i)
            ]
            if not features:
                raise EmsegError(
                    f"{path} has no column to use as a feature besides the sequence column"
                )

    colmap = np.full(n_cols, -1, dtype=np.int64)
    colmap[features] = np.arange(len(features))
    spancol = np.full(n_cols, -1, dtype=np.int64)
    specials = [i for i in (seq_i, cat_i) if i is not None]
    spancol[specials] = np.arange(len(specials))

    bounds, row0 = chunks(data, body_start, body_end)
    n_rows = int(row0[-1])
    buf = np.frombuffer(data, dtype=np.uint8)
    X = np.empty((n_rows, len(features)), dtype=np.float64)
    spans = np.empty((n_rows, len(specials), 2), dtype=np.int64)
    row_starts = np.empty(n_rows, dtype=np.int64)
    n_chunks = len(bounds) - 1
    first_num = np.full((n_chunks, n_cols), NONE, dtype=np.int64)
    first_bad = np.full((n_chunks, n_cols), NONE, dtype=np.int64)
    problems = np.full((n_chunks, 3), NONE, dtype=np.int64)  # ragged row, fields, quote row
    fallback = np.zeros(n_rows, dtype=np.uint8)
    parse_body(
        buf, np.asarray(bounds, dtype=np.int64), row0, ord(delimiter), n_cols, colmap,
        spancol, X, spans, row_starts, first_num, first_bad, problems, fallback,
        use_strtod(),
    )
    _check_structure(path, data, delimiter, n_cols, row_starts, problems)
    if fallback.any():
        python_numbers(buf, delimiter, row_starts, fallback, colmap, X)

    # classify the chosen columns: numeric, text, mixed, or empty
    num = first_num.min(axis=0)
    bad = first_bad.min(axis=0)
    keep = []
    for j, col in enumerate(features):
        name = header[col]
        if bad[col] == NONE and num[col] != NONE:
            keep.append(j)
            continue
        if bad[col] == NONE:
            raise EmsegError(
                f"column {name!r} of {path} has no value (every cell is empty or NA); "
                "leave it out with --columns"
            )
        is_text = num[col] == NONE or bad[col] < num[col]
        if default and is_text:
            continue  # a text column: not a feature unless asked for
        row = int(bad[col])
        value = cell_text(buf, delimiter, row_starts, row, col)
        raise EmsegError(_not_numeric_message(path, name, value, row, default, len(header)))
    if default and not keep and categorical is None:
        raise EmsegError(
            f"{path} has no numeric column (columns {_list_names(header)}); "
            "choose columns with --columns"
        )
    if len(keep) < len(features):
        X = np.ascontiguousarray(X[:, keep])
        features = [features[j] for j in keep]
    bad_inf = np.isinf(X)
    if bad_inf.any():
        row, j = np.argwhere(bad_inf)[0]
        value = cell_text(buf, delimiter, row_starts, int(row), features[j])
        raise EmsegError(
            f"column {header[features[j]]!r} of {path} has an infinite value {value!r} "
            f"on line {int(row) + 2}; remove or clip it"
        )

    table = Table(
        path=path, X=X, columns=[header[i] for i in features], header=header,
        feature_index=list(features), delimiter=delimiter, raw=data, row_starts=row_starts,
    )
    if seq_i is not None:
        texts = field_matrix(buf, spans[:, spancol[seq_i]])
        _no_missing_text(path, texts, header[seq_i], "sequence id")
        change = np.flatnonzero(texts[1:] != texts[:-1]) + 1
        run_starts = np.concatenate([[0], change])
        ids = [_decode(path, t, header[seq_i]) for t in texts[run_starts]]
        _set_sequences(table, header[seq_i], ids, run_starts, lambda r: f"line {r + 2}")
    if cat_i is not None:
        texts = field_matrix(buf, spans[:, spancol[cat_i]])
        _no_missing_text(path, texts, header[cat_i], "symbol")
        vocab, codes = np.unique(texts, return_inverse=True)
        symbols = [_decode(path, t, header[cat_i]) for t in vocab]
        codes = codes.ravel().astype(np.int64)
        numbers = all_numbers(symbols)
        if numbers is not None:  # numeric symbols sort as numbers: 2 before 10
            order = np.argsort(numbers, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            codes = rank[codes]
            symbols = [symbols[i] for i in order]
        table.categorical = header[cat_i]
        table.codes = codes
        table.symbols = symbols
    return table


def _check_structure(path, data, delimiter, n_cols, row_starts, problems):
    ragged = problems[:, 0]
    quote = problems[:, 2]
    first_ragged = int(ragged.min())
    first_quote = int(quote.min())
    if first_quote != NONE and first_quote <= first_ragged:
        raise EmsegError(
            f"line {first_quote + 2} of {path} has a quoted field that is not closed on "
            "that line (or text after a closing quote); fields may not span lines"
        )
    if first_ragged != NONE:
        n_fields = int(problems[np.argmin(ragged), 1])
        line = first_ragged + 2
        text = line_bytes(data, row_starts, first_ragged)
        if not text.strip():
            raise EmsegError(
                f"line {line} of {path} is empty but the header has {n_cols} columns; "
                "remove blank lines"
            )
        raise EmsegError(
            f"line {line} of {path} has {n_fields} fields but the header has {n_cols} "
            f"({DELIMITER_NAMES[delimiter]}-separated); fix that row"
        )


def _not_numeric_message(path, name, value, row, default, n_cols):
    line = row + 2
    if value.lower().lstrip("+-") in ("inf", "infinity"):
        return (
            f"column {name!r} of {path} has an infinite value {value!r} on line {line}; "
            "remove or clip it"
        )
    if default:
        hint = "fix that value, or leave the column out with --columns"
    else:
        hint = "choose numeric columns with --columns"
    if n_cols == 1 and any(c in value for c in " ;|,\t"):
        hint += " (is the file separated by another delimiter?)"
    return f"column {name!r} of {path} is not numeric (value {value!r} on line {line}); {hint}"


def _no_missing_text(path, texts, name, what):
    missing = np.isin(texts, np.array(MISSING_BYTES, dtype=texts.dtype))
    if missing.any():
        row = int(np.argmax(missing))
        raise EmsegError(
            f"column {name!r} of {path} has no {what} on line {row + 2} (empty or NA); "
            f"every row needs one"
        )


def _decode(path, raw, name):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EmsegError(
            f"column {name!r} of {path} holds text that is not UTF-8; save the file as UTF-8"
        ) from None


def _set_sequences(table, name, ids, run_starts, where):
    seen = {}
    for i, sid in enumerate(ids):
        if sid in seen:
            first = where(int(run_starts[seen[sid]]))
            again = where(int(run_starts[i]))
            raise EmsegError(
                f"sequence {sid!r} of column {name!r} in {table.path} starts on {first} "
                f"and again on {again}, after other sequences; the rows of a sequence "
                f"must be contiguous: sort the table by {name!r} (stable sort)"
            )
        seen[sid] = i
    bounds = np.concatenate([run_starts, [table.n_rows]])
    table.sequence_col = name
    table.sequence_ids = list(ids)
    table.lengths = np.diff(bounds).astype(np.int64)
