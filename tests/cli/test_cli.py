import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from _helpers import three_bands

from emseg.cli.main import main


def noisy_image(seed=0, shape=(60, 80)):
    return three_bands(seed, shape)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(noisy_image()).save(path)
    return path


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def outputs(folder):
    return sorted(p.name for p in folder.iterdir())


def test_run_writes_all_outputs(photo, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = run("run", photo, "-k", 3, "-o", out, "--posteriors")
    assert result.exit_code == 0, result.output
    assert outputs(out) == [
        "photo_labels.png",
        "photo_overlay.png",
        "photo_posteriors.tif",
        "photo_report.json",
        "photo_segments.png",
    ]
    labels = np.asarray(Image.open(out / "photo_labels.png"))
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {1, 2, 3}
    overlay = np.asarray(Image.open(out / "photo_overlay.png"))
    # the 60 x 80 picture at the top left, its legend strip to the right (taller: 3 rows)
    assert overlay.shape[0] >= 60 and overlay.shape[1] > 80 and overlay.shape[2] == 3
    report = json.loads((out / "photo_report.json").read_text())
    assert report["k"] == 3
    assert report["iterations"] == len(report["log_likelihood_history"])
    restarts = report["restart_log_likelihoods"]
    assert len(restarts) == report["fit_settings"]["n_init"] == 10  # a grey histogram
    assert report["log_likelihood"] >= max(restarts)  # the best short run, continued
    assert report["fit_settings"]["tol"] == 1e-6 and len(report["fit_settings"]["reg_covar"]) == 1
    assert abs(sum(c["fraction"] for c in report["classes"]) - 1) < 1e-9
    means = [c["mean_value"][0] for c in report["classes"]]
    assert means == sorted(means)
    assert "photo.png: K=3" in result.output


def test_outputs_byte_identical_across_runs(photo, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert run("run", photo, "-k", 3, "-o", a, "--posteriors", "-q").exit_code == 0
    assert run("run", photo, "-k", 3, "-o", b, "--posteriors", "-q").exit_code == 0
    for name in outputs(a):
        if name.endswith(".json"):
            ra, rb = (json.loads((d / name).read_text()) for d in (a, b))
            for r in (ra, rb):
                r.pop("timings_seconds")
                r.pop("outputs")
            assert ra == rb
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_existing_output_needs_overwrite(photo, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert run("run", photo, "-o", out).exit_code == 0
    before = (out / "photo_labels.png").read_bytes()
    result = run("run", photo, "-o", out, "-k", 2)
    assert result.exit_code == 1
    assert "photo_labels.png" in result.output and "--overwrite" in result.output
    assert (out / "photo_labels.png").read_bytes() == before
    assert run("run", photo, "-o", out, "-k", 2, "--overwrite").exit_code == 0
    assert (out / "photo_labels.png").read_bytes() != before


@pytest.mark.parametrize("k", ["0", "-1", "abc", "2.5"])
def test_bad_k_is_a_usage_error(photo, tmp_path, k):
    result = run("run", photo, "-k", k, "-o", tmp_path)
    assert result.exit_code == 2
    assert "-k" in result.output or "classes" in result.output


def make_bad_inputs(tmp_path):
    bad = {}
    bad["missing"] = tmp_path / "nope.png"
    bad["directory"] = tmp_path / "folder.png"
    bad["directory"].mkdir()
    bad["empty"] = tmp_path / "empty.png"
    bad["empty"].write_bytes(b"")
    bad["text"] = tmp_path / "notes.png"
    bad["text"].write_text("this is not an image\n")
    good = tmp_path / "trunc_src.png"
    Image.fromarray(noisy_image(3, (200, 200))).save(good)
    bad["truncated"] = tmp_path / "truncated.png"
    bad["truncated"].write_bytes(good.read_bytes()[:400])
    good.unlink()
    bad["tiny"] = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(bad["tiny"])
    bad["constant"] = tmp_path / "constant.png"
    Image.fromarray(np.full((20, 20), 9, np.uint8)).save(bad["constant"])
    return bad


def test_each_bad_input_gets_one_line_and_others_go_on(photo, tmp_path):
    bad = make_bad_inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = run("run", *bad.values(), photo, "-k", 4, "-o", out)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("emseg: error:")]
    assert len(errors) == len(bad)
    for path, line in zip(bad.values(), errors):
        assert path.name in line
    assert "Traceback" not in result.output
    assert "lower k" in errors[-1]  # the constant image names the fix
    # the good image was still segmented, and no partial or temporary file was left
    assert outputs(out) == [
        "photo_labels.png",
        "photo_overlay.png",
        "photo_report.json",
        "photo_segments.png",
    ]


def test_mask_inside_only_and_of_wrong_size(photo, tmp_path):
    mask = np.zeros((60, 80), np.uint8)
    mask[10:50, 10:70] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    out.mkdir()
    assert run("run", photo, "--mask", tmp_path / "mask.png", "-o", out).exit_code == 0
    labels = np.asarray(Image.open(out / "photo_labels.png"))
    assert np.all(labels[mask == 0] == 0) and np.all((labels[mask > 0] >= 1) & (labels[mask > 0] <= 3))
    Image.fromarray(np.ones((10, 10), np.uint8)).save(tmp_path / "small.png")
    result = run("run", photo, "--mask", tmp_path / "small.png", "-o", out, "--overwrite")
    assert result.exit_code == 1 and "small.png" in result.output


def test_output_folder_created_or_refused(photo, tmp_path):
    assert run("run", photo, "-o", tmp_path / "new" / "sub").exit_code == 0
    assert (tmp_path / "new" / "sub" / "photo_labels.png").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("run", photo, "-o", blocker / "sub")
    assert result.exit_code == 1
    assert "output folder" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_auto_k_and_options(photo, tmp_path):
    result = run(
        "run", photo, "-k", "auto", "--k-max", 4, "-o", tmp_path, "--color-space", "rgb",
        "--covariance", "diag", "--spatial", "0.1", "--max-iter", 50, "--tol", "1e-4", "-v",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "photo_report.json").read_text())
    assert [row["k"] for row in report["bic_table"]] == [2, 3, 4]
    assert "BIC" in result.output


def test_real_process_no_traceback_and_exit_codes(tmp_path):
    missing = tmp_path / "missing.png"
    proc = subprocess.run(
        [sys.executable, "-m", "emseg", "run", str(missing), "-o", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "missing.png" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "emseg", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "emseg" in proc.stdout


def test_stack_labels_are_a_multipage_tiff(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    truth = np.zeros((6, 30, 40), int)
    truth[:, :, 20:] = 1
    stack = np.clip(np.array([60, 180])[truth] + rng.normal(0, 12, truth.shape), 0, 255)
    tifffile.imwrite(tmp_path / "vol.tif", stack.astype(np.uint8))
    result = run("run", tmp_path / "vol.tif", "-k", 2, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    labels = tifffile.imread(tmp_path / "out" / "vol_labels.tif")
    assert labels.shape == (6, 30, 40) and labels.dtype == np.uint8
    assert (labels == truth + 1).mean() > 0.99
    assert (tmp_path / "out" / "vol_overlay.png").exists()


# --------------------------------------------------------------------------- fit and apply


def test_fit_then_apply_gives_one_meaning_per_label(tmp_path):
    dark = noisy_image(5)
    bright = np.clip(noisy_image(6).astype(int) + 7, 0, 255).astype(np.uint8)
    Image.fromarray(dark).save(tmp_path / "dark.png")
    Image.fromarray(bright).save(tmp_path / "bright.png")
    model = tmp_path / "model.json"
    result = run("fit", tmp_path / "dark.png", tmp_path / "bright.png", "-k", 3, "--model", model)
    assert result.exit_code == 0, result.output
    assert "K=3 from 2 image(s)" in result.output and "merged exactly" in result.output
    saved = json.loads(model.read_text())
    assert saved["format"] == "emseg.SegmentationModel" and saved["channels"] == 1
    out = tmp_path / "out"
    result = run("apply", model, tmp_path / "dark.png", tmp_path / "bright.png", "-o", out, "-j", 1)
    assert result.exit_code == 0, result.output
    truth = np.repeat([[0] * 26 + [1] * 27 + [2] * 27], 60, axis=0)
    for name in ("dark", "bright"):
        labels = np.asarray(Image.open(out / f"{name}_labels.png"))
        assert (labels == truth + 1).mean() > 0.95, name
        report = json.loads((out / f"{name}_report.json").read_text())
        assert report["shared_model"]["source"] == str(model)
        assert report["options"]["classes"] == 3
    # the model file is not replaced without --overwrite
    again = run("fit", tmp_path / "dark.png", "-k", 2, "--model", model)
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert json.loads(model.read_text()) == saved


def test_fit_with_a_bad_input_writes_no_model(photo, tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    model = tmp_path / "model.json"
    result = run("fit", photo, tmp_path / "bad.png", "-k", 3, "--model", model)
    assert result.exit_code == 1
    assert "bad.png" in result.output and "model not written" in result.output
    assert "Traceback" not in result.output and not model.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ('{"format": "emseg.SegmentationModel"', "not valid JSON"),
        ('{"format": "something else"}', "not an emseg segmentation model"),
    ],
)
def test_apply_refuses_a_bad_model_file(photo, tmp_path, content, message):
    model = tmp_path / "model.json"
    model.write_text(content)
    result = run("apply", model, photo, "-o", tmp_path / "out")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(model) in lines[0]


def test_apply_refuses_an_image_of_another_kind(photo, tmp_path):
    model = tmp_path / "model.json"
    assert run("fit", photo, "-k", 3, "--model", model, "-q").exit_code == 0
    colour = tmp_path / "colour.png"
    Image.fromarray(np.stack([noisy_image()] * 3, -1)).save(colour)
    result = run("apply", model, colour, photo, "-o", tmp_path / "out", "-j", 1)
    assert result.exit_code == 1
    assert "colour.png" in result.output and "fitted on grey (1 channel) images" in result.output
    assert (tmp_path / "out" / "photo_labels.png").exists()


def test_beta_smooths_and_is_reported(tmp_path):
    rng = np.random.default_rng(4)
    truth = np.zeros((60, 80), int)
    truth[:, 40:] = 1
    img = np.clip(np.array([80, 170])[truth] + rng.normal(0, 45, truth.shape), 0, 255)
    Image.fromarray(img.astype(np.uint8)).save(tmp_path / "noisy.png")
    plain = run("run", tmp_path / "noisy.png", "-k", 2, "-o", tmp_path / "a")
    smooth = run("run", tmp_path / "noisy.png", "-k", 2, "--beta", "1", "--mrf", "icm",
                 "--neighbourhood", 8, "-o", tmp_path / "b")
    assert plain.exit_code == 0 and smooth.exit_code == 0, smooth.output
    err = [(np.asarray(Image.open(tmp_path / d / "noisy_labels.png")) != truth + 1).mean()
           for d in ("a", "b")]
    assert err[1] < err[0] / 3
    report = json.loads((tmp_path / "b" / "noisy_report.json").read_text())
    assert report["mrf"]["beta"] == 1.0 and report["mrf"]["method"] == "icm"
    assert "MRF beta 1" in smooth.output
    for bad in ("-1", "strong", "inf"):
        assert run("run", tmp_path / "noisy.png", "--beta", bad).exit_code == 2


def test_nifti_in_nifti_out_and_channels(tmp_path):
    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(5)
    truth = np.zeros((30, 24, 8), int)
    truth[15:] = 1
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    for name, means in (("t1", [60.0, 180.0]), ("t2", [150.0, 40.0])):
        data = np.array(means)[truth] + rng.normal(0, 20, truth.shape)
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), tmp_path / f"{name}.nii.gz")
    out = tmp_path / "out"
    result = run("run", tmp_path / "t1.nii.gz", "-k", 2, "--beta", "0.5", "--posteriors",
                 "-o", out)
    assert result.exit_code == 0, result.output
    assert outputs(out) == ["t1_labels.nii.gz", "t1_labels.txt", "t1_overlay.png",
                            "t1_posteriors.nii.gz", "t1_report.json", "t1_segments.png"]
    labels = nib.load(out / "t1_labels.nii.gz")
    np.testing.assert_allclose(labels.affine, affine)
    assert (np.asarray(labels.dataobj) == truth + 1).mean() > 0.99
    assert nib.load(out / "t1_posteriors.nii.gz").shape == truth.shape + (2,)
    report = json.loads((out / "t1_report.json").read_text())
    assert report["spacing"] == pytest.approx([3.0, 0.9, 0.9])
    both = run("run", tmp_path / "t1.nii.gz", tmp_path / "t2.nii.gz", "--channels", "-k", 2,
               "-o", tmp_path / "both")
    assert both.exit_code == 0, both.output
    report = json.loads((tmp_path / "both" / "t1_report.json").read_text())
    assert report["features"]["color_space"] == "channels"
    assert len(report["model"]["means"][0]) == 2
    # a 4-D file needs --channels; channels of different shapes are refused
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)), tmp_path / "4d.nii")
    result = run("run", tmp_path / "4d.nii", "-o", tmp_path / "c")
    assert result.exit_code == 1 and "--channels" in result.output
    nib.save(nib.Nifti1Image(np.zeros((5, 4, 4), np.float32), np.eye(4)), tmp_path / "small.nii")
    result = run("run", tmp_path / "t1.nii.gz", tmp_path / "small.nii", "--channels",
                 "-o", tmp_path / "d")
    assert result.exit_code == 1 and "co-registered" in result.output


def test_two_grey_pngs_as_channels(tmp_path):
    """Two 8-bit grey files as co-registered channels: four classes that only the two
    channels together tell apart (this once failed while drawing the segments image)."""
    rng = np.random.default_rng(0)
    truth = np.zeros((60, 80), int)
    truth[:, 40:] = 1
    truth[30:] += 2
    for name, levels in (("a", [50, 150, 50, 150]), ("b", [60, 60, 160, 160])):
        values = np.array(levels)[truth] + rng.normal(0, 8, truth.shape)
        Image.fromarray(np.clip(values, 0, 255).astype(np.uint8)).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    result = run("run", tmp_path / "a.png", tmp_path / "b.png", "--channels", "-k", 4, "-o", out)
    assert result.exit_code == 0, result.output
    labels = np.asarray(Image.open(out / "a_labels.png"))
    for c in range(4):  # each true class is one label
        assert np.bincount(labels[truth == c], minlength=5).max() == (truth == c).sum()
    segments = np.asarray(Image.open(out / "a_segments.png"))
    assert segments.shape == (60, 80, 3)


@pytest.mark.parametrize("dtype", ["uint8", "float16", "float32"])
def test_posteriors_compact_by_default(tmp_path, dtype):
    """Posteriors are uint8 (probability x 255) and deflate-compressed unless asked:
    under 30% of the float32 size for four classes (issue 13's bar), within 1/510 of
    the probabilities; float32 keeps them exactly."""
    import tifffile

    from emseg import segment

    rng = np.random.default_rng(5)
    truth = np.kron(rng.integers(0, 4, (12, 16)), np.ones((25, 25), int))
    image = np.clip(np.array([40, 90, 150, 210])[truth] + rng.normal(0, 18, truth.shape),
                    0, 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "p.png")
    out = tmp_path / "out"
    args = ["run", tmp_path / "p.png", "-k", 4, "--posteriors", "-o", out]
    result = run(*(args if dtype == "uint8" else args + ["--posteriors-dtype", dtype]))
    assert result.exit_code == 0, result.output
    expected = np.moveaxis(segment(image, 4).posteriors, -1, 0)
    with tifffile.TiffFile(out / "p_posteriors.tif") as tif:
        pages = tif.asarray()
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    assert pages.dtype == np.dtype(dtype) and pages.shape == expected.shape
    size = (out / "p_posteriors.tif").stat().st_size
    if dtype == "uint8":
        np.testing.assert_allclose(pages / 255.0, expected, atol=1 / 510 + 1e-7)
        assert size < 0.3 * expected.astype(np.float32).nbytes
    elif dtype == "float32":
        np.testing.assert_array_equal(pages, expected.astype(np.float32))
    else:
        np.testing.assert_allclose(pages, expected, atol=1e-3)


def test_nifti_posteriors_as_uint8_read_back_as_probabilities(tmp_path):
    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(6)
    truth = np.zeros((8, 20, 24), int)
    truth[:, :, 12:] = 1
    vol = np.where(truth == 1, 160.0, 60.0) + rng.normal(0, 25, truth.shape)
    nib.save(nib.Nifti1Image(np.transpose(vol, (2, 1, 0)).astype(np.float32), np.eye(4)),
             tmp_path / "v.nii.gz")
    out = tmp_path / "out"
    result = run("run", tmp_path / "v.nii.gz", "-k", 2, "--posteriors", "-o", out)
    assert result.exit_code == 0, result.output
    img = nib.load(out / "v_posteriors.nii.gz")
    assert img.get_data_dtype() == np.uint8
    probabilities = np.transpose(img.get_fdata(), (3, 2, 1, 0))
    assert probabilities.min() >= 0 and probabilities.max() <= 1 + 1e-6  # a float32 slope
    np.testing.assert_allclose(probabilities.sum(axis=0), 1, atol=2 / 255)
    assert (probabilities.argmax(axis=0) == truth).mean() > 0.95
