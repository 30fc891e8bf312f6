"""Compiled forward-backward, Viterbi and sufficient statistics for hidden Markov models.

The rows of all sequences sit in one array; sequence ``s`` is rows
``starts[s] : starts[s] + lengths[s]``. The recursions run one sequence per task,
sequences spread over the cores; the sufficient statistics that only need the
posteriors walk the rows in fixed-size chunks (as in :mod:`emseg._shared.kernels`), so their
sums do not depend on the number of threads or on where the sequences break.

Forward-backward works in probability space with one scale factor per frame, like
hmmlearn's "scaling" implementation, but never exponentiates a raw log-density: each
frame's emission log-probabilities have their maximum subtracted first, so an outlier
that is improbable under every state cannot underflow the frame to zero. Those
exponentials are taken once, by numpy's vectorised ``exp``, and the forward pass
leaves its scale factors behind, so the recursions themselves need no exp and
almost no log. What can still fail is detected, never silently wrong: a
frame whose probability relative to its best state is below the smallest double (only
possible with transition probabilities that are zero or under about 1e-300), or
backward variables that overflow (a state the forward pass gave probability below
1e-308 that the future favours). The caller then redoes that sequence entirely in log
space (:func:`forward_backward_log`).
"""

import numpy as np
from numba import njit, prange

from .._shared.kernels import CHUNK, inv_lower, n_chunks


# --- forward-backward ------------------------------------------------------------------


@njit(parallel=True, cache=True)
def shift_rows(lp):
    """Subtract each row's maximum from ``lp`` in place and return the maxima (N,).

    The exponentials are then taken by numpy, whose vectorised ``exp`` is several times
    faster than a compiled scalar loop.
    """
    N, K = lp.shape
    top = np.empty(N)
    for c in prange(n_chunks(N)):
        for n in range(c * CHUNK, min(N, (c + 1) * CHUNK)):
            m = lp[n, 0]
            for k in range(1, K):
                if lp[n, k] > m:
                    m = lp[n, k]
            top[n] = m
            if np.isfinite(m):
                for k in range(K):
                    lp[n, k] -= m
    return top


@njit(cache=True)
def _fb_scaled(e, top, start, T, startprob, transmat, post, inv_scale, xi):
    """Scaled forward-backward over rows ``start : start + T``.

    ``e[r, j] = exp(lp[r, j] - top[r])`` with ``top[r]`` the row's largest emission
    log-probability. Writes the posteriors into ``post``, the reciprocal scale factors
    into ``inv_scale``, and adds the expected transition counts into ``xi`` (K, K).
    Returns ``(loglik, ok)``; when ``ok`` is False, ``xi`` is untouched and the sequence
    must be redone by :func:`forward_backward_log`.
    """
    K = e.shape[1]
    pred = np.empty(K)
    loglik = 0.0
    prod = 1.0  # scale factors multiplied up, logged only when small: one log per ~1e250
    # forward: post[r] holds the filtered state probabilities alpha_t (summing to 1)
    for t in range(T):
        r = start + t
        if not np.isfinite(top[r]):
            return 0.0, False
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
            a = pred[j] * e[r, j]
            post[r, j] = a
            c += a
        if not (c > 0.0 and c < np.inf):
            return 0.0, False
        inv = 1.0 / c
        inv_scale[r] = inv
        for j in range(K):
            post[r, j] *= inv
        loglik += top[r]
        if c < 1e-50:
            loglik += np.log(c)
        else:
            prod *= c
            if prod < 1e-250:
                loglik += np.log(prod)
                prod = 1.0
    loglik += np.log(prod)
    # backward, with the forward pass's scale factors; post[r] becomes gamma_t
    beta = np.ones(K)
    tmp = np.empty(K)
    acc = np.zeros((K, K))
    for t in range(T - 2, -1, -1):
        r = start + t
        r1 = r + 1
        s1 = inv_scale[r1]
        for j in range(K):
            tmp[j] = e[r1, j] * beta[j] * s1
        g = 0.0
        for i in range(K):
            a = post[r, i]
            s = 0.0
            for j in range(K):
                v = transmat[i, j] * tmp[j]
                s += v
                acc[i, j] += a * v
            beta[i] = s
            v = a * s
            post[r, i] = v
            g += v
        # g is 1 up to rounding; anything else means beta overflowed
        if not (g > 0.0 and g < np.inf):
            return 0.0, False
        inv = 1.0 / g
        for i in range(K):
            post[r, i] *= inv
    for i in range(K):
        for j in range(K):
            xi[i, j] += acc[i, j]
    return loglik, True


@njit(parallel=True, cache=True)
def forward_backward(e, top, starts, lengths, startprob, transmat, post, inv_scale):
    """Posteriors of every frame (written into ``post``, (N, K)), and per sequence the
    expected transition counts (S, K, K), the log-likelihood (S,) and whether the
    scaled recursion succeeded (S,).

    ``e`` and ``top`` are the emission probabilities relative to each frame's best
    state and that state's log-probability (see :func:`shift_rows`); ``inv_scale`` is
    a work array of N doubles. A sequence that failed (see the module docstring) must
    be redone with :func:`forward_backward_log` on its emission log-probabilities.
    """
    K = e.shape[1]
    S = starts.shape[0]
    xi = np.zeros((S, K, K))
    loglik = np.zeros(S)
    ok = np.empty(S, dtype=np.bool_)
    for s in prange(S):
        ll, good = _fb_scaled(
            e, top, starts[s], lengths[s], startprob, transmat, post, inv_scale, xi[s]
        )
        loglik[s] = ll
        ok[s] = good
    return xi, loglik, ok


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
def forward_backward_log(logb, log_startprob, log_transmat, post):
    """Forward-backward of one sequence entirely in log space (the slow, safe path).

    Writes the posteriors into ``post`` (T, K) and returns ``(xi, loglik)``. A
    sequence of probability zero gets NaN posteriors, no transition counts and a
    log-likelihood of -inf.
    """
    T, K = logb.shape
    xi = np.zeros((K, K))
    la = np.empty((T, K))
    lb = np.empty((T, K))
    work = np.empty(K)
    for j in range(K):
        la[0, j] = log_startprob[j] + logb[0, j]
    for t in range(1, T):
        for j in range(K):
            for i in range(K):
                work[i] = la[t - 1, i] + log_transmat[i, j]
            la[t, j] = _logsumexp(work, K) + logb[t, j]
    loglik = _logsumexp(la[T - 1], K)
    if not np.isfinite(loglik):
        post[:, :] = np.nan
        return xi, -np.inf
    lb[T - 1, :] = 0.0
    for t in range(T - 2, -1, -1):
        for i in range(K):
            for j in range(K):
                work[j] = log_transmat[i, j] + logb[t + 1, j] + lb[t + 1, j]
            lb[t, i] = _logsumexp(work, K)
    for t in range(T):
        for k in range(K):
            work[k] = la[t, k] + lb[t, k]
        z = _logsumexp(work, K)
        for k in range(K):
            post[t, k] = np.exp(work[k] - z)
    for t in range(T - 1):
        for i in range(K):
            for j in range(K):
                v = la[t, i] + log_transmat[i, j] + logb[t + 1, j] + lb[t + 1, j]
                xi[i, j] += np.exp(v - loglik)
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


# --- covariance factors ------------------------------------------------------------------


@njit(cache=True)
def precision_factors(covs):
    """Upper-triangular ``U[k]`` with ``U[k] @ U[k].T`` the inverse of ``covs[k]``, and
    whether each Cholesky factorisation succeeded.

    Compiled rather than LAPACK: the M-step factorises a few tiny matrices every
    iteration, and a threaded OpenBLAS was measured taking ~15 ms per 3 x 3 call on busy
    cores (0.03 ms here).
    """
    K, D, _ = covs.shape
    out = np.zeros((K, D, D))
    ok = np.ones(K, dtype=np.bool_)
    L = np.zeros((D, D))
    for k in range(K):
        L[:, :] = 0.0
        for j in range(D):
            s = covs[k, j, j]
            for m in range(j):
                s -= L[j, m] * L[j, m]
            if not (s > 0.0):
                ok[k] = False
                break
            L[j, j] = np.sqrt(s)
            for i in range(j + 1, D):
                s = covs[k, i, j]
                for m in range(j):
                    s -= L[i, m] * L[j, m]
                L[i, j] = s / L[j, j]
        if ok[k]:
            out[k] = inv_lower(L).T
    return out, ok
