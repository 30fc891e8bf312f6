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
    :func:`write_labels`, :func:`write_states` and :func:`write_imputed` write through
    :func:`emseg.io.images.atomic_output`, so an error never leaves half a file, and refuse to
    replace an existing file unless ``overwrite=True``.
"""

import csv
import ctypes
import ctypes.util
import locale
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._shared.errors import EmsegError
from .atomic import reason, writing

__all__ = [
    "MISSING_TOKENS",
    "Table",
    "read_table",
    "write_imputed",
    "write_labels",
    "write_states",
]

MISSING_TOKENS = ("", "NA", "N/A", "NaN", "nan", "NAN")
_MISSING_BYTES = tuple(t.encode() for t in MISSING_TOKENS)
_DELIMITERS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "bar"}
_EXTENSION_DELIMITER = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
_CHUNK_BYTES = 1 << 20  # text is parsed in chunks of about 1 MiB, spread over the cores
_NONE = np.iinfo(np.int64).max
_WRITE_BLOCK = 65536  # rows formatted per block by the writers


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
        return _line_bytes(self.raw, self.row_starts, int(row)).decode("utf-8", errors="replace")


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
    body_start, header_text = _header_line(path, data)
    delimiter = _choose_delimiter(path, header_text)
    header = _parse_header(path, header_text, delimiter)
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

    bounds, row0 = _chunks(data, body_start, body_end)
    n_rows = int(row0[-1])
    buf = np.frombuffer(data, dtype=np.uint8)
    X = np.empty((n_rows, len(features)), dtype=np.float64)
    spans = np.empty((n_rows, len(specials), 2), dtype=np.int64)
    row_starts = np.empty(n_rows, dtype=np.int64)
    n_chunks = len(bounds) - 1
    first_num = np.full((n_chunks, n_cols), _NONE, dtype=np.int64)
    first_bad = np.full((n_chunks, n_cols), _NONE, dtype=np.int64)
    problems = np.full((n_chunks, 3), _NONE, dtype=np.int64)  # ragged row, fields, quote row
    fallback = np.zeros(n_rows, dtype=np.uint8)
    _parse_body(
        buf, np.asarray(bounds, dtype=np.int64), row0, ord(delimiter), n_cols, colmap,
        spancol, X, spans, row_starts, first_num, first_bad, problems, fallback,
        _use_strtod(),
    )
    _check_structure(path, data, delimiter, n_cols, row_starts, problems)
    if fallback.any():
        _python_numbers(buf, delimiter, row_starts, fallback, colmap, X)

    # classify the chosen columns: numeric, text, mixed, or empty
    num = first_num.min(axis=0)
    bad = first_bad.min(axis=0)
    keep = []
    for j, col in enumerate(features):
        name = header[col]
        if bad[col] == _NONE and num[col] != _NONE:
            keep.append(j)
            continue
        if bad[col] == _NONE:
            raise EmsegError(
                f"column {name!r} of {path} has no value (every cell is empty or NA); "
                "leave it out with --columns"
            )
        is_text = num[col] == _NONE or bad[col] < num[col]
        if default and is_text:
            continue  # a text column: not a feature unless asked for
        row = int(bad[col])
        value = _cell_text(buf, delimiter, row_starts, row, col)
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
        value = _cell_text(buf, delimiter, row_starts, int(row), features[j])
        raise EmsegError(
            f"column {header[features[j]]!r} of {path} has an infinite value {value!r} "
            f"on line {int(row) + 2}; remove or clip it"
        )

    table = Table(
        path=path, X=X, columns=[header[i] for i in features], header=header,
        feature_index=list(features), delimiter=delimiter, raw=data, row_starts=row_starts,
    )
    if seq_i is not None:
        texts = _field_matrix(buf, spans[:, spancol[seq_i]])
        _no_missing_text(path, texts, header[seq_i], "sequence id")
        change = np.flatnonzero(texts[1:] != texts[:-1]) + 1
        run_starts = np.concatenate([[0], change])
        ids = [_decode(path, t, header[seq_i]) for t in texts[run_starts]]
        _set_sequences(table, header[seq_i], ids, run_starts, lambda r: f"line {r + 2}")
    if cat_i is not None:
        texts = _field_matrix(buf, spans[:, spancol[cat_i]])
        _no_missing_text(path, texts, header[cat_i], "symbol")
        vocab, codes = np.unique(texts, return_inverse=True)
        symbols = [_decode(path, t, header[cat_i]) for t in vocab]
        codes = codes.ravel().astype(np.int64)
        numbers = _all_numbers(symbols)
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
    counts = {d: header_text.count(d) for d in _DELIMITERS}
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
    numbers = _all_numbers([n for n in names if n != ""])
    if numbers is not None and not all(n.lstrip("+-").isdigit() for n in names if n != ""):
        raise EmsegError(
            f"the first line of {path} looks like data ({', '.join(names[:4])}"
            f"{', ...' if len(names) > 4 else ''}), not a header; add a header row with "
            "the column names"
        )


def _all_numbers(texts):
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


def _chunks(data, start, end):
    """Chunk boundaries (after a newline) and the first row of each chunk (cumulative)."""
    bounds = [start]
    while True:
        cut = bounds[-1] + _CHUNK_BYTES
        if cut >= end:
            break
        nl = data.find(b"\n", cut, end)
        if nl < 0 or nl + 1 >= end:
            break
        bounds.append(nl + 1)
    bounds.append(end)
    counts = [data.count(b"\n", a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    counts[-1] += 1  # the last line has no newline (trailing newlines were stripped)
    return bounds, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _check_structure(path, data, delimiter, n_cols, row_starts, problems):
    ragged = problems[:, 0]
    quote = problems[:, 2]
    first_ragged = int(ragged.min())
    first_quote = int(quote.min())
    if first_quote != _NONE and first_quote <= first_ragged:
        raise EmsegError(
            f"line {first_quote + 2} of {path} has a quoted field that is not closed on "
            "that line (or text after a closing quote); fields may not span lines"
        )
    if first_ragged != _NONE:
        n_fields = int(problems[np.argmin(ragged), 1])
        line = first_ragged + 2
        text = _line_bytes(data, row_starts, first_ragged)
        if not text.strip():
            raise EmsegError(
                f"line {line} of {path} is empty but the header has {n_cols} columns; "
                "remove blank lines"
            )
        raise EmsegError(
            f"line {line} of {path} has {n_fields} fields but the header has {n_cols} "
            f"({_DELIMITERS[delimiter]}-separated); fix that row"
        )


def _line_bytes(data, row_starts, row):
    """The bytes of data row ``row`` of the file's bytes ``data``, without the line end."""
    start = int(row_starts[row])
    stop = data.find(b"\n", start)
    return data[start : len(data) if stop < 0 else stop].rstrip(b"\r")


def _cell_text(buf, delimiter, row_starts, row, col):
    """The text of one cell (for messages), decoded leniently."""
    spans = np.empty((1, 1, 2), dtype=np.int64)
    want = np.full(col + 1, -1, dtype=np.int64)
    want[col] = 0
    _field_spans(buf, row_starts[row : row + 1], ord(delimiter), want, spans)
    a, b = spans[0, 0]
    text = bytes(buf[a:b]).decode("utf-8", errors="replace")
    return text if len(text) <= 60 else text[:57] + "..."


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


def _python_numbers(buf, delimiter, row_starts, fallback, colmap, X):
    """Parse the numbers of the flagged rows with Python's float (strtod unavailable)."""
    rows = np.flatnonzero(fallback)
    cols = np.flatnonzero(colmap >= 0)
    spans = np.empty((rows.size, cols.size, 2), dtype=np.int64)
    want = np.full(colmap.size, -1, dtype=np.int64)
    want[cols] = np.arange(cols.size)
    _field_spans(buf, row_starts[rows], ord(delimiter), want, spans)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            text = bytes(buf[spans[i, j, 0] : spans[i, j, 1]])
            if text in _MISSING_BYTES:
                continue
            try:
                X[r, colmap[c]] = float(text)
            except ValueError:  # pragma: no cover - the scanner checked the syntax
                X[r, colmap[c]] = np.nan


def _field_matrix(buf, spans):
    """The cells given by ``spans`` (n, 2) as a fixed-width bytes array (n,)."""
    width = max(1, int((spans[:, 1] - spans[:, 0]).max()))
    out = _gather(buf, spans, width)
    return out.view(f"S{width}").ravel()


def _no_missing_text(path, texts, name, what):
    missing = np.isin(texts, np.array(_MISSING_BYTES, dtype=texts.dtype))
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


# --- the compiled scanner --------------------------------------------------------------
#
# A number is [+-] digits [. digits] [(e|E) [+-] digits], parsed by hand into up to 19
# significant digits and a power of ten, then turned into the correctly rounded double:
#
# 1. Clinger's fast path: when the digits fit in 2**53 and the power of ten is within
#    1e22, one IEEE multiplication or division of two exact values rounds correctly.
# 2. The Eisel-Lemire algorithm (Lemire, "Number parsing at a gigabyte per second",
#    2021; as in Rust's core::num::dec2flt and Go's strconv): a 128-bit product with a
#    table of powers of five, which either rounds correctly or says it cannot tell.
# 3. Otherwise (more than 19 digits, halfway ambiguities, subnormals, overflow): the C
#    library's strtod, which rounds correctly. Where strtod cannot be used (a locale
#    with a decimal comma, or no C library found) the row is flagged and Python's
#    float parses it.
#
# Either way the value equals Python's float(text) (tests check this on random and
# hard cases).


def _find_strtod():
    candidates = []
    try:
        candidates.append(ctypes.CDLL(None))
    except (OSError, TypeError):  # pragma: no cover - Windows
        pass
    for name in (ctypes.util.find_library("c"), "ucrtbase", "msvcrt"):
        if name:
            try:
                candidates.append(ctypes.CDLL(name))
            except OSError:
                pass
    for lib in candidates:
        func = getattr(lib, "strtod", None)
        if func is not None:
            func.restype = ctypes.c_double
            func.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
            return func
    return None  # pragma: no cover


def _register_strtod():
    """Make the C library's strtod callable from compiled code as ``emseg_table_strtod``.

    The symbol is looked up by name when a (cached) kernel is linked, so it is defined
    before any kernel is compiled or loaded; without a C library it is a stub that the
    kernels never call.
    """
    import llvmlite.binding as llvm

    func = _find_strtod()
    if func is not None:
        try:
            ok = func(b"0.1", None) == 0.1
        except Exception:  # pragma: no cover
            ok = False
        if ok:
            llvm.add_symbol("emseg_table_strtod", ctypes.cast(func, ctypes.c_void_p).value)
            return func
    stub = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_void_p, ctypes.c_void_p)(  # pragma: no cover
        lambda ptr, end: math.nan
    )
    _register_strtod.stub = stub  # pragma: no cover - keep it alive
    llvm.add_symbol("emseg_table_strtod", ctypes.cast(stub, ctypes.c_void_p).value)  # pragma: no cover
    return None  # pragma: no cover


_STRTOD = _register_strtod()


def _use_strtod():
    """True when the C strtod reads '.' decimals (it follows the LC_NUMERIC locale)."""
    return _STRTOD is not None and locale.localeconv().get("decimal_point", ".") == "."


@intrinsic
def _strtod(typingctx, address, end_address):
    """``strtod((char *) address, (char **) end_address)``."""
    sig = types.float64(types.uintp, types.uintp)

    def codegen(context, builder, signature, args):
        char_p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.DoubleType(), [char_p, char_p.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "emseg_table_strtod")
        return builder.call(
            fn,
            [builder.inttoptr(args[0], char_p), builder.inttoptr(args[1], char_p.as_pointer())],
        )

    return sig, codegen


@intrinsic
def _mul_hi_lo(typingctx, a, b):
    """The 128-bit product of two uint64: (high 64 bits, low 64 bits)."""
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i128 = ir.IntType(128)
        i64 = ir.IntType(64)
        prod = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        hi = builder.trunc(builder.lshr(prod, ir.Constant(i128, 64)), i64)
        lo = builder.trunc(prod, i64)
        return context.make_tuple(builder, signature.return_type, (hi, lo))

    return sig, codegen


@intrinsic
def _leading_zeros(typingctx, a):
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


@intrinsic
def _bits_to_float(typingctx, a):
    sig = types.float64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


def _powers_of_five():
    """128-bit significands of 5**q, q = -342..308 (Lemire's table, as Rust generates it)."""
    hi, lo = [], []
    for q in range(-342, 0):
        power5 = 5**-q
        z = (power5 - 1).bit_length()  # the least z with 2**z >= 5**-q
        if q >= -27:
            c = 2 ** (z + 127) // power5 + 1
        else:
            c = 2 ** (2 * z + 128) // power5 + 1
            while c >= 1 << 128:
                c //= 2
        hi.append(c >> 64)
        lo.append(c & 0xFFFFFFFFFFFFFFFF)
    for q in range(0, 309):
        power5 = 5**q
        while power5 < 1 << 127:
            power5 *= 2
        while power5 >= 1 << 128:
            power5 //= 2
        hi.append(power5 >> 64)
        lo.append(power5 & 0xFFFFFFFFFFFFFFFF)
    return np.array(hi, dtype=np.uint64), np.array(lo, dtype=np.uint64)


_POW5_HI, _POW5_LO = _powers_of_five()
_POW10 = np.array([10.0**i for i in range(23)])
_QUOTE, _NL, _SPACE, _CR = 34, 10, 32, 13
# statuses of a parsed cell
_NUMBER, _MISSING, _BAD, _PYTHON = 0, 1, 2, 3
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_MASK_9 = np.uint64(0x1FF)
_HIDDEN = np.uint64(1 << 52)
_SIGN = np.uint64(1 << 63)


@njit(cache=True, inline="always")
def _eisel_lemire(mant, q, negative):
    """(value, True) for mant * 10**q, or (0, False) when the algorithm cannot tell.

    ``mant`` is non-zero; subnormal results are left to strtod.
    """
    if q < -342 or q > 308:
        return 0.0, False
    lz = _leading_zeros(mant)
    w = mant << lz
    index = q + 342
    hi, lo = _mul_hi_lo(w, _POW5_HI[index])
    if (hi & _MASK_9) == _MASK_9:
        second_hi, _ = _mul_hi_lo(w, _POW5_LO[index])
        lo = lo + second_hi
        if second_hi > lo:
            hi = hi + _U1
    if lo == _ALL_ONES and not (-27 <= q <= 55):
        return 0.0, False
    upperbit = hi >> np.uint64(63)
    shift = upperbit + np.uint64(9)
    mantissa = hi >> shift
    power2 = ((q * 217706) >> 16) + 63 + np.int64(upperbit) - np.int64(lz) + 1023
    if power2 <= 0:
        return 0.0, False
    if (
        lo <= _U1 and -4 <= q <= 23 and (mantissa & np.uint64(3)) == _U1
        and (mantissa << shift) == hi
    ):
        mantissa &= ~_U1
    mantissa += mantissa & _U1
    mantissa >>= _U1
    if mantissa >= (_HIDDEN << _U1):
        mantissa = _HIDDEN
        power2 += 1
    mantissa &= ~_HIDDEN
    if power2 >= 0x7FF:
        return (-np.inf if negative else np.inf), True
    bits = mantissa | (np.uint64(power2) << np.uint64(52))
    if negative:
        bits |= _SIGN
    return _bits_to_float(bits), True


@njit(cache=True, inline="always")
def _lex_number(buf, i, b):
    """Read a number's syntax from ``buf[i:b]`` as far as it goes.

    Returns (negative, significant digits (at most 19), power of ten, digit count,
    truncated (more than 19 significant digits), stop, exponent ok).
    """
    negative = False
    if i < b and (buf[i] == 45 or buf[i] == 43):
        negative = buf[i] == 45
        i += 1
    mant = _U0
    n_sig = 0
    exp10 = 0
    n_digits = 0
    truncated = False
    while i < b and 48 <= buf[i] <= 57:
        n_digits += 1
        if n_sig < 19:
            mant = mant * np.uint64(10) + np.uint64(buf[i] - 48)
            if mant != _U0:
                n_sig += 1
        else:
            exp10 += 1
            truncated = True
        i += 1
    if i < b and buf[i] == 46:
        i += 1
        while i < b and 48 <= buf[i] <= 57:
            n_digits += 1
            if n_sig < 19:
                mant = mant * np.uint64(10) + np.uint64(buf[i] - 48)
                if mant != _U0:
                    n_sig += 1
                exp10 -= 1
            else:
                truncated = True
            i += 1
    exponent_ok = True
    if n_digits > 0 and i < b and (buf[i] == 101 or buf[i] == 69):
        i += 1
        exp_negative = False
        if i < b and (buf[i] == 45 or buf[i] == 43):
            exp_negative = buf[i] == 45
            i += 1
        if i == b or not (48 <= buf[i] <= 57):
            exponent_ok = False
        e = 0
        while i < b and 48 <= buf[i] <= 57:
            if e < 100000:
                e = e * 10 + (buf[i] - 48)
            i += 1
        exp10 += -e if exp_negative else e
    return negative, mant, exp10, n_digits, truncated, i, exponent_ok


@njit(cache=True, inline="always")
def _make_float(negative, mant, exp10, truncated, a, b, base, end_slot, use_strtod):
    """(value, status) of the lexed number ``buf[a:b]``."""
    if not truncated:
        if mant == _U0:
            return (-0.0 if negative else 0.0), _NUMBER
        if mant <= np.uint64(9007199254740992) and -22 <= exp10 <= 22:
            value = float(mant)
            if exp10 >= 0:
                value = value * _POW10[exp10]
            else:
                value = value / _POW10[-exp10]
            return (-value if negative else value), _NUMBER
        value, ok = _eisel_lemire(mant, exp10, negative)
        if ok:
            return value, _NUMBER
    if not use_strtod:
        return np.nan, _PYTHON
    value = _strtod(base + np.uintp(a), end_slot.ctypes.data)
    if end_slot[0] != base + np.uintp(b):  # pragma: no cover - the syntax was checked
        return np.nan, _PYTHON
    return value, _NUMBER


@njit(cache=True, inline="always")
def _is_missing(buf, a, b):
    n = b - a
    if n == 0:
        return True
    if n == 2:
        return buf[a] == 78 and buf[a + 1] == 65  # NA
    if n == 3:
        c0, c1, c2 = buf[a], buf[a + 1], buf[a + 2]
        if c0 == 78 and c1 == 47 and c2 == 65:  # N/A
            return True
        if c0 == 78 and c1 == 97 and c2 == 78:  # NaN
            return True
        if c0 == 110 and c1 == 97 and c2 == 110:  # nan
            return True
        if c0 == 78 and c1 == 65 and c2 == 78:  # NAN
            return True
    return False


@njit(cache=True)
def _parse_cell(buf, a, b, base, end_slot, use_strtod):
    """(value, status) of the trimmed cell ``buf[a:b]``."""
    if _is_missing(buf, a, b):
        return np.nan, _MISSING
    negative, mant, exp10, n_digits, truncated, stop, exponent_ok = _lex_number(buf, a, b)
    if n_digits == 0 or not exponent_ok or stop != b:
        return np.nan, _BAD
    return _make_float(negative, mant, exp10, truncated, a, b, base, end_slot, use_strtod)


@njit(cache=True, inline="always")
def _scan_field(buf, pos, end, delim):
    """One field from ``pos``: (content start, content end, stop, quote_error).

    ``stop`` is the index of the delimiter or newline that ends the field, or ``end``.
    Spaces (and a CR before the newline) around the content are dropped; a field that
    starts with a quote runs to the closing quote, with ``""`` for a quote inside.
    """
    a = pos
    while a < end and buf[a] == _SPACE:
        a += 1
    if a < end and buf[a] == _QUOTE:
        q = a + 1
        start = q
        while True:
            if q >= end or buf[q] == _NL:
                return start, q, q, True
            if buf[q] == _QUOTE:
                if q + 1 < end and buf[q + 1] == _QUOTE:
                    q += 2
                    continue
                break
            q += 1
        stop_content = q
        q += 1
        while q < end and (buf[q] == _SPACE or buf[q] == _CR):
            q += 1
        if q < end and buf[q] != delim and buf[q] != _NL:
            while q < end and buf[q] != _NL:
                q += 1
            return start, stop_content, q, True
        return start, stop_content, q, False
    q = a
    while q < end and buf[q] != delim and buf[q] != _NL:
        q += 1
    c = q
    while c > a and (buf[c - 1] == _SPACE or buf[c - 1] == _CR):
        c -= 1
    return a, c, q, False


@njit(cache=True, inline="always")
def _fast_cell(buf, pos, end, delim, base, end_slot, use_strtod):
    """A plain number right at ``pos`` ended by the delimiter, a newline or ``end``:
    (value, status, stop); status -1 when the cell needs the general path."""
    negative, mant, exp10, n_digits, truncated, stop, exponent_ok = _lex_number(buf, pos, end)
    if n_digits == 0 or not exponent_ok:
        return np.nan, -1, pos
    q = stop
    if q < end and buf[q] == _CR:
        q += 1
    if q < end and buf[q] != delim and buf[q] != _NL:
        return np.nan, -1, pos
    if q > stop and q < end and buf[q] != _NL:  # a CR inside a line
        return np.nan, -1, pos
    value, status = _make_float(
        negative, mant, exp10, truncated, pos, stop, base, end_slot, use_strtod
    )
    return value, status, q


@njit(parallel=True, cache=True)
def _parse_body(
    buf, bounds, row0, delim, n_cols, colmap, spancol, X, spans, row_starts,
    first_num, first_bad, problems, fallback, use_strtod,
):
    """Parse every data line; one chunk of lines per task.

    Per chunk, record the first row where each column holds a number
    (``first_num``) or a non-number (``first_bad``), and the first ragged row with
    its field count and the first row with a quoting error (``problems``).
    """
    base = np.uintp(buf.ctypes.data)
    for c in prange(bounds.shape[0] - 1):
        end_slot = np.zeros(1, dtype=np.uintp)
        end = bounds[c + 1]
        p = bounds[c]
        r = row0[c]
        while p < end:
            row_starts[r] = p
            j = 0
            pos = p
            quote_error = False
            while True:
                k = colmap[j] if j < n_cols else -1
                s = spancol[j] if j < n_cols else -1
                status = -1
                value = np.nan
                q = pos
                if k >= 0 and s < 0:
                    value, status, q = _fast_cell(buf, pos, end, delim, base, end_slot, use_strtod)
                if status < 0:
                    a, b, q, bad_quote = _scan_field(buf, pos, end, delim)
                    if bad_quote:
                        quote_error = True
                    if k >= 0:
                        value, status = _parse_cell(buf, a, b, base, end_slot, use_strtod)
                    if s >= 0:
                        spans[r, s, 0] = a
                        spans[r, s, 1] = b
                if k >= 0:
                    X[r, k] = value
                    if status == _NUMBER or status == _PYTHON:
                        if first_num[c, j] == _NONE:
                            first_num[c, j] = r
                        if status == _PYTHON:
                            fallback[r] = 1
                    elif status == _BAD:
                        if first_bad[c, j] == _NONE:
                            first_bad[c, j] = r
                j += 1
                if q >= end or buf[q] == _NL:
                    break
                pos = q + 1
            if quote_error and problems[c, 2] == _NONE:
                problems[c, 2] = r
            if j != n_cols and problems[c, 0] == _NONE:
                problems[c, 0] = r
                problems[c, 1] = j
            for jj in range(j, n_cols):  # cells of a short row
                if colmap[jj] >= 0:
                    X[r, colmap[jj]] = np.nan
                if spancol[jj] >= 0:
                    spans[r, spancol[jj], 0] = q
                    spans[r, spancol[jj], 1] = q
            p = q + 1
            r += 1


@njit(cache=True)
def _field_spans(buf, starts, delim, want, out):
    """For the lines starting at ``starts``: ``out[i, want[j]] = (start, end)`` of the
    content of field ``j`` wherever ``want[j] >= 0`` (an empty span past a short line)."""
    end = buf.shape[0]
    for i in range(starts.shape[0]):
        pos = starts[i]
        j = 0
        q = pos
        while True:
            a, b, q, _ = _scan_field(buf, pos, end, delim)
            if j < want.shape[0] and want[j] >= 0:
                out[i, want[j], 0] = a
                out[i, want[j], 1] = b
            j += 1
            if q >= end or buf[q] == _NL:
                break
            pos = q + 1
        for jj in range(j, want.shape[0]):
            if want[jj] >= 0:
                out[i, want[jj], 0] = q
                out[i, want[jj], 1] = q


@njit(cache=True)
def _gather(buf, spans, width):
    out = np.zeros((spans.shape[0], width), dtype=np.uint8)
    for i in range(spans.shape[0]):
        a = spans[i, 0]
        for t in range(spans[i, 1] - a):
            out[i, t] = buf[a + t]
    return out


# =========================================================================== writing


def _check_rows(path, name, arr, n_rows, ndim):
    if arr.ndim not in ndim:
        raise EmsegError(f"cannot write {path}: {name} has shape {arr.shape}")
    if arr.shape[0] != n_rows:
        raise EmsegError(
            f"cannot write {path}: {name} has {arr.shape[0]} rows, expected {n_rows}"
        )


def _as_int_labels(path, name, labels):
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise EmsegError(f"cannot write {path}: {name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise EmsegError(f"cannot write {path}: {name} is empty")
    if not np.issubdtype(arr.dtype, np.integer):
        if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
            raise EmsegError(f"cannot write {path}: {name} must be integers, got {arr.dtype}")
    return arr.astype(np.int64)


def _as_probabilities(path, name, proba, n_rows):
    arr = np.asarray(proba, dtype=np.float64)
    _check_rows(path, name, arr, n_rows, (1, 2))
    if not np.isfinite(arr).all():
        raise EmsegError(f"cannot write {path}: {name} contains NaN or infinity")
    if arr.size and (arr.min() < -1e-9 or arr.max() > 1 + 1e-9):
        raise EmsegError(
            f"cannot write {path}: {name} must be probabilities in [0, 1], got values "
            f"from {arr.min():g} to {arr.max():g}"
        )
    return arr


def write_labels(path, labels, proba=None, *, overwrite=False):
    """Write labels.csv: ``row,label,p0,...,p{K-1}`` (no ``p`` columns without ``proba``).

    ``row`` is the data row number, from 0 (see "Row numbering" in the module notes);
    probabilities are written with 6 decimals.
    """
    path = os.fspath(path)
    labels = _as_int_labels(path, "labels", labels)
    n = labels.shape[0]
    names = ["row", "label"]
    if proba is not None:
        proba = _as_probabilities(path, "proba", proba, n)
        if proba.ndim == 1:
            proba = proba[:, None]
        names += [f"p{k}" for k in range(proba.shape[1])]
    _write_rows(path, names, labels[:, None], proba, None, overwrite)


def write_states(path, states, posteriors=None, *, sequence_ids=None, lengths=None,
                 overwrite=False):
    """Write an HMM decode: ``row[,sequence],state,posterior[,p0,...,p{K-1}]``.

    ``posteriors`` is either the (N,) probability of each decoded state, or the (N, K)
    posterior of every state (then ``posterior`` is that of the decoded state and the
    ``p`` columns follow). With ``sequence_ids`` and ``lengths`` (as in a
    :class:`Table`) a ``sequence`` column gives each row's sequence id.
    """
    path = os.fspath(path)
    states = _as_int_labels(path, "states", states)
    n = states.shape[0]
    names = ["row"]
    seq = None
    if (sequence_ids is None) != (lengths is None):
        raise EmsegError(f"cannot write {path}: give both sequence_ids and lengths, or neither")
    if sequence_ids is not None:
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.ndim != 1 or len(sequence_ids) != lengths.size or lengths.sum() != n:
            raise EmsegError(
                f"cannot write {path}: {len(sequence_ids)} sequence ids with lengths "
                f"summing to {int(lengths.sum())} do not match {n} states"
            )
        seq = (list(sequence_ids), np.repeat(np.arange(lengths.size), lengths))
        names.append("sequence")
    names.append("state")
    ints = states[:, None]
    floats = None
    if posteriors is not None:
        post = _as_probabilities(path, "posteriors", posteriors, n)
        names.append("posterior")
        if post.ndim == 1:
            floats = post[:, None]
        else:
            if (states < 0).any() or (states >= post.shape[1]).any():
                raise EmsegError(
                    f"cannot write {path}: states must be in 0..{post.shape[1] - 1} to "
                    "match the posteriors' columns"
                )
            own = post[np.arange(n), states]
            floats = np.concatenate([own[:, None], post], axis=1)
            names += [f"p{k}" for k in range(post.shape[1])]
    _write_rows(path, names, ints, floats, seq, overwrite)


def _csv_text(value):
    text = str(value)
    if any(c in text for c in ',"\n\r') or text != text.strip():
        text = '"' + text.replace('"', '""') + '"'
    return text


def _write_rows(path, names, ints, floats, seq, overwrite):
    """Write ``row,[sequence,]ints...,floats...`` lines in blocks.

    ``ints`` (N, a) int64, ``floats`` (N, b) or None; ``seq`` None or (id texts, the
    sequence index of each row).
    """
    n = ints.shape[0]
    if floats is None:
        floats = np.empty((n, 0))
    floats = np.ascontiguousarray(floats, dtype=np.float64)
    if seq is None:
        id_bytes, id_offsets, row_seq = np.empty(0, np.uint8), np.zeros(1, np.int64), None
    else:
        encoded = [_csv_text(t).encode("utf-8") for t in seq[0]]
        id_bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        id_offsets = np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(np.int64)
        row_seq = seq[1]
    header = ",".join(names) + "\n"
    with writing(path, overwrite) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode())
            for start in range(0, n, _WRITE_BLOCK):
                stop = min(n, start + _WRITE_BLOCK)
                f.write(_format_block(start, stop, ints, floats, id_bytes, id_offsets, row_seq))


def _format_block(start, stop, ints, floats, id_bytes, id_offsets, row_seq):
    block_seq = np.empty(0, np.int64) if row_seq is None else row_seq[start:stop]
    out = _format_lines(
        start, np.ascontiguousarray(ints[start:stop]), floats[start:stop], block_seq,
        id_bytes, id_offsets,
    )
    return out.tobytes()


@njit(cache=True)
def _format_lines(first_row, ints, floats, row_seq, id_bytes, id_offsets):
    """CSV lines: the row number, the sequence id (when ``row_seq`` is not empty), the
    integers, then the numbers with 6 decimals (|x| < 1e12)."""
    n, a = ints.shape
    b = floats.shape[1]
    longest = 0
    for s in range(id_offsets.shape[0] - 1):
        longest = max(longest, id_offsets[s + 1] - id_offsets[s])
    out = np.empty(n * ((a + b + 1) * 24 + longest + 2), dtype=np.uint8)
    digits = np.empty(24, dtype=np.uint8)
    p = 0
    for i in range(n):
        for j in range(a + b + 1):
            if j > 0:
                out[p] = 44
                p += 1
            if j == 0:
                scaled = np.int64(first_row + i)
                decimals = 0
            elif j <= a:
                scaled = ints[i, j - 1]
                decimals = 0
            else:
                x = floats[i, j - 1 - a]
                scaled = np.int64(np.floor(abs(x) * 1e6 + 0.5))
                if x < 0 and scaled != 0:
                    scaled = -scaled
                decimals = 6
            if scaled < 0:
                out[p] = 45
                p += 1
                scaled = -scaled
            nd = 0
            while True:
                digits[nd] = 48 + scaled % 10
                scaled //= 10
                nd += 1
                if scaled == 0 and nd > decimals:
                    break
            for t in range(nd - 1, -1, -1):
                out[p] = digits[t]
                p += 1
                if t == decimals and decimals > 0:
                    out[p] = 46
                    p += 1
            if j == 0 and row_seq.shape[0] > 0:
                out[p] = 44
                p += 1
                s = row_seq[i]
                for t in range(id_offsets[s], id_offsets[s + 1]):
                    out[p] = id_bytes[t]
                    p += 1
        out[p] = 10
        p += 1
    return out[:p]


def check_imputed_target(path, table):
    """Refuse an output name whose extension says another format than the one
    :func:`write_imputed` writes for ``table`` (its own): ``.npy`` bytes in ``out.csv``,
    or a CSV's text in ``out.npy``, would be unreadable under that name."""
    path = os.fspath(path)
    wants_npy = path.lower().endswith(".npy")
    if wants_npy and table.is_text:
        raise EmsegError(
            f"cannot write {path}: {table.path} is a text table and is written back as "
            "text; give the output a .csv or .tsv name"
        )
    if not wants_npy and not table.is_text:
        raise EmsegError(
            f"cannot write {path}: {table.path} is a .npy array and is written back as "
            ".npy; give the output a .npy name"
        )


def write_imputed(path, table, X_filled, *, overwrite=False):
    """Write ``table``'s file again with only its missing feature cells filled.

    ``X_filled`` is ``table.X`` with the NaN filled (``GaussianMixture.impute``). For a
    text table every other byte of the file is kept: header, other columns, column
    order, delimiter, quotes, line endings; a filled cell holds the shortest text that
    reads back as the same float64 (``repr``). A .npy table is written as .npy with the
    feature columns filled, in its own dtype when that is a float type. The output's
    extension must agree (:func:`check_imputed_target`).
    """
    path = os.fspath(path)
    check_imputed_target(path, table)
    filled = np.asarray(X_filled, dtype=np.float64)
    if filled.shape != table.X.shape:
        raise EmsegError(
            f"cannot write {path}: the filled values have shape {filled.shape}, the "
            f"table {table.X.shape}"
        )
    missing = np.isnan(table.X)
    observed = ~missing
    if not np.array_equal(filled[observed], table.X[observed]):
        raise EmsegError(
            f"cannot write {path}: the filled values differ from the table's observed "
            "values; pass the table's X with only its NaN filled"
        )
    if not np.isfinite(filled[missing]).all():
        raise EmsegError(f"cannot write {path}: some missing values are still NaN or infinite")
    if not table.is_text:
        arr = np.array(table.raw, copy=True)
        if arr.ndim == 1:
            arr = arr[:, None]
        if missing.any():
            if not np.issubdtype(arr.dtype, np.floating):  # pragma: no cover - ints have no NaN
                arr = arr.astype(np.float64)
            for j, col in enumerate(table.feature_index):
                arr[missing[:, j], col] = filled[missing[:, j], j]
        arr = arr.reshape(np.shape(table.raw))
        with writing(path, overwrite) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr, allow_pickle=False)
        return
    raw = table.raw
    rows, cols = np.nonzero(missing)
    pieces = []
    if rows.size:
        buf = np.frombuffer(raw, dtype=np.uint8)
        want = np.full(len(table.header), -1, dtype=np.int64)
        want[table.feature_index] = np.arange(len(table.feature_index))
        unique_rows = np.unique(rows)
        spans = np.empty((unique_rows.size, len(table.feature_index), 2), dtype=np.int64)
        _field_spans(buf, table.row_starts[unique_rows], ord(table.delimiter), want, spans)
        which = np.searchsorted(unique_rows, rows)
        starts = spans[which, cols, 0]
        order = np.argsort(starts, kind="stable")  # file order (features may be reordered)
        starts = starts[order]
        ends = spans[which, cols, 1][order]
        values = filled[rows, cols][order]
        pos = 0
        for a, b, v in zip(starts.tolist(), ends.tolist(), values.tolist()):
            pieces.append(raw[pos:a])
            pieces.append(repr(v).encode())
            pos = b
        pieces.append(raw[pos:])
    else:
        pieces.append(raw)
    with writing(path, overwrite) as tmp:
        with open(tmp, "wb") as f:
            for piece in pieces:
                f.write(piece)
