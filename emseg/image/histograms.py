"""The picture that shows whether a mixture fits: each feature's histogram with every
fitted component's weighted density and their sum, as numbers to plot.

The mixture lives in feature space (:mod:`emseg.image.features`). Where a feature is a
linear function of the pixel values -- grey (``(value - offset) / scale``, or the luma
of a colour image's channels, whose weights sum to 1), RGB and co-registered channels
-- the histogram is drawn in the image's own units and each Gaussian mapped back
(mean ``offset + scale * mu``, standard deviation ``scale * sigma``, density divided by
``scale``), so its axis reads as pixel values. Lab and HSV are not linear in the pixels:
their histograms are of the feature values themselves (L, a and b in their usual
units, i.e. emseg's features times 100; hue, saturation and value 0..1), with each
component's marginal density. Spatial features (``spatial > 0``) are marginalised out:
a Gaussian's marginal is the sub-block of its mean and covariance.

Pure functions on arrays; large images are sampled with a fixed stride (at most
``max_samples`` pixels), which changes a histogram's noise, not its shape.
"""

from dataclasses import dataclass

import numpy as np

from .features import FeatureSpec, luminance, value_features

__all__ = ["Panel", "marginal_variances", "mixture_histograms"]

_CURVE_POINTS = 240
_MAX_LEVEL_BINS = 256  # integer images with this many levels or fewer: one bin per level
_BINS = 128


@dataclass(frozen=True)
class Panel:
    """One histogram: ``edges`` (n + 1) and ``density`` (n; bar areas sum to 1) of
    ``name`` in ``unit``; the curves' ``x`` and, per component (label order),
    ``components[i]`` its weight times its density; ``total`` their sum. ``means``
    and ``variances``: each component's, in the panel's unit."""

    name: str
    unit: str
    edges: np.ndarray
    density: np.ndarray
    x: np.ndarray
    components: np.ndarray
    total: np.ndarray
    means: np.ndarray
    variances: np.ndarray


def marginal_variances(covariances, covariance_type, k, n_features):
    """``(k, n_features)``: each component's variance of each feature, for any of the
    four covariance types (full, tied, diag, spherical)."""
    cov = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return np.diagonal(cov, axis1=1, axis2=2).copy()
    if covariance_type == "tied":
        return np.tile(np.diagonal(cov), (k, 1))
    if covariance_type == "diag":
        return cov.reshape(k, n_features).copy()
    return np.repeat(cov.reshape(k, 1), n_features, axis=1)  # spherical


def mixture_histograms(values, labels, features, weights, means, covariances,
                       covariance_type, *, max_samples=1 << 17):
    """The histograms of an image's features with the fitted mixture over them.

    ``values``: the pixel values with a trailing channel axis (spatial shape + (C,),
    as :func:`~emseg.image.features.split_channels` gives); ``labels``: the
    segmentation's labels (pixels labelled 0, outside the mask, are left out), or None
    for all pixels. ``features``: the
    :class:`~emseg.image.features.FeatureSpec` or its dict (a report's
    ``features``); the mixture's ``weights``, ``means``, ``covariances`` and
    ``covariance_type`` as fitted (a report's ``model``). Returns a list of
    :class:`Panel`, one per value feature.
    """
    spec = _spec(features)
    weights = np.asarray(weights, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    k, d = means.shape
    variances = marginal_variances(covariances, covariance_type, k, d)
    sample = _sample(values, labels, max_samples)
    integer = np.issubdtype(np.asarray(values).dtype, np.integer)
    space = spec.color_space
    panels = []
    if space in ("lab", "hsv"):
        feats = value_features(sample, spec) if sample.shape[0] else np.zeros((0, 3))
        factor = 100.0 if space == "lab" else 1.0
        names = ("L", "a", "b") if space == "lab" else ("hue", "saturation", "value")
        unit = "feature value (L, a, b)" if space == "lab" else "feature value (0-1)"
        for j, name in enumerate(names):
            panels.append(_panel(name, unit, feats[:, j] * factor, False, weights,
                                 means[:, j] * factor, variances[:, j] * factor**2))
        return panels
    scale, offset = np.asarray(spec.scale), np.asarray(spec.offset)
    if space == "gray":
        pixel = sample[:, 0] if sample.shape[1] == 1 else luminance(sample)
        columns = [("intensity" if sample.shape[1] == 1 else "luminance", pixel, 0)]
        integer = integer and sample.shape[1] == 1
    else:  # rgb or co-registered channels: one feature per channel
        columns = [(name, sample[:, min(j, sample.shape[1] - 1)], j)
                   for j, name in enumerate(spec.names)]
    for name, pixel, j in columns:
        o, s = float(offset[min(j, offset.size - 1)]), float(scale[min(j, scale.size - 1)])
        panels.append(_panel(name, "pixel value", pixel, integer, weights,
                             o + s * means[:, j], s * s * variances[:, j]))
    return panels


def _spec(features):
    if isinstance(features, FeatureSpec):
        return features
    fields = ("color_space", "spatial", "n_channels", "offset", "scale")
    plain = {key: features[key] for key in fields if key in features}
    plain["offset"] = tuple(plain.get("offset", ()))
    plain["scale"] = tuple(plain.get("scale", ()))
    return FeatureSpec(**plain)


def _sample(values, labels, max_samples):
    """``(M, C)`` float64 values of the labelled pixels: every ``step``-th pixel of
    every ``step``-th row, so that at most about ``max_samples`` are read (a regular
    grid: reading every row would touch all of a large image's memory)."""
    v = np.asarray(values)
    grid = v.reshape(-1, v.shape[-2], v.shape[-1]) if v.ndim > 2 else v.reshape(1, -1, v.shape[-1])
    step = max(1, int(np.ceil(np.sqrt(grid.shape[0] * grid.shape[1] / max_samples))))
    rows = grid[::step, ::step].reshape(-1, v.shape[-1])
    if labels is not None:
        lab = np.asarray(labels).reshape(grid.shape[:2])
        rows = rows[lab[::step, ::step].reshape(-1) > 0]
    rows = rows.astype(np.float64)
    return rows[np.isfinite(rows).all(axis=1)]


def _panel(name, unit, data, integer, weights, means, variances):
    data = np.asarray(data, dtype=np.float64)
    if data.size:
        low, high = float(data.min()), float(data.max())
    else:
        low, high = float(means.min()), float(means.max())
    if integer and high - low + 1 <= _MAX_LEVEL_BINS:
        low, high = low - 0.5, high + 0.5  # one bin per level
        bins = int(round(high - low))
    else:
        if high <= low:
            low, high = low - 0.5, high + 0.5
        bins = _BINS
    # equal bins given by number and range: numpy's fast path (edges given sort the data)
    density, edges = np.histogram(data, bins=bins, range=(low, high), density=data.size > 0)
    x = np.linspace(edges[0], edges[-1], _CURVE_POINTS)
    sd = np.sqrt(np.maximum(variances, 1e-300))
    z = (x[None, :] - means[:, None]) / sd[:, None]
    components = weights[:, None] * np.exp(-0.5 * z * z) / (sd[:, None] * np.sqrt(2 * np.pi))
    return Panel(name, unit, edges, density.astype(np.float64), x, components,
                 components.sum(axis=0), means, np.asarray(variances, dtype=np.float64))
