"""Compiled sweeps over a Potts field on a 3-D grid (a 2-D image is one slice of it).

Conventions shared with :mod:`emseg.mrf`:

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

Each sweep also returns, summed over voxels in blocks of fixed size, everything the
M-step needs: the Gaussian sufficient statistics (float64, centred on the means), the
gradient and covariance of the pseudo-likelihood in (alpha, beta), the mean-field
log-likelihood and the number of ICM label changes.
"""

import numpy as np
from numba import njit, prange

BLOCK = 4096  # voxels per block of rows (about)


@njit(cache=True, inline="always")
def _row_colour_start(z, y, colour, axis_parity):
    """First x of the given colour in row (z, y), or -1 when the row has none."""
    if axis_parity:
        if (z & 1) != (colour >> 2) or (y & 1) != ((colour >> 1) & 1):
            return -1
        return colour & 1
    return (colour + z + y) & 1


@njit(cache=True, inline="always")
def _neighbour_sums(qf, labf, offsets, flat, weights, z, y, x, v, shape, reach, interior, icm, s):
    """``s_k = sum_j w_ij q_jk`` (mean field) or ``sum_j w_ij [z_j = k]`` (ICM)."""
    Z, Y, W = shape
    K = s.shape[0]
    for k in range(K):
        s[k] = 0.0
    fast = interior and x >= reach[2] and x < W - reach[2]
    for m in range(flat.shape[0]):
        if fast:
            u = v + flat[m]
        else:
            zz = z + offsets[m, 0]
            yy = y + offsets[m, 1]
            xx = x + offsets[m, 2]
            if zz < 0 or zz >= Z or yy < 0 or yy >= Y or xx < 0 or xx >= W:
                continue
            u = v + flat[m]
        if icm:
            lk = labf[u]
            if lk >= 0:
                s[lk] += weights[m]
        else:
            w = weights[m]
            for k in range(K):
                s[k] += w * qf[u, k]  # 0 outside the mask


@njit(cache=True, parallel=True)
def sweep(site, q, lab, dens, top, X, means, offsets, weights, alpha, beta, axis_parity, icm, want_beta):
    """One sweep over every colour; updates ``q`` (and ``lab`` for ICM) in place.

    Returns ``(nk, sx, sxx, pl_beta, bound, changes)``: Gaussian statistics of the new
    posteriors; when ``want_beta``, the derivative of the log pseudo-likelihood in beta and its negative second
    derivative; the summed mean-field log-likelihood ``log sum_k p(x_i | k) p_ik``; and
    the number of voxels whose label changed.
    """
    Z, Y, W = site.shape
    K = q.shape[3]
    D = X.shape[1]
    shape = (Z, Y, W)
    sitef = site.reshape(-1)
    qf = q.reshape(-1, K)
    labf = lab.reshape(-1)
    reach = np.zeros(3, dtype=np.int64)
    flat = np.empty(offsets.shape[0], dtype=np.int64)
    for m in range(offsets.shape[0]):
        flat[m] = (offsets[m, 0] * Y + offsets[m, 1]) * W + offsets[m, 2]
        for a in range(3):
            reach[a] = max(reach[a], abs(offsets[m, a]))
    rows_per_block = max(1, BLOCK // W)
    n_rows = Z * Y
    n_blocks = (n_rows + rows_per_block - 1) // rows_per_block
    acc_n = np.zeros((n_blocks, K))
    acc_x = np.zeros((n_blocks, K, D))
    acc_xx = np.zeros((n_blocks, K, D, D))
    acc_beta = np.zeros((n_blocks, 2))
    acc_bound = np.zeros(n_blocks)
    acc_changes = np.zeros(n_blocks, dtype=np.int64)
    n_colours = 8 if axis_parity else 2
    for colour in range(n_colours):
        for b in prange(n_blocks):
            s = np.empty(K)
            e = np.empty(K)
            f = np.empty(K)
            y = np.empty(D)
            nk = np.zeros(K)
            sx = np.zeros((K, D))
            sxx = np.zeros((K, D, D))
            g_beta = 0.0
            c_beta = 0.0
            bound = 0.0
            changes = 0
            for r in range(b * rows_per_block, min(n_rows, (b + 1) * rows_per_block)):
                z = r // Y
                yy = r - z * Y
                x0 = _row_colour_start(z, yy, colour, axis_parity)
                if x0 < 0:
                    continue
                interior = (
                    z >= reach[0] and z < Z - reach[0] and yy >= reach[1] and yy < Y - reach[1]
                )
                for x in range(x0, W, 2):
                    v = r * W + x
                    d = sitef[v]
                    if d < 0:
                        continue
                    _neighbour_sums(qf, labf, offsets, flat, weights, z, yy, x, v, shape, reach, interior, icm, s)
                    tmax = -np.inf
                    for k in range(K):
                        e[k] = alpha[k] + beta * s[k]
                        if e[k] > tmax:
                            tmax = e[k]
                    se = 0.0
                    sf = 0.0
                    for k in range(K):
                        if icm:
                            e[k] = np.exp(e[k] - tmax)
                        else:  # single precision is plenty for float32 posteriors
                            e[k] = np.exp(np.float32(e[k] - tmax))
                        se += e[k]
                        f[k] = dens[d, k] * e[k]
                        sf += f[k]
                    if sf > 1e-300:
                        bound += top[d] + np.log(np.float32(sf / se))
                    else:  # the data and the prior disagree beyond float range
                        fmax = -np.inf
                        for k in range(K):
                            f[k] = -np.inf
                            if dens[d, k] > 0 and e[k] > 0:
                                f[k] = np.log(dens[d, k]) + np.log(e[k])
                            if f[k] > fmax:
                                fmax = f[k]
                        sf = 0.0
                        for k in range(K):
                            f[k] = np.exp(f[k] - fmax)
                            sf += f[k]
                        bound += top[d] + fmax + np.log(sf / se)
                    if icm:
                        old = labf[v]
                        best = old
                        for k in range(K):
                            if f[k] > f[best]:
                                best = k
                        if best != old:
                            labf[v] = best
                            changes += 1
                    else:
                        old = 0
                        best = 0
                        for k in range(1, K):
                            if qf[v, k] > qf[v, old]:
                                old = k
                            if f[k] > f[best]:
                                best = k
                        if best != old:
                            changes += 1
                    inv_f = 1.0 / sf
                    inv_e = 1.0 / se
                    for k in range(K):
                        f[k] *= inv_f
                        e[k] *= inv_e
                        qf[v, k] = f[k]
                    if want_beta:  # pseudo-likelihood in beta: gradient, curvature
                        sbar = 0.0
                        for k in range(K):
                            g_beta += (f[k] - e[k]) * s[k]
                            sbar += e[k] * s[k]
                        for k in range(K):
                            c = s[k] - sbar
                            c_beta += e[k] * c * c
                    # Gaussian statistics, centred on the current means
                    for k in range(K):
                        rk = f[k]
                        nk[k] += rk
                        for i in range(D):
                            y[i] = X[d, i] - means[k, i]
                            sx[k, i] += rk * y[i]
                        for i in range(D):
                            ri = rk * y[i]
                            for j in range(i + 1):
                                sxx[k, i, j] += ri * y[j]
            acc_n[b] += nk
            acc_x[b] += sx
            acc_xx[b] += sxx
            acc_beta[b, 0] += g_beta
            acc_beta[b, 1] += c_beta
            acc_bound[b] += bound
            acc_changes[b] += changes
    nk = acc_n.sum(0)
    sx = acc_x.sum(0)
    sxx = acc_xx.sum(0)
    for k in range(K):
        for i in range(D):
            for j in range(i):
                sxx[k, j, i] = sxx[k, i, j]
    return nk, sx, sxx, acc_beta.sum(0), acc_bound.sum(), acc_changes.sum()


@njit(cache=True, parallel=True)
def scatter_rows(site, table, q):
    """``q[voxel] = table[site[voxel]]`` inside the mask, 0 outside."""
    Z, Y, W = site.shape
    K = q.shape[3]
    for r in prange(Z * Y):
        z = r // Y
        y = r - z * Y
        for x in range(W):
            d = site[z, y, x]
            for k in range(K):
                q[z, y, x, k] = table[d, k] if d >= 0 else 0.0


@njit(cache=True, parallel=True)
def scatter_labels(site, table, lab):
    """``lab[voxel] = table[site[voxel]]`` inside the mask, -1 outside."""
    Z, Y, W = site.shape
    for r in prange(Z * Y):
        z = r // Y
        y = r - z * Y
        for x in range(W):
            d = site[z, y, x]
            lab[z, y, x] = table[d] if d >= 0 else -1


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
