"""Weighted k-means++ seeding and Lloyd's k-means, used to start EM."""

import numpy as np

from .._shared import compute as kern


def _weights_or_ones(w, n):
    return np.ones(n) if w.shape[0] == 0 else w


def kmeans_plusplus(X, w, K, rng):
    """Greedy weighted k-means++ seeding (Arthur & Vassilvitskii, with local trials).

    ``w`` is the rows' weights (an empty array for unit weights). Returns (K, D) centres.
    """
    N = X.shape[0]
    weights = _weights_or_ones(w, N)
    trials = 2 + int(np.log(K))
    p = weights / weights.sum()
    first = rng.choice(N, p=p)
    centres = [np.asarray(X[first], dtype=np.float64)]
    closest = kern.sq_dist_to(X, centres[0])
    for _ in range(1, K):
        mass = np.cumsum(weights * closest)
        if mass[-1] <= 0:  # every row coincides with a centre: repeat one (EM re-seeds it)
            centres.append(centres[-1].copy())
            continue
        picks = np.searchsorted(mass, rng.uniform(0, mass[-1], trials), side="right")
        picks = np.minimum(picks, N - 1)
        best_cost, best_dist, best_row = np.inf, None, None
        for row in picks:
            dist = np.minimum(closest, kern.sq_dist_to(X, np.asarray(X[row], np.float64)))
            cost = float(weights @ dist)
            if cost < best_cost:
                best_cost, best_dist, best_row = cost, dist, row
        centres.append(np.asarray(X[best_row], dtype=np.float64))
        closest = best_dist
    return np.array(centres)


def lloyd(X, w, centres, max_iter=100):
    """Weighted Lloyd iterations from ``centres``; returns (centres, labels)."""
    K = centres.shape[0]
    labels, _ = kern.nearest_centre(X, centres)
    for _ in range(max_iter):
        sums, tot = kern.weighted_centres(X, w, labels, K)
        filled = tot > 0
        new = centres.copy()
        new[filled] = sums[filled] / tot[filled, None]
        new_labels, _ = kern.nearest_centre(X, new)
        centres = new
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return centres, labels
