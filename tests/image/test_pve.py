"""Partial-volume estimates (emseg.image.pve) on phantoms whose fractions are known: a
fine label map averaged over 4x4(x4) blocks gives each voxel's true class fractions,
and the image is those fractions times the class values, plus noise."""

import numpy as np
import pytest
from scipy import ndimage

import emseg
from emseg.image.pve import mixel_tables, partial_volumes

MEANS = np.array([40.0, 120.0, 200.0])


def phantom(shape, noise, seed=0, factor=4):
    """``(image, truth)``: float32 image of ``shape``, true fractions shape + (3,)."""
    rng = np.random.default_rng(seed)
    fine_shape = tuple(s * factor for s in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(fine_shape), sigma=3 * factor)
    low, high = np.quantile(field, [0.33, 0.66])
    fine = (field > low).astype(np.int8) + (field > high)
    truth = np.stack([fine == c for c in range(3)], axis=-1).astype(np.float64)
    for axis in range(len(shape)):  # block averages, one axis at a time
        truth = truth.reshape(truth.shape[:axis] + (shape[axis], factor)
                              + truth.shape[axis + 1:]).mean(axis=axis + 1)
    image = truth @ MEANS + rng.normal(0, noise * (MEANS[1] - MEANS[0]), shape)
    return image.astype(np.float32), truth


def rmse(estimate, truth, where=None):
    err = ((np.asarray(estimate, np.float64) - truth) ** 2).mean(axis=-1)
    return float(np.sqrt(err.mean() if where is None else err[where].mean()))


@pytest.mark.parametrize("shape, pve_bar, post_floor", [
    # RMSE against the true fractions, measured (seed 0, noise 0.1 of the class
    # spacing): 2-D PVE 0.042, posteriors 0.108, hard labels 0.122; 3-D PVE 0.046,
    # posteriors 0.127, hard labels 0.143
    ((128, 128), 0.06, 0.09),
    ((40, 40, 40), 0.06, 0.09),
])
def test_fractions_beat_posteriors(shape, pve_bar, post_floor):
    image, truth = phantom(shape, 0.1)
    seg = emseg.segment(image, 3)
    pve = partial_volumes(image, seg)
    assert pve.dtype == np.float32 and pve.shape == shape + (3,)
    np.testing.assert_allclose(pve.sum(axis=-1), 1, atol=1e-5)
    assert pve.min() >= 0 and pve.max() <= 1
    got, posteriors = rmse(pve, truth), rmse(seg.posteriors, truth)
    assert got < pve_bar < post_floor < posteriors
    assert got < 0.5 * posteriors
    # the fractions of the mixed voxels, not only the pure ones, come out right
    mixed = truth.max(axis=-1) < 0.9
    assert rmse(pve, truth, mixed) < 0.6 * rmse(seg.posteriors, truth, mixed)
    # pure interior voxels stay near 0 / 1
    interior = truth.max(axis=-1) == 1
    interior &= ndimage.minimum_filter(truth.max(axis=-1), size=5) == 1
    assert np.abs(pve[interior] - truth[interior]).mean() < 0.01


def test_high_noise_and_mrf_labels():
    # noise 0.25 of the class spacing, labels smoothed by the MRF (beta 0.5): measured
    # RMSE of the PVE 0.092, of the MRF's posteriors 0.122 (without the MRF: PVE 0.096,
    # posteriors 0.149)
    image, truth = phantom((128, 128), 0.25, seed=1)
    seg = emseg.segment(image, 3, beta=0.5)
    pve = partial_volumes(image, seg)
    assert rmse(pve, truth) < 0.85 * rmse(seg.posteriors, truth)


def test_mask_zero_outside_and_sums_to_one_inside():
    image, truth = phantom((96, 96), 0.1, seed=2)
    yy, xx = np.mgrid[:96, :96]
    mask = (yy - 48) ** 2 + (xx - 48) ** 2 < 40 ** 2
    seg = emseg.segment(image, 3, mask=mask)
    pve = partial_volumes(image, seg)
    assert not pve[~mask].any()
    np.testing.assert_allclose(pve[mask].sum(axis=-1), 1, atol=1e-5)
    assert rmse(pve[mask], truth[mask]) < 0.6 * rmse(seg.posteriors[mask], truth[mask])
    # a narrower mask given here: zero outside it as well
    inner = mask & (xx < 60)
    narrow = partial_volumes(image, seg, mask=inner)
    assert not narrow[~inner].any()
    np.testing.assert_allclose(narrow[inner].sum(axis=-1), 1, atol=1e-5)
    # NaN is no data
    holed = image.copy()
    holed[10:20, 40:50] = np.nan
    seg = emseg.segment(holed, 3)
    pve = partial_volumes(holed, seg)
    assert not pve[10:20, 40:50].any()
    assert np.isfinite(pve).all()


def test_real_image():
    # skimage's camera, K=3 (no true fractions): the maps are fractions, and each
    # class's total is close to its share of the labels (measured: 0.300 / 0.415 /
    # 0.285 against 0.295 / 0.432 / 0.273)
    from skimage import data

    image = data.camera()
    seg = emseg.segment(image, 3)
    pve = partial_volumes(image, seg)
    np.testing.assert_allclose(pve.sum(axis=-1), 1, atol=1e-5)
    assert pve.min() >= 0 and pve.max() <= 1
    shares = np.bincount(seg.labels.ravel(), minlength=4)[1:] / image.size
    np.testing.assert_allclose(pve.reshape(-1, 3).mean(axis=0), shares, atol=0.03)


def test_same_fractions_whatever_the_dtype_and_scale():
    image, truth = phantom((96, 96), 0.1, seed=3)
    u8 = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    results = {}
    for name, values in {
        "uint8": u8,
        "uint16": u8.astype(np.uint16) * 257,
        "int16": u8.astype(np.int16) - 100,
        "float32": u8.astype(np.float32),
        "float64 x 1e-4": u8.astype(np.float64) * 1e-4,
        "float32 x 1e4": u8.astype(np.float32) * 1e4,
    }.items():
        results[name] = partial_volumes(values, emseg.segment(values, 3))
    ref = results.pop("uint8")
    assert rmse(ref, truth) < 0.07
    for name, pve in results.items():
        # float images are tabulated on 4096 levels instead of their 256 values
        assert np.abs(pve - ref).max() < 0.02, name


def test_restored_image_is_used():
    image, truth = phantom((96, 96), 0.1, seed=4)
    seg = emseg.segment(image, 3)
    base = partial_volumes(image, seg)
    seg.restored = image  # as a bias-corrected segmentation carries it
    np.testing.assert_array_equal(partial_volumes(np.zeros_like(image), seg), base)


def test_colour_and_channels():
    image, truth = phantom((96, 96), 0.1, seed=5)
    # two co-registered channels, the second an inverted contrast
    second = 255 - image + np.random.default_rng(0).normal(0, 8, image.shape)
    both = np.stack([image, second.astype(np.float32)], axis=-1)
    seg = emseg.segment(both, 3, multichannel=True)
    pve = partial_volumes(both, seg)
    np.testing.assert_allclose(pve.sum(axis=-1), 1, atol=1e-5)
    assert rmse(pve, truth) < 0.8 * rmse(seg.posteriors, truth)
    rgb = np.stack([image, image * 0.8, 255 - image], axis=-1)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    seg = emseg.segment(rgb, 3, color_space="rgb")
    pve = partial_volumes(rgb, seg)
    assert pve.shape == (96, 96, 3)
    assert rmse(pve, truth) < rmse(seg.posteriors, truth)


def test_mixel_tables_integrate_the_mix():
    # one mix of N(0, 1) and N(10, 1): its density is the uniform average over alpha
    # of the Gaussians in between (linear variance: 1 everywhere), a plateau of height
    # about 1/10 between the two means; alpha's posterior mean runs from 1 to 0
    means = np.array([[0.0], [10.0]])
    covs = np.ones((2, 1, 1))
    x = np.array([[0.0], [5.0], [10.0]])
    loglik, alpha = mixel_tables(x, means, covs, [(0, 1)], steps=400)
    from scipy.stats import norm

    grid = (np.arange(400) + 0.5) / 400
    expected = [np.mean(norm.pdf(v, 10 * (1 - grid), 1)) for v in x[:, 0]]
    np.testing.assert_allclose(np.exp(loglik[:, 2]), expected, rtol=1e-9)
    np.testing.assert_allclose(np.exp(loglik[:, :2]), norm.pdf(x, [0, 10], 1), rtol=1e-12)
    assert np.exp(loglik[1, 2]) == pytest.approx(0.1, rel=1e-3)
    assert alpha[0, 0] > 0.9 and alpha[1, 0] == pytest.approx(0.5) and alpha[2, 0] < 0.1


def test_noise_free_one_class_and_spatial_features():
    # no noise: the interior voxels hold one value each (a covariance of 0 without a
    # floor); the mixed voxels' values lie between, and their fractions are read off
    image, truth = phantom((64, 64), 0.0, seed=8)
    seg = emseg.segment(image, 3)
    pve = partial_volumes(image, seg)
    assert np.isfinite(pve).all()
    assert rmse(pve, truth) < 0.5 * rmse(seg.posteriors, truth)
    one = partial_volumes(image, emseg.segment(image, 1))
    np.testing.assert_array_equal(one, 1)
    # pixel coordinates among the features: the value columns are used
    noisy, truth = phantom((64, 64), 0.1, seed=9)
    seg = emseg.segment(noisy, 3, spatial=0.5)
    pve = partial_volumes(noisy, seg)
    np.testing.assert_allclose(pve.sum(axis=-1), 1, atol=1e-5)


def test_errors():
    image, _ = phantom((32, 32), 0.1)
    seg = emseg.segment(image, 3)
    with pytest.raises(emseg.EmsegError, match="spatial shape"):
        partial_volumes(image[:16], seg)
    with pytest.raises(emseg.EmsegError, match="mask has shape"):
        partial_volumes(image, seg, mask=np.ones((4, 4), bool))


def test_lazy_exports():
    assert emseg.partial_volumes is partial_volumes
    assert emseg.image.partial_volumes is partial_volumes


def test_cli_writes_the_fractions(tmp_path):
    from click.testing import CliRunner

    from emseg.cli.main import main

    tifffile = pytest.importorskip("tifffile")
    image, truth = phantom((64, 64), 0.1, seed=6)
    from emseg.io import write_png

    write_png(tmp_path / "ph.png", np.clip(np.rint(image), 0, 255).astype(np.uint8))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(tmp_path / "ph.png"), "-k", "3", "--pve",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    pages = tifffile.imread(out / "ph_pve.tif")
    assert pages.shape == (3, 64, 64) and pages.dtype == np.float32
    np.testing.assert_allclose(pages.sum(axis=0), 1, atol=1e-5)
    assert rmse(np.moveaxis(pages, 0, -1), truth) < 0.07
    # declared in the outputs: an existing file of that name is refused, and kept
    other = tmp_path / "other"
    other.mkdir()
    (other / "ph_pve.tif").write_bytes(b"mine")
    again = CliRunner().invoke(main, ["run", str(tmp_path / "ph.png"), "-k", "3", "--pve",
                                      "-o", str(other)])
    assert again.exit_code == 1 and "ph_pve.tif exists" in again.output
    assert (other / "ph_pve.tif").read_bytes() == b"mine"


def test_cli_nifti(tmp_path):
    nib = pytest.importorskip("nibabel")
    from click.testing import CliRunner

    from emseg.cli.main import main

    image, truth = phantom((24, 20, 16), 0.1, seed=7)
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    volume = nib.Nifti1Image(np.transpose(image, (2, 1, 0)), affine)
    nib.save(volume, tmp_path / "t1.nii.gz")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(tmp_path / "t1.nii.gz"), "-k", "3",
                                       "--pve", "--posteriors", "-o", str(out)])
    assert result.exit_code == 0, result.output
    pve = nib.load(out / "t1_pve.nii.gz")
    assert pve.shape == (16, 20, 24, 3)
    np.testing.assert_allclose(pve.affine, affine)
    data = np.transpose(np.asarray(pve.dataobj), (2, 1, 0, 3))
    np.testing.assert_allclose(data.sum(axis=-1), 1, atol=1e-5)
    assert rmse(data, truth) < rmse(np.transpose(np.asarray(
        nib.load(out / "t1_posteriors.nii.gz").dataobj), (2, 1, 0, 3)), truth)
