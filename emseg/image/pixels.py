"""From an image's pixels to a fitted mixture: the steps that :func:`emseg.segment` and a
shared model's fit (:mod:`emseg.image.model`) take alike.

- :func:`check_spatial`: the weight of the pixel coordinates among the features;
- :func:`valid_pixels`: which pixels take part (alpha, mask, finite values);
- :func:`fit_mixture`: the mixture of weighted feature rows, with a given number of
  classes or one chosen by :func:`emseg.mixture.selection.choose_k`;
- :func:`order_by_luminance`: the components put in label order, darkest first.
"""

import warnings

import numpy as np

from .._shared.errors import EmsegError, KChoiceWarning
from .._shared.validation import check_int
from ..mixture.gaussian_mixture import GaussianMixture, reorder_components
from ..mixture.selection import choose_k


def check_spatial(spatial):
    """``spatial`` (the weight of the pixel coordinates in the features) as a float
    >= 0; an :class:`~emseg.EmsegError` naming the value otherwise."""
    try:
        value = float(spatial)
    except (TypeError, ValueError):
        raise EmsegError(f"spatial must be a number >= 0, got {spatial!r}") from None
    if not np.isfinite(value) or value < 0:
        raise EmsegError(f"spatial must be a number >= 0, got {spatial!r}")
    return value


def check_mask(mask, shape):
    """``mask`` as a bool array, checked to have the image's spatial ``shape``."""
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise EmsegError(
            f"mask has shape {mask.shape} but the image has {shape}; use a mask of "
            "the image's size"
        )
    return mask.astype(bool)


def valid_pixels(shape, alpha, mask, values=None):
    """The pixels to segment, a bool array of the spatial ``shape`` (None: all of them):
    ``alpha`` (None or an array of ``shape``) not 0, inside ``mask`` (None or an array of
    ``shape``), and for float ``values`` (spatial shape + channels) every channel finite:
    NaN is no data."""
    valid = None
    if values is not None and np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values).all(axis=-1)
        if not finite.all():
            valid = finite
    if alpha is not None:
        valid = np.asarray(alpha) != 0 if valid is None else valid & (np.asarray(alpha) != 0)
    if mask is not None:
        mask = check_mask(mask, shape)
        valid = mask if valid is None else valid & mask
    return valid


def fit_mixture(X, weights, n_pixels, n_distinct, k, k_max, options, where=""):
    """``(model, table)``: the mixture of the feature rows ``X`` (weighted), with ``k``
    classes, or with ``k="auto"`` the K :func:`emseg.mixture.selection.choose_k` picks from
    2..``k_max`` (``table``: its whole curve; None for a given K; a
    :class:`KChoiceWarning` when it picks ``k_max``). ``n_pixels``: the pixels the rows
    stand for (the sample size of the choice of K); ``n_distinct``: their distinct
    values (no more classes than that); ``options``: keywords of
    :class:`~emseg.GaussianMixture`. A grey histogram is fitted with its saturation
    spikes flattened (see :func:`_without_saturation`). ``where`` ends the
    too-few-values message (" in all the images" for a shared model)."""
    flat = _without_saturation(X, weights)
    if not (isinstance(k, str) and k == "auto"):  # an array k must not compare elementwise
        if isinstance(k, (str, np.ndarray)):
            got = f"an array of shape {k.shape}" if isinstance(k, np.ndarray) else repr(k)
            raise EmsegError(f"k must be an integer >= 1 or 'auto', got {got}")
        k = check_int(k, "k", 1)
        if k > n_distinct:
            raise EmsegError(
                f"only {n_distinct} distinct pixel value(s){where}, cannot make {k} classes; "
                "lower k"
            )
        return GaussianMixture(k, **options).fit(X, sample_weight=flat), None
    choice = choose_k(X, flat, n_pixels, k_max, options, n_distinct=n_distinct)
    if choice.at_k_max:
        warnings.warn(
            f"k='auto' chose k_max={choice.k}, the largest K tried; raise k_max to "
            "consider more classes",
            KChoiceWarning,
            stacklevel=3,
        )
    return choice.model, choice.table


def _without_saturation(X, weights):
    """Histogram weights with the smallest and largest values' counts cut to their
    neighbours' (for grey histograms; other rows are returned as they are). The mixture
    of a grey image is fitted with these weights; every pixel is then labelled.

    Pixels clipped at a sensor's or a file's limits pile up on the extreme values, and
    the fit bends to them. Converged fits (tight ``tol``, restarts) find that a
    component on the single clipped value raises the likelihood most: a 3-class uint8
    image with noise 45 clipped at 0 was fitted as "the 5.5% of pixels at 0" plus two
    classes (64% misclassified) until the spikes were flattened. No class is made of
    one grey level. For choosing K: on uint8 phantoms with noise a third
    of the class spacing, clipped at 0 and 255, the converged fit at the true K had its
    closest pair of classes as little as 2.48 apart (Ashman's D) and a fit with one
    class too many as much as 2.74, so no threshold told them apart. With the two
    spikes flattened, 2.45 or more at the true K against at most 2.15 with one more
    (30 phantoms, 2-6 classes).
    """
    if weights is None or X.shape[1] != 1 or X.shape[0] < 4:
        return weights
    order = np.argsort(X[:, 0], kind="stable")
    flat = np.array(weights, dtype=np.float64)
    for end, neighbour in ((order[0], order[1]), (order[-1], order[-2])):
        flat[end] = min(flat[end], flat[neighbour])
    return flat


def order_by_luminance(model, resp, lum, counts):
    """Reorder the fitted ``model``'s components darkest first, by the mean luminance
    of their pixels, and return the order (``order[i]`` is the old index of label i).

    ``resp``: the responsibilities (n_rows, K) of the feature rows; ``lum``: each row's
    luminance; ``counts``: the pixels each row stands for."""
    mean_lum = ((counts * lum) @ resp) / np.maximum(counts @ resp, 1e-300)
    order = np.argsort(mean_lum, kind="stable")
    reorder_components(model, order)
    return order
