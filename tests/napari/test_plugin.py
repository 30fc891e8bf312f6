"""The napari plugin without napari: the npe2 manifest validates, the reader turns
emseg's outputs into layer-data tuples (labels coloured and named from the report,
posteriors as images, the report's spacing as scale), and the widget's function
segments an array."""

import json
from importlib import resources

import numpy as np
import pytest

from emseg import EmsegError
from emseg.image import render
from emseg.napari import get_reader, read_outputs, segment_image
from emseg.workflows.run import RunOptions, segment_file


def test_the_manifest_validates_and_its_commands_import():
    npe2 = pytest.importorskip("npe2")
    text = resources.files("emseg.napari").joinpath("napari.yaml")
    manifest = npe2.PluginManifest.from_file(str(text))
    manifest.validate_imports()  # every python_name resolves to a callable
    assert manifest.name == "emseg"
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    assert commands["emseg.get_reader"] == "emseg.napari._reader:get_reader"
    (reader,) = manifest.contributions.readers
    assert "*_labels.nii.gz" in reader.filename_patterns
    (widget,) = manifest.contributions.widgets
    assert widget.command == "emseg.segment_image" and widget.autogenerate


def _nifti_outputs(tmp_path):
    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(3)
    truth = np.zeros((6, 12, 10), np.int64)  # (X, Y, Z) as nibabel stores it
    truth[:, 4:8] = 1
    truth[:, 8:] = 2
    data = np.array([40.0, 120.0, 200.0])[truth] + rng.normal(0, 6, truth.shape)
    affine = np.diag([0.8, 0.5, 2.5, 1.0])  # voxels 0.8 x 0.5 x 2.5 mm
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), tmp_path / "t1.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    report = segment_file(tmp_path / "t1.nii.gz", out,
                          RunOptions(classes=3, posteriors=True, pve=True))
    return out, report, truth


def test_a_nifti_labels_output_opens_as_labels_coloured_and_named_from_the_report(tmp_path):
    out, report, truth = _nifti_outputs(tmp_path)
    path = str(out / "t1_labels.nii.gz")
    reader = get_reader(path)
    assert reader is not None
    ((data, keywords, layer_type),) = reader(path)
    assert layer_type == "labels"
    assert data.dtype.kind == "u" and data.shape == (10, 12, 6)  # (Z, Y, X)
    # 1..K, darkest first, the classes where they were put
    np.testing.assert_array_equal(data, np.transpose(truth, (2, 1, 0)) + 1)
    assert keywords["scale"] == pytest.approx((2.5, 0.5, 0.8))
    colormap = keywords["colormap"]
    assert colormap[0][3] == 0 and colormap[None][3] == 0  # outside: transparent
    palette = render.palette(3)
    for info in report["classes"]:
        label = info["label"]
        np.testing.assert_allclose(colormap[label][:3], np.array(info["overlay_color"]) / 255)
        np.testing.assert_allclose(colormap[label][:3], palette[label - 1] / 255)
    features = keywords["features"]
    assert features["index"] == [0, 1, 2, 3]
    assert features["name"][0] == "outside the mask"
    assert features["name"][1].startswith("class 1 (mean 4")  # about 40
    assert features["fraction"][1:] == [c["fraction"] for c in report["classes"]]


def test_posteriors_and_partial_volumes_open_as_one_image_per_class(tmp_path):
    out, report, truth = _nifti_outputs(tmp_path)
    both = [str(out / "t1_labels.nii.gz"), str(out / "t1_posteriors.nii.gz")]
    assert [t for _, _, t in get_reader(both)(both)] == ["labels"] + ["image"] * 3
    for name in ("t1_posteriors.nii.gz", "t1_pve.nii.gz"):
        layers = read_outputs(str(out / name))
        assert [t for _, _, t in layers] == ["image"] * 3
        stack = np.stack([d for d, _, _ in layers])
        assert stack.shape == (3, 10, 12, 6) and stack.dtype == np.float32
        assert stack.min() >= 0 and stack.max() <= 1
        np.testing.assert_allclose(stack.sum(axis=0), 1, atol=0.02)
        # each class's map is high where that class is
        np.testing.assert_array_equal(stack.argmax(axis=0), np.transpose(truth, (2, 1, 0)))
        for (_, keywords, _), info in zip(layers, report["classes"], strict=True):
            assert keywords["scale"] == pytest.approx((2.5, 0.5, 0.8))
            assert f"class {info['label']}" in keywords["name"]
            np.testing.assert_allclose(keywords["colormap"]["colors"][1][:3],
                                       np.array(info["overlay_color"]) / 255)


def test_a_png_output_and_its_tiff_posteriors(tmp_path):
    from emseg.io import write_png

    rng = np.random.default_rng(0)
    truth = np.zeros((40, 48), np.int64)
    truth[20:, :] = 1
    image = (np.array([50.0, 190.0])[truth] + rng.normal(0, 8, truth.shape)).clip(0, 255)
    write_png(tmp_path / "cells.png", image.astype(np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    segment_file(tmp_path / "cells.png", out, RunOptions(classes=2, posteriors=True))
    ((labels, keywords, kind),) = read_outputs(str(out / "cells_labels.png"))
    assert kind == "labels"
    np.testing.assert_array_equal(labels, truth + 1)
    assert "scale" not in keywords  # a PNG has no spacing
    maps = read_outputs(str(out / "cells_posteriors.tif"))
    assert len(maps) == 2 and maps[0][0].shape == (40, 48)
    np.testing.assert_allclose(maps[0][0] + maps[1][0], 1, atol=2 / 255)
    np.testing.assert_array_equal(np.argmax([m[0] for m in maps], axis=0), truth)


def test_files_that_are_not_emseg_outputs_get_no_reader(tmp_path):
    from emseg.io import write_png

    picture = tmp_path / "holiday.png"
    write_png(picture, np.zeros((8, 8), np.uint8))
    assert get_reader(str(picture)) is None
    lonely = tmp_path / "x_labels.png"  # the right name, but no report beside it
    write_png(lonely, np.zeros((8, 8), np.uint8))
    assert get_reader(str(lonely)) is None
    assert get_reader([str(lonely), str(picture)]) is None
    (tmp_path / "x_report.json").write_text(json.dumps({"classes": []}))
    with pytest.raises(EmsegError, match="lists no classes"):
        read_outputs(str(lonely))


def test_labels_that_do_not_match_their_report_are_one_line(tmp_path):
    from emseg.io import write_png

    labels = tmp_path / "x_labels.png"
    write_png(labels, np.full((8, 8), 5, np.uint8))
    classes = [{"label": i, "overlay_color": [0, 0, 0]} for i in (1, 2)]
    (tmp_path / "x_report.json").write_text(json.dumps({"classes": classes}))
    with pytest.raises(EmsegError, match=r"outside 0\.\.2"):
        get_reader(str(labels))(str(labels))
    (tmp_path / "x_labels.png").write_bytes(b"not a png")
    with pytest.raises(EmsegError, match="x_labels.png"):
        read_outputs(str(labels))


def test_the_widget_segments_an_array_into_labels_1_to_k():
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(3), 20)[None, :].repeat(30, axis=0)  # three bands
    image = (np.array([30.0, 110.0, 220.0])[truth] + rng.normal(0, 10, truth.shape))
    data, keywords, kind = segment_image(image.astype(np.float32), k=3, beta=0.5)
    assert kind == "labels" and data.shape == image.shape
    np.testing.assert_array_equal(data, truth + 1)  # darkest first, 0 only outside
    assert set(keywords["colormap"]) == {None, 0, 1, 2, 3}
    assert keywords["features"]["index"] == [0, 1, 2, 3]
    assert "scale" not in keywords


def test_the_widget_takes_a_layer_and_keeps_its_scale():
    class Layer:  # what napari passes for a "napari.layers.Image" parameter
        rgb = False
        scale = np.array([3.0, 1.0, 1.0])

        def __init__(self, data):
            self.data = data

    rng = np.random.default_rng(2)
    truth = np.zeros((4, 16, 16), np.int64)
    truth[:, 8:] = 1
    volume = np.array([60.0, 180.0])[truth] + rng.normal(0, 8, truth.shape)
    data, keywords, _ = segment_image(Layer(volume), k=2, bias=True)
    np.testing.assert_array_equal(data, truth + 1)
    assert keywords["scale"] == (3.0, 1.0, 1.0)
    assert "bias" in keywords["name"]


def _calibrated_stack(tmp_path, axes="ZYX", shape=(4, 16, 18)):
    import tifffile

    rng = np.random.default_rng(5)
    truth = np.zeros(shape, np.int64)
    truth[..., 6:] = 1
    truth[..., 12:] = 2
    data = (np.array([300.0, 1500.0, 3000.0])[truth] + rng.normal(0, 50, shape))
    tifffile.imwrite(tmp_path / "cells.tif", data.astype(np.uint16), imagej=True,
                     resolution=(5.0, 4.0),
                     metadata={"axes": axes, "spacing": 0.5, "unit": "micron"})
    return truth


@pytest.mark.parametrize("ome", [False, True])
def test_hyperstack_outputs_of_a_3d_tiff_open_with_the_calibration(tmp_path, ome):
    truth = _calibrated_stack(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    segment_file(tmp_path / "cells.tif", out,
                 RunOptions(classes=3, posteriors=True, pve=True, ome=ome))
    ext = "ome.tif" if ome else "tif"
    labels_path = str(out / f"cells_labels.{ext}")
    ((labels, keywords, kind),) = get_reader(labels_path)(labels_path)
    assert kind == "labels"
    np.testing.assert_array_equal(labels, truth + 1)
    assert keywords["scale"] == pytest.approx((0.5, 0.25, 0.2))
    for name in ("posteriors", "pve"):
        path = str(out / f"cells_{name}.{ext}")  # ZCYX: 4-D, the class as C
        layers = get_reader(path)(path)
        assert [t for _, _, t in layers] == ["image"] * 3
        stack = np.stack([d for d, _, _ in layers])
        assert stack.shape == (3, *truth.shape) and stack.dtype == np.float32
        np.testing.assert_array_equal(stack.argmax(axis=0), truth)
        np.testing.assert_allclose(stack.sum(axis=0), 1, atol=0.02)
        for _, kw, _ in layers:
            assert kw["scale"] == pytest.approx((0.5, 0.25, 0.2))


def test_time_series_outputs_open_with_t_first(tmp_path):
    truth = _calibrated_stack(tmp_path, "TZYX", (3, 2, 16, 18))
    out = tmp_path / "out"
    out.mkdir()
    segment_file(tmp_path / "cells.tif", out,
                 RunOptions(classes=3, shared_model=True, posteriors=True))
    ((labels, keywords, kind),) = read_outputs(str(out / "cells_labels.tif"))
    assert kind == "labels" and labels.shape == (3, 2, 16, 18)
    np.testing.assert_array_equal(labels, truth + 1)
    assert keywords["scale"] == pytest.approx((1.0, 0.5, 0.25, 0.2))
    assert set(keywords["colormap"]) == {None, 0, 1, 2, 3}
    layers = read_outputs(str(out / "cells_posteriors.tif"))  # TZCYX
    assert len(layers) == 3
    stack = np.stack([d for d, _, _ in layers])
    assert stack.shape == (3, 3, 2, 16, 18)
    np.testing.assert_array_equal(stack.argmax(axis=0), truth)
    assert layers[0][1]["scale"] == pytest.approx((1.0, 0.5, 0.25, 0.2))


def test_the_manifest_accepts_ome_outputs():
    npe2 = pytest.importorskip("npe2")
    text = resources.files("emseg.napari").joinpath("napari.yaml")
    (reader,) = npe2.PluginManifest.from_file(str(text)).contributions.readers
    for name in ("*_labels.ome.tif", "*_posteriors.ome.tif", "*_pve.ome.tif"):
        assert name in reader.filename_patterns
