"""The bias field estimated inside EM: emseg.image.bias and segment(bias=True)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

import emseg
from emseg import EmsegError
from emseg.image.bias import DEFAULT_FWHM, estimate_field, restore

MEANS = np.array([40.0, 80.0, 120.0])


def phantom(shape, level, *, spacing=None, noise=12.0, seed=0, means=MEANS):
    """``(image, truth, mask, field)``: a 3-tissue phantom of smooth shapes (about 4 mm)
    in an ellipse or ellipsoid, times a smooth field spanning 1 -/+ level / 2 (then
    mean 1 in the mask), plus noise; float32, 0 outside the mask (as in
    benchmarks/bench_bias.py)."""
    rng = np.random.default_rng(seed)
    spacing = np.ones(len(shape)) if spacing is None else np.asarray(spacing, float)
    grids = np.indices(shape, dtype=float)
    mask = sum(((g - (n - 1) / 2) / (0.45 * n)) ** 2 for g, n in zip(grids, shape)) <= 1
    tissue = ndi.gaussian_filter(rng.standard_normal(shape), 4.0 / spacing)
    truth = np.digitize(tissue, np.quantile(tissue[mask], [0.25, 0.6])).astype(np.int32)
    slow = ndi.gaussian_filter(rng.standard_normal(shape), [n / 3 for n in shape], mode="wrap")
    slow = (slow - slow[mask].min()) / np.ptp(slow[mask])
    field = 1 + level * (slow - 0.5)
    field /= field[mask].mean()
    image = field * np.asarray(means)[truth] + rng.normal(0, noise, shape)
    image[~mask] = 0
    return image.astype(np.float32), truth, mask, field


def misclassified(labels, truth, mask):
    inside = labels[mask]
    return float(np.mean(inside - inside.min() != truth[mask]))


def corr(a, b, mask):
    return float(np.corrcoef(a[mask], b[mask])[0, 1])


@pytest.fixture(scope="module")
def case_2d():
    image, truth, mask, field = phantom((160, 160), 0.4)
    return image, truth, mask, field, emseg.segment(image, 3, mask=mask, bias=True)


def test_field_is_recovered_and_labels_match_the_image_without_field(case_2d):
    image, truth, mask, field, seg = case_2d
    clean = phantom((160, 160), 0.0)[0]
    plain = misclassified(emseg.segment(image, 3, mask=mask).labels, truth, mask)
    without = misclassified(emseg.segment(clean, 3, mask=mask).labels, truth, mask)
    with_bias = misclassified(seg.labels, truth, mask)
    assert corr(seg.bias, field, mask) >= 0.9
    assert with_bias <= without + 0.01 < plain
    assert seg.bias_fit["fwhm"] == DEFAULT_FWHM


def test_field_mean_one_inside_and_one_outside(case_2d):
    image, _, mask, _, seg = case_2d
    assert seg.bias.shape == image.shape and seg.bias.dtype == np.float32
    assert seg.bias[mask].mean() == pytest.approx(1.0, abs=1e-5)
    assert (seg.bias[~mask] == 1).all()
    assert seg.restored.shape == image.shape and seg.restored.dtype == np.float32
    np.testing.assert_allclose(seg.restored, image / seg.bias, rtol=1e-6)


def test_log_likelihood_never_decreases(case_2d):
    history = case_2d[-1].bias_fit["history"]
    assert len(history) >= 3
    assert (np.diff(history) >= 0).all()


def test_plain_segment_has_no_field():
    image = phantom((48, 48), 0.2)[0]
    seg = emseg.segment(image, 3)
    assert seg.bias is None and seg.restored is None and seg.bias_fit is None


def test_mask_is_honoured():
    """Pixels outside the mask neither pull the field nor are changed by it."""
    image, _, mask, _ = phantom((96, 96), 0.4)
    wild = image.copy()
    wild[~mask] = np.random.default_rng(1).uniform(0, 1000, (~mask).sum())
    a = emseg.segment(image, 3, mask=mask, bias=True)
    b = emseg.segment(wild, 3, mask=mask, bias=True)
    np.testing.assert_array_equal(a.bias, b.bias)
    np.testing.assert_array_equal(b.restored[~mask], wild[~mask])


def test_spacing_sets_the_smoothness_in_mm():
    """The same physical phantom on an isotropic grid and on one with every other
    column (twice the spacing) gives the same field where they share voxels; without
    the spacing the second is smoothed over half the width along that axis."""
    image, _, mask, field = phantom((128, 128), 0.4, spacing=(2.0, 2.0))
    fine = emseg.segment(image, 3, mask=mask, bias=True, spacing=(2.0, 2.0))
    sub = (slice(None), slice(None, None, 2))
    coarse = emseg.segment(image[sub], 3, mask=mask[sub], bias=True, spacing=(2.0, 4.0))
    ignored = emseg.segment(image[sub], 3, mask=mask[sub], bias=True, spacing=(2.0, 2.0))
    m = mask[sub]
    same = np.abs(coarse.bias[m] - fine.bias[sub][m]).max()
    other = np.abs(ignored.bias[m] - fine.bias[sub][m]).max()
    assert corr(coarse.bias, field[sub], m) >= 0.9
    assert same < 0.03 and same < other / 2


def test_long_axis_field_in_3d_with_anisotropic_voxels():
    """A field along the physically long axis of a volume of 4 x 2 x 2 mm voxels."""
    shape, spacing = (24, 40, 40), (4.0, 2.0, 2.0)
    image, truth, mask, _ = phantom(shape, 0.0, spacing=spacing)
    z = np.linspace(-1, 1, shape[0])[:, None, None]
    field = np.broadcast_to(1 + 0.2 * z, shape)
    biased = (image * field).astype(np.float32)
    seg = emseg.segment(biased, 3, mask=mask, bias=True, spacing=spacing)
    assert corr(seg.bias, field, mask) >= 0.9
    assert misclassified(seg.labels, truth, mask) <= misclassified(
        emseg.segment(image, 3, mask=mask).labels, truth, mask) + 0.01


def test_multichannel_one_field_per_channel():
    """Two co-registered channels (T1-like and T2-like contrast), each with its own field."""
    t1, truth, mask, f1 = phantom((128, 128), 0.4, seed=0)
    t2, _, _, f2 = phantom((128, 128), 0.4, seed=0, means=MEANS[::-1])
    f2 = f2[::-1].copy()  # another field for the second channel
    t2 = np.where(mask, t2 / phantom((128, 128), 0.4)[3] * f2, 0).astype(np.float32)
    image = np.stack([t1, t2], axis=-1)
    seg = emseg.segment(image, 3, mask=mask, bias=True, multichannel=True)
    assert seg.bias.shape == image.shape and seg.restored.shape == image.shape
    assert corr(seg.bias[..., 0], f1, mask) >= 0.9
    assert corr(seg.bias[..., 1], f2, mask) >= 0.9


def test_colour_image_one_field_per_channel_layout_and_alpha_kept():
    grey, truth, mask, field = phantom((96, 96), 0.4)
    noise = np.random.default_rng(2).normal(0, 3, grey.shape + (3,))
    rgb = np.clip(grey[..., None] * [1.0, 0.8, 0.6] + noise, 0, 255).astype(np.uint8)
    rgba = np.concatenate([rgb, np.where(mask, 255, 0).astype(np.uint8)[..., None]], -1)
    seg = emseg.segment(rgba, 3, bias=True)
    assert seg.bias.shape == (96, 96, 3) and seg.restored.shape == rgba.shape
    np.testing.assert_array_equal(seg.restored[..., 3], rgba[..., 3])
    assert (seg.bias[~mask] == 1).all()
    for c in range(3):
        assert corr(seg.bias[..., c], field, mask) >= 0.9
    plain = emseg.segment(rgba, 3)
    assert misclassified(seg.labels, truth, mask) < misclassified(plain.labels, truth, mask) - 0.05


def test_bias_with_the_mrf():
    image, truth, mask, field = phantom((128, 128), 0.4, noise=20.0)
    smooth = emseg.segment(image, 3, mask=mask, bias=True, beta=0.8)
    alone = emseg.segment(image, 3, mask=mask, bias=True)
    assert smooth.mrf is not None and smooth.bias is not None
    assert corr(smooth.bias, field, mask) >= 0.9
    assert misclassified(smooth.labels, truth, mask) < misclassified(alone.labels, truth, mask)


def test_k_auto_with_bias():
    image, _, mask, _ = phantom((128, 128), 0.4, noise=8.0)
    seg = emseg.segment(image, "auto", mask=mask, bias=True, k_max=5)
    assert seg.k == 3 and seg.bic_table


def test_dtype_and_scale_do_not_change_the_result():
    image, _, mask, _ = phantom((96, 96), 0.4)
    counts = np.rint(np.clip(image, 0, None) * 10).astype(np.uint16)
    results = [emseg.segment(x, 3, mask=mask, bias=True)
               for x in (counts, counts.astype(np.float32), counts * 1e-4, counts * 1e4)]
    for other in results[1:]:
        np.testing.assert_array_equal(other.labels, results[0].labels)
        np.testing.assert_allclose(other.bias, results[0].bias, atol=1e-4)


@pytest.mark.slow
def test_a_photo_without_a_field_gives_one_answer_however_it_is_stored():
    """skimage's camera has no bias field and no mask: at FWHM 40 px (the default
    before it scaled with the picture: 80 px here) and without the field's prior
    (bias.PRIOR_WEIGHT) the field followed the picture's dark coat down to 0.13 and
    float32 rounding decided where it went (float32 x 0.1 agreed with uint8 on 53 % of
    the labels)."""
    data = pytest.importorskip("skimage.data")
    image = data.camera()
    for fwhm in (40, None):
        first = emseg.segment(image, 3, bias=True, bias_fwhm=fwhm, random_state=0)
        assert 0.8 < first.bias.min() and first.bias.max() < 1.25
        for copy in ((image * 0.1).astype(np.float32), (image * 1e-3).astype(np.float32),
                     image.astype(np.uint16) * 257):
            other = emseg.segment(copy, 3, bias=True, bias_fwhm=fwhm, random_state=0)
            assert np.mean(other.labels == first.labels) > 0.999
            np.testing.assert_allclose(other.bias, first.bias, atol=1e-3)


def test_the_prior_only_matters_where_the_data_say_little(case_2d):
    """The phantom's field is recovered as well with the prior as without it: the
    prior moves it by well under 1 % where the data determine it."""
    from emseg.image import bias

    image, _, mask, _, seg = case_2d
    first = emseg.segment(image, 3, mask=mask)
    with_prior = bias.estimate_field(image[..., None], mask, first.posteriors)
    saved = bias.PRIOR_WEIGHT
    try:
        bias.PRIOR_WEIGHT = 0.0
        without = bias.estimate_field(image[..., None], mask, first.posteriors)
    finally:
        bias.PRIOR_WEIGHT = saved
    assert np.abs(with_prior.field - without.field)[mask].max() < 0.01


def test_default_fwhm_scales_with_the_picture_without_a_voxel_size():
    from emseg.image.bias import check_fwhm

    assert check_fwhm(None) == DEFAULT_FWHM
    assert check_fwhm(None, (160, 160)) == DEFAULT_FWHM  # never below 40 px
    assert check_fwhm(None, (3000, 4000)) == DEFAULT_FWHM * 4000 / 256
    assert check_fwhm(None, (3000, 4000), spacing=(0.1, 0.1)) == DEFAULT_FWHM  # in mm
    assert check_fwhm(12.5, (3000, 4000)) == 12.5
    image, _, mask, _ = phantom((96, 96), 0.4)
    wide = np.tile(image, (1, 8))  # 96 x 768 pixels, no spacing: 120 px
    assert emseg.segment(wide, 3, mask=np.tile(mask, (1, 8)), bias=True).bias_fit["fwhm"] == 120
    seg = emseg.segment(wide, 3, mask=np.tile(mask, (1, 8)), bias=True, spacing=(1.0, 1.0))
    assert seg.bias_fit["fwhm"] == DEFAULT_FWHM


def test_3d_volume_and_estimate_field_directly():
    image, truth, mask, field = phantom((32, 40, 32), 0.4, spacing=(4.0, 4.0, 4.0))
    first = emseg.segment(image, 3, mask=mask)
    fitted = estimate_field(image[..., None], mask, first.posteriors, spacing=(4, 4, 4))
    assert fitted.field.shape == image.shape + (1,)
    assert corr(fitted.field[..., 0], field, mask) >= 0.9
    assert (np.diff(fitted.history) >= 0).all()


def test_restore_keeps_the_channel_axis_where_it_was():
    image = np.random.default_rng(0).uniform(1, 2, (3, 8, 9)).astype(np.float32)
    field = np.full((8, 9, 3), 2.0, dtype=np.float32)
    out = restore(image, field, channel_axis=0)
    assert out.shape == image.shape
    np.testing.assert_allclose(out, image / 2)


@pytest.mark.parametrize("fwhm", [0, -3, float("nan"), "wide"])
def test_bad_fwhm_is_a_clear_error(fwhm):
    with pytest.raises(EmsegError, match="bias_fwhm must be a number of mm > 0"):
        emseg.segment(phantom((32, 32), 0.2)[0], 3, bias=True, bias_fwhm=fwhm)
