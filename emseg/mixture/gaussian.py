"""The Gaussian algebra of a mixture, as functions of plain arrays.

Every function takes the covariance type and arrays and returns arrays (as
scikit-learn's ``sklearn/mixture/_gaussian_mixture.py`` does), so the estimator
(:mod:`emseg.mixture.gaussian_mixture`), its chunked fit (:mod:`emseg.mixture.dask_fit`),
the MRF (:mod:`emseg.image.mrf`) and any other Gaussian model share one copy. The
layouts are scikit-learn's, for K components in D dimensions:

=================  ===============  ================================================
covariance_type    covariances      precisions_cholesky
=================  ===============  ================================================
``"full"``         (K, D, D)        (K, D, D): upper triangular U, precision U U^T
``"tied"``         (D, D)           (D, D)
``"diag"``         (K, D)           (K, D): 1 / standard deviation
``"spherical"``    (K,)             (K,)
=================  ===============  ================================================

The E-step's unit is :class:`GaussianStats`, centred sufficient statistics that add up
over chunks, missingness patterns, Dask blocks and MRF sweeps; :func:`m_step` turns any
sum of them into parameters.
"""

import math
import os
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._shared import compute as kern
from .._shared.errors import EmptyComponentWarning, EmsegError

#: The covariance types, in scikit-learn's order.
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
LOG_2PI = np.log(2 * np.pi)


@dataclass
class GaussianStats:
    """Sufficient statistics of one E-step, centred on ``shift`` (the means used).

    ``nk`` (K,) is each component's responsibility-weighted count and ``sx`` (K, D) the
    weighted sum of ``x - shift``; ``sxx`` that of ``(x - shift)(x - shift)^T``, (K, D, D)
    for full and tied models, or of its diagonal, (K, D), for diag and spherical.
    ``loglik`` is the weighted log-likelihood of the rows and ``weight`` their weight.
    Statistics computed under the same parameters add up with ``+``.
    """

    nk: np.ndarray
    sx: np.ndarray
    sxx: np.ndarray
    shift: np.ndarray
    loglik: float
    weight: float

    def __add__(self, other):
        return GaussianStats(
            self.nk + other.nk,
            self.sx + other.sx,
            self.sxx + other.sxx,
            self.shift,
            self.loglik + other.loglik,
            self.weight + other.weight,
        )


def unit_weights(w, n):
    """The weights ``w`` of ``n`` rows, or ones when ``w`` is the empty array that stands
    for unit weights (the convention of the compiled kernels)."""
    return np.ones(n) if w.shape[0] == 0 else w


class GaussianParams(NamedTuple):
    """A mixture's parameters, in the layouts of the module docstring."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray


# --- the M-step ---------------------------------------------------------------------------


def estimate_gaussian_parameters(stats, covariance_type, reg_covar, *, symmetrize=False):
    """Maximum-likelihood ``(weights, means, covariances, empty)`` from ``stats``.

    ``reg_covar`` (a number, or one value per feature) is added to the diagonal of every
    covariance: the floor of every M-step. ``empty`` (bool, (K,)) marks the components
    whose weight fell below 1e-10 of the total; their mean stays ``stats.shift`` and their
    weight is (about) 0, for the caller to re-seed (see :func:`reseed_empty`).
    ``symmetrize`` averages each full or tied scatter matrix with its transpose before
    dividing, so the covariances come out exactly symmetric from second moments that
    are symmetric only up to rounding (a BLAS product's; :func:`complete_stats`
    symmetrizes its own at the source instead).
    """
    nk, total = stats.nk, stats.nk.sum()
    empty = nk <= 1e-10 * total
    safe = np.where(empty, 1.0, nk)
    shift = stats.sx / safe[:, None]
    means = stats.shift + shift
    D = means.shape[1]
    if covariance_type in ("full", "tied"):
        scatter = stats.sxx - nk[:, None, None] * shift[:, :, None] * shift[:, None, :]
        if symmetrize:
            scatter = 0.5 * (scatter + scatter.transpose(0, 2, 1))
        if covariance_type == "full":
            cov = scatter / safe[:, None, None]
            cov[:, np.arange(D), np.arange(D)] += reg_covar
        else:
            cov = scatter.sum(0) / total
            cov.flat[:: D + 1] += reg_covar
    else:
        sxx = stats.sxx if stats.sxx.ndim == 2 else np.einsum("kii->ki", stats.sxx)
        var = sxx / safe[:, None] - shift**2 + reg_covar
        cov = var if covariance_type == "diag" else var.mean(1)
    return nk / total, means, cov, empty


def reseed_empty(empty, weights, means, covariances, covariance_type, rows):
    """Move each ``empty`` component onto the row of ``rows`` farthest from every other
    mean (greedy farthest-point, so two emptied components never land on one row), with
    an :class:`~emseg.EmptyComponentWarning`; returns ``(weights, means, covariances)``.

    ``rows`` (N, D) are the data's rows, or None to choose among the remaining means. A
    re-seeded component gets weight 1/K (then all are renormalised) and, unless tied, the
    mean covariance of the others. The rule looks only at the data and the new means,
    never at a previous fit. ``means`` and ``covariances`` are changed in place.
    """
    X = means[~empty] if rows is None else rows
    X = np.ascontiguousarray(X, dtype=np.float64)
    if (~empty).any():
        dist = kern.nearest_centre(X, np.ascontiguousarray(means[~empty]))[1]
    else:
        dist = np.zeros(X.shape[0])
    own_cov = covariance_type in ("full", "diag", "spherical")
    for k in np.flatnonzero(empty):
        row = int(np.argmax(dist))
        means[k] = X[row]
        dist = np.minimum(dist, kern.sq_dist_to(X, X[row]))
        weights[k] = 1.0 / len(weights)
        if own_cov:
            covariances[k] = covariances[~empty].mean(0) if (~empty).any() else covariances[k]
    warnings.warn(
        f"{int(empty.sum())} mixture component(s) lost all their weight and were "
        "re-seeded on poorly fitted rows; consider fewer components",
        EmptyComponentWarning,
        stacklevel=6,  # in GaussianMixture.fit: m_step, _m_step, the EM loop, run_em, fit
    )
    return weights / weights.sum(), means, covariances


def m_step(stats, covariance_type, reg_covar, data=None):
    """The M-step: :class:`GaussianParams` from ``stats`` with the covariance floor
    ``reg_covar`` (see :func:`estimate_gaussian_parameters`).

    A component that lost its weight is re-seeded (:func:`reseed_empty`) on
    ``data.reseed_rows()`` (``data``: the data EM runs on, e.g. a
    :class:`~emseg.mixture.training_data.TrainingData`; called only then), or on the
    remaining means when ``data`` is None or gives None.
    """
    weights, means, cov, empty = estimate_gaussian_parameters(stats, covariance_type, reg_covar)
    if empty.any():
        rows = None if data is None else data.reseed_rows()
        weights, means, cov = reseed_empty(empty, weights, means, cov, covariance_type, rows)
    return GaussianParams(weights, means, cov, cholesky_of_covariances(cov, covariance_type))


# --- statistics of a starting assignment -----------------------------------------------


_DIAG_FIX = "use covariance_type='diag' (or fewer columns or components)"


def stats_from_labels(X, w, labels, centres, full=True):
    """:class:`GaussianStats` of the hard assignment of the rows ``X`` (weights ``w``, an
    empty array for unit weights) to ``labels``, centred on ``centres`` (for starting
    EM); ``sxx`` is (K, D) (its diagonal) unless ``full``, as the E-step of
    diag/spherical gives."""
    K, D = centres.shape
    w = unit_weights(w, X.shape[0])
    nk = np.zeros(K)
    sx = np.zeros((K, D))
    if full:
        check_allocation((K, D, D), "full or tied covariances", _DIAG_FIX)
    sxx = np.zeros((K, D, D) if full else (K, D))
    for k in range(K):
        rows = labels == k
        y = X[rows] - centres[k]
        wk = w[rows]
        nk[k] = wk.sum()
        sx[k] = wk @ y
        sxx[k] = (y * wk[:, None]).T @ y if full else wk @ (y * y)
    return GaussianStats(nk, sx, sxx, centres, 0.0, float(w.sum()))


def stats_from_random(X, w, K, rng, full=True):
    """Statistics of random soft responsibilities (``init_params="random"``); ``sxx``
    as in :func:`stats_from_labels`."""
    w = unit_weights(w, X.shape[0])
    resp = rng.uniform(size=(X.shape[0], K))
    resp /= resp.sum(1, keepdims=True)
    resp *= w[:, None]
    nk = resp.sum(0)
    centres = (resp.T @ X) / nk[:, None]
    D = X.shape[1]
    if full:
        check_allocation((K, D, D), "full or tied covariances", _DIAG_FIX)
    sxx = np.empty((K, D, D) if full else (K, D))
    for k in range(K):
        y = X - centres[k]
        sxx[k] = (y * resp[:, k, None]).T @ y if full else resp[:, k] @ (y * y)
    return GaussianStats(nk, np.zeros((K, D)), sxx, centres, 0.0, float(w.sum()))


# --- Cholesky factors ----------------------------------------------------------------------


def cholesky_of_covariances(covariances, covariance_type):
    """Upper-triangular precision factors of ``covariances``, as scikit-learn stores them;
    an :class:`~emseg.EmsegError` naming the fix when one is not positive definite."""
    fix = "increase reg_covar or use fewer components"
    if covariance_type in ("diag", "spherical"):
        if (covariances <= 0).any() or not np.isfinite(covariances).all():
            raise EmsegError(f"a fitted variance is not positive; {fix}")
        return 1.0 / np.sqrt(covariances)
    covs = covariances[None] if covariance_type == "tied" else covariances
    if covs.shape[-1] == 1:  # one feature (grey images): the factor is 1 / sqrt(variance)
        if not (covs > 0).all() or not np.isfinite(covs).all():
            raise EmsegError(f"a fitted covariance is singular; {fix}")
        out = 1.0 / np.sqrt(covs)
        return out[0] if covariance_type == "tied" else out
    out = np.empty_like(covs)
    for k, S in enumerate(covs):
        try:
            if not np.isfinite(S).all():
                raise np.linalg.LinAlgError
            L = np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            raise EmsegError(f"a fitted covariance is singular; {fix}") from None
        out[k] = kern.inv_lower(L).T
    return out[0] if covariance_type == "tied" else out


def cholesky_of_precisions(precisions, covariance_type):
    """The upper factor U with ``precisions = U U^T`` (square roots for diag and
    spherical); an :class:`~emseg.EmsegError` about ``precisions_init`` when there is none."""
    if covariance_type in ("diag", "spherical"):
        if (precisions <= 0).any():
            raise EmsegError("precisions_init must be positive")
        return np.sqrt(precisions)
    precs = precisions[None] if covariance_type == "tied" else precisions
    out = np.empty_like(precs)
    for k, P in enumerate(precs):
        try:
            # the upper factor U with P = U U^T, by Cholesky of P with rows and columns reversed
            if not np.isfinite(P).all():
                raise np.linalg.LinAlgError
            out[k] = np.flipud(np.fliplr(np.linalg.cholesky(np.flipud(np.fliplr(P)))))
        except np.linalg.LinAlgError:
            raise EmsegError("precisions_init must be symmetric positive definite") from None
    return out[0] if covariance_type == "tied" else out


def covariances_from_cholesky(precisions_cholesky, covariance_type):
    """The covariances whose precision factors are ``precisions_cholesky``."""
    pc = precisions_cholesky
    if covariance_type in ("diag", "spherical"):
        return 1.0 / pc**2
    if covariance_type == "tied":
        return np.linalg.inv(pc @ pc.T)
    return np.linalg.inv(pc @ pc.transpose(0, 2, 1))


def precisions_from_cholesky(precisions_cholesky, covariance_type):
    """The precision matrices (or precisions) ``U U^T`` of the factors ``U``."""
    pc = precisions_cholesky
    if covariance_type == "full":
        return pc @ pc.transpose(0, 2, 1)
    if covariance_type == "tied":
        return pc @ pc.T
    return pc**2


# --- log-probabilities and the E-step -------------------------------------------------------


def kernel_params(weights, means, precisions_cholesky, covariance_type):
    """``(kind, log_norm, means, prec)`` as the compiled row kernels of
    :mod:`emseg._shared.compute` take them: ``kind`` "full" (tied broadcast to (K, D, D))
    or "diag" (spherical broadcast to (K, D)), ``log_norm`` (K,) = log weight + log
    determinant of the precision factor - D/2 log(2 pi), and C-contiguous float64 means
    and factors. ``weights`` None leaves the weights out (log-densities)."""
    K, D = means.shape
    pc = precisions_cholesky
    if covariance_type == "full":
        log_det = np.log(np.diagonal(pc, axis1=1, axis2=2)).sum(1)
        prec, kind = pc, "full"
    elif covariance_type == "tied":
        log_det = np.full(K, np.log(np.diag(pc)).sum())
        prec, kind = np.broadcast_to(pc, (K, D, D)), "full"
    elif covariance_type == "diag":
        log_det = np.log(pc).sum(1)
        prec, kind = pc, "diag"
    else:
        log_det = D * np.log(pc)
        prec, kind = np.broadcast_to(pc[:, None], (K, D)), "diag"
    if weights is None:
        log_norm = log_det - 0.5 * D * LOG_2PI
    else:
        with np.errstate(divide="ignore"):
            log_norm = np.log(weights) + log_det - 0.5 * D * LOG_2PI
    means = np.ascontiguousarray(means, dtype=np.float64)
    return kind, log_norm, means, np.ascontiguousarray(prec, dtype=np.float64)


def weighted_log_prob(X, weights, means, precisions_cholesky, covariance_type):
    """``log w_k + log N(x | mean_k, cov_k)`` for every row of ``X`` (complete rows,
    C-contiguous float32 or float64), (N, K); ``weights`` None: the log-densities."""
    kind, log_norm, means, prec = kernel_params(weights, means, precisions_cholesky,
                                                covariance_type)
    kernel = kern.log_prob_full if kind == "full" else kern.log_prob_diag
    return kernel(X, log_norm, means, prec)


def complete_stats(X, w, weights, means, precisions_cholesky, covariance_type):
    """The E-step on complete rows ``X`` (weights ``w``, an empty array for unit
    weights) in one compiled pass: :class:`GaussianStats` centred on ``means``."""
    K, D = means.shape
    kind, log_norm, means, prec = kernel_params(weights, means, precisions_cholesky,
                                                covariance_type)
    if X.shape[0] == 0:
        sxx = np.zeros((K, D, D) if kind == "full" else (K, D))
        return GaussianStats(np.zeros(K), np.zeros((K, D)), sxx, means, 0.0, 0.0)
    if kind == "full":
        nk, sx, sxx, ll = kern.estep_full(X, w, log_norm, means, prec)
        sxx = 0.5 * (sxx + sxx.transpose(0, 2, 1))
    else:
        nk, sx, sxx, ll = kern.estep_diag(X, w, log_norm, means, prec)
    weight = X.shape[0] if w.shape[0] == 0 else w.sum()
    return GaussianStats(nk, sx, sxx, means, float(ll), float(weight))


def logsumexp_rows(a):
    """``log(sum(exp(a), axis=1))`` for a 2-D array, without overflow (as
    ``scipy.special.logsumexp``; a row of -inf gives -inf)."""
    top = a.max(axis=1)
    top[~np.isfinite(top)] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - top[:, None]).sum(axis=1)) + top


# --- shapes and sizes ----------------------------------------------------------------------


def n_parameters(covariance_type, k, d):
    """Free parameters of a k-component mixture in d dimensions."""
    cov = {
        "full": k * d * (d + 1) / 2,
        "tied": d * (d + 1) / 2,
        "diag": k * d,
        "spherical": k,
    }[covariance_type]
    return int(cov + k * d + k - 1)


def diagonal_variances(covariances, covariance_type, n_features):
    """(K, D) variances of a diag or spherical mixture."""
    cov = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "diag":
        return cov
    return np.repeat(cov[:, None], n_features, axis=1)


def dense_covariances(covariances, covariance_type, n_components, n_features):
    """The covariances as a (K, D, D) array, whatever ``covariance_type``.

    Diag and spherical covariances are made dense: refused by :func:`check_allocation`
    when that needs more than the free memory (their own code paths never need it)."""
    K, D = n_components, n_features
    if covariance_type == "full":
        return covariances
    if covariance_type == "tied":
        return np.broadcast_to(covariances, (K, D, D))
    check_allocation((K, D, D), f"{covariance_type} covariances as (K, D, D) matrices")
    if covariance_type == "diag":
        return np.einsum("kd,de->kde", covariances, np.eye(D))
    return covariances[:, None, None] * np.eye(D)


def check_allocation(shape, what, fix="use fewer columns or components"):
    """Refuse (one line naming ``what``) a float64 array of ``shape`` larger than the
    machine's free memory, before numpy tries: a diagonal model over 100,000 columns
    made dense is (K, 100000, 100000), 149 GiB for two components."""
    size = 8.0 * math.prod(int(n) for n in shape)
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        free = 16 * 2**30
    if size > free:
        raise EmsegError(
            f"{what} needs a {tuple(int(n) for n in shape)} float64 array ({size / 2**30:.3g} "
            f"GiB), more than the {free / 2**30:.3g} GiB of free memory; {fix}"
        )


def covariance_shape(covariance_type, n_components, n_features):
    """The shape of the covariances (and of their precision factors) of
    ``covariance_type``, for K components in D dimensions (the module docstring's table)."""
    K, D = n_components, n_features
    return {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[covariance_type]


def check_symmetric(covariances, covariance_type, name):
    """Refuse full or tied ``covariances`` with a matrix that is not symmetric (to 1e-9 of
    its largest entry): an :class:`~emseg.EmsegError` naming ``name``, with the component's
    index for full ones (``covars_init[2] is not symmetric``). Diag and spherical pass."""
    if covariance_type not in ("full", "tied"):
        return
    mats = covariances[None] if covariance_type == "tied" else covariances
    for k, S in enumerate(mats):
        if np.abs(S - S.T).max() > 1e-9 * max(np.abs(S).max(), 1e-300):
            label = "" if covariance_type == "tied" else f"[{k}]"
            raise EmsegError(f"{name}{label} is not symmetric")
