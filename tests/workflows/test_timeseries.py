"""Time series (a TIFF with a T axis): each time point segmented, as segmenting it alone
would; with shared_model one model over all time points, so a label means the same at
every time; outputs keep T with the calibration and frame interval."""

import json

import numpy as np
import pytest
import tifffile

from emseg import EmsegError, io
from emseg.workflows.run import RunOptions, segment_file

MEANS = np.array([400.0, 1500.0, 3000.0])


@pytest.fixture
def rng():
    return np.random.default_rng(8)


def _series(rng, shape):
    """A time series whose frames differ: class 2 grows over time; frame 0 has no
    class 3, the last has no class 1 (an independent 2-class fit then gives the middle
    class label 2 at first and label 1 at the end)."""
    n = shape[0]
    truth = np.zeros(shape, np.int64)
    width = shape[-1]
    for t in range(n):
        cut = width // 3 + t * (width // 3) // max(n - 1, 1)
        truth[t, ..., cut:] = 1
    truth[-1][truth[-1] == 0] = 1
    truth[-1, ..., -width // 4:] = 2
    truth[0, ..., -width // 4:] = 1
    data = MEANS[truth] + rng.normal(0, 80, shape)
    return data.clip(0, 4095).astype(np.uint16), truth


def _write(path, data, axes, **metadata):
    tifffile.imwrite(path, data, imagej=True, resolution=(5.0, 4.0),
                     metadata={"axes": axes, "spacing": 0.5, "unit": "micron", **metadata})


def _out(tmp_path, name="out"):
    out = tmp_path / name
    out.mkdir()
    return out


@pytest.mark.parametrize("axes, shape", [("TZYX", (3, 3, 16, 24)), ("TYX", (4, 16, 24))])
def test_each_time_point_is_labelled_as_when_segmented_alone(tmp_path, rng, axes, shape):
    data, _ = _series(rng, shape)
    _write(tmp_path / "movie.tif", data, axes, finterval=2.5)
    out = _out(tmp_path)
    report = segment_file(tmp_path / "movie.tif", out, RunOptions(classes=2, posteriors=True))
    labels = tifffile.imread(out / "movie_labels.tif")
    post = tifffile.imread(out / "movie_posteriors.tif")
    z = "Z" in axes
    for t in range(shape[0]):
        alone = tmp_path / f"frame{t}.tif"
        _write(alone, data[t], axes[1:])
        segment_file(alone, _out(tmp_path, f"alone{t}"),
                     RunOptions(classes=2, posteriors=True))
        outputs = tmp_path / f"alone{t}"
        expected = (tifffile.imread(outputs / f"frame{t}_labels.tif") if z
                    else io.read_image(outputs / f"frame{t}_labels.png").pixels)
        np.testing.assert_array_equal(labels[t], expected)
        np.testing.assert_array_equal(post[t], tifffile.imread(outputs / f"frame{t}_posteriors.tif"))
    assert len(report["time_points"]) == shape[0]
    assert report["frame_interval"] == {"value": 2.5, "unit": "s"}
    assert f"T: {shape[0]} time points" in report["axes"]
    np.testing.assert_allclose(report["spacing"], (0.5, 0.25, 0.2) if z else (0.25, 0.2))


def test_outputs_keep_t_with_calibration_and_frame_interval(tmp_path, rng):
    data, _ = _series(rng, (3, 4, 16, 24))
    _write(tmp_path / "movie.tif", data, "TZYX", finterval=2.5)
    out = _out(tmp_path)
    segment_file(tmp_path / "movie.tif", out, RunOptions(
        classes=2, posteriors=True, pve=True, bias=True, objects=True))
    expected = {"labels": ("TZYX", (3, 4, 16, 24)), "posteriors": ("TZCYX", (3, 4, 2, 16, 24)),
                "pve": ("TZCYX", (3, 4, 2, 16, 24)), "bias": ("TZYX", (3, 4, 16, 24)),
                "restored": ("TZYX", (3, 4, 16, 24))}
    for name, (axes, shape) in expected.items():
        with tifffile.TiffFile(out / f"movie_{name}.tif") as tif:
            assert tif.is_imagej and tif.series[0].axes == axes, name
            assert tif.series[0].shape == shape, name
            meta = tif.imagej_metadata
            assert meta["spacing"] == 0.5 and meta["unit"] == "micron"
            assert meta["finterval"] == 2.5 and meta["frames"] == 3
            num, den = tif.pages[0].tags["XResolution"].value
            assert num / den == pytest.approx(5.0)
    table = (out / "movie_objects.csv").read_text().splitlines()
    assert table[0].startswith("time,class,object")
    assert {row.split(",")[0] for row in table[1:]} == {"0", "1", "2"}
    # as OME-TIFF
    out = _out(tmp_path, "ome")
    segment_file(tmp_path / "movie.tif", out, RunOptions(classes=2, posteriors=True, ome=True))
    for name, axes in (("labels", "TZYX"), ("posteriors", "TZCYX")):
        with tifffile.TiffFile(out / f"movie_{name}.ome.tif") as tif:
            assert tif.is_ome and tif.series[0].axes == axes
            xml = tif.ome_metadata
        assert 'PhysicalSizeZ="0.5"' in xml and 'PhysicalSizeX="0.2"' in xml
        assert 'TimeIncrement="2.5"' in xml


def test_a_shared_model_gives_a_label_one_meaning_over_time(tmp_path, rng):
    data, truth = _series(rng, (3, 16, 30))
    _write(tmp_path / "movie.tif", data, "TYX")
    out = _out(tmp_path)
    report = segment_file(tmp_path / "movie.tif", out,
                          RunOptions(classes=3, shared_model=True, posteriors=True))
    labels = tifffile.imread(out / "movie_labels.tif")
    np.testing.assert_array_equal(labels, truth + 1)  # the same class, the same label
    assert report["shared_model"]["training"]["n_images"] == 3
    assert "the same classes at every time point" in report["label_values"]
    assert [f["k"] for f in report["time_points"]] == [3, 3, 3]
    # fitted alone, the middle class is label 2 at first and label 1 at the end
    alone = _out(tmp_path, "alone")
    segment_file(tmp_path / "movie.tif", alone, RunOptions(classes=2))
    separate = tifffile.imread(alone / "movie_labels.tif")
    middle_first = separate[0][truth[0] == 1]
    middle_last = separate[-1][truth[-1] == 1]
    assert set(np.unique(middle_first)) == {2} and set(np.unique(middle_last)) == {1}


def test_the_shared_model_is_batch_shared_model(tmp_path, rng):
    """One model over the time points is the model emseg batch --shared-model fits on
    the time points saved as files: the same labels and posteriors."""
    from emseg.workflows.batch import run_batch

    data, _ = _series(rng, (3, 16, 30))
    _write(tmp_path / "movie.tif", data, "TYX")
    out = _out(tmp_path)
    segment_file(tmp_path / "movie.tif", out,
                 RunOptions(classes=3, shared_model=True, posteriors=True))
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(3):
        _write(frames / f"f{t}.tif", data[t], "YX")
    run_batch([frames], tmp_path / "batch", RunOptions(classes=3, posteriors=True),
              jobs=1, shared_model=True)
    labels = tifffile.imread(out / "movie_labels.tif")
    post = tifffile.imread(out / "movie_posteriors.tif")
    for t in range(3):
        np.testing.assert_array_equal(
            labels[t], io.read_image(tmp_path / "batch" / f"f{t}_labels.png").pixels)
        np.testing.assert_array_equal(
            post[t], tifffile.imread(tmp_path / "batch" / f"f{t}_posteriors.tif"))


def test_what_a_series_cannot_be_given_is_refused(tmp_path, rng):
    data, _ = _series(rng, (3, 16, 24))
    _write(tmp_path / "movie.tif", data, "TYX")
    for options, words in [
        (RunOptions(classes=2, html=True), "HTML report of a time series"),
        (RunOptions(classes=2, shared_model=True, beta=0.5), "--beta cannot be combined"),
        (RunOptions(classes=2, shared_model=True, bias=True), "--bias cannot be combined"),
    ]:
        with pytest.raises(EmsegError, match=words):
            segment_file(tmp_path / "movie.tif", tmp_path, options)
    _write(tmp_path / "still.tif", data[0], "YX")
    with pytest.raises(EmsegError, match="has no time points .*emseg batch --shared-model"):
        segment_file(tmp_path / "still.tif", tmp_path, RunOptions(shared_model=True))
    assert not list(tmp_path.glob("movie_*")) and not list(tmp_path.glob("still_*"))


@pytest.mark.filterwarnings("ignore:k='auto' chose k_max")
def test_time_points_with_another_k_cannot_share_one_posteriors_file(tmp_path, rng):
    truth = np.zeros((2, 20, 30), np.int64)
    truth[:, :, 15:] = 1
    truth[1, :, 22:] = 2  # three clear classes only at t=1
    data = (np.array([200.0, 2000.0, 3800.0])[truth]
            + rng.normal(0, 20, truth.shape)).astype(np.uint16)
    _write(tmp_path / "movie.tif", data, "TYX")
    options = RunOptions(classes="auto", k_max=3, posteriors=True)
    with pytest.raises(EmsegError, match="time point 1 has 3 classes but time point 0 has 2"):
        segment_file(tmp_path / "movie.tif", tmp_path, options)
    assert not list(tmp_path.glob("movie_*")) and not list(tmp_path.glob(".movie*"))
    # labels alone are fine: the report lists the largest K
    report = segment_file(tmp_path / "movie.tif", tmp_path,
                          RunOptions(classes="auto", k_max=3))
    assert report["k"] == 3 and [f["k"] for f in report["time_points"]] == [2, 3]


def test_the_cli_segments_a_time_series(tmp_path, rng):
    from click.testing import CliRunner

    from emseg.cli.main import main

    data, truth = _series(rng, (4, 3, 16, 30))
    _write(tmp_path / "t.tif", data, "TZYX")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(tmp_path / "t.tif"), "-o", str(out),
                                       "-k", "3", "--shared-model", "--ome", "--posteriors"])
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 1 and "K=3" in result.output
    assert {p.name for p in out.iterdir()} == {
        "t_labels.ome.tif", "t_posteriors.ome.tif", "t_overlay.png", "t_segments.png",
        "t_report.json", "t_model.json"}
    np.testing.assert_array_equal(tifffile.imread(out / "t_labels.ome.tif"), truth + 1)
    report = json.loads((out / "t_report.json").read_text())
    assert report["options"]["shared_model"] and report["options"]["ome"]
    # the montage shows every time point, the first and last too: 2 x 2 tiles of 16 x 30
    segments = io.read_image(out / "t_segments.png").pixels
    assert segments.shape[:2] == (2 * 16 + 2, 2 * 30 + 2)
    # the shared model is kept: emseg apply labels the series with it as the run did
    again = tmp_path / "again"
    result = CliRunner().invoke(main, ["apply", str(out / "t_model.json"),
                                       str(tmp_path / "t.tif"), "-o", str(again)])
    assert result.exit_code == 0, result.output
    applied = next(again.rglob("t_labels.tif"))
    np.testing.assert_array_equal(tifffile.imread(applied), truth + 1)


def test_a_time_series_in_a_batch(tmp_path, rng):
    """emseg batch segments a time series as emseg run does (each time point)."""
    from emseg.workflows.batch import run_batch

    data, _ = _series(rng, (3, 16, 24))
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder / "movie.tif", data, "TYX")
    result = run_batch([folder], tmp_path / "out", RunOptions(classes=2), jobs=1)
    assert [r.status for r in result.rows] == ["ok"]
    with tifffile.TiffFile(tmp_path / "out" / "movie_labels.tif") as tif:
        assert tif.series[0].axes == "TYX" and tif.series[0].shape == (3, 16, 24)


def test_verbose_cli_on_a_time_series_and_each_time_points_k_choice(tmp_path, rng):
    from click.testing import CliRunner

    from emseg.cli.main import main

    data, _ = _series(rng, (2, 16, 24))
    _write(tmp_path / "t.tif", data, "TYX")
    result = CliRunner().invoke(main, ["run", "-v", str(tmp_path / "t.tif"), "-o",
                                       str(tmp_path / "out"), "-k", "auto", "--k-max", "3"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "t_report.json").read_text())
    assert all(f["bic_table"] for f in report["time_points"])
