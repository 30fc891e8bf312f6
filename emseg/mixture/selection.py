"""Choose the number of mixture components: ``k="auto"``.

Every K in ``k_min..k_max`` is fitted with the caller's options, and the table keeps,
for each K, the whole curve: log-likelihood, BIC, ICL, the entropy of the
responsibilities, the smallest separation between two components and the smallest
component weight.

Criteria (``criterion=``):

- ``"separation"`` (the default): the lowest BIC among the fits whose components are
  all at least ``min_separation`` apart and each the most probable component of at
  least ``MIN_ROWS`` distinct rows (the smallest K is always eligible). A component on
  one or two grey levels is a spike of the histogram, such as pixels clipped at 0 or
  255: it is narrow, so Ashman's D (which averages the two variances) rates it apart
  from its broad neighbour, and it raises the likelihood a lot, but no one calls it a
  class. Measured after the fits reached better maxima (tighter ``tol``, restarts):
  on a 2-class uint8 phantom clipped at 0, the 3-component fit put a component of
  variance 8e-8 on the single value 0 (D 2.74 from its neighbour, BIC 5,300 lower);
  without this rule K=3 was chosen. The rule applies when there are at least
  ``MIN_ROWS`` rows per component.
  Separation is Ashman's D (Ashman, Bird & Zepf 1994): the distance between two means
  in units of their averaged covariance, ``sqrt(dm' ((S_i + S_j) / 2)^-1 dm)``. Two
  equal Gaussians make two peaks only when D > 2; classes whose means are three noise
  standard deviations apart have D = 3. The rule asks each class to stand apart from
  every other, as a person reading the histogram would.
- ``"bic"``: the lowest BIC, with ``n_samples`` (the pixel count) as the sample size.
- ``"icl"``: the lowest ICL, BIC plus twice the entropy of the responsibilities
  (Biernacki, Celeux & Govaert 2000).

The measurement that chose the rule (``benchmarks/bench_select_k.py``: seeded
phantoms with 2-6 classes stored as uint8, narrow uint16 and float32, fitted on
min-max scaled histogram rows with k-means initialisation and 5 restarts; 8 images
from ``skimage.data``). Exact K on its 90 phantoms (noise a third and a quarter of
the spacing between class means): separation 90, knee of the log-likelihood curve
72, BIC with Kish's effective sample size of the weights 65, ICL 64, BIC 34.

- BIC chose k_max (8) on most phantoms with noise a third of the spacing, and on
  camera and page. The pixel count (16 384 here, millions in real images) makes any
  departure from a Gaussian worth another component: the darkest and brightest
  classes are clipped at 0 and 255, and BIC splits them.
- A covariance floor at the quantisation step (``step**2 / 12``) is not what drives
  BIC to k_max: refitted with it, BIC chose the same K on all 90 phantoms and one
  more on 2 of the 8 images. The extra components BIC takes are tens of grey levels
  wide, not collapsed onto one or two levels.
- ICL stops early on real images, but its entropy term grows with every boundary
  between overlapping classes, so it merges true classes (5 or 6 classes with noise
  a third of the spacing: ICL mostly chooses 2).
- Smallest separation (``--wide``: 200 phantoms, noise 1/6 to 0.36 of the spacing):
  at the true K at least 2.99 with noise up to a third of the spacing (2.80 at
  0.36); every fit with more components than classes had a pair at most 2.63 apart
  (1.98 with noise a sixth of the spacing). The threshold 2.7 recovered K on all 200.
- Recalibrated to 2.3 once the fits converged further (``tol`` 1e-6, SQUAREM,
  restarts): the measurements above were made on fits stopped at ``tol=1e-3`` after a
  few iterations, close to k-means. Converged, a uint8 phantom clipped at 0 and 255
  gave as little as 2.48 at the true K and up to 2.74 with one class more, because the
  fit bends to the clipped pixels piled on 0 and 255. ``segment`` therefore chooses K
  on the grey histogram with those two spikes flattened (``_without_saturation``),
  where 30 phantoms (2-6 classes, noise 1/3 and 1/4 of the spacing) gave at least 2.45
  at the true K and at most 2.15 with one class more; 2.3 lies between. On 90 fresh
  phantoms (seeds 20-25, noise 1/4, 1/3 and 0.36 of the spacing) it chose the true K
  on all 90; on camera, moon, coins, page, text, brick, cell, grass and gravel it
  chose 2.
  On the real images the rule chooses 2 or 3 (camera 3, coins 3, moon 2), where BIC
  chose 8, 6 and 4.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from .._shared.errors import ConvergenceWarning, EmsegError
from .._shared.validation import check_choice, check_data, check_float, check_int
from .gaussian import COVARIANCE_TYPES, n_parameters
from .gaussian_mixture import GaussianMixture, full_covariances

CRITERIA = ("separation", "bic", "icl")
# Ashman's D below which two components are one class (see the module docstring).
MIN_SEPARATION = 2.3
# A component that is the most probable for fewer distinct rows (values) than this is a
# spike of the histogram (pixels saturated at 0 or 255, a constant border), not a class.
MIN_ROWS = 3


@dataclass
class KChoice:
    """What :func:`choose_k` found: the chosen ``model``, the ``table`` (one dict per K
    fitted), the ``criterion`` used, and ``at_k_max`` (True when the choice is the
    largest K tried, i.e. a larger ``k_max`` might have chosen more)."""

    model: GaussianMixture
    table: list
    criterion: str
    at_k_max: bool

    @property
    def k(self):
        return self.model.n_components_


def choose_k(X, weights, n_samples, k_max, options, *, criterion="separation", k_min=2,
             n_distinct=None, min_separation=MIN_SEPARATION):
    """Fit a :class:`~emseg.GaussianMixture` for each K in ``k_min..k_max`` and choose one.

    ``X`` (rows) and ``weights`` (None for unit weights) are what the fits see;
    ``n_samples`` is the sample size for BIC (for a histogram: the pixel count, not the
    number of rows). ``options`` are keywords for ``GaussianMixture``. ``n_distinct``
    (default: the number of rows) caps K. Returns a :class:`KChoice`.

    Each table row: ``k``, ``log_likelihood`` (weighted total), ``n_parameters``,
    ``bic``, ``entropy`` (weighted total entropy of the responsibilities), ``icl``,
    ``min_separation`` (Ashman's D of the closest pair), ``min_weight``.
    """
    check_choice(criterion, "criterion", CRITERIA)
    k_min = check_int(k_min, "k_min", 1)
    k_max = check_int(k_max, "k_max", max(k_min, 2))
    check_float(min_separation, "min_separation")
    n_distinct = X.shape[0] if n_distinct is None else n_distinct
    top = min(k_max, n_distinct)
    if top < k_min:
        raise EmsegError(
            f"only {n_distinct} distinct pixel value(s); cannot make {k_min} classes"
        )
    w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    table, models = [], []
    for k in range(k_min, top + 1):
        with warnings.catch_warnings():  # candidates: whether each converged is in the table
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = GaussianMixture(k, **options).fit(X, sample_weight=weights)
        table.append(_criteria(model, X, w, n_samples, X.shape[0] >= MIN_ROWS * k))
        models.append(model)
    best = _pick(table, criterion, min_separation)
    return KChoice(models[best], table, criterion, table[best]["k"] == k_max)


def _criteria(model, X, w, n_samples, count_rows):
    """One table row for a fitted model (``count_rows``: look for spikes, see
    ``MIN_ROWS``)."""
    log_lik = float(w @ model.score_samples(X))
    resp = model.predict_proba(X)
    rows = np.bincount(resp.argmax(1), minlength=model.n_components_)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(resp > 0, resp * np.log(resp), 0.0)
    entropy = float(-(w @ plogp.sum(axis=1)))
    k, d = model.means_.shape
    p = n_parameters(model.covariance_type, k, d)
    bic = -2 * log_lik + p * np.log(n_samples)
    return {
        "k": k,
        "log_likelihood": log_lik,
        "n_parameters": p,
        "bic": float(bic),
        "entropy": entropy,
        "icl": float(bic + 2 * entropy),
        "min_separation": min_separation(model),
        "min_weight": float(model.weights_.min()),
        "min_rows": int(rows.min()) if count_rows else None,
        "converged": bool(model.converged_),
    }


def _pick(table, criterion, threshold):
    """Index of the chosen row."""
    if criterion in ("bic", "icl"):
        return int(np.argmin([row[criterion] for row in table]))
    # the smallest K is always eligible: there is nothing smaller to fall back on
    eligible = [
        i for i, row in enumerate(table)
        if i == 0 or (row["min_separation"] >= threshold and (row["min_rows"] or MIN_ROWS) >= MIN_ROWS)
    ]
    return min(eligible, key=lambda i: table[i]["bic"])


def min_separation(model):
    """Ashman's D of the two closest components of a fitted mixture (inf for one)."""
    means = model.means_
    k = means.shape[0]
    cov = full_covariances(model)
    best = np.inf
    for i in range(k):
        for j in range(i + 1, k):
            dm = means[i] - means[j]
            D2 = dm @ np.linalg.solve((cov[i] + cov[j]) / 2, dm)
            best = min(best, float(np.sqrt(max(D2, 0.0))))
    return best


def select_table(X, k_max, covariance_types=("full", "tied", "diag", "spherical"),
                 random_state=0, *, n_init=1, max_iter=100, tol=1e-3, callback=None):
    """Fit a GaussianMixture for every K in 1..``k_max`` and covariance type.

    Returns ``(rows, best)``: ``rows`` is a list of dicts with keys ``k``,
    ``covariance_type``, ``bic``, ``aic``, ``log_likelihood`` (total over the rows),
    ``n_parameters``, ``converged`` and ``n_iter``, in the order fitted (each
    covariance type, then K ascending); ``best`` is the row with the lowest BIC (the
    first of equals). ``callback(row)`` is called after each fit (for progress).
    Each fit starts from ``random_state``.
    """
    X = check_data(X)
    k_max = check_int(k_max, "k_max", 1)
    if isinstance(covariance_types, str):
        covariance_types = [covariance_types]
    covariance_types = list(covariance_types)
    if not covariance_types:
        raise EmsegError("covariance_types is empty; give at least one covariance type")
    for ctype in covariance_types:
        if ctype not in COVARIANCE_TYPES:
            raise EmsegError(
                f"covariance type {ctype!r} is not one of {', '.join(COVARIANCE_TYPES)}"
            )
    n = X.shape[0]
    if k_max > n:
        raise EmsegError(f"k_max={k_max} is more than the {n} rows of the data; lower --k-max")
    if callback is not None and not callable(callback):
        raise EmsegError(f"callback must be callable, got {callback!r}")
    rows = []
    for ctype in covariance_types:
        for k in range(1, k_max + 1):
            gm = GaussianMixture(
                k, covariance_type=ctype, random_state=random_state, n_init=n_init,
                max_iter=max_iter, tol=tol,
            ).fit(X)
            loglik = gm.score(X) * n
            n_par = n_parameters(gm.covariance_type, *gm.means_.shape)
            row = {
                "k": k,
                "covariance_type": ctype,
                "bic": float(-2 * loglik + n_par * np.log(n)),
                "aic": float(-2 * loglik + 2 * n_par),
                "log_likelihood": float(loglik),
                "n_parameters": int(n_par),
                "converged": bool(gm.converged_),
                "n_iter": int(gm.n_iter_),
            }
            rows.append(row)
            if callback is not None:
                callback(row)
    best = min(rows, key=lambda r: r["bic"])
    return rows, best
