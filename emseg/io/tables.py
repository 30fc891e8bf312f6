"""Tables for ``emseg gmm`` and ``emseg hmm``: read CSV, TSV and .npy, write results.

This is the io stage for tabular data: it turns a file into a feature matrix (and the
sequence lengths or symbol codes an HMM needs), and results into files. It fits
nothing and never prints.

Reading
    :func:`read_table` reads a text table with a header row (CSV, TSV, or semicolon- or
    bar-separated) or a ``.npy`` array into a :class:`Table`. Missing cells are the
    empty cell and pandas' default missing markers (``NA``, ``N/A``, ``NaN``, ``nan``,
    ``null``, ``NULL``, ``None``, ``#N/A``, ...: :data:`MISSING_TOKENS`); they are NaN
    in ``Table.X``. What a cell, a number and a missing cell are is written down in
    :mod:`emseg.io._table_text`. Text is read by the standard library's ``csv`` module
    (``_table_text``, the reader of reference, any size) or, for a file of
    :data:`LARGE_BYTES` or more when pandas 3.1 or later is installed (the ``tables``
    extra), by pandas' C reader (``_table_pandas``), which hands back any table it
    would not read exactly as the reference does. Values equal Python's ``float`` of
    the text.
    This module checks what they found and says what is wrong in one line; the
    :class:`Table` it returns is defined in ``_table_data``.

Numeric columns
    A column is numeric when every one of its non-missing cells is a number. By default
    every numeric column is a feature; a column of text (no number in it) is left out;
    a column that holds numbers and other text (``?``, ``-``, ``1_000`` or a typo among
    numbers) is an error naming the first such cell, never silently dropped.

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

import mmap
import os
import time
import numpy as np

from .._shared.errors import EmsegError
from . import _table_pandas, _table_text
from ._table_header import all_numbers, read_header
from ._table_data import Table, in_threads, line, line_starts, read_bytes, stamp_of
from ._table_text import MISSING_TOKENS, field_spans
from .atomic import reason
from .table_writers import check_imputed_target, write_imputed, write_labels, write_states

__all__ = [
    "LARGE_BYTES",
    "MISSING_TOKENS",
    "Table",
    "check_imputed_target",
    "read_table",
    "write_imputed",
    "write_labels",
    "write_states",
]

#: a text table of this many bytes or more is read by pandas when it is installed
#: (measured in benchmarks/README.md: below it the csv module is done before pandas
#: is imported)
LARGE_BYTES = 10 << 20
_GUESS_BYTES = 1 << 16  # the top of a large file that says which columns are text
_COPY_ROWS = 8192  # rows copied into X at a time


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
        and tabs around fields are ignored.
    columns : list of str, optional
        The feature columns, in this order (an empty list: none, for a categorical
        column alone). Default: every numeric column except
        ``sequence_col``, ``categorical`` and columns with an empty name (such as the
        index column pandas writes); no column when ``categorical`` is given. A column
        is numeric when every non-missing cell is a number; a column of text is left
        out (named in ``Table.skipped``); a column holding numbers and other text is
        an error naming the first such cell.
    sequence_col : str, optional
        The column of sequence ids (any text): see "Sequences" in the module notes.
    categorical : str, optional
        A column of symbols (any text) to code as integers for a categorical HMM.

    Raises
    ------
    EmsegError
        With one line naming the file and the problem: missing, empty, binary or not
        UTF-8; a header only, a header that looks like data, duplicated names; ragged
        rows, blank lines or unclosed quotes (with the line); a column that is
        unknown, not numeric or mixes numbers with text (with the value and line),
        infinite or entirely missing; an unknown
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
        feature_index=list(features), delimiter=None, _raw=original,
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
    """A text table: read into memory, or for a large one that pandas will read,
    through a memory map (the bytes are loaded again only if they are needed, by
    :attr:`Table.raw`)."""
    if os.path.getsize(path) >= LARGE_BYTES and _table_pandas.available():
        try:
            with open(path, "rb") as f:
                stamp = stamp_of(path)
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise EmsegError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
                             ) from None
        try:
            table = _read_text_data(path, mapped, columns, sequence_col, categorical)
        finally:
            try:
                mapped.close()
            except BufferError:  # pragma: no cover - a view still held by a traceback
                pass
        table._raw, table._stamp = None, stamp
        return table
    return _read_text_data(path, read_bytes(path), columns, sequence_col, categorical)


def _read_text_data(path, data, columns, sequence_col, categorical):
    fast = len(data) >= LARGE_BYTES and _table_pandas.available()
    # pandas' path looks for NUL in the body (with the bytes it must look for); the
    # header, here
    header_end = data.find(b"\n") + 1 if fast else 0
    _check_not_binary(path, data, header_end or len(data))
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
    texts = [i for i in (seq_i, cat_i) if i is not None]
    n_rows, scans, codes = _parse(path, data, body_start, body_end, delimiter, n_cols,
                                  features, texts, default, fast)

    keep, skipped = [], []
    for col in features:
        scan = scans[col]
        name = header[col]
        if scan.values is not None:
            if scan.n_missing == n_rows:
                raise EmsegError(
                    f"column {name!r} of {path} has no value (every cell is empty or NA); "
                    "leave it out with --columns"
                )
            keep.append(col)
        elif default and not scan.has_number:
            skipped.append(name)  # a column of text: not a feature unless asked for
        else:
            row = scan.first_bad
            value = _cell_text(path, data, body_start, delimiter, row, col)
            raise EmsegError(_table_text.not_numeric_message(
                path, name, value, row, default, n_cols, scan.has_number))
    if default and not keep and categorical is None:
        raise EmsegError(
            f"{path} has no numeric column (columns {_list_names(header)}); "
            "choose columns with --columns"
        )
    for col in keep:
        if scans[col].first_inf is not None:
            row = scans[col].first_inf
            value = _cell_text(path, data, body_start, delimiter, row, col)
            raise EmsegError(
                f"column {header[col]!r} of {path} has an infinite value {value!r} "
                f"on line {row + 2}; remove or clip it"
            )
    X = _assemble(n_rows, [scans[col].values for col in keep])

    table = Table(
        path=path, X=X, columns=[header[i] for i in keep], header=header,
        feature_index=list(keep), delimiter=delimiter, _raw=data, body_start=body_start,
        skipped=skipped,
    )
    if seq_i is not None:
        found = _table_text.check_text_column(path, codes[seq_i], header[seq_i],
                                              "sequence id")
        change = np.flatnonzero(found.codes[1:] != found.codes[:-1]) + 1
        run_starts = np.concatenate([[0], change])
        ids = [found.vocab[c] for c in found.codes[run_starts].tolist()]
        _set_sequences(table, header[seq_i], ids, run_starts, lambda r: f"line {r + 2}")
    if cat_i is not None:
        found = _table_text.check_text_column(path, codes[cat_i], header[cat_i], "symbol")
        symbols = found.vocab
        numbers = all_numbers(symbols)
        if numbers is not None:  # numeric symbols sort as numbers: 2 before 10
            order = np.argsort(numbers, kind="stable")
        else:
            order = np.array(sorted(range(len(symbols)), key=symbols.__getitem__), dtype=np.int64)
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        table.categorical = header[cat_i]
        table.codes = rank[found.codes]
        table.symbols = [symbols[i] for i in order]
    return table


def _assemble(n_rows, columns):
    """The C-ordered matrix of ``columns`` (each a list of consecutive pieces), copied
    a block of rows at a time, which keeps the rows being written in the cache; the
    rows of a large table are shared among threads."""
    X = np.empty((n_rows, len(columns)), dtype=np.float64)
    columns = [pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
               for pieces in columns]
    block = _one_block(columns)
    if block is not None:  # the rows of one (features, rows) array: its transpose
        source = block.T

        def copy(rows):
            for start in range(rows.start, rows.stop, 4 * _COPY_ROWS):
                stop = min(start + 4 * _COPY_ROWS, rows.stop)
                X[start:stop] = source[start:stop]
    else:
        def copy(rows):
            for start in range(rows.start, rows.stop, _COPY_ROWS):
                stop = min(start + _COPY_ROWS, rows.stop)
                for j, values in enumerate(columns):
                    X[start:stop, j] = values[start:stop]

    if n_rows < 8 * _COPY_ROWS:
        copy(range(n_rows))
    else:
        half = n_rows // 2
        in_threads(copy, [range(0, half), range(half, n_rows)])
    return X


def _one_block(columns):
    """The C-ordered 2-D array whose rows are ``columns``, in order, or None."""
    block = columns[0].base if columns else None
    if not (isinstance(block, np.ndarray) and block.ndim == 2 and block.flags.c_contiguous
            and block.shape == (len(columns), columns[0].size)):
        return None
    start = block.__array_interface__["data"][0]
    for j, values in enumerate(columns):
        if values.base is not block or (values.__array_interface__["data"][0]
                                        != start + j * block.strides[0]):
            return None
    return block


def _parse(path, data, body_start, body_end, delimiter, n_cols, numeric, texts, default,
           fast):
    """``(n_rows, scans, codes)`` of the body: by pandas when ``fast`` (a large file,
    pandas installed) and it reads this table exactly, else by the csv module."""
    if fast:
        try:
            guess = _guess_text(path, data, body_start, body_end, delimiter, n_cols,
                                numeric) if default else set()
        except EmsegError:
            guess = None  # the reader of reference says what is wrong
        if guess is not None:
            found = _table_pandas.parse_body(path, data, body_start, body_end, delimiter,
                                             n_cols, numeric, texts, guess)
            if found is not None:
                return found
        _check_not_binary(path, data, len(data))
    return _table_text.parse_body(path, data, body_start, body_end, delimiter, n_cols,
                                  numeric, texts)


def _check_not_binary(path, data, stop):
    if data.find(b"\x00", 0, stop) >= 0:
        raise EmsegError(
            f"{path} is a binary file, not a text table; pass a CSV, TSV or .npy file"
        )


def _guess_text(path, data, body_start, body_end, delimiter, n_cols, numeric):
    """The columns among ``numeric`` with a cell that is not a number near the top."""
    stop = data.find(b"\n", body_start + _GUESS_BYTES, body_end)
    stop = body_end if stop < 0 else stop
    _, scans, _ = _table_text.parse_body(path, data, body_start, stop, delimiter, n_cols,
                                         numeric, [])
    return {j for j, scan in scans.items() if scan.values is None}


def _cell_text(path, data, body_start, delimiter, row, col):
    """The text of one cell (for messages), decoded leniently."""
    starts = line_starts(data, body_start, row + 1)
    text_line = line(data, starts, row)
    a, b, _ = field_spans(path, text_line, delimiter, row + 2)[col]
    text = text_line[a:b].decode("utf-8", errors="replace")
    return text if len(text) <= 60 else text[:57] + "..."


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
