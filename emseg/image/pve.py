"""Partial-volume estimates: the fraction of each class in every voxel, as FSL FAST's
``_pve_N`` maps (:func:`partial_volumes`).

A segmentation's posteriors say how sure the model is of a voxel's one class; a voxel on
the border of two tissues holds some of each, and its value lies between theirs. The
**mixel model** (Santago & Gage 1993; Shattuck et al. 2001; Zhang, Brady & Smith 2001
for FAST; Tohka, Zijdenbos & Evans 2004) says so: a voxel is either pure class ``k``,
with the fitted Gaussian ``N(mu_k, S_k)``, or a mix of two classes ``a``, ``b`` in
proportion ``alpha : 1 - alpha`` (``alpha`` uniform on (0, 1)), whose value is drawn
from ``N(alpha mu_a + (1 - alpha) mu_b, alpha S_a + (1 - alpha) S_b)``.

How it is computed, from the fitted classes of a :class:`~emseg.Segmentation`:

- **Which mixes.** For grey (one feature) the classes adjacent in intensity, ``(k,
  k+1)``: a mix of the darkest and brightest looks like the middle class and cannot be
  told from it (FAST, Shattuck and Tohka make the same choice). With several features
  (colour, co-registered channels), the pairs of classes that touch in the label image
  (at least 1 % of the label boundaries; at most 16 pairs).
- **Where.** A voxel may be a mix of ``a`` and ``b`` only where both labels occur in its
  3x3 (3x3x3) neighbourhood: partial volume lives on boundaries (FAST and Shattuck
  put this into an MRF on the mixed labels; here it is a hard gate on the labels the
  segmentation gives, smoothed by its own MRF when ``beta`` > 0).
- **The pure classes** are Gaussians estimated from the voxels whose whole
  neighbourhood has one label (the segmentation's own for a class with too few): a
  plain mixture counts the mixed voxels into its classes' spread (the middle class of
  the benchmark's 2-D phantom at noise 0.1: standard deviation 2.4 times the noise).
- **How likely.** The weights of the pure and mixed classes are fitted by EM, one set
  per neighbourhood pattern: which mixes the neighbourhood allows, its most frequent
  label and how many of its voxels have that label. That context is a learned spatial
  prior (a voxel among 27 class-2 labels is very likely pure 2, one among 14 much
  less), with no strength to tune; each pattern's weights lean on the overall ones as
  if from 2 voxels more (a Dirichlet prior), so that rare patterns stay sensible.
- **The fractions.** For each mix, the marginal likelihood over ``alpha`` and the
  posterior mean of ``alpha`` are computed on midpoints of (0, 1) (32, or more when
  the classes are narrow against their distance); a voxel's fractions are their
  expectation over the pure and mixed classes given its value and its neighbourhood:
  the posterior mean (MMSE) of the fraction vector. They sum to 1 by construction.
- **Speed.** The likelihoods depend on the value alone, so they are computed once per
  node: every distinct value of an 8/16-bit grey image, 4096 equally spaced values of
  a float grey image (each voxel at the nearest), every distinct colour of a
  multi-feature image (up to 65536 of them; beyond, the occupied bins of a grid of
  steps 1/8 of the narrowest class's standard deviation). EM runs on the voxels grouped
  by (pattern, node); the voxels only gather from the final table.

Choices against the literature, and the measurements that chose them (phantoms made as
in ``benchmarks/bench_pve.py``, with the random field drawn in float64: a fine label
map averaged in 4x4(x4) blocks gives the true fractions; RMSE over the voxels; "2-D
0.1" is the 256x256 phantom at noise 0.1 of the class spacing, "3-D" the 64^3 one;
plain mixture labels):

- the mixel variance interpolates the classes' linearly (``alpha S_a + (1 - alpha)
  S_b``), not with squares (``alpha^2 S_a + (1 - alpha)^2 S_b``, independent
  intrinsic variation as in Santago & Gage): scanner noise is added after the
  averaging, so a mix of two classes with the same noise has that noise, not half of
  it. See :data:`_VARIANCE` for the figures.
- the fractions are the posterior mean over pure and mixed classes, not FAST's choice
  of the most probable one with its ML ``alpha``: the mean is what minimises the squared
  error and needs no threshold. See :data:`_ESTIMATE` for the figures.
- the pure Gaussians are not re-estimated by the EM (Santago & Gage and Tohka do): with
  them re-estimated from their own responsibilities, 2-D 0.1 0.0499 against 0.0462
  fixed, 3-D 0.0533 / 0.0506; at noise 0.25 0.109 / 0.112 and 0.104 / 0.108 (measured
  with the context of the label alone, below).
- the weights per neighbourhood pattern: one global set of weights (and the pure
  Gaussians re-estimated) gave 2-D 0.1 0.0536 (3-D 0.0569) and at noise 0.25 0.153 (3-D
  0.158), no better than the posteriors (0.153, 0.157); per pattern of the mixes
  allowed 0.0436 (0.0497) and 0.132 (0.134); with the most frequent label too 0.0462
  (0.0506) and 0.112 (0.108); with its count as well 0.0410 (0.0450) and 0.0973
  (0.0918). The prior's 2 voxels: 0 gave 0.0971 (0.0917) at noise 0.25, 10 gave 0.0978
  (0.0923), the same at noise 0.1.
"""

import numpy as np

from .._shared.errors import EmsegError
from ..mixture.gaussian_mixture import full_covariances
from .features import distinct_values, split_channels, value_features
from .pixels import check_mask

_ALPHA_STEPS = 32  # at least this many midpoints of (0, 1) to integrate a mix on
_NODES = 4096  # equally spaced values of a float grey image
_MAX_NODES = 1 << 16  # several features: more distinct values than this are binned
_MIN_PAIR_SHARE = 0.01  # several features: a pair must make 1 % of the label boundaries
_MAX_PAIRS = 16
_PRIOR_VOXELS = 2.0  # each pattern's weights: this many voxels' worth of the global ones
_EM_MAX_ITER = 100
_EM_TOL = 1e-6
# Mixel variance: "linear" (alpha S_a + (1 - alpha) S_b) or "squares". Measured on the
# benchmark's phantoms, RMSE of the fractions, linear / squares: 2-D noise 0.1 0.0410 /
# 0.0415, noise 0.25 0.0973 / 0.1006; 3-D 0.0450 / 0.0455 and 0.0918 / 0.0958.
_VARIANCE = "linear"
# "mean" (posterior mean of the fractions) or "map" (FAST: the most probable pure or
# mixed class, with its posterior-mean alpha). Same phantoms, mean / map: 2-D 0.0410 /
# 0.0441 and 0.0973 / 0.1074; 3-D 0.0450 / 0.0484 and 0.0918 / 0.1038.
_ESTIMATE = "mean"


def partial_volumes(image, segmentation, *, mask=None, channel_axis="auto"):
    """Each voxel's fraction of each class: float32, the spatial shape + (K,), summing
    to 1 inside the mask and 0 outside (FSL FAST's ``_pve_N`` maps, one per class,
    darkest first like the labels).

    ``image``: the array that was segmented (grey, colour or co-registered channels,
    any dtype); ``segmentation``: the :class:`~emseg.Segmentation` that
    :func:`emseg.segment` returned for it (its classes, feature recipe and labels are
    used). When the segmentation carries a bias-corrected image (``.restored``), the
    fractions are computed from that instead. ``mask``: optional bool array of the
    spatial shape; voxels outside it (or outside the segmentation's own mask) get 0.
    ``channel_axis``: as for :func:`emseg.segment`.

    The model, the choices made and their measurements are in the module docstring
    (:mod:`emseg.image.pve`).
    """
    seg = segmentation
    restored = getattr(seg, "restored", None)
    source = image if restored is None else restored
    spec = seg.features
    values, _, _ = split_channels(source, channel_axis, spec.color_space == "channels")
    shape = values.shape[:-1]
    cls, inside = _classes(seg)
    if cls.shape != shape:
        raise EmsegError(
            f"image has spatial shape {shape} but the segmentation {cls.shape}; give "
            "the image that was segmented, with the same channel_axis"
        )
    if mask is not None:
        inside = inside & check_mask(mask, shape)
    k = seg.k
    out = np.zeros(shape + (k,), dtype=np.float32)
    flat = values.reshape(-1, values.shape[-1])[inside.ravel()]
    if np.issubdtype(flat.dtype, np.floating):
        finite = np.isfinite(flat).all(axis=1)
        if not finite.all():  # a restored image may hold NaN where the original had none
            inside[inside] = finite
            flat = flat[finite]
    if flat.shape[0] == 0:
        return out
    cls = np.where(inside, cls, -1)
    gm = seg.model
    spread = np.sqrt(np.diagonal(full_covariances(gm), axis1=1, axis2=2).min(axis=0))
    nodes, index = _nodes(flat, spec, spread)
    n_features = nodes.shape[1]
    pairs = _pairs(cls, k, n_features)
    codes, interior = _neighbourhoods(cls, inside, pairs, k)
    start = _pure_start(nodes, index, cls[inside], interior, gm, n_features, len(pairs))
    out[inside] = _fractions(nodes, index, codes, pairs, *start)
    return out


def _classes(seg):
    """``(classes, inside)``: class 0..K-1 per voxel (-1 outside) and the voxels inside,
    from ``seg.labels`` (0 outside, 1..K the classes): the one place this module reads
    the label convention."""
    labels = np.asarray(seg.labels)
    inside = labels > 0
    return np.where(inside, labels - 1, -1).astype(np.int32), inside


def _nodes(flat, spec, spread):
    """``(nodes, index)``: the feature vectors at which the likelihoods are tabulated,
    and each voxel's node. 8/16-bit grey: every distinct value. Float grey: the nearest
    of :data:`_NODES` equally spaced values (at most 1/8190 of the range away). Several
    features: every distinct value when there are at most :data:`_MAX_NODES`, else the
    occupied bins of a grid whose step is 1/8 of the narrowest class's standard
    deviation ``spread`` along each feature, each bin's node the mean of its voxels."""
    integer = flat.dtype.kind in "ui"
    if flat.shape[1] == 1 and flat.dtype not in (np.uint8, np.uint16):
        x = value_features(flat, spec)[:, 0]
        low, high = float(x.min()), float(x.max())
        if high > low:
            step = (high - low) / (_NODES - 1)
            x -= low
            x *= 1 / step
            index = np.rint(x, out=x).astype(np.int64)
            return (low + step * np.arange(_NODES, dtype=np.float64))[:, None], index
    if integer or flat.shape[1] == 1:
        unique, _, inverse = distinct_values(flat)
        nodes = value_features(unique, spec)
        if nodes.shape[1] == 1 or nodes.shape[0] <= _MAX_NODES:
            return nodes, np.asarray(inverse, dtype=np.int64)
    x = value_features(flat, spec)
    D = x.shape[1]
    low, span = x.min(axis=0), np.ptp(x, axis=0)
    step = np.maximum(spread[:D] / 8, span / _NODES)
    step[step == 0] = 1.0
    levels = np.floor(span / step).astype(np.int64) + 1
    code = np.zeros(x.shape[0], dtype=np.int64)
    for d in range(D):
        q = np.floor((x[:, d] - low[d]) / step[d]).astype(np.int64)
        code = code * levels[d] + np.minimum(q, levels[d] - 1)
    index, count = _compact(code, int(np.prod(levels, dtype=np.float64)))
    nodes = np.stack([np.bincount(index, weights=x[:, d], minlength=count.size) / count
                      for d in range(D)], axis=1)
    return nodes, index


def _compact(code, n_codes):
    """``(index, count)``: each element's rank among the distinct values of the
    non-negative ``code`` (below ``n_codes``), and how many elements each holds."""
    if n_codes <= (1 << 24):  # a table: no sort
        count = np.bincount(code, minlength=n_codes)
        present = np.flatnonzero(count)
        rank = np.zeros(n_codes, dtype=np.int64)
        rank[present] = np.arange(present.size)
        return rank[code], count[present]
    _, index, count = np.unique(code, return_inverse=True, return_counts=True)
    return index.ravel(), count


def _pairs(cls, k, n_features):
    """The mixes considered, as a list of ``(a, b)`` with ``a < b``."""
    if n_features == 1:
        return [(a, a + 1) for a in range(k - 1)]
    contacts = np.zeros(k * k, dtype=np.int64)
    for axis in range(cls.ndim):
        lead = (slice(None),) * axis
        lo = cls[lead + (slice(None, -1),)].ravel()
        hi = cls[lead + (slice(1, None),)].ravel()
        keep = (lo >= 0) & (hi >= 0) & (lo != hi)
        a, b = np.minimum(lo[keep], hi[keep]), np.maximum(lo[keep], hi[keep])
        contacts += np.bincount(a * k + b, minlength=k * k)
    total = contacts.sum()
    if total == 0:
        return []
    order = np.argsort(-contacts, kind="stable")[:_MAX_PAIRS]
    chosen = [int(i) for i in order if contacts[i] >= _MIN_PAIR_SHARE * total]
    return sorted((i // k, i % k) for i in chosen)


def mixel_tables(nodes, means, covs, pairs, *, steps=None):
    """The mixel model's likelihoods at ``nodes`` (M, D) feature vectors.

    Returns ``(loglik, alpha)``: ``loglik`` (M, K + P), the log-density of each node
    under each pure class (``means`` (K, D), ``covs`` (K, D, D)) then each mix of
    ``pairs`` (P pairs ``(a, b)``; the density integrated over a uniform ``alpha`` on
    ``steps`` midpoints of (0, 1)); ``alpha`` (M, P), the posterior mean of class
    ``a``'s share given the mix. ``steps`` None: per pair, enough that a step moves the
    mean by at most a third of the narrower class's standard deviation (32 to 512).
    """
    K, P = means.shape[0], len(pairs)
    M, D = nodes.shape
    loglik = np.empty((M, K + P))
    alpha = np.empty((M, P))
    pure = _gaussians(means, covs)
    mixes = []
    for a, b in pairs:
        n = steps or _alpha_steps(means[a] - means[b], covs[a], covs[b])
        grid = (np.arange(n) + 0.5) / n
        t = grid[:, None, None]
        cov = (t * covs[a] + (1 - t) * covs[b] if _VARIANCE == "linear"
               else t * t * covs[a] + (1 - t) ** 2 * covs[b])
        centre = grid[:, None] * means[a] + (1 - grid[:, None]) * means[b]
        mixes.append((grid, _gaussians(centre, cov)))
    most = max([len(g) for g, _ in mixes], default=1)
    chunk = max(1, (1 << 22) // (most * D * D))  # rows per block of temporaries
    for start in range(0, M, chunk):
        x = nodes[start:start + chunk]
        loglik[start:start + chunk, :K] = _log_gaussians(x, *pure)
        for p, (grid, mix) in enumerate(mixes):
            logp = _log_gaussians(x, *mix)  # (rows, steps)
            top = logp.max(axis=1, keepdims=True)
            w = np.exp(logp - top)
            total = w.sum(axis=1)
            loglik[start:start + chunk, K + p] = top[:, 0] + np.log(total / len(grid))
            alpha[start:start + chunk, p] = np.einsum("ms,s->m", w, grid) / total
    return loglik, alpha


def _alpha_steps(delta, cov_a, cov_b):
    """Midpoints for a mix whose means differ by ``delta``: the distance in units of the
    narrower class's spread along it, times 3, within 32..512."""
    spread = min(float(delta @ np.linalg.solve(c, delta)) for c in (cov_a, cov_b))
    return int(np.clip(np.ceil(3 * np.sqrt(max(spread, 0.0))), _ALPHA_STEPS, 512))


def _gaussians(means, covs):
    """``(means, U, log_norm)`` of G Gaussians (``means`` (G, D), ``covs`` (G, D, D)):
    ``U[g] U[g]^T`` the inverse of ``covs[g]``, and the log normalising constants."""
    L = np.linalg.cholesky(covs)
    U = np.swapaxes(np.linalg.inv(L), 1, 2)
    D = means.shape[1]
    log_det = np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
    return means, U, -0.5 * D * np.log(2 * np.pi) - log_det


def _log_gaussians(x, means, U, log_norm):
    """(M, G) log-densities of rows ``x`` under the Gaussians of :func:`_gaussians`."""
    if x.shape[1] == 1:  # grey: no matrices
        z = (x - means[:, 0]) * U[:, 0, 0]
        return log_norm - 0.5 * z * z
    G, D = means.shape
    # columns (e, g): z[:, e, g] = sum_d x_d U[g, d, e], minus the same of the mean
    z = (x @ np.transpose(U, (1, 2, 0)).reshape(D, D * G)).reshape(-1, D, G)
    z -= np.einsum("gd,gde->eg", means, U)
    quad = z[:, 0] * z[:, 0]
    for e in range(1, D):  # numpy's sum over a short last axis is slow
        quad += z[:, e] * z[:, e]
    return log_norm - 0.5 * quad


def _neighbourhoods(cls, inside, pairs, k):
    """``(codes, interior)`` per voxel inside. ``codes``: a bit per pair, set where both
    of its classes occur in the voxel's 3x3 (3x3x3) neighbourhood, and above them the
    neighbourhood's most frequent label and how many voxels have it (the context whose
    class weights :func:`_fit_weights` fits). ``interior``: True where only the
    voxel's own class occurs."""
    count = np.empty((k, int(inside.sum())), dtype=np.uint8)
    for c in range(k):
        count[c] = _box_sum((cls == c).view(np.uint8))[inside]
    present = count > 0
    codes = np.zeros(count.shape[1], dtype=np.int64)
    for bit, (a, b) in enumerate(pairs):
        codes |= (present[a] & present[b]).astype(np.int64) << bit
    # above the bits: (label, count), numbered densely so the codes stay small
    context = count.argmax(axis=0).astype(np.int64)
    context += k * count.max(axis=0)
    codes |= context << len(pairs)
    interior = present.sum(axis=0, dtype=np.int8) == 1
    return codes, interior


def _box_sum(a):
    """Sum of uint8 ``a`` over each element's 3x3 (3x3x3) box, zero beyond the edges
    (at most 27: no overflow)."""
    out = a.copy()
    for axis in range(a.ndim):
        src = out.copy()
        lead = (slice(None),) * axis
        out[lead + (slice(1, None),)] += src[lead + (slice(None, -1),)]
        out[lead + (slice(None, -1),)] += src[lead + (slice(1, None),)]
    return out


def _pure_start(nodes, index, labels, interior, gm, n_features, n_pairs):
    """``(means, covs, weights)``: the pure classes' Gaussians and the weights of the
    pure and mixed classes to start EM from. Each class's mean and covariance are those
    of the voxels whose whole neighbourhood has its label (the mixture's own, for a
    class with fewer than a few such voxels); a tenth of the voxels mixed."""
    k = gm.n_components_
    means = np.array(gm.means_, dtype=np.float64)[:, :n_features]
    covs = np.array(full_covariances(gm), dtype=np.float64)[:, :n_features, :n_features]
    for c in range(k):
        h = np.bincount(index[interior & (labels == c)], minlength=nodes.shape[0])
        if h.sum() >= 4 * (n_features + 1):
            # a floor relative to the mixture's spread: a noise-free image has none
            floor = max(float(np.max(getattr(gm, "reg_covar_", 0.0))),
                        1e-6 * float(np.trace(covs[c])) / n_features)
            means[c], covs[c] = _moments(nodes, h, floor)
    mixed = 0.1 if n_pairs else 0.0
    weights = np.concatenate([np.asarray(gm.weights_, dtype=np.float64) * (1 - mixed),
                              np.full(n_pairs, mixed / max(n_pairs, 1))])
    weights = np.maximum(weights, 1e-12)
    return means, covs, weights / weights.sum()


def _moments(x, h, floor):
    """Weighted mean and covariance (plus ``floor`` on the diagonal) of rows ``x``."""
    total = h.sum()
    mean = np.einsum("m,md->d", h, x) / total
    centred = x - mean
    cov = np.einsum("m,md,me->de", h, centred, centred) / total
    cov[np.diag_indices_from(cov)] += floor
    return mean, cov


def _fractions(nodes, index, codes, pairs, means, covs, weights):
    """Each voxel's fractions (N, K) float32: the weights of the pure and mixed classes
    fitted by EM per neighbourhood pattern on the voxels grouped by (pattern, node),
    then the posterior mean of the fractions per group, gathered per voxel."""
    k, P = means.shape[0], len(pairs)
    n_nodes = nodes.shape[0]
    patterns, pattern_of = _distinct_codes(codes)
    bits = (patterns[:, None] >> np.arange(P)) & 1  # the higher bits: the context
    allowed = np.hstack([np.ones((len(patterns), k), bool), bits.astype(bool)])
    # the groups: (pattern, node) cells holding voxels, and their counts
    key = pattern_of * n_nodes + index
    size = len(patterns) * n_nodes
    if size <= 4 * key.size:  # a table of every cell: no sort of the voxels
        counts = np.bincount(key, minlength=size)
        cells = np.flatnonzero(counts)
        cell_of = None
    else:
        cells, cell_of = np.unique(key, return_inverse=True)
        counts = np.bincount(cell_of.ravel())
    counts = counts[counts > 0].astype(np.float64)
    cell_pattern, cell_node = np.divmod(cells, n_nodes)
    used, node_of = np.unique(cell_node, return_inverse=True)
    loglik, alpha = mixel_tables(nodes[used], means, covs, pairs)
    node_of = node_of.ravel()
    logl = np.where(allowed[cell_pattern], loglik[node_of], -np.inf)
    log_weights = _fit_weights(logl, cell_pattern, counts,
                               np.tile(np.log(weights), (len(patterns), 1)), allowed)
    table = _cell_fractions(logl + log_weights[cell_pattern], alpha[node_of], pairs, k)
    if cell_of is not None:
        return table[cell_of.ravel()]
    position = np.zeros(size, dtype=np.int64)
    position[cells] = np.arange(cells.size)
    return table[position[key]]


def _fit_weights(logl, cell_pattern, counts, log_weights, allowed):
    """EM for the weights of the pure and mixed classes, one set per neighbourhood
    pattern, on the grouped cells (``logl``: each cell's log-likelihoods, -inf where its
    pattern does not allow a class; ``allowed``: per pattern, the classes it allows).
    Each pattern's weights have a Dirichlet prior of :data:`_PRIOR_VOXELS` voxels
    shared out as the weights of all patterns together. Returns the log weights,
    (patterns, K + P)."""
    n_patterns = log_weights.shape[0]
    total = counts.sum()
    # the cells come sorted by pattern, every pattern with at least one
    starts = np.searchsorted(cell_pattern, np.arange(n_patterns))
    top = logl.max(axis=1, keepdims=True)
    lik = np.exp(logl - top)  # the classes are fixed: computed once
    base = float(np.einsum("c,c->", counts, top[:, 0]))
    weights = np.exp(log_weights)
    previous = -np.inf
    for _ in range(_EM_MAX_ITER):
        post = lik * weights[cell_pattern]
        norm = post.sum(axis=1)
        mean_ll = (base + float(np.einsum("c,c->", counts, np.log(norm)))) / total
        post *= (counts / norm)[:, None]
        share = np.add.reduceat(post, starts, axis=0)
        overall = share.sum(axis=0) / total
        # a pattern of few voxels leans on the weights of all (a Dirichlet prior)
        share += _PRIOR_VOXELS * overall * allowed
        weights = np.maximum(share / share.sum(axis=1, keepdims=True), 1e-12)
        weights /= weights.sum(axis=1, keepdims=True)
        if abs(mean_ll - previous) < _EM_TOL * max(1.0, abs(mean_ll)):
            break
        previous = mean_ll
    return np.log(weights)


def _distinct_codes(codes):
    """``(patterns, index)``: the distinct codes, ascending, and each voxel's position
    among them."""
    if codes.size and codes.max() < (1 << 20):
        present = np.bincount(codes)
        patterns = np.flatnonzero(present)
        position = np.zeros(present.size, dtype=np.int64)
        position[patterns] = np.arange(patterns.size)
        return patterns.astype(np.int64), position[codes]
    patterns, index = np.unique(codes, return_inverse=True)
    return patterns, index.ravel()


def _cell_fractions(logpost, alpha, pairs, k):
    """(M, K) float32 fractions from each cell's unnormalised log posterior over the
    pure and mixed classes and the mixes' posterior mean ``alpha``."""
    top = logpost.max(axis=1, keepdims=True)
    post = np.exp(logpost - top)
    post /= post.sum(axis=1, keepdims=True)
    if _ESTIMATE == "map":
        best = post.argmax(axis=1)
        post = np.zeros_like(post)
        post[np.arange(len(best)), best] = 1.0
    frac = post[:, :k].copy()
    for p, (a, b) in enumerate(pairs):
        share = post[:, k + p]
        frac[:, a] += share * alpha[:, p]
        frac[:, b] += share * (1 - alpha[:, p])
    return frac.astype(np.float32)
