"""The :class:`Table` that :func:`emseg.io.tables.read_table` returns, and how it finds
the lines and cells of the file it was read from.

Private to the table reader; ``Table`` is public as :class:`emseg.io.tables.Table`.
"""

import os
from dataclasses import dataclass, field

import numpy as np

from .._shared.errors import EmsegError
from ._table_text import field_spans


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
    body_start : int
        For text: the byte offset in ``raw`` of the first data line.
    skipped : list of str
        Columns left out of the default choice because they hold text.
    read_seconds : float
        Wall time :func:`read_table` took, for reporting load time apart from fitting.
    """

    path: str
    X: np.ndarray
    columns: list
    header: list
    feature_index: list
    delimiter: str | None
    _raw: object = field(repr=False)
    body_start: int = 0
    sequence_col: str | None = None
    sequence_ids: list | None = None
    lengths: np.ndarray | None = None
    categorical: str | None = None
    codes: np.ndarray | None = None
    symbols: list | None = None
    skipped: list = field(default_factory=list)
    read_seconds: float = 0.0
    _row_starts: np.ndarray | None = field(default=None, repr=False)
    _stamp: tuple | None = field(default=None, repr=False)

    @property
    def raw(self):
        """The whole file as read (see the class notes). A large text table is read
        through a memory map and its bytes are loaded again on first use, after
        checking that the file has not changed since (size and modification time)."""
        if self._raw is None and self._stamp is not None:
            self._raw = _read_again(self.path, self._stamp)
        return self._raw

    @property
    def n_rows(self):
        return self.X.shape[0]

    @property
    def is_text(self):
        return self.delimiter is not None

    @property
    def row_starts(self):
        """For text: the byte offset in ``raw`` where each data row's line starts
        (int64, computed on first use); None for .npy."""
        if not self.is_text:
            return None
        if self._row_starts is None:
            self._row_starts = line_starts(self.raw, self.body_start, self.n_rows)
        return self._row_starts

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
        return line(self.raw, self.row_starts, int(row)).decode("utf-8", errors="replace")

    def feature_spans(self, rows):
        """Where the feature cells of data rows ``rows`` (int array) are in ``raw``:
        int64 (len(rows), n_features, 2), the byte offsets (start, end) of each cell's
        content (without quotes or surrounding blanks), features in ``columns`` order.
        For text tables only (:func:`emseg.io.tables.write_imputed` rewrites these)."""
        if not self.is_text:
            raise EmsegError(f"{self.path} is a .npy array; it has no text cells")
        spans = np.empty((len(rows), len(self.feature_index), 2), dtype=np.int64)
        for i, row in enumerate(np.asarray(rows).tolist()):
            start = int(self.row_starts[row])
            cells = field_spans(self.path, line(self.raw, self.row_starts, row),
                                self.delimiter, row + 2)
            for j, col in enumerate(self.feature_index):
                a, b, _ = cells[col]
                spans[i, j] = (start + a, start + b)
        return spans


def line_starts(data, body_start, n_rows):
    """The byte offsets where the first ``n_rows`` data lines of ``data`` start."""
    buf = np.frombuffer(data, dtype=np.uint8, offset=body_start)
    newlines = np.flatnonzero(buf == 10)[: n_rows - 1]
    return np.concatenate([[0], newlines + 1]).astype(np.int64) + body_start


def line(data, row_starts, row):
    """The bytes of data row ``row`` of the file's bytes ``data``, without the line end."""
    start = int(row_starts[row])
    stop = data.find(b"\n", start)
    return data[start : len(data) if stop < 0 else stop].rstrip(b"\r")


def stamp_of(path):
    """``(size, modification time in ns)`` of the file at ``path``."""
    info = os.stat(path)
    return (info.st_size, info.st_mtime_ns)


def _read_again(path, stamp):
    try:
        same = stamp_of(path) == stamp
    except OSError:
        same = False
    data = read_bytes(path) if same else None
    if data is None or len(data) != stamp[0] or stamp_of(path) != stamp:
        raise EmsegError(f"{path} has changed since it was read; run the command again")
    return data


def in_threads(func, items):
    """``[func(item) for item in items]``, computed on a thread per CPU (at most four)
    when there are several: for numpy work on large arrays, which releases the GIL."""
    items = list(items)
    try:
        n_threads = min(len(os.sched_getaffinity(0)), 4, len(items))
    except AttributeError:  # pragma: no cover - not on Linux
        n_threads = min(os.cpu_count() or 1, 4, len(items))
    if n_threads <= 1:
        return [func(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n_threads) as pool:
        return list(pool.map(func, items))


def read_bytes(path):
    """The bytes of the file at ``path``; an unreadable file is an :class:`EmsegError`."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise EmsegError(f"cannot read {path}: {exc.strerror or exc}") from None
