"""Compiled forward-backward, Viterbi and sufficient statistics for hidden Markov models.

The rows of all sequences sit in one array; sequence ``s`` is rows
``starts[s] : starts[s] + lengths[s]``. The recursions run one sequence per task,
sequences spread over the cores; the sufficient statistics that only need the
posteriors walk the rows in fixed-size chunks (as in :mod:`emseg._kernels`), so their
sums do not depend on the number of threads or on where the sequences break.

Forward-backward works in probability space with one scale per frame, like hmmlearn's
"scaling" implementation, but never exponentiates a raw log-density: each frame's
emission log-probabilities have their maximum subtracted first, so an outlier that is
improbable under every state cannot underflow the frame to zero. The backward
variables are rescaled to a maximum of 1 every frame and each frame's posteriors and
expected transitions are normalised explicitly, so nothing can overflow either. In the
one case that remains (a frame whose probability, relative to its best state, falls
below the smallest double -- possible only with transition probabilities that are
zero or below about 1e-300), that sequence is redone entirely in log space.
"""

import numpy as np
from numba import njit, prange

from ._kernels import CHUNK, n_chunks


# --- forward-backward ------------------------------------------------------------------


@njit(cache=True)
def _fb_scaled(logb, start, T, startprob, transmat, post, frame_max, xi):
    """Scaled forward-backward over rows ``start : start + T``.

    Writes the posteriors into ``post`` and adds the expected transition counts into
    ``xi`` (K, K). Returns ``(loglik, ok)``; when ``ok`` is False nothing was added to
    ``xi`` and the caller must use :func:`_fb_log`.
    """
    K = logb.shape[1]
    pred = np.empty(K)
    loglik = 0.0
    # forward: post[r] holds the filtered state probabilities alpha_t (summing to 1)
    for t in range(T):
        r = start + t
        m = logb[r, 0]
        for j in range(1, K):
            if logb[r, j] > m:
                m = logb[r, j]
        if not np.isfinite(m):
            return 0.0, False
        frame_max[r] = m
        if t == 0:
            for j in range(K):
                pred[j] = startprob[j]
        else:
            for j in range(K):
                s = 0.0
                for i in range(K):
                    s += post[r - 1, i] * transmat[i, j]
                pred[j] = s
        c = 0.0
        for j in range(K):
            a = pred[j] * np.exp(logb[r, j] - m)
            post[r, j] = a
            c += a
        if not (c > 0.0 and c < np.inf):
            return 0.0, False
        inv = 1.0 / c
        for j in range(K):
            post[r, j] *= inv
        loglik += np.log(c) + m
    # backward: beta is rescaled to a maximum of 1; post[r] becomes gamma_t
    beta = np.ones(K)
    tmp = np.empty(K)
    acc = np.zeros((K, K))
    for t in range(T - 2, -1, -1):
        r = start + t
        r1 = r + 1
        m1 = frame_max[r1]
        for j in range(K):
            tmp[j] = np.exp(logb[r1, j] - m1) * beta[j]
        norm = 0.0
        for j in range(K):
            s = 0.0
            for i in range(K):
                s += post[r, i] * transmat[i, j]
            norm += s * tmp[j]
        if not (norm > 0.0 and norm < np.inf):
            return 0.0, False
        inv = 1.0 / norm
        for j in range(K):
            tmp[j] *= inv
        top = 0.0
        for i in range(K):
            a = post[r, i]
            s = 0.0
            for j in range(K):
                v = transmat[i, j] * tmp[j]
                s += v
                acc[i, j] += a * v
            beta[i] = s
            if s > top:
                top = s
        if not (top > 0.0 and top < np.inf):
            return 0.0, False
        g = 0.0
        for i in range(K):
            beta[i] /= top
            v = post[r, i] * beta[i]
            post[r, i] = v
            g += v
        if not (g > 0.0):
            return 0.0, False
        for i in range(K):
            post[r, i] /= g
    for i in range(K):
        for j in range(K):
            xi[i, j] += acc[i, j]
    return loglik, True


@njit(cache=True, inline="always")
def _logsumexp(v, K):
    top = v[0]
    for k in range(1, K):
        if v[k] > top:
            top = v[k]
    if top == -np.inf:
        return -np.inf
    s = 0.0
    for k in range(K):
        s += np.exp(v[k] - top)
    return top + np.log(s)


@njit(cache=True)
def _fb_log(logb, start, T, log_startprob, log_transmat, post, xi):
    """Forward-backward entirely in log space (the slow, safe path); returns loglik.

    A sequence of probability zero gets NaN posteriors, no transition counts, and a
    log-likelihood of -inf.
    """
    K = logb.shape[1]
    la = np.empty((T, K))
    lb = np.empty((T, K))
    work = np.empty(K)
    for j in range(K):
        la[0, j] = log_startprob[j] + logb[start, j]
    for t in range(1, T):
        for j in range(K):
            for i in range(K):
                work[i] = la[t - 1, i] + log_transmat[i, j]
            la[t, j] = _logsumexp(work, K) + logb[start + t, j]
    loglik = _logsumexp(la[T - 1], K)
    if loglik == -np.inf or not np.isfinite(loglik):
        for t in range(T):
            for k in range(K):
                post[start + t, k] = np.nan
        return -np.inf
    for i in range(K):
        lb[T - 1, i] = 0.0
    for t in range(T - 2, -1, -1):
        for i in range(K):
            for j in range(K):
                work[j] = log_transmat[i, j] + logb[start + t + 1, j] + lb[t + 1, j]
            lb[t, i] = _logsumexp(work, K)
    for t in range(T):
        for k in range(K):
            work[k] = la[t, k] + lb[t, k]
        z = _logsumexp(work, K)
        for k in range(K):
            post[start + t, k] = np.exp(work[k] - z)
    for t in range(T - 1):
        for i in range(K):
            for j in range(K):
                v = la[t, i] + log_transmat[i, j] + logb[start + t + 1, j] + lb[t + 1, j]
                xi[i, j] += np.exp(v - loglik)
    return loglik


@njit(parallel=True, cache=True)
def forward_backward(logb, starts, lengths, startprob, transmat, log_startprob,
                     log_transmat, post, frame_max):
    """Posteriors of every frame (written into ``post``, (N, K)), and per sequence the
    expected transition counts (S, K, K) and the log-likelihood (S,).

    ``frame_max`` is a work array of N doubles.
    """
    K = logb.shape[1]
    S = starts.shape[0]
    xi = np.zeros((S, K, K))
    loglik = np.empty(S)
    for s in prange(S):
        start = starts[s]
        T = lengths[s]
        ll, ok = _fb_scaled(logb, start, T, startprob, transmat, post, frame_max, xi[s])
        if not ok:
            xi[s] = 0.0
            ll = _fb_log(logb, start, T, log_startprob, log_transmat, post, xi[s])
        loglik[s] = ll
    return xi, loglik


# --- Viterbi ---------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def viterbi(logb, starts, lengths, log_startprob, log_transmat):
    """Most probable state path of every sequence and its joint log-probability.

    Ties are broken as hmmlearn's compiled Viterbi breaks them (the highest-numbered
    predecessor; the lowest-numbered final state), so both give identical paths.
    """
    N, K = logb.shape
    S = starts.shape[0]
    states = np.empty(N, dtype=np.int64)
    logprob = np.empty(S)
    back = np.empty((N, K), dtype=np.int32)
    for s in prange(S):
        start = starts[s]
        T = lengths[s]
        delta = np.empty(K)
        new = np.empty(K)
        for j in range(K):
            delta[j] = log_startprob[j] + logb[start, j]
        for t in range(1, T):
            r = start + t
            for j in range(K):
                best = -np.inf
                arg = 0
                for i in range(K):
                    v = delta[i] + log_transmat[i, j]
                    if v >= best:
                        best = v
                        arg = i
                new[j] = best + logb[r, j]
                back[r, j] = arg
            for j in range(K):
                delta[j] = new[j]
        last = 0
        for j in range(1, K):
            if delta[j] > delta[last]:
                last = j
        logprob[s] = delta[last]
        state = last
        states[start + T - 1] = state
        for t in range(T - 1, 0, -1):
            state = back[start + t, state]
            states[start + t - 1] = state
    return states, logprob


# --- sufficient statistics of the emissions ---------------------------------------------


@njit(parallel=True, cache=True)
def gaussian_stats_full(X, post, means):
    """Posterior-weighted counts, centred first and second moments: ``(nk, sx, sxx)``
    with ``sx[k] = sum_n post[n, k] (x_n - mu_k)`` and ``sxx[k]`` the matching
    (D, D) sum of outer products, one BLAS product per block of rows."""
    N, D = X.shape
    K = means.shape[0]
    C = n_chunks(N)
    nk = np.zeros((C, K))
    sx = np.zeros((C, K, D))
    sxx = np.zeros((C, K, D, D))
    for c in prange(C):
        start = c * CHUNK
        B = min(N, start + CHUNK) - start
        Y = np.empty((B, D))
        W = np.empty((B, D))
        for k in range(K):
            acc_n = 0.0
            for n in range(B):
                r = post[start + n, k]
                acc_n += r
                for d in range(D):
                    y = X[start + n, d] - means[k, d]
                    Y[n, d] = y
                    W[n, d] = r * y
                    sx[c, k, d] += r * y
            nk[c, k] = acc_n
            sxx[c, k] = np.dot(W.T, Y)
    return nk.sum(0), sx.sum(0), sxx.sum(0)


@njit(parallel=True, cache=True)
def gaussian_stats_diag(X, post, means):
    """As :func:`gaussian_stats_full` with only the diagonal of ``sxx``: (K, D)."""
    N, D = X.shape
    K = means.shape[0]
    C = n_chunks(N)
    nk = np.zeros((C, K))
    sx = np.zeros((C, K, D))
    sxx = np.zeros((C, K, D))
    for c in prange(C):
        acc_n = np.zeros(K)
        acc_x = np.zeros((K, D))
        acc_xx = np.zeros((K, D))
        for n in range(c * CHUNK, min(N, (c + 1) * CHUNK)):
            for k in range(K):
                r = post[n, k]
                acc_n[k] += r
                for d in range(D):
                    y = X[n, d] - means[k, d]
                    ry = r * y
                    acc_x[k, d] += ry
                    acc_xx[k, d] += ry * y
        nk[c] = acc_n
        sx[c] = acc_x
        sxx[c] = acc_xx
    return nk.sum(0), sx.sum(0), sxx.sum(0)


@njit(parallel=True, cache=True)
def symbol_counts(symbols, post, n_symbols):
    """Expected emission counts ``counts[k, v] = sum_{n: x_n = v} post[n, k]``."""
    N, K = post.shape
    C = n_chunks(N)
    # one accumulator per thread-sized block of chunks keeps memory at (blocks, K, V)
    blocks = min(C, 16)
    per = (C + blocks - 1) // blocks
    counts = np.zeros((blocks, K, n_symbols))
    for b in prange(blocks):
        for n in range(b * per * CHUNK, min(N, (b + 1) * per * CHUNK)):
            v = symbols[n]
            for k in range(K):
                counts[b, k, v] += post[n, k]
    return counts.sum(0)


@njit(parallel=True, cache=True)
def categorical_log_prob(symbols, log_emission):
    """``out[n, k] = log_emission[k, symbols[n]]``, (N, K)."""
    N = symbols.shape[0]
    K = log_emission.shape[0]
    out = np.empty((N, K))
    for n in prange(N):
        v = symbols[n]
        for k in range(K):
            out[n, k] = log_emission[k, v]
    return out


# --- sampling --------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _draw(cdf_row, u, K):
    for k in range(K):
        if u < cdf_row[k]:
            return k
    # u beyond the last cumulative value (rounding): the last state with mass
    for k in range(K - 1, -1, -1):
        if k == 0 or cdf_row[k] > cdf_row[k - 1]:
            return k
    return 0


@njit(cache=True)
def sample_states(start_cdf, trans_cdf, u):
    """A Markov chain of ``u.shape[0]`` states driven by the uniforms ``u``."""
    n = u.shape[0]
    K = start_cdf.shape[0]
    out = np.empty(n, dtype=np.int64)
    if n == 0:
        return out
    state = _draw(start_cdf, u[0], K)
    out[0] = state
    for t in range(1, n):
        state = _draw(trans_cdf[state], u[t], K)
        out[t] = state
    return out


@njit(cache=True)
def sample_symbols(emission_cdf, states, u):
    """One symbol per state, from the rows of ``emission_cdf``, driven by ``u``."""
    n = states.shape[0]
    V = emission_cdf.shape[1]
    out = np.empty(n, dtype=np.int64)
    for t in range(n):
        out[t] = _draw(emission_cdf[states[t]], u[t], V)
    return out
