"""Issue 11's properties: answers that do not depend on how values are stored, maxima at
least as good as scikit-learn's defaults, NaN as no data, and SQUAREM reaching plain EM's
maximum in fewer iterations."""

import warnings

import numpy as np
import pytest

from emseg import GaussianMixture, segment
from emseg.image.mrf import potts_sample

MEANS = np.array([60.0, 155.0, 250.0])


def potts_phantom(seed, sigma, shape=(96, 96)):
    """Three classes on a Potts label image, means 95 apart, Gaussian noise; float64."""
    truth = potts_sample(shape, 3, 1.2, random_state=seed, n_sweeps=30)
    rng = np.random.default_rng(seed)
    values = MEANS[truth] + rng.normal(0, sigma, shape)
    return values - min(values.min(), 0.0), truth


def storages(values):
    """The same values stored seven ways: integer copies hold the rounded values."""
    rounded = np.rint(values)
    return {
        "uint8": np.rint(rounded * 255 / rounded.max()).astype(np.uint8),
        "uint16 narrow": rounded.astype(np.uint16),
        "uint16 wide": (rounded * 60).astype(np.uint16),
        "int16": (rounded - 300).astype(np.int16),
        "int32": (rounded * 1000 - 10**6).astype(np.int32),
        "float32 x 1e-4": (rounded * 1e-4).astype(np.float32),
        "float64": rounded,
    }


@pytest.mark.parametrize("sigma", [20, 47])
def test_storage_and_affine_copies_give_the_same_labels(sigma):
    values, _ = potts_phantom(1, sigma)
    copies = storages(values)
    reference = segment(copies["float64"], 3).labels
    for name, image in copies.items():
        if name == "uint8":
            continue  # rescaled to 0..255 and rounded again: other values
        labels = segment(image, 3).labels
        assert (labels == reference).mean() >= 0.999, name
    # a * x + b for any a > 0
    for a, b in ((1e-4, 0.0), (1e4, -5e5), (3.0, 1e3)):
        labels = segment(copies["float64"] * a + b, 3).labels
        assert (labels == reference).mean() >= 0.999, (a, b)


def test_narrow_uint16_two_classes_get_both_classes():
    # a 16-bit microscope image using 0..235 of 0..65535: two classes, dim nuclei
    rng = np.random.default_rng(3)
    truth = np.zeros((80, 80), int)
    yy, xx = np.mgrid[:80, :80]
    for cy, cx in ((20, 20), (55, 30), (40, 62)):
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 < 100] = 1
    image = np.clip(np.rint(np.array([40.0, 150.0])[truth] + rng.normal(0, 18, truth.shape)), 0, 235)
    seg = segment(image.astype(np.uint16), 2)
    assert sorted(np.unique(seg.labels)) == [1, 2]
    assert (seg.labels == truth + 1).mean() > 0.97
    np.testing.assert_allclose(seg.mean_values[:, 0], [40, 150], atol=5)  # the image's units


def test_nan_pixels_are_masked():
    values, truth = potts_phantom(2, 20)
    image = values.astype(np.float32)
    image[:10] = np.nan
    image[50, 50] = np.inf
    seg = segment(image, 3)
    assert (seg.labels[:10] == 0).all() and seg.labels[50, 50] == 0
    assert (seg.labels[10:] >= 1).sum() == image[10:].size - 1
    assert seg.fractions.sum() == pytest.approx(1.0)
    assert np.isfinite(seg.mean_values).all()
    clean = segment(values[10:].astype(np.float32), 3).labels
    inside = seg.labels[10:]
    keep = inside >= 0
    assert (inside[keep] == clean[keep]).mean() > 0.999


@pytest.mark.parametrize("seed", range(20))
def test_default_fit_at_least_as_good_as_scikit_learns_default(seed):
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    rng = np.random.default_rng(seed)
    sigma = rng.choice([30.0, 47.0, 66.0, 95.0])
    values, _ = potts_phantom(100 + seed, sigma, shape=(64, 64))
    X = values.reshape(-1, 1) / 255.0
    ours = GaussianMixture(3, random_state=seed).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SkGaussianMixture(3, random_state=seed).fit(X)
    assert ours.score(X) >= ref.score(X) - 1e-4


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_squarem_reaches_plain_ems_maximum_in_fewer_iterations(covariance_type):
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(0, 1, (3000, 2)), rng.normal(1.6, 1.2, (2000, 2))])
    options = dict(covariance_type=covariance_type, tol=1e-9, max_iter=5000,
                   random_state=0, n_init=1)
    fast = GaussianMixture(2, **options).fit(X)
    plain = GaussianMixture(2, accelerate=False, **options).fit(X)
    assert fast.converged_ and plain.converged_
    assert fast.n_iter_ < plain.n_iter_ / 2
    assert fast.lower_bound_ == pytest.approx(plain.lower_bound_, abs=1e-7)
    assert np.all(np.diff(fast.history_) >= -1e-12)
    # the likelihood is flat near this maximum: equal bounds, means equal to 1e-2
    np.testing.assert_allclose(fast.means_, plain.means_, atol=1e-2)


def test_relative_floor_scales_with_the_data():
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(0, 1, (500, 1)), rng.normal(5, 1, (500, 1))])
    small = GaussianMixture(2, random_state=0).fit(X * 1e-4)
    large = GaussianMixture(2, random_state=0).fit(X)
    np.testing.assert_allclose(small.reg_covar_, large.reg_covar_ * 1e-8, rtol=1e-9)
    np.testing.assert_allclose(small.means_ * 1e4, large.means_, atol=1e-3)
    absolute = GaussianMixture(2, reg_covar=1e-6, random_state=0).fit(X)
    np.testing.assert_array_equal(absolute.reg_covar_, [1e-6])
    assert large.n_init_ == len(large.restart_lower_bounds_) == 10
    # the best short run went on to tol from there
    assert large.lower_bound_ >= large.restart_lower_bounds_.max()
