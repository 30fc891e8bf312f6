"""Results of ``emseg gmm`` and ``emseg hmm`` as files: labels, decoded states, imputed tables.

:func:`write_labels`, :func:`write_states` and :func:`write_imputed` write through
:func:`emseg.io.atomic.atomic_output`, so an error never leaves half a file, and refuse to
replace an existing file unless ``overwrite=True``. Rows are numbered as in
:mod:`emseg.io.tables` ("Row numbering"), which reads the tables and re-exports these
writers. CSV lines are formatted by a compiled kernel, a block of rows at a time.
"""

import os

import numpy as np
from numba import njit

from .._shared.errors import EmsegError
from .atomic import writing

__all__ = ["check_imputed_target", "write_imputed", "write_labels", "write_states"]

_WRITE_BLOCK = 65536  # rows formatted per block


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
