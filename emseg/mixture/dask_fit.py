"""Dask support: Gaussian mixtures fitted on chunked arrays.

All optional (``pip install 'emseg[dask]'``); this module imports dask only when one of
its functions is called, so ``import emseg`` never needs it. It knows nothing of the
estimator: :class:`~emseg.mixture.gaussian_mixture.GaussianMixture` dispatches here.

:class:`ChunkedData` is what :meth:`GaussianMixture.fit` passes to the EM loop
(:func:`emseg.mixture.em.run_em`) when ``X`` is a dask array, the counterpart of the
in-memory :class:`~emseg.mixture.training_data.TrainingData`: its E-step maps over the
chunks of rows to sufficient statistics
(:class:`~emseg.mixture.gaussian.GaussianStats`), adds them up in a tree, and the M-step
runs on the client, as Spark MLlib distributes EM: only the statistics (K x D x D
numbers per chunk) travel, so the data need never fit in one machine's memory. The work
runs on whatever scheduler ``X.compute()`` would use: the default local threads, or a
``distributed.Client``.

Passes over the data: one to validate and draw the starting subsample, then one per EM
iteration. Each pass recomputes the chunks from ``X``'s graph, so ``X.persist()`` first
when the data fit in the cluster's memory and are expensive to produce.

Starting parameters come from ``weights_init`` / ``means_init`` / ``precisions_init``
when given, exactly as in memory. Otherwise ``init_params`` runs on a subsample pulled to
the client: each row is kept with probability ``min(1, INIT_ROWS / n_rows)``, drawn per
chunk from ``numpy.random.default_rng([SAMPLE_SEED, chunk_index])``, so the same array
always gives the same subsample whatever ``random_state`` (which then drives the
initialisation itself, as in memory), and EM then runs on the subsample in memory
before the first pass over all the chunks (as the in-memory fit does on large arrays:
fewer passes over the chunks). With at most ``INIT_ROWS`` rows the subsample is the
whole array and a dask fit starts exactly where the in-memory fit starts. The subsample
is also where a component that loses all its weight is re-seeded.

Missing values (NaN) are fitted as in memory, by EM on the observed coordinates: each
chunk groups its incomplete rows by pattern. Rows repeated in the data are not merged
(that would need the whole array at once); the fit is the same, the chunks just do not
get the speed-up.

:func:`map_rows` is what a fitted mixture's ``predict``, ``predict_proba`` and
``score_samples`` return for a dask array: a lazy dask array, computed chunk by chunk.

Per-item work on a cluster (a batch of images) is :mod:`emseg.workflows.cluster`.
"""


import numpy as np

from .._shared.errors import EmsegError
from .gaussian import complete_stats
from .missing import Pattern, group_patterns, pattern_stats
from .training_data import TrainingData, column_moments, distinct_rows, sum_moments

#: The most rows (in expectation) pulled to the client to start EM from.
INIT_ROWS = 100_000
#: Seed of the row subsample that starts EM (fixed: the same data give the same subsample).
SAMPLE_SEED = 0
#: Statistics are added up in a tree with this many children per node.
_FAN_IN = 8

_EXTRA_HINT = "Dask support needs the optional extra: pip install 'emseg[dask]'"
_EMPTY = np.empty(0)


def _require(module):
    """Import a dask module, or raise EmsegError naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise EmsegError(_EXTRA_HINT) from None


# --- the rows of a dask array, for the EM loop ----------------------------------------------


class ChunkedData:
    """The rows of a dask array as :func:`emseg.mixture.em.run_em` passes them around.

    ``blocks``: ``(delayed X chunk, delayed weights chunk or None)`` per chunk; ``clean``:
    per chunk, no NaN and no zero weight (the fast path); ``sample``: the in-memory
    :class:`~emseg.mixture.training_data.TrainingData` of the subsample, or None;
    ``total_weight``; ``prefit``: run EM on the subsample after initialising from it;
    ``moments``: the :func:`~emseg.mixture.training_data.column_moments` of all the rows.
    """

    def __init__(self, blocks, clean, sample, total_weight, prefit, moments, n_features):
        self.blocks = blocks
        self.clean = clean
        self.sample = sample
        self.total_weight = total_weight
        self.prefit = prefit
        self.moments = moments
        self.n_features = n_features

    @classmethod
    def from_array(cls, X, w, n_components, *, supplied, merge=True):
        """The first pass over ``X`` and ``w`` (as :func:`check_dask_input` returns them):
        the checks the in-memory fit makes on the whole array, the totals, and the
        subsample (rows merged when ``merge``). ``supplied``: all three ``*_init`` are
        given, so the subsample is not needed to start EM."""
        blocks = list(zip(X.to_delayed().ravel(), _weight_blocks(w, X)))
        rate = min(1.0, INIT_ROWS / int(X.shape[0]))
        summary = _summarise(blocks, n_components, rate)
        sample = _sample_data(summary, rate, n_components, supplied, merge)
        prefit = rate < 1.0 and not supplied
        return cls(blocks, summary["clean"], sample, summary["weight"], prefit,
                   summary["moments"], X.shape[1])

    def stats(self, params, covariance_type):
        """The E-step over every chunk: their
        :class:`~emseg.mixture.gaussian.GaussianStats` under ``params`` (a
        :class:`~emseg.mixture.gaussian.GaussianParams`), added up."""
        import dask

        # a plain tuple of arrays: what each chunk needs, picklable whatever the estimator holds
        carrier = dask.delayed(tuple(params), traverse=False)
        parts = [
            dask.delayed(_block_stats)(carrier, covariance_type, x, w, clean)
            for (x, w), clean in zip(self.blocks, self.clean)
        ]
        (stats,) = dask.compute(_tree_sum(parts, _add_stats))
        return stats

    def reseed_rows(self):
        """The subsample's rows (see :meth:`TrainingData.reseed_rows`), or None."""
        return None if self.sample is None else self.sample.reseed_rows()

    def column_moments(self):
        """The column moments of all the rows, from the first pass."""
        return self.moments


def fit_dask_array(gm, X, sample_weight=None):
    """Fit the GaussianMixture ``gm`` to the rows of the dask array ``X``; return ``gm``.

    The same as ``gm.fit(X, sample_weight=w)`` (which fits a dask array chunk by chunk),
    refusing an ``X`` that is not a dask array.
    """
    da = _require("dask.array")
    _check_is_dask(da, X)
    return gm.fit(X, sample_weight=sample_weight)


def map_rows(gm, X, method):
    """``gm.<method>(X)`` for a fitted mixture ``gm`` and a dask array ``X`` (as
    :func:`check_dask_input` returns it), as a lazy dask array computed chunk by chunk
    of rows (``method``: "predict", "predict_proba" or "score_samples"), so the data are
    never loaded at once. Nothing runs until the result is computed."""
    from functools import partial

    fn = partial(_apply_block, gm, method)
    floats = X.dtype if X.dtype == np.float32 else np.float64  # float32 data: float32 out
    if method == "predict_proba":
        return X.map_blocks(fn, dtype=floats, chunks=(X.chunks[0], (gm.n_components_,)))
    dtype = np.int64 if method == "predict" else floats
    return X.map_blocks(fn, dtype=dtype, drop_axis=1)


def mean_score(gm, X, sample_weight=None):
    """``gm.score(X, sample_weight=w)`` for a dask array ``X``: the weighted mean
    log-likelihood, computed chunk by chunk."""
    X, w = check_dask_input(X, sample_weight)
    scores = gm.score_samples(X)  # lazy: chunk by chunk
    if w is None:
        return float(scores.mean().compute())
    return float(((scores * w).sum() / w.sum()).compute())


def _apply_block(gm, method, block):
    return getattr(gm, method)(_as_float(block))


def check_dask_input(X, sample_weight=None):
    """The dask array ``X`` as 2-D with one chunk across the features, and the weights as
    a dask array chunked like its rows (or None). Checks what the metadata can tell; the
    values are checked chunk by chunk in the first pass (:meth:`ChunkedData.from_array`).
    """
    da = _require("dask.array")
    _check_is_dask(da, X)
    dtype = X.dtype
    if dtype == object or not (np.issubdtype(dtype, np.number) or dtype == bool):
        raise EmsegError(f"X must be numeric, got dtype {dtype}")
    if np.issubdtype(dtype, np.complexfloating):
        raise EmsegError(f"X must be real-valued, got dtype {dtype}")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise EmsegError(f"X must be 1-D or 2-D (rows x features), got shape {X.shape}")
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()  # rows of unknown count (after a boolean filter)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise EmsegError(f"X is empty (shape {X.shape}); pass at least one row")
    X = X.rechunk({1: -1})
    if sample_weight is None:
        return X, None
    if not isinstance(sample_weight, da.Array):
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
    if sample_weight.ndim != 1 or sample_weight.shape[0] != X.shape[0]:
        raise EmsegError(
            f"sample_weight must have one value per row ({X.shape[0]}), got shape "
            f"{sample_weight.shape}"
        )
    if isinstance(sample_weight, da.Array):
        return X, sample_weight.astype(np.float64).rechunk((X.chunks[0],))
    return X, da.from_array(sample_weight, chunks=(X.chunks[0],))


def _check_is_dask(da, X):
    if not isinstance(X, da.Array):
        raise EmsegError(f"X must be a dask array here, got {type(X).__name__}")


def _weight_blocks(w, X):
    if w is None:
        return [None] * X.numblocks[0]
    return list(w.to_delayed().ravel())


def _as_float(block):
    """A chunk as a C-contiguous 2-D float32/float64 array (the in-memory dtype rule)."""
    block = np.asarray(block)
    dtype = block.dtype if block.dtype in (np.float32, np.float64) else np.float64
    return np.ascontiguousarray(block, dtype=dtype)


def _observed_rows(X, w):
    """Rows with a positive weight and an observed value (the rows a fit uses), their
    weights (None for unit weights)."""
    keep = ~np.isnan(X).all(axis=1)
    if w is not None:
        keep &= w > 0
    if keep.all():
        return X, w
    return np.ascontiguousarray(X[keep]), None if w is None else w[keep]


def _summarise_block(X, w, K, rate, index):
    """First pass over one chunk: checks, totals, the subsample, and distinct rows.

    Returns a dict of small arrays; ``distinct`` is None when the chunk alone holds at
    least K distinct rows, else those rows (bit patterns, NaN made canonical).
    """
    X = _as_float(X)
    clean = not np.isnan(X).any() and (w is None or bool((np.asarray(w) > 0).all()))
    if np.isinf(X).any():
        raise EmsegError("X contains infinity; remove or clip those values")
    if w is not None:
        w = np.asarray(w, dtype=np.float64)
        if not np.isfinite(w).all():
            raise EmsegError("sample_weight contains NaN or infinity")
        if (w < 0).any():
            raise EmsegError(
                f"sample_weight must be >= 0, got minimum {w.min():g}; drop or zero "
                "those rows"
            )
    if rate < 1.0:
        keep = np.random.default_rng([SAMPLE_SEED, index]).random(X.shape[0]) < rate
        sample_x, sample_w = X[keep], None if w is None else w[keep]
    else:
        sample_x, sample_w = X, w
    rows, rw = _observed_rows(X, w)
    has_nan = bool(np.isnan(rows).any())
    canon = np.where(np.isnan(rows), np.nan, rows) if has_nan else rows
    bits = canon.view(np.uint64 if canon.dtype == np.float64 else np.uint32)
    distinct = None
    if rows.shape[0] == 0:
        distinct = bits
    elif K > 1:
        first, _ = distinct_rows(np.ascontiguousarray(canon), None, cap=K - 1)
        distinct = bits[first] if first.shape[0] else None
    return {
        "moments": column_moments(rows, _EMPTY if rw is None else rw),
        "weight": float(rows.shape[0] if rw is None else rw.sum()),
        "any_weight": bool(w is None or (w > 0).any()),
        "observed": (~np.isnan(rows)).sum(axis=0),
        "has_nan": has_nan,
        "clean": clean,
        "distinct": distinct,
        "sample_x": sample_x,
        "sample_w": sample_w,
    }


def _summarise(blocks, K, rate):
    """Run the first pass and apply the checks the in-memory fit makes on the whole X."""
    import dask

    parts = [
        dask.delayed(_summarise_block)(x, w, K, rate, i) for i, (x, w) in enumerate(blocks)
    ]
    (chunks,) = dask.compute(parts)
    if not any(c["any_weight"] for c in chunks):
        raise EmsegError("sample_weight is zero for every row; at least one must be > 0")
    weight = sum(c["weight"] for c in chunks)
    if weight == 0:
        raise EmsegError("X has no row with an observed value")
    observed = sum(c["observed"] for c in chunks)
    if any(c["has_nan"] for c in chunks) and (observed == 0).any():
        column = int(np.flatnonzero(observed == 0)[0])
        raise EmsegError(f"X column {column} has no observed value; drop that column")
    if K > 1 and all(c["distinct"] is not None for c in chunks):
        rows = np.concatenate([c["distinct"] for c in chunks])
        distinct = np.unique(rows, axis=0).shape[0]
        if distinct < K:
            raise EmsegError(
                f"X has only {distinct} distinct rows, cannot fit n_components={K}; "
                "lower n_components"
            )
    return {
        "moments": sum_moments([c["moments"] for c in chunks]),
        "weight": weight,
        "clean": [c["clean"] for c in chunks],
        "sample_x": np.concatenate([c["sample_x"] for c in chunks]),
        "sample_w": None
        if chunks[0]["sample_w"] is None
        else np.concatenate([c["sample_w"] for c in chunks]),
    }


def _sample_data(summary, rate, K, supplied, merge):
    """The subsample as in-memory training data (repeated rows merged, as in memory), or
    None when it cannot start EM on its own (then only a full ``*_init``, ``supplied``,
    can)."""
    X, w = summary["sample_x"], summary["sample_w"]
    try:
        if X.shape[0] == 0:
            raise EmsegError("the subsample is empty")
        if w is not None and not (w > 0).any():
            raise EmsegError("every row of the subsample has weight zero")
        return TrainingData.from_rows(X, w, K, merge)
    except EmsegError as exc:
        if rate >= 1.0 or supplied:
            if rate >= 1.0:
                raise  # the whole array: the in-memory fit refuses it the same way
            return None
        raise EmsegError(
            f"cannot start EM from the {X.shape[0]}-row subsample of X ({exc}); pass "
            "weights_init, means_init and precisions_init, or raise "
            "emseg.mixture.dask_fit.INIT_ROWS"
        ) from None


def _block_stats(params, covariance_type, X, w, clean):
    """The E-step's sufficient statistics for one chunk under ``params`` (weights, means,
    covariances, precision factors): complete rows in one compiled pass, rows with
    missing values by pattern, as :meth:`TrainingData.stats` does. ``clean`` (no NaN, no
    zero weight: known from the first pass) skips looking."""
    weights, means, covariances, precisions_cholesky = params

    def complete(X, w):
        return complete_stats(X, w, weights, means, precisions_cholesky, covariance_type)

    if clean:
        return complete(_as_float(X), _EMPTY if w is None else np.asarray(w, np.float64))
    X, w = _observed_rows(_as_float(X), None if w is None else np.asarray(w, np.float64))
    missing = np.isnan(X)
    incomplete = missing.any(axis=1)
    if not incomplete.any():
        return complete(X, _EMPTY if w is None else w)
    full_rows = ~incomplete
    stats = complete(np.ascontiguousarray(X[full_rows]), _EMPTY if w is None else w[full_rows])
    for rows, observed in group_patterns(missing, incomplete):
        pw = np.ones(rows.size) if w is None else w[rows]
        pattern = Pattern(observed, X[rows], pw)
        stats = stats + pattern_stats(pattern, weights, means, covariances, covariance_type)
    return stats


def _add_stats(parts):
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def _tree_sum(parts, add):
    """One delayed value adding up ``parts`` in a tree (each node adds ``_FAN_IN``)."""
    import dask

    while len(parts) > 1:
        parts = [
            dask.delayed(add)(parts[i : i + _FAN_IN]) for i in range(0, len(parts), _FAN_IN)
        ]
    return parts[0]
