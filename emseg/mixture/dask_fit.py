"""Dask support: Gaussian mixtures fitted on chunked arrays.

Two entry points, all optional (``pip install 'emseg[dask]'``); this module imports
dask only when one of them is called, so ``import emseg`` never needs it.

``fit_dask_array(gm, X, sample_weight)`` is what :meth:`GaussianMixture.fit` runs when
``X`` is a dask array. Each EM iteration maps the E-step over the chunks of rows to
sufficient statistics (:class:`~emseg.mixture.gaussian_mixture.GaussianStats`), adds them up in a tree,
and runs the M-step on the client, as Spark MLlib distributes EM: only the statistics
(K x D x D numbers per chunk) travel, so the data need never fit in one machine's
memory. The loop is :func:`emseg.mixture.em.run_em`, the one every model uses; this module only
supplies an E-step that runs on the chunks. The work runs on whatever scheduler
``X.compute()`` would use: the default local threads, or a ``distributed.Client``.

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

``map_rows(gm, X, method)`` is what a fitted mixture's ``predict``, ``predict_proba`` and
``score_samples`` return for a dask array: a lazy dask array, computed chunk by chunk.

Per-item work on a cluster (a batch of images) is :mod:`emseg.workflows.cluster`.
"""


import numpy as np

from .._shared.errors import EmsegError
from .em import run_em

#: The most rows (in expectation) pulled to the client to start EM from.
INIT_ROWS = 100_000
#: Seed of the row subsample that starts EM (fixed: the same data give the same subsample).
SAMPLE_SEED = 0
#: Statistics are added up in a tree with this many children per node.
_FAN_IN = 8

_EXTRA_HINT = "Dask support needs the optional extra: pip install 'emseg[dask]'"


def _require(module):
    """Import a dask module, or raise EmsegError naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise EmsegError(_EXTRA_HINT) from None


# --- fitting a mixture on a dask array ---------------------------------------------------


class _ChunkedData:
    """What :func:`run_em` passes around for a dask fit."""

    def __init__(self, blocks, clean, sample, total_weight, prefit):
        self.blocks = blocks  # [(delayed X chunk, delayed weights chunk or None)]
        self.clean = clean  # per chunk: no NaN and no zero weight (the fast path)
        self.sample = sample  # in-memory _TrainingData of the subsample, or None
        self.total_weight = total_weight
        self.prefit = prefit  # run EM on the subsample after initialising from it


class _ChunkedEM:
    """The EM protocol of :mod:`emseg.mixture.em` for a GaussianMixture whose rows are in chunks.

    Everything but the E-step is the mixture's own: initialisation (on the subsample),
    the M-step, and the parameter snapshots.
    """

    def __init__(self, gm):
        self.gm = gm

    def _initialize(self, data, rng):
        self.gm._initialize(data.sample, rng)
        if data.prefit:
            # As the in-memory fit does on large data: EM on the subsample first (in
            # memory, cheap), so the passes over all the chunks start near a maximum.
            import warnings

            from .._shared.errors import ConvergenceWarning

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                _, max_iter, tol = self.gm._settings(*data.sample.X.shape)
                run_em(self.gm, data.sample, n_init=1, max_iter=max_iter, tol=tol, rng=rng,
                       start_bound=-np.inf, accelerate=self.gm.accelerate)

    def _e_step(self, data):
        import dask

        params = dask.delayed(_param_carrier(self.gm))
        parts = [
            dask.delayed(_block_stats)(params, x, w, clean)
            for (x, w), clean in zip(data.blocks, data.clean)
        ]
        (stats,) = dask.compute(_tree_sum(parts, _add_stats))
        return stats, stats.loglik / data.total_weight

    def _m_step(self, stats):
        self.gm._m_step(stats)

    def _get_params(self):
        return self.gm._get_params()

    def _extrapolate(self, p0, p1, p2):
        return self.gm._extrapolate(p0, p1, p2)

    def _set_params(self, params):
        self.gm._set_params(params)


def fit_dask_array(gm, X, sample_weight=None):
    """Fit the GaussianMixture ``gm`` to the rows of the dask array ``X``; return ``gm``.

    ``sample_weight`` is None, a dask array or a numpy array with one value per row. The
    result equals ``gm.fit(X.compute(), sample_weight)`` from the same starting
    parameters (to rounding: the statistics are added in a different order).
    """
    from .._shared.validation import as_generator

    da = _require("dask.array")
    X, w = _check_dask_input(da, X, sample_weight)
    D = X.shape[1]
    gm._check_parameters(D)
    warm = gm.warm_start and hasattr(gm, "converged_")
    if warm and gm.means_.shape[1] != D:
        raise EmsegError(
            f"warm_start: the model has {gm.means_.shape[1]} features, X has {D}; "
            "refit with warm_start=False"
        )
    blocks = list(zip(X.to_delayed().ravel(), _weight_blocks(w, X)))
    rate = min(1.0, INIT_ROWS / int(X.shape[0]))
    summary = _summarise(blocks, gm.n_components, rate)
    sample = _sample_data(gm, summary, rate)
    supplied = (gm.weights_init, gm.means_init, gm.precisions_init)
    prefit = rate < 1.0 and not all(p is not None for p in supplied)
    data = _ChunkedData(blocks, summary["clean"], sample, summary["weight"], prefit)
    gm.reg_covar_ = gm._floor_from_moments(summary["moments"])
    n_init, gm.max_iter_, gm.tol_ = gm._settings(int(X.shape[0]), D)
    gm._fit_data = sample  # rows to re-seed an emptied component on (None: the means)
    try:
        result = run_em(
            _ChunkedEM(gm),
            data,
            n_init=n_init,
            accelerate=gm.accelerate,
            max_iter=gm.max_iter_,
            tol=gm.tol_,
            rng=as_generator(gm.random_state),
            start_bound=gm.lower_bound_ if warm else None,
            callback=gm.callback,
        )
    finally:
        del gm._fit_data
    return gm._finish_fit(result)


def map_rows(gm, X, method):
    """``gm.<method>(X)`` for a dask array ``X``, as a lazy dask array computed chunk by
    chunk of rows (``method``: "predict", "predict_proba" or "score_samples"), so the
    data are never loaded at once. Nothing runs until the result is computed."""
    from functools import partial

    da = _require("dask.array")
    gm._require_fitted()
    X, _ = _check_dask_input(da, X, None)
    gm._require_fitted(X.shape[1])
    fn = partial(_apply_block, gm, method)
    if method == "predict_proba":
        return X.map_blocks(fn, dtype=np.float64, chunks=(X.chunks[0], (gm.n_components_,)))
    dtype = np.int64 if method == "predict" else np.float64
    return X.map_blocks(fn, dtype=dtype, drop_axis=1)


def mean_score(gm, X, sample_weight=None):
    """``gm.score(X, sample_weight)`` for a dask array ``X``: the weighted mean
    log-likelihood, computed chunk by chunk."""
    da = _require("dask.array")
    X, w = _check_dask_input(da, X, sample_weight)
    scores = map_rows(gm, X, "score_samples")
    if w is None:
        return float(scores.mean().compute())
    return float(((scores * w).sum() / w.sum()).compute())


def _apply_block(gm, method, block):
    return getattr(gm, method)(_as_float(block))


def _check_dask_input(da, X, sample_weight):
    """The dask array as 2-D with one chunk across the features, and the weights as a dask
    array chunked like its rows (or None). Checks what the metadata can tell; the values
    are checked chunk by chunk in the first pass."""
    if not isinstance(X, da.Array):
        raise EmsegError(f"X must be a dask array here, got {type(X).__name__}")
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
    from .gaussian_mixture import _distinct_rows

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
        first, _ = _distinct_rows(np.ascontiguousarray(canon), None, cap=K - 1)
        distinct = bits[first] if first.shape[0] else None
    from .gaussian_mixture import column_moments

    return {
        "moments": column_moments(rows, np.empty(0) if rw is None else rw),
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
    from .gaussian_mixture import _sum_moments

    return {
        "moments": _sum_moments([c["moments"] for c in chunks]),
        "weight": weight,
        "clean": [c["clean"] for c in chunks],
        "sample_x": np.concatenate([c["sample_x"] for c in chunks]),
        "sample_w": None
        if chunks[0]["sample_w"] is None
        else np.concatenate([c["sample_w"] for c in chunks]),
    }


def _sample_data(gm, summary, rate):
    """The subsample as in-memory training data (repeated rows merged, as in memory), or
    None when it cannot start EM on its own (then only a full ``*_init`` can)."""
    X, w = summary["sample_x"], summary["sample_w"]
    supplied = (gm.weights_init, gm.means_init, gm.precisions_init)
    try:
        if X.shape[0] == 0:
            raise EmsegError("the subsample is empty")
        if w is not None and not (w > 0).any():
            raise EmsegError("every row of the subsample has weight zero")
        return gm._prepare(X, w)
    except EmsegError as exc:
        if rate >= 1.0 or all(p is not None for p in supplied):
            if rate >= 1.0:
                raise  # the whole array: the in-memory fit refuses it the same way
            return None
        raise EmsegError(
            f"cannot start EM from the {X.shape[0]}-row subsample of X ({exc}); pass "
            "weights_init, means_init and precisions_init, or raise "
            "emseg.mixture.dask_fit.INIT_ROWS"
        ) from None


def _param_carrier(gm):
    """A bare GaussianMixture holding only ``gm``'s current parameters: what each chunk's
    E-step needs, and picklable whatever ``gm.callback`` is."""
    from .gaussian_mixture import GaussianMixture

    carrier = GaussianMixture(gm.n_components, covariance_type=gm.covariance_type)
    carrier._set_params(gm._get_params())
    return carrier


def _block_stats(model, X, w, clean):
    """The E-step's sufficient statistics for one chunk: complete rows in one compiled
    pass, rows with missing values by pattern, as :meth:`GaussianMixture._e_step` does.
    ``clean`` (no NaN, no zero weight: known from the first pass) skips looking."""
    from .gaussian_mixture import _EMPTY, _Pattern, _group_patterns

    if clean:
        w = _EMPTY if w is None else np.asarray(w, np.float64)
        return model._complete_stats(_as_float(X), w)
    X, w = _observed_rows(_as_float(X), None if w is None else np.asarray(w, np.float64))
    missing = np.isnan(X)
    incomplete = missing.any(axis=1)
    if not incomplete.any():
        return model._complete_stats(X, _EMPTY if w is None else w)
    complete = ~incomplete
    stats = model._complete_stats(
        np.ascontiguousarray(X[complete]), _EMPTY if w is None else w[complete]
    )
    for rows, observed in _group_patterns(missing, incomplete):
        pw = np.ones(rows.size) if w is None else w[rows]
        stats = stats + model._pattern_stats(_Pattern(observed, X[rows], pw))
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
