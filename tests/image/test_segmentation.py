import numpy as np
import pytest
from scipy.stats import norm

import emseg
from emseg import EmsegError, GaussianMixture, segment

MEANS = np.array([40.0, 120.0, 200.0])
SIGMA = 22.0


def three_class_image(seed=0, shape=(120, 150)):
    """Noisy 3-class grey image with known truth: left, middle and right bands."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, dtype=np.int64)
    truth[:, shape[1] // 3 :] = 1
    truth[:, 2 * shape[1] // 3 :] = 2
    truth[: shape[0] // 2, : shape[1] // 6] = 2  # a bright patch in the dark band
    values = MEANS[truth] + rng.normal(0, SIGMA, shape)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8), truth


def test_accuracy_close_to_bayes_rate():
    image, truth = three_class_image()
    seg = segment(image, 3)
    error = np.mean(seg.labels != truth + 1)
    # Bayes classifier from the true parameters (equal variances: thresholds midway
    # between means, weighted by the true class shares).
    shares = np.bincount(truth.ravel()) / truth.size
    grid = np.arange(256)
    dens = np.array([s * norm.pdf(grid, m, SIGMA) for s, m in zip(shares, MEANS)])
    bayes_label = dens.argmax(0)
    bayes_error = np.mean(bayes_label[image] != truth)
    assert error <= bayes_error + 0.01


def test_labels_ordered_darkest_first():
    image, truth = three_class_image(1)
    seg = segment(255 - image, 3)
    assert np.mean(seg.labels == 3 - truth) > 0.9
    assert np.all(np.diff(seg.mean_values[:, 0]) > 0)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_uint8_uint16_float_give_same_labels(k):
    image, _ = three_class_image(2)
    as8 = segment(image, k).labels
    as16 = segment(image.astype(np.uint16) * 257, k).labels
    asfloat = segment(image / 255.0, k).labels
    np.testing.assert_array_equal(as8, as16)
    np.testing.assert_array_equal(as8, asfloat)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_histogram_fit_equals_per_pixel_fit(covariance_type):
    rng = np.random.default_rng(3)
    image = np.clip(rng.normal(128, 40, (60, 80, 3)), 0, 255).astype(np.uint8)
    image[:30] //= 2
    with pytest.warns(emseg.ConvergenceWarning):
        start = segment(image, 3, color_space="rgb", covariance_type=covariance_type, max_iter=2)
    init = dict(
        weights_init=start.model.weights_,
        means_init=start.model.means_,
        precisions_init=start.model.precisions_,
        covariance_type=covariance_type,
        max_iter=15,
        tol=0,
    )
    with pytest.warns(emseg.ConvergenceWarning):
        seg = segment(image, 3, color_space="rgb", **init)
    per_pixel = GaussianMixture(3, **init)
    per_pixel._merge_repeated_rows = False
    with pytest.warns(emseg.ConvergenceWarning):
        per_pixel.fit(image.reshape(-1, 3) / 255.0)
    # segment reorders by luminance; match components by their means
    order = [int(np.argmin(np.abs(per_pixel.means_ - m).sum(1))) for m in seg.model.means_]
    np.testing.assert_allclose(seg.model.means_, per_pixel.means_[order], rtol=1e-9)
    np.testing.assert_allclose(seg.model.weights_, per_pixel.weights_[order], rtol=1e-9)
    np.testing.assert_allclose(seg.model.covariances_, per_pixel.covariances_[order], rtol=1e-8)
    np.testing.assert_allclose(seg.model.lower_bound_, per_pixel.lower_bound_, rtol=1e-12)


def test_mask_pixels_never_labelled_and_take_no_part():
    image, _ = three_class_image(4)
    mask = np.ones(image.shape, bool)
    mask[10:50, 20:90] = False
    seg = segment(image, 3, mask=mask)
    assert np.all(seg.labels[~mask] == 0)
    assert np.all(seg.labels[mask] >= 1)
    changed = image.copy()
    changed[~mask] = 255
    again = segment(changed, 3, mask=mask)
    np.testing.assert_array_equal(seg.labels, again.labels)
    np.testing.assert_allclose(seg.model.means_, again.model.means_)
    post = seg.posteriors
    assert post.shape == image.shape + (3,) and post.dtype == np.float32
    np.testing.assert_allclose(post[mask].sum(-1), 1, rtol=1e-5)
    assert np.all(post[~mask] == 0)


def test_alpha_zero_pixels_are_background():
    image, _ = three_class_image(5)
    rgba = np.dstack([image, image, image, np.full(image.shape, 255, np.uint8)])
    rgba[:20, :20, 3] = 0
    seg = segment(rgba, 3)
    assert np.all(seg.labels[:20, :20] == 0)
    assert np.all(seg.labels[20:] >= 1)


def test_fractions_and_mean_values():
    image, truth = three_class_image(6)
    seg = segment(image, 3)
    np.testing.assert_allclose(seg.fractions.sum(), 1)
    np.testing.assert_allclose(seg.fractions, np.bincount(seg.labels.ravel())[1:] / seg.labels.size)
    np.testing.assert_allclose(seg.mean_values[:, 0], MEANS, atol=6)


def test_auto_k_reports_bic_table():
    image, _ = three_class_image(7)
    seg = segment(image, "auto", k_max=5)
    assert [row["k"] for row in seg.bic_table] == [2, 3, 4, 5]
    assert seg.k == 3  # the lowest BIC among well-separated fits (emseg.mixture.selection)
    chosen = seg.bic_table[1]
    assert chosen["min_separation"] >= 2.3
    assert chosen["bic"] == min(r["bic"] for r in seg.bic_table if r["min_separation"] >= 2.3)


def test_constant_image_names_the_fix():
    with pytest.raises(EmsegError, match="only 1 distinct .*lower k"):
        segment(np.full((20, 20), 7, np.uint8), 4)


@pytest.mark.parametrize("k", [0, -1, "abc", 2.5])
def test_bad_k(k):
    with pytest.raises(EmsegError, match="k"):
        segment(three_class_image()[0], k)


def test_mask_of_another_shape():
    with pytest.raises(EmsegError, match="mask has shape"):
        segment(three_class_image()[0], 3, mask=np.ones((5, 5), bool))


def test_spatial_features_and_volume():
    image, truth = three_class_image(8, shape=(40, 60))
    seg = segment(image, 3, spatial=0.5)
    assert seg.labels.shape == image.shape
    assert np.mean(seg.labels == truth + 1) > 0.8
    volume = np.stack([image, image, image])
    vol = segment(volume, 3)
    assert vol.labels.shape == volume.shape
    np.testing.assert_array_equal(vol.labels[1], segment(image, 3).labels)


def test_colour_image_in_each_space():
    rng = np.random.default_rng(9)
    image = np.zeros((50, 60, 3), np.uint8)
    image[:, :20] = (200, 30, 30)
    image[:, 20:40] = (30, 160, 40)
    image[:, 40:] = (240, 240, 250)
    noisy = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    for space in ["lab", "rgb", "hsv", "gray"]:
        seg = segment(noisy, 3, color_space=space)
        lum = seg.mean_values @ [0.2125, 0.7154, 0.0721]
        assert np.all(np.diff(lum) > 0), space
    seg = segment(noisy, 3)
    assert seg.features.color_space == "lab"
    truth = np.repeat([[0] * 20 + [1] * 20 + [2] * 20], 50, axis=0)
    # class order by luminance: red (dark) < green < white
    assert np.mean(seg.labels == truth + 1) > 0.98


def test_deterministic():
    image, _ = three_class_image(10)
    a = segment(image, 4)
    b = segment(image, 4)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.model.means_, b.model.means_)


def _three_regions(rng, sigma, shape=(90, 120)):
    truth = np.zeros(shape, int)
    truth[:, shape[1] // 2 :] = 1
    truth[shape[0] // 3 : 2 * shape[0] // 3, shape[1] // 8 : shape[1] // 3] = 2
    img = np.array([60, 130, 200])[truth] + rng.normal(0, sigma, shape)
    return np.clip(img, 0, 255).astype(np.uint8), truth


def test_mrf_beta_zero_is_the_plain_mixture_and_beta_cleans_noise():
    img, truth = _three_regions(np.random.default_rng(0), 30)
    plain = segment(img, 3)
    zero = segment(img, 3, beta=0.0)
    np.testing.assert_array_equal(plain.labels, zero.labels)
    assert zero.mrf is None
    smooth = segment(img, 3, beta=1.0)
    plain_err = (plain.labels != truth + 1).mean()
    smooth_err = (smooth.labels != truth + 1).mean()
    assert smooth_err < plain_err / 3
    assert smooth.mrf["beta"] == 1.0 and smooth.mrf["iterations"] >= 1
    post = smooth.posteriors
    assert post.shape == img.shape + (3,)
    np.testing.assert_allclose(post.sum(-1), 1, atol=1e-5)
    np.testing.assert_array_equal(post.argmax(-1) + 1, smooth.labels)  # same label order
    assert np.all(np.diff([m[0] for m in smooth.mean_values]) > 0)  # darkest first


def test_mrf_respects_the_mask_and_runs_in_3d():
    rng = np.random.default_rng(1)
    img, truth = _three_regions(rng, 30)
    mask = np.ones(img.shape, bool)
    mask[:10] = False
    seg = segment(img, 3, beta=0.8, mrf="icm", mask=mask)
    assert (seg.labels[:10] == 0).all() and (seg.labels[10:] >= 1).all()
    assert (seg.posteriors[:10] == 0).all()
    vol = np.stack([_three_regions(rng, 30)[0] for _ in range(4)])
    seg3 = segment(vol, 3, beta=0.8, spacing=(2.0, 1.0, 1.0), neighbourhood=18)
    assert seg3.labels.shape == vol.shape
    assert (seg3.labels == np.stack([truth + 1] * 4)).mean() > 0.95


@pytest.mark.parametrize("beta", [-1, "strong", float("nan")])
def test_bad_beta_refused(beta):
    with pytest.raises(EmsegError, match="beta"):
        segment(np.arange(100, dtype=np.uint8).reshape(10, 10), 2, beta=beta)


def test_multichannel_volume_uses_every_channel():
    rng = np.random.default_rng(2)
    truth = np.zeros((3, 30, 40), int)
    truth[:, :, 20:] = 1
    truth[:, 10:20, :] += 2  # four classes, each told apart only with both channels
    t1 = np.array([50.0, 150.0, 50.0, 150.0])[truth] + rng.normal(0, 8, truth.shape)
    t2 = np.array([60.0, 60.0, 160.0, 160.0])[truth] + rng.normal(0, 8, truth.shape)
    seg = segment(np.stack([t1, t2], -1).astype(np.float32), 4, multichannel=True)
    assert seg.features.color_space == "channels" and seg.model.means_.shape == (4, 2)
    # the same partition as the truth, whatever the label names
    majority = []
    for c in range(4):
        labels = seg.labels[truth == c]
        top = np.bincount(labels, minlength=5).argmax()
        assert (labels == top).mean() > 0.97
        majority.append(top)
    assert sorted(majority) == [1, 2, 3, 4]


def test_mrf_class_left_empty_goes_last_not_first():
    # two materials, seven classes, strong smoothing: the field empties some classes;
    # label 0 must still be the darkest class that holds pixels
    rng = np.random.default_rng(0)
    truth = np.zeros((60, 80), int)
    truth[:, 40:] = 1
    img = np.clip((0.3 + 0.4 * truth + rng.normal(0, 0.1, truth.shape)) * 255, 0, 255)
    seg = segment(img.astype(np.uint8), 7, beta=3.0)
    filled = seg.fractions > 0
    assert not filled.all()  # the case this test is about
    assert list(filled) == sorted(filled, reverse=True)  # empty classes last
    assert np.all(np.diff(seg.mean_values[filled, 0]) > 0)


def test_three_channels_are_ordered_by_the_first_not_as_rgb():
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(3), 400).reshape(30, 40)
    first = np.array([0.2, 0.5, 0.8])[truth]
    others = np.array([0.9, 0.5, 0.1])[truth]  # falling: an RGB luma would reverse the order
    img = np.stack([first, others, others], -1) + rng.normal(0, 0.02, truth.shape + (3,))
    seg = segment(img.astype(np.float32), 3, multichannel=True)
    assert np.all(np.diff(seg.mean_values[:, 0]) > 0)


def test_a_given_model_refuses_beta():
    from emseg.image.model import fit_model

    img = np.random.default_rng(2).integers(0, 255, (20, 20)).astype(np.uint8)
    model = fit_model([img], 2)
    with pytest.raises(EmsegError, match="beta"):
        segment(img, model=model, beta=1.0)


@pytest.mark.parametrize("n", [1000, (1 << 20) + 3])
def test_distinct_colours_match_numpy_unique(n):
    """Both colour paths (sorting below a megapixel, the compiled bitmap above) against
    np.unique: same colours in the same order, same counts, same inverse."""
    from emseg.image.features import distinct_values

    rng = np.random.default_rng(n)
    values = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    values[: n // 3] = values[0]  # one colour many times
    values[-5:] = [[0, 0, 0], [255, 255, 255], [255, 255, 254], [0, 0, 1], [0, 0, 0]]
    unique, counts, inverse = distinct_values(values)
    packed = (values.astype(np.int64) << [16, 8, 0]).sum(1)
    want, want_inverse, want_counts = np.unique(packed, return_inverse=True,
                                                return_counts=True)
    np.testing.assert_array_equal((unique.astype(np.int64) << [16, 8, 0]).sum(1), want)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(inverse, want_inverse.ravel())
    assert unique.dtype == np.uint8 and counts.dtype == np.float64


# --- API bad arguments (issue 17): EmsegError naming the argument, never numpy's ---------

_IMG = np.random.default_rng(0).integers(0, 255, (20, 20)).astype(np.uint8)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: emseg.segment(_IMG, k=np.zeros((2, 2))), "k"),
        (lambda: emseg.segment(_IMG, k=np.array(["a"])), "k"),
        (lambda: emseg.segment(_IMG, k=["a", "b"]), "k"),
        (lambda: emseg.segment(_IMG, k=None), "k"),
        (lambda: emseg.segment(_IMG, k=-1), "k"),
        (lambda: emseg.fit_model(None, 2), "images"),
        (lambda: emseg.fit_model(_IMG, 2), "images"),
        (lambda: emseg.fit_model("a.png", 2), "images"),
        (lambda: emseg.fit_model([_IMG], 2, masks=-1), "masks"),
        (lambda: emseg.fit_model([_IMG], 2, masks=np.ones((20, 20), bool)), "masks"),
        (lambda: emseg.fit_model([_IMG], np.zeros((2, 2))), "k"),
    ],
)
def test_bad_api_arguments_raise_emseg_error_naming_them(call, name):
    with pytest.raises(emseg.EmsegError, match=rf"\b{name}\b") as info:
        call()
    assert "\n" not in str(info.value)
