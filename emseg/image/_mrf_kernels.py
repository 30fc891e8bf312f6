"""Compiled sweeps over a Potts field on a 3-D grid (a 2-D image is one slice of it).

Conventions shared with :mod:`emseg.image.mrf`:

- ``site[z, y, x]`` is the row of the unary table for a voxel inside the mask, or -1
  for a voxel outside (which is then no one's neighbour: its posteriors stay 0 and its
  label -1).
- ``dens[d, k] = exp(log p(x_d | k) - top[d])`` with ``top[d]`` the row's maximum, so
  the largest entry of every row is 1; ``q`` holds float32 posteriors, (Z, Y, X, K).
- ``offsets`` (M, 3) and ``weights`` (M,) list every neighbour of a voxel (both
  directions). The prior of voxel i is ``softmax(alpha + beta * s_i)`` with
  ``s_ik = sum_j w_ij [z_j = k]`` (ICM) or ``sum_j w_ij q_jk`` (mean field).
- Colouring: with only face neighbours (4 in 2-D, 6 in 3-D) the voxels with
  ``(z + y + x)`` even never touch each other, nor do the odd ones: two colours.
  With diagonal neighbours, the eight classes of ``(z % 2, y % 2, x % 2)`` are
  independent sets. A sweep updates one colour at a time from the current values of
  the others, so every update sees fixed neighbours: ICM cannot oscillate and the
  result does not depend on the number of threads.
- The number of classes K comes in as the length of a tuple (``classes``), so each K
  gets its own compiled sweep with its loops unrolled: about twice as fast as a
  run-time K.

Each sweep also returns, summed over voxels in blocks of fixed size (so the sums do not
depend on the number of threads), everything the M-step needs: the Gaussian sufficient
statistics (float64, centred on the means), the pseudo-likelihood derivatives in beta,
the mean-field log-likelihood and the number of labels changed.

:func:`sweep` is a composition of small kernels, one per step of a voxel's update, as
DIPY's ``dipy/segment/mrf.pyx`` splits its ICM: the neighbour sums, the prior, the
observation term, the bound, the ICM or mean-field label, the pseudo-likelihood terms
and the statistics. They are inlined (``inline="always"``) into one loop, so the
compiled sweep is the one long loop it was when written out by hand: measured the same
speed (per-sweep CPU time, both versions alternating in one process, 2-D and 3-D, with
and without a table, ICM and mean field: within +-4 %, no direction) and the same bits.
Related arguments travel as tuples; numba's parallel loop takes no tuple of arrays from
outside, so :func:`sweep` takes them apart and rebuilds them inside the loop.
"""

import numpy as np
from numba import njit, prange

from .._shared.kernels import maha_full

BLOCK = 4096  # voxels per block of rows (about)
_TINY = 1e-200  # rescale the running product of likelihood ratios below this


@njit(cache=True, inline="always")
def _row_colour_start(z, y, colour, axis_parity):
    """First x of the given colour in row (z, y), or -1 when the row has none."""
    if axis_parity:
        if (z & 1) != (colour >> 2) or (y & 1) != ((colour >> 1) & 1):
            return -1
        return colour & 1
    return (colour + z + y) & 1


@njit(cache=True)
def _geometry(shape, offsets):
    """Flat offsets of the neighbours and how far they reach along each axis."""
    Z, Y, W = shape
    reach = np.zeros(3, dtype=np.int64)
    flat = np.empty(offsets.shape[0], dtype=np.int64)
    for m in range(offsets.shape[0]):
        flat[m] = (offsets[m, 0] * Y + offsets[m, 1]) * W + offsets[m, 2]
        for a in range(3):
            reach[a] = max(reach[a], abs(offsets[m, a]))
    return flat, reach


@njit(cache=True, inline="always")
def _inside(offsets, m, z, y, x, shape):
    Z, Y, W = shape
    zz = z + offsets[m, 0]
    yy = y + offsets[m, 1]
    xx = x + offsets[m, 2]
    return zz >= 0 and zz < Z and yy >= 0 and yy < Y and xx >= 0 and xx < W


@njit(cache=True, inline="always")
def _exp(x, double):
    """exp(x) for x <= 0; in single precision (plenty for float32 posteriors) unless
    ``double`` (ICM compares its terms exactly)."""
    if double:
        return np.exp(x)
    return np.float64(np.exp(np.float32(x)))


@njit(cache=True, inline="always")
def _add_stats(X, d, means, r, weight, y, nk, sx, sxx):
    """Add row ``d`` of ``X`` with responsibilities ``r`` to centred statistics (one
    feature written out: the same arithmetic without the run-time loops)."""
    D = X.shape[1]
    if D == 1:
        x = X[d, 0]
        for k in range(nk.shape[0]):
            rk = r[k] * weight
            nk[k] += rk
            u = x - means[k, 0]
            sx[k, 0] += rk * u
            sxx[k, 0, 0] += rk * u * u
        return
    for k in range(nk.shape[0]):
        rk = r[k] * weight
        nk[k] += rk
        for i in range(D):
            y[i] = X[d, i] - means[k, i]
            sx[k, i] += rk * y[i]
        for i in range(D):
            ri = rk * y[i]
            for j in range(i + 1):
                sxx[k, i, j] += ri * y[j]


# --- one voxel's update, in the order the sweep takes them ------------------------------
# (``K`` is passed as the sweep's compile-time constant, so the loops stay unrolled)


@njit(cache=True, inline="always")
def _neighbour_sums(s, v, z, y, x, fast, qf, labf, hood, shape, K, icm):
    """``s_k``: the weighted count of voxel ``v``'s neighbours labelled k (ICM) or the
    weighted sum of their posteriors (mean field; 0 outside the mask). ``fast``: every
    neighbour lies inside the grid. ``hood``: ``(offsets, flat offsets, weights)``."""
    offsets, flat, weights = hood
    for k in range(K):
        s[k] = 0.0
    for m in range(flat.shape[0]):
        if not fast and not _inside(offsets, m, z, y, x, shape):
            continue
        u = v + flat[m]
        if icm:
            lk = labf[u]
            if lk >= 0:
                s[lk] += weights[m]
        else:
            for k in range(K):
                s[k] += weights[m] * qf[u, k]


@njit(cache=True, inline="always")
def _prior(e, t, s, alpha, beta, K, double):
    """The prior ``softmax(alpha + beta s)`` unnormalised in ``e`` (its largest term
    exactly 1: one exponential saved); returns its sum. ``t``: scratch."""
    top_k = 0
    for k in range(K):
        t[k] = alpha[k] + beta * s[k]
        if t[k] > t[top_k]:
            top_k = k
    tmax = t[top_k]
    se = 0.0
    for k in range(K):
        t[k] -= tmax
        e[k] = 1.0 if k == top_k else _exp(t[k], double)
        se += e[k]
    return se


@njit(cache=True, inline="always")
def _observation(f, e, d, unary, table, X, means, y, K, double):
    """The posterior ``f_k = p(x_d | k) e_k`` unnormalised, scaled by ``exp(-base)``;
    returns ``(sum f, base)``. From the table (``dens``, ``top``) or, without one, the
    table's arithmetic for row ``d`` alone (``log_norm``, ``prec_chol``)."""
    dens, top, log_norm, prec_chol = unary
    sf = 0.0
    if table:
        for k in range(K):
            f[k] = dens[d, k] * e[k]
            sf += f[k]
        return sf, top[d]
    best = 0
    one = X.shape[1] == 1
    for k in range(K):
        if one:  # maha_full's arithmetic for one feature, without its loops
            u = (X[d, 0] - means[k, 0]) * prec_chol[k, 0, 0]
            f[k] = log_norm[k] - 0.5 * (u * u)
        else:
            f[k] = log_norm[k] - 0.5 * maha_full(X, d, means, prec_chol, k, y, X.shape[1])
        if f[k] > f[best]:
            best = k
    base = f[best]
    for k in range(K):
        f[k] = (1.0 if k == best else _exp(f[k] - base, double)) * e[k]
        sf += f[k]
    return sf, base


@njit(cache=True, inline="always")
def _observation_in_logs(f, e, d, dens, top, K):
    """:func:`_observation` in logs, for when the data and the prior disagree beyond
    float range (only a table's row can: it was rounded to 0 before the prior met it);
    returns ``(sum f, base)``."""
    fmax = -np.inf
    for k in range(K):
        f[k] = -np.inf
        if dens[d, k] > 0 and e[k] > 0:
            f[k] = np.log(dens[d, k]) + np.log(e[k])
        fmax = max(fmax, f[k])
    sf = 0.0
    for k in range(K):
        f[k] = np.exp(f[k] - fmax)
        sf += f[k]
    return sf, top[d] + fmax


@njit(cache=True, inline="always")
def _add_to_bound(log_sum, ratio, base, term):
    """The running bound ``log_sum + log(ratio)`` with ``base + log(term)`` added: a
    product of ratios, its logarithm taken only when it gets small."""
    log_sum += base
    ratio *= term
    if ratio < _TINY:
        log_sum += np.log(ratio)
        ratio = 1.0
    return log_sum, ratio


@njit(cache=True, inline="always")
def _relabel(f, v, qf, labf, K, icm):
    """1 when voxel ``v``'s label changes, else 0. ICM keeps its label unless another is
    strictly better (and writes the new one); mean field compares the most probable
    class of the old posteriors (still in ``qf``) with that of the new ``f``."""
    if icm:
        old = labf[v]
        best = old
        for k in range(K):
            if f[k] > f[best]:
                best = k
        if best != old:
            labf[v] = best
            return 1
        return 0
    old = 0
    best = 0
    for k in range(1, K):
        if qf[v, k] > qf[v, old]:
            old = k
        if f[k] > f[best]:
            best = k
    return 1 if best != old else 0


@njit(cache=True, inline="always")
def _normalise(f, e, sf, se, v, qf, K):
    """Posterior ``f`` and prior ``e`` divided by their sums; the posterior stored."""
    inv_f = 1.0 / sf
    inv_e = 1.0 / se
    for k in range(K):
        f[k] *= inv_f
        e[k] *= inv_e
        qf[v, k] = f[k]


@njit(cache=True, inline="always")
def _add_pseudo_likelihood(grad, curv, f, e, s, K):
    """One voxel's terms of the mean-field log pseudo-likelihood in ``(alpha, beta)``:
    its gradient, and its curvature (lower triangle and the beta column only)."""
    sbar = 0.0
    for k in range(K):
        grad[k] += f[k] - e[k]
        grad[K] += (f[k] - e[k]) * s[k]
        sbar += e[k] * s[k]
    for k in range(K):
        dk = s[k] - sbar
        curv[K, K] += e[k] * dk * dk
        curv[k, K] += e[k] * dk
        curv[k, k] += e[k]
        for j in range(k + 1):
            curv[k, j] -= e[k] * e[j]


@njit(cache=True, inline="always")
def _add_mass(mass, d, f, K):
    """Posterior mass per row of X, turned into statistics once per block."""
    for k in range(K):
        mass[d, k] += f[k]


# --- the sweep --------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _sweep_block(b, colour, grid, data, unary, geometry, prior, mode, K, out):
    """Update the voxels of one colour in block ``b`` of rows; add their statistics to
    ``out = (nk, sx, sxx, grad, curv, mass)``; return ``(log_sum, ratio, changes)``."""
    sitef, qf, labf, shape, rows_per_block = grid
    X, means = data
    hood, reach, axis_parity = geometry
    alpha, beta = prior
    icm, want_beta, table, by_row = mode
    nk, sx, sxx, grad, curv, mass = out
    Z, Y, W = shape
    s = np.empty(K)
    t = np.empty(K)
    e = np.empty(K)
    f = np.empty(K)
    y = np.empty(X.shape[1])
    log_sum = 0.0  # the bound, as log_sum + log(ratio)
    ratio = 1.0
    changes = 0
    for r in range(b * rows_per_block, min(Z * Y, (b + 1) * rows_per_block)):
        z = r // Y
        yy = r - z * Y
        x0 = _row_colour_start(z, yy, colour, axis_parity)
        if x0 < 0:
            continue
        inner_row = z >= reach[0] and z < Z - reach[0] and yy >= reach[1] and yy < Y - reach[1]
        for x in range(x0, W, 2):
            v = r * W + x
            d = sitef[v]
            if d < 0:
                continue
            fast = inner_row and x >= reach[2] and x < W - reach[2]
            _neighbour_sums(s, v, z, yy, x, fast, qf, labf, hood, shape, K, icm)
            se = _prior(e, t, s, alpha, beta, K, icm)
            sf, base = _observation(f, e, d, unary, table, X, means, y, K, icm)
            if sf > 1e-300:
                log_sum, ratio = _add_to_bound(log_sum, ratio, base, sf / se)
            else:
                sf, base = _observation_in_logs(f, e, d, unary[0], unary[1], K)
                log_sum += base + np.log(sf / se)
            changes += _relabel(f, v, qf, labf, K, icm)
            _normalise(f, e, sf, se, v, qf, K)
            if want_beta:
                _add_pseudo_likelihood(grad, curv, f, e, s, K)
            if by_row:
                _add_mass(mass, d, f, K)
            else:
                _add_stats(X, d, means, f, 1.0, y, nk, sx, sxx)
    if by_row:
        for d in range(mass.shape[0]):
            for k in range(K):
                f[k] = mass[d, k]
            _add_stats(X, d, means, f, 1.0, y, nk, sx, sxx)
    return log_sum, ratio, changes


@njit(cache=True)
def _symmetrise(sxx, curv, K):
    """Fill the upper triangles that the blocks left out: ``sxx``'s from the lower, and
    the curvature's alpha block from the lower, its beta row from the beta column."""
    for k in range(sxx.shape[0]):
        for i in range(sxx.shape[1]):
            for j in range(i):
                sxx[k, j, i] = sxx[k, i, j]
    for i in range(curv.shape[0]):
        for j in range(i):
            if i < K:
                curv[j, i] = curv[i, j]
            else:
                curv[i, j] = curv[j, i]


@njit(cache=True, parallel=True)
def sweep(field, data, unary, neighbourhood, prior, mode, classes):
    """One sweep over every colour; updates the posteriors (and, for ICM, the labels).

    ``field``: ``(site, q, lab)``, updated in place. ``data``: ``(X, means)``, the
    feature rows and the means the statistics are centred on. ``unary``: ``(dens, top,
    log_norm, prec_chol)``: the unary terms from the table ``dens``, ``top`` (one row
    per row of ``X``) or, when ``dens`` has no rows, computed per voxel from
    ``log_norm`` (log of each Gaussian's normalising constant) and ``prec_chol`` (K, D,
    D) (the upper Cholesky factors of the precisions, diagonal for diagonal models):
    cheaper than a table when nearly every voxel has its own row. ``neighbourhood``:
    ``(offsets, weights, axis_parity)``, ``axis_parity`` True with diagonal neighbours
    (eight colours). ``prior``: ``(alpha, beta)``. ``mode``: ``(icm, want_beta)``.
    ``classes``: any tuple of length K.

    Returns ``(nk, sx, sxx, grad, curv, bound, changes)``: Gaussian statistics of the
    new posteriors; when ``want_beta`` (else empty), the gradient (K + 1,) of the
    mean-field log pseudo-likelihood in ``(alpha, beta)`` and its curvature (the
    negative Hessian with the posteriors held fixed, (K + 1, K + 1));
    the summed mean-field log-likelihood ``log sum_k p(x_i | k) p_ik``; and the number
    of voxels whose label changed.
    """
    K = len(classes)
    site, q, lab = field  # taken apart here, rebuilt in the parallel loop (see above)
    X, means = data
    dens, top, log_norm, prec_chol = unary
    offsets, weights, axis_parity = neighbourhood
    alpha, beta = prior
    icm, want_beta = mode
    Z, Y, W = site.shape
    D = X.shape[1]
    shape = (Z, Y, W)
    sitef = site.reshape(-1)
    qf = q.reshape(-1, K)
    labf = lab.reshape(-1)
    flat, reach = _geometry(shape, offsets)
    rows_per_block = max(1, BLOCK // W)
    n_blocks = (Z * Y + rows_per_block - 1) // rows_per_block
    n_table = X.shape[0]
    by_row = n_table * 8 <= rows_per_block * W  # few distinct rows: sum posteriors per row
    table = dens.shape[0] > 0
    P = K + 1 if want_beta else 0
    acc_n = np.zeros((n_blocks, K))
    acc_x = np.zeros((n_blocks, K, D))
    acc_xx = np.zeros((n_blocks, K, D, D))
    acc_grad = np.zeros((n_blocks, P))
    acc_curv = np.zeros((n_blocks, P, P))
    acc_bound = np.zeros(n_blocks)
    acc_changes = np.zeros(n_blocks, dtype=np.int64)
    for colour in range(8 if axis_parity else 2):
        for b in prange(n_blocks):
            out = (
                np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D)), np.zeros(P),
                np.zeros((P, P)), np.zeros((n_table if by_row else 0, K)),
            )
            log_sum, ratio, changes = _sweep_block(
                b, colour, (sitef, qf, labf, shape, rows_per_block), (X, means),
                (dens, top, log_norm, prec_chol), ((offsets, flat, weights), reach, axis_parity),
                (alpha, beta), (icm, want_beta, table, by_row), K, out,
            )
            acc_n[b] += out[0]
            acc_x[b] += out[1]
            acc_xx[b] += out[2]
            acc_grad[b] += out[3]
            acc_curv[b] += out[4]
            acc_bound[b] += log_sum + np.log(ratio)
            acc_changes[b] += changes
    sxx = acc_xx.sum(0)
    curv = acc_curv.sum(0)
    _symmetrise(sxx, curv, K)
    return (
        acc_n.sum(0), acc_x.sum(0), sxx, acc_grad.sum(0), curv, acc_bound.sum(),
        acc_changes.sum(),
    )


@njit(cache=True, parallel=True)
def to_unary_table(logp, double):
    """Turn log-densities (n, K) into ``dens`` in place; return ``top`` (see above).
    The exponentials are those of :func:`sweep` without a table, so both give the same
    numbers: single precision unless ``double`` (ICM)."""
    n, K = logp.shape
    top = np.empty(n)
    for i in prange(n):
        best = 0
        for k in range(1, K):
            if logp[i, k] > logp[i, best]:
                best = k
        t = logp[i, best]
        top[i] = t
        for k in range(K):
            logp[i, k] = 1.0 if k == best else _exp(logp[i, k] - t, double)
    return top


@njit(cache=True, parallel=True)
def start_field(site, q, lab, X, means, dens, log_norm, prec_chol, log_weights, icm):
    """The plain mixture's posteriors inside the mask, 0 outside, and for ICM their most
    probable label (-1 outside); unary terms as in :func:`sweep`."""
    Z, Y, W = site.shape
    K = q.shape[3]
    table = dens.shape[0] > 0
    for r in prange(Z * Y):
        z = r // Y
        yy = r - z * Y
        a = np.empty(K)
        y = np.empty(X.shape[1])
        for x in range(W):
            d = site[z, yy, x]
            if d < 0:
                for k in range(K):
                    q[z, yy, x, k] = 0.0
                if icm:
                    lab[z, yy, x] = -1
                continue
            best = 0
            for k in range(K):
                if table:
                    a[k] = np.log(dens[d, k]) if dens[d, k] > 0 else -np.inf
                else:
                    a[k] = log_norm[k] - 0.5 * maha_full(X, d, means, prec_chol, k, y, X.shape[1])
                a[k] += log_weights[k]
                if a[k] > a[best]:
                    best = k
            top = a[best]
            total = 0.0
            for k in range(K):
                a[k] = np.exp(a[k] - top)
                total += a[k]
            for k in range(K):
                q[z, yy, x, k] = a[k] / total
            if icm:
                lab[z, yy, x] = best


@njit(cache=True, parallel=True)
def argmax_labels(site, q, lab):
    """Most probable class of each voxel inside the mask (first on ties), -1 outside."""
    Z, Y, W = site.shape
    K = q.shape[3]
    for r in prange(Z * Y):
        z = r // Y
        y = r - z * Y
        for x in range(W):
            if site[z, y, x] < 0:
                lab[z, y, x] = -1
                continue
            best = 0
            for k in range(1, K):
                if q[z, y, x, k] > q[z, y, x, best]:
                    best = k
            lab[z, y, x] = best


@njit(cache=True, parallel=True)
def potts_energy(site, lab, logp, alpha, beta, offsets, weights):
    """``-sum_i (logp[site_i, z_i] + alpha[z_i]) - beta * sum_{i~j} w_ij [z_i = z_j]``,
    each pair counted once (``offsets`` lists every neighbour in both directions)."""
    Z, Y, W = site.shape
    acc = np.zeros(Z * Y)
    for r in prange(Z * Y):
        z = r // Y
        y = r - z * Y
        total = 0.0
        for x in range(W):
            d = site[z, y, x]
            if d < 0:
                continue
            k = lab[z, y, x]
            total -= logp[d, k] + alpha[k]
            agree = 0.0
            for m in range(offsets.shape[0]):
                zz = z + offsets[m, 0]
                yy = y + offsets[m, 1]
                xx = x + offsets[m, 2]
                if zz < 0 or zz >= Z or yy < 0 or yy >= Y or xx < 0 or xx >= W:
                    continue
                if lab[zz, yy, xx] == k:
                    agree += weights[m]
            total -= 0.5 * beta * agree
        acc[r] = total
    return acc.sum()


@njit(cache=True)
def gibbs_potts(lab, n_classes, beta, offsets, weights, n_sweeps, seed):
    """Gibbs-sample a Potts field in place, raster order (serial, so a seed fixes it)."""
    np.random.seed(seed)
    Z, Y, W = lab.shape
    p = np.empty(n_classes)
    for _ in range(n_sweeps):
        for z in range(Z):
            for y in range(Y):
                for x in range(W):
                    for k in range(n_classes):
                        p[k] = 0.0
                    for m in range(offsets.shape[0]):
                        zz = z + offsets[m, 0]
                        yy = y + offsets[m, 1]
                        xx = x + offsets[m, 2]
                        if zz < 0 or zz >= Z or yy < 0 or yy >= Y or xx < 0 or xx >= W:
                            continue
                        p[lab[zz, yy, xx]] += weights[m]
                    top = p.max()
                    total = 0.0
                    for k in range(n_classes):
                        p[k] = np.exp(beta * (p[k] - top))
                        total += p[k]
                    u = np.random.random() * total
                    k = 0
                    acc = p[0]
                    while acc < u and k < n_classes - 1:
                        k += 1
                        acc += p[k]
                    lab[z, y, x] = k
