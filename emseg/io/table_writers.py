"""Results of ``emseg gmm`` and ``emseg hmm`` as files: labels, decoded states, imputed tables.

:func:`write_labels`, :func:`write_states` and :func:`write_imputed` write through
:func:`emseg.io.atomic.atomic_output`, so an error never leaves half a file, and refuse to
replace an existing file unless ``overwrite=True``. Rows are numbered as in
:mod:`emseg.io.tables` ("Row numbering"), which reads the tables and re-exports these
writers. CSV lines are formatted a block of rows at a time: by Python for a small
table (so writing the labels of a small fit loads no numba), by the compiled kernel of
:mod:`emseg.io._table_format` for a large one; both give the same bytes.
"""

import os

import numpy as np

from .._shared.errors import EmsegError
from .atomic import writing

__all__ = ["check_imputed_target", "write_imputed", "write_labels", "write_states"]

_WRITE_BLOCK = 65536  # rows formatted per block
_PYTHON_ROWS = 20000  # up to this many rows, lines are formatted without numba


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
    :class:`~emseg.io.tables.Table`) a ``sequence`` column gives each row's sequence id.
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
        encoded, row_seq = [], None
    else:
        encoded = [_csv_text(t).encode("utf-8") for t in seq[0]]
        row_seq = seq[1]
    header = ",".join(names) + "\n"
    with writing(path, overwrite) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode())
            for start in range(0, n, _WRITE_BLOCK):
                stop = min(n, start + _WRITE_BLOCK)
                f.write(_format_block(start, stop, ints, floats, encoded, row_seq,
                                      n <= _PYTHON_ROWS))


def _format_block(start, stop, ints, floats, encoded, row_seq, python):
    """The CSV lines of rows ``start:stop``: the row number, the sequence id (with
    ``row_seq``), the integers, then the numbers with 6 decimals (|x| < 1e12, rounded
    half away from zero from ``|x| * 1e6``)."""
    block_seq = None if row_seq is None else row_seq[start:stop]
    block_ints = np.ascontiguousarray(ints[start:stop])
    if python:
        return _format_python(start, block_ints, floats[start:stop], block_seq, encoded)
    from ._table_format import format_lines

    id_bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    id_offsets = np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(np.int64)
    out = format_lines(start, block_ints, floats[start:stop],
                       np.empty(0, np.int64) if block_seq is None else block_seq,
                       id_bytes, id_offsets)
    return out.tobytes()


def _format_python(first_row, ints, floats, row_seq, encoded):
    """:func:`emseg.io._table_format.format_lines` in Python, for a few rows."""
    scaled = np.floor(np.abs(floats) * 1e6 + 0.5).astype(np.int64)
    sign = np.where((floats < 0) & (scaled != 0), "-", "")
    whole, frac = np.divmod(scaled, 1_000_000)
    texts = [[f"{s}{w}.{f:06d}" for s, w, f in zip(*cells)]
             for cells in zip(sign.tolist(), whole.tolist(), frac.tolist())]
    ids = [e.decode("utf-8") for e in encoded]
    lines = []
    for i, (row_ints, row_floats) in enumerate(zip(ints.tolist(), texts)):
        cells = [str(first_row + i)]
        if row_seq is not None:
            cells.append(ids[row_seq[i]])
        cells += [str(v) for v in row_ints]
        cells += row_floats
        lines.append(",".join(cells) + "\n")
    return "".join(lines).encode("utf-8")


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
        unique_rows = np.unique(rows)
        spans = table.feature_spans(unique_rows)
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
