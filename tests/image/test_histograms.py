"""Histograms of an image's features with the fitted mixture over them: densities in
the image's units that agree with scipy's normal density, any covariance type, any
storage of the same values."""

import numpy as np
import pytest
from _helpers import three_bands
from scipy import stats

import emseg
from emseg.image.histograms import marginal_variances, mixture_histograms


def _area(panel):
    """The mixture's area over the panel's range (trapezoids)."""
    y, x = panel.total, panel.x
    return float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum())


def _panels(seg, image, labels=None):
    values = image[..., None] if image.ndim == 2 else image
    gm = seg.model
    return mixture_histograms(values, seg.labels if labels is None else labels,
                              seg.features, gm.weights_, gm.means_, gm.covariances_,
                              gm.covariance_type)


def test_grey_components_in_pixel_units_match_scipy():
    image = three_bands(shape=(90, 120))
    seg = emseg.segment(image, 3)
    (panel,) = _panels(seg, image)
    assert panel.name == "intensity"
    widths = np.diff(panel.edges)
    assert np.allclose(widths, 1.0)  # one bin per grey level
    assert np.isclose((panel.density * widths).sum(), 1.0)
    offset, scale = seg.features.offset[0], seg.features.scale[0]
    gm = seg.model
    for i in range(3):
        expected = gm.weights_[i] * stats.norm.pdf(
            panel.x, offset + scale * gm.means_[i, 0], scale * np.sqrt(gm.covariances_[i, 0, 0]))
        assert np.allclose(panel.components[i], expected)
    assert np.allclose(panel.total, panel.components.sum(0))
    # the fitted means sit on the bands' grey levels, as the classes' pixel means do
    assert np.allclose(panel.means, seg.mean_values[:, 0], atol=3)
    # and the mixture integrates to 1 over the data's range (nothing lost off the ends)
    assert np.isclose(_area(panel), 1.0, atol=0.02)


def test_same_values_stored_otherwise_give_the_same_picture():
    image = three_bands(shape=(90, 120))
    base = _panels(emseg.segment(image, 3), image)[0]
    for scale in (1e-4, 1e4):
        other = image.astype(np.float64) * scale
        panel = _panels(emseg.segment(other, 3), other)[0]
        # same bars over a scaled axis: the densities scale by 1 / scale
        assert np.allclose(panel.edges[[0, -1]], [image.min() * scale, image.max() * scale])
        assert np.allclose(panel.means, base.means * scale, rtol=1e-3)
        assert np.isclose(_area(panel), 1.0, atol=0.02)


def test_masked_pixels_are_left_out():
    image = three_bands(shape=(90, 120))
    mask = np.zeros(image.shape, bool)
    mask[:, :40] = True  # the dark band only
    seg = emseg.segment(image, 2, mask=mask)
    (panel,) = _panels(seg, image)
    assert panel.edges[-1] < 120  # no pixel of the bright bands


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_marginal_variances_of_every_covariance_type(covariance_type, rng):
    X = rng.normal(size=(600, 3)) * [1.0, 2.0, 0.5] + np.repeat(np.eye(3) * 6, 200, axis=0)
    gm = emseg.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    var = marginal_variances(gm.covariances_, covariance_type, 3, 3)
    full = {"full": gm.covariances_,
            "tied": np.repeat(gm.covariances_[None], 3, axis=0),
            "diag": np.stack([np.diag(c) for c in gm.covariances_]) if covariance_type == "diag"
            else None,
            "spherical": np.stack([np.eye(3) * c for c in gm.covariances_])
            if covariance_type == "spherical" else None}[covariance_type]
    assert np.allclose(var, np.diagonal(full, axis1=1, axis2=2))


def test_lab_panels_and_spatial_features_marginalised():
    from skimage import data

    photo = data.astronaut()[::4, ::4]
    seg = emseg.segment(photo, 3)
    panels = _panels(seg, photo)
    assert [p.name for p in panels] == ["L", "a", "b"]
    assert 0 <= panels[0].edges[0] and panels[0].edges[-1] <= 100.5
    for p in panels:
        assert np.isclose((p.density * np.diff(p.edges)).sum(), 1.0)
    grey = three_bands(shape=(60, 80))
    seg = emseg.segment(grey, 3, spatial=0.5)
    assert seg.model.means_.shape[1] == 3  # value + two coordinates
    (panel,) = _panels(seg, grey)
    assert panel.components.shape == (3, panel.x.size)
