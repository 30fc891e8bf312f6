"""``emseg run --bias`` and ``emseg batch --bias``: the field and the restored image are
written, declared as outputs (no overwrite, the batch's own files) and reported."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage as ndi

from emseg.cli.main import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def biased(shape, seed=0):
    """A 3-class image with smooth shapes times a smooth 40 % field, and that field."""
    rng = np.random.default_rng(seed)
    tissue = ndi.gaussian_filter(rng.standard_normal(shape), 3.0)
    truth = np.digitize(tissue, np.quantile(tissue, [0.3, 0.65]))
    slow = ndi.gaussian_filter(rng.standard_normal(shape), [n / 3 for n in shape], mode="wrap")
    field = 1 + 0.4 * ((slow - slow.min()) / np.ptp(slow) - 0.5)
    image = field * np.array([60.0, 110.0, 160.0])[truth] + rng.normal(0, 8, shape)
    return np.clip(image, 0, 255), field


def test_nifti_input_gets_nifti_field_and_restored_with_its_affine(tmp_path):
    nib = pytest.importorskip("nibabel")
    image, field = biased((24, 40, 40))
    affine = np.array([[0, 0, 2.0, -40], [0, 2.0, 0, -30], [3.0, 0, 0, 10], [0, 0, 0, 1]])
    # emseg reads (Z, Y, X); NIfTI stores (X, Y, Z)
    nib.save(nib.Nifti1Image(np.transpose(image, (2, 1, 0)).astype(np.int16), affine),
             tmp_path / "t1.nii.gz")
    out = tmp_path / "out"
    result = run("run", tmp_path / "t1.nii.gz", "-k", 3, "--bias", "--bias-fwhm", 30,
                 "-o", out)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["t1_bias.nii.gz", "t1_labels.nii.gz", "t1_labels.txt", "t1_overlay.png",
                     "t1_report.json", "t1_restored.nii.gz", "t1_segments.png"]
    bias = nib.load(out / "t1_bias.nii.gz")
    restored = nib.load(out / "t1_restored.nii.gz")
    for img in (bias, restored):
        np.testing.assert_array_equal(img.affine, affine)
        assert img.shape == (40, 40, 24) and img.get_data_dtype() == np.float32
    got = np.transpose(np.asarray(bias.dataobj), (2, 1, 0))
    assert np.corrcoef(got.ravel(), field.ravel())[0, 1] >= 0.9
    np.testing.assert_allclose(np.transpose(np.asarray(restored.dataobj), (2, 1, 0)),
                               image.astype(np.int16) / got, rtol=1e-5)
    report = json.loads((out / "t1_report.json").read_text())
    low, high = report["bias"]["range"]
    assert low == pytest.approx(got.min()) and high == pytest.approx(got.max())
    assert report["bias"]["fwhm"] == 30 and report["options"]["bias"] is True
    assert report["outputs"]["bias"].endswith("t1_bias.nii.gz")
    # outputs are never overwritten silently, the field included
    for name in names:
        if name != "t1_bias.nii.gz":
            (out / name).unlink()
    again = run("run", tmp_path / "t1.nii.gz", "-k", 3, "--bias", "-o", out)
    assert again.exit_code == 1 and "t1_bias.nii.gz exists" in again.output


def test_image_input_gets_float32_tiffs(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    image, _ = biased((96, 96))
    Image.fromarray(image.astype(np.uint8)).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    assert run("run", tmp_path / "photo.png", "-k", 3, "--bias", "-o", out).exit_code == 0
    bias = tifffile.imread(out / "photo_bias.tif")
    restored = tifffile.imread(out / "photo_restored.tif")
    assert bias.shape == restored.shape == (96, 96)
    assert bias.dtype == restored.dtype == np.float32
    assert bias.mean() == pytest.approx(1.0, abs=1e-4)
    plain = run("run", tmp_path / "photo.png", "-k", 3, "-o", tmp_path / "plain")
    assert plain.exit_code == 0
    assert not (tmp_path / "plain" / "photo_bias.tif").exists()


def test_bad_fwhm_is_a_usage_error(tmp_path):
    Image.fromarray(biased((32, 32))[0].astype(np.uint8)).save(tmp_path / "a.png")
    for bad in ("0", "-5", "nan", "wide"):
        assert run("run", tmp_path / "a.png", "--bias", "--bias-fwhm", bad).exit_code == 2


def test_batch_with_bias_and_its_rerun(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    for seed in range(2):
        img = biased((64, 64), seed)[0].astype(np.uint8)
        Image.fromarray(img).save(images / f"im{seed}.png")
    out = tmp_path / "out"
    result = run("batch", images, "-k", 3, "--bias", "-j", 1, "-o", out)
    assert result.exit_code == 0, result.output
    for seed in range(2):
        assert (out / f"im{seed}_bias.tif").exists() and (out / f"im{seed}_restored.tif").exists()
    rerun = run("batch", images, "-k", 3, "--bias", "-j", 1, "-o", out)
    assert rerun.exit_code == 0 and "2 skipped" in rerun.output
    shared = run("batch", images, "--bias", "--shared-model", "-o", tmp_path / "s")
    assert shared.exit_code == 2
    assert "--bias cannot be combined with --shared-model" in shared.output
