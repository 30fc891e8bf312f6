"""The outputs of a TIFF input are ImageJ hyperstacks (or OME-TIFF with ``ome``) with the
input's axes and calibration: every output re-read by tifffile."""

import os

import numpy as np
import pytest
import tifffile

from emseg import io
from emseg.workflows.run import RunOptions, segment_file


@pytest.fixture
def rng():
    return np.random.default_rng(21)


def _volume(rng, shape=(4, 18, 20)):
    truth = np.zeros(shape, np.int64)
    truth[..., 7:] = 1
    truth[..., 14:] = 2
    data = np.array([500.0, 1500.0, 3000.0])[truth] + rng.normal(0, 60, shape)
    return data.clip(0, 4095).astype(np.uint16), truth


def _imagej_input(path, data, axes):
    tifffile.imwrite(path, data, imagej=True, resolution=(5.0, 4.0),
                     metadata={"axes": axes, "spacing": 0.5, "unit": "micron"})


def _check_imagej(path, axes, shape, *, z=True):
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej, path
        assert tif.series[0].axes == axes and tif.series[0].shape == shape, path
        assert tif.imagej_metadata["unit"] == "micron"
        assert tif.imagej_metadata.get("spacing") == (0.5 if z else None)
        for tag, value in (("XResolution", 5.0), ("YResolution", 4.0)):
            num, den = tif.pages[0].tags[tag].value
            assert num / den == pytest.approx(value)
        return tif.asarray()


def _check_ome(path, axes, shape, *, z=True):
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and not tif.is_imagej, path
        assert tif.series[0].axes == axes and tif.series[0].shape == shape, path
        xml = tif.ome_metadata
    assert 'PhysicalSizeX="0.2"' in xml and 'PhysicalSizeY="0.25"' in xml
    assert 'PhysicalSizeXUnit="µm"' in xml
    assert ('PhysicalSizeZ="0.5"' in xml) == z
    return tifffile.imread(path)


def test_every_output_of_a_calibrated_stack_is_a_calibrated_hyperstack(tmp_path, rng):
    data, truth = _volume(rng)
    _imagej_input(tmp_path / "cells.tif", data, "ZYX")
    out = tmp_path / "out"
    out.mkdir()
    report = segment_file(tmp_path / "cells.tif", out, RunOptions(
        classes=3, posteriors=True, pve=True, bias=True))
    z, h, w = data.shape
    labels = _check_imagej(out / "cells_labels.tif", "ZYX", (z, h, w))
    np.testing.assert_array_equal(labels, truth + 1)
    post = _check_imagej(out / "cells_posteriors.tif", "ZCYX", (z, 3, h, w))
    assert post.dtype == np.uint8  # probability x 255, the default
    np.testing.assert_array_equal(post.argmax(axis=1), truth)
    np.testing.assert_allclose(post.sum(axis=1), 255, atol=2)
    pve = _check_imagej(out / "cells_pve.tif", "ZCYX", (z, 3, h, w))
    assert pve.dtype == np.float32
    for name in ("bias", "restored"):
        field = _check_imagej(out / f"cells_{name}.tif", "ZYX", (z, h, w))
        assert field.dtype == np.float32
    assert report["outputs"]["posteriors"].endswith("cells_posteriors.tif")


def test_a_2d_tiff_gets_cyx_posteriors_and_channel_bias(tmp_path, rng):
    data, truth = _volume(rng, (1, 18, 20))
    data, truth = data[0], truth[0]
    two = np.stack([data, (data // 2).astype(np.uint16)])  # CYX: two channels
    _imagej_input(tmp_path / "two.tif", two, "CYX")
    out = tmp_path / "out"
    out.mkdir()
    segment_file(tmp_path / "two.tif", out, RunOptions(
        classes=3, posteriors=True, posteriors_dtype="float32", bias=True))
    labels = io.read_image(out / "two_labels.png").pixels  # a 2-D image's labels: PNG
    np.testing.assert_array_equal(labels, truth + 1)
    post = _check_imagej(out / "two_posteriors.tif", "CYX", (3, 18, 20), z=False)
    assert post.dtype == np.float32
    np.testing.assert_allclose(post.sum(axis=0), 1, atol=1e-5)
    for name in ("bias", "restored"):  # one map per channel
        _check_imagej(out / f"two_{name}.tif", "CYX", (2, 18, 20), z=False)


def test_ome_outputs(tmp_path, rng):
    data, truth = _volume(rng)
    _imagej_input(tmp_path / "cells.tif", data, "ZYX")
    out = tmp_path / "out"
    out.mkdir()
    report = segment_file(tmp_path / "cells.tif", out, RunOptions(
        classes=3, posteriors=True, posteriors_dtype="float16", pve=True, bias=True,
        ome=True))
    z, h, w = data.shape
    labels = _check_ome(out / "cells_labels.ome.tif", "ZYX", (z, h, w))
    np.testing.assert_array_equal(labels, truth + 1)
    post = _check_ome(out / "cells_posteriors.ome.tif", "ZCYX", (z, 3, h, w))
    assert post.dtype == np.float32  # OME has no float16
    _check_ome(out / "cells_pve.ome.tif", "ZCYX", (z, 3, h, w))
    for name in ("bias", "restored"):
        _check_ome(out / f"cells_{name}.ome.tif", "ZYX", (z, h, w))
    assert not list(out.glob("cells_*[!e].tif"))  # no ImageJ file beside them
    assert set(report["outputs"]) >= {"labels", "posteriors", "pve", "bias", "restored"}
    # emseg reads its own outputs back with the calibration
    image = io.read_image(out / "cells_posteriors.ome.tif", allow_channels=True)
    np.testing.assert_allclose(image.spacing, (0.5, 0.25, 0.2))
    assert image.unit == "µm" and image.channels and image.pixels.shape == (z, h, w, 3)


def test_ome_of_a_nifti_input_is_refused(tmp_path):
    nib = pytest.importorskip("nibabel")
    from emseg import EmsegError

    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((5, 6, 4)).astype(np.float32),
                             np.eye(4)), tmp_path / "t1.nii.gz")
    with pytest.raises(EmsegError, match="--ome is for TIFF outputs"):
        segment_file(tmp_path / "t1.nii.gz", tmp_path, RunOptions(classes=2, ome=True))
    assert not list(tmp_path.glob("t1_*"))


def test_a_photo_keeps_its_plain_posteriors(tmp_path, rng):
    """Only TIFF inputs (or --ome) get hyperstacks: a PNG's posteriors stay plain pages,
    float16 kept."""
    image = (np.array([40.0, 200.0])[np.repeat([0, 1], 10)][None, :].repeat(12, 0)
             + rng.normal(0, 5, (12, 20))).clip(0, 255).astype(np.uint8)
    io.write_png(tmp_path / "p.png", image)
    out = tmp_path / "out"
    out.mkdir()
    segment_file(tmp_path / "p.png", out, RunOptions(classes=2, posteriors=True,
                                                     posteriors_dtype="float16"))
    with tifffile.TiffFile(out / "p_posteriors.tif") as tif:
        assert not tif.is_imagej and tif.series[0].dtype == np.float16
        assert tif.series[0].shape == (2, 12, 20)


def test_a_batch_with_ome_outputs_inside_its_input_folder_reruns_cleanly(tmp_path, rng):
    """The .ome.tif outputs are the batch's own: never taken as inputs when the output
    folder is inside the input folder, and a rerun skips the complete inputs."""
    from emseg.workflows.batch import run_batch

    data, _ = _volume(rng, (3, 12, 14))
    _imagej_input(tmp_path / "cells.tif", data, "ZYX")
    out = tmp_path / "out"
    options = RunOptions(classes=3, posteriors=True, ome=True)
    first = run_batch([tmp_path], out, options, jobs=1)
    assert [r.status for r in first.rows] == ["ok"]
    assert (out / "cells_labels.ome.tif").exists() and (out / "cells_posteriors.ome.tif").exists()
    again = run_batch([tmp_path], out, options, jobs=1)
    assert [(os.path.basename(r.path), r.status) for r in again.rows] == [
        ("cells.tif", "skipped")]
