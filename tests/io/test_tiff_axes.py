"""The axes of ImageJ hyperstacks and OME-TIFF: C channels, Z a volume, calibration."""

import numpy as np
import pytest
import tifffile

from emseg import io
from emseg._shared.errors import EmsegError


@pytest.fixture
def rng():
    return np.random.default_rng(13)


def _zcyx(rng, z=3, c=2, h=6, w=7):
    return rng.integers(0, 4000, size=(z, c, h, w), dtype=np.uint16)


def test_imagej_cyx_is_a_two_channel_image(tmp_path, rng):
    data = rng.integers(0, 4000, size=(2, 6, 7), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "cyx.tif", data, imagej=True, metadata={"axes": "CYX"})
    img = io.read_image(tmp_path / "cyx.tif")
    assert img.channels and not img.is_stack and not img.is_color
    assert img.pixels.shape == (6, 7, 2) and img.spatial_shape == (6, 7)
    np.testing.assert_array_equal(img.pixels, np.moveaxis(data, 0, -1))
    assert img.spacing is None
    assert "C: 2 channels" in img.axes


def test_imagej_zcyx_calibrated(tmp_path, rng):
    data = _zcyx(rng)
    tifffile.imwrite(tmp_path / "zcyx.tif", data, imagej=True, resolution=(5.0, 4.0),
                     metadata={"axes": "ZCYX", "spacing": 0.5, "unit": "micron"})
    img = io.read_image(tmp_path / "zcyx.tif")
    assert img.channels and img.is_stack
    assert img.pixels.shape == (3, 6, 7, 2) and img.spatial_shape == (3, 6, 7)
    np.testing.assert_array_equal(img.pixels, np.moveaxis(data, 1, -1))
    np.testing.assert_allclose(img.spacing, (0.5, 0.25, 0.2))  # (z, y, x)
    assert img.unit == "µm"
    assert "Z: 3 slices" in img.axes and "C: 2 channels" in img.axes and "µm" in img.axes


def test_ome_czyx(tmp_path, rng):
    data = np.moveaxis(_zcyx(rng), 1, 0)  # C, Z, Y, X
    tifffile.imwrite(tmp_path / "czyx.ome.tif", data, ome=True, metadata={
        "axes": "CZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 0.5,
        "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm", "PhysicalSizeZUnit": "µm"})
    img = io.read_image(tmp_path / "czyx.ome.tif")
    assert img.channels and img.is_stack and img.pixels.shape == (3, 6, 7, 2)
    np.testing.assert_array_equal(img.pixels, np.moveaxis(data, 0, -1))
    np.testing.assert_allclose(img.spacing, (0.5, 0.2, 0.2))
    assert img.unit == "µm" and img.axes.startswith("OME-TIFF axes CZYX")


def test_ome_units_are_made_one(tmp_path, rng):
    data = rng.integers(0, 255, size=(3, 6, 7), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "z.ome.tif", data, ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 200, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 200, "PhysicalSizeYUnit": "nm",
        "PhysicalSizeZ": 0.5, "PhysicalSizeZUnit": "µm"})
    img = io.read_image(tmp_path / "z.ome.tif")
    np.testing.assert_allclose(img.spacing, (0.5, 0.2, 0.2))
    assert img.unit == "µm" and not img.channels and img.is_stack


def test_imagej_calibrated_zyx(tmp_path, rng):
    data = rng.integers(0, 255, size=(4, 6, 7), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "zyx.tif", data, imagej=True, resolution=(5.0, 5.0),
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um"})
    img = io.read_image(tmp_path / "zyx.tif")
    assert img.is_stack and not img.channels and img.pixels.shape == (4, 6, 7)
    np.testing.assert_allclose(img.spacing, (0.5, 0.2, 0.2))
    assert img.unit == "µm"
    # a 2-D calibrated image keeps (y, x)
    tifffile.imwrite(tmp_path / "yx.tif", data[0], imagej=True, resolution=(2.0, 4.0),
                     metadata={"unit": "nm"})
    img = io.read_image(tmp_path / "yx.tif")
    np.testing.assert_allclose(img.spacing, (0.25, 0.5))
    assert img.unit == "nm" and not img.is_stack


def test_uncalibrated_imagej_stack_has_no_spacing(tmp_path, rng):
    data = rng.integers(0, 255, size=(4, 6, 7), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "zyx.tif", data, imagej=True, metadata={"axes": "ZYX"})
    img = io.read_image(tmp_path / "zyx.tif")
    assert img.is_stack and img.spacing is None and img.unit is None


def test_plain_multipage_stays_a_stack(tmp_path, rng):
    data = rng.integers(0, 255, size=(3, 6, 7), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", data, photometric="minisblack")
    img = io.read_image(tmp_path / "s.tif")
    assert img.is_stack and not img.channels and img.pixels.shape == (3, 6, 7)
    assert "read as Z" in img.axes


def test_singleton_axes_are_dropped(tmp_path, rng):
    data = rng.integers(0, 255, size=(1, 3, 1, 6, 7), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "t.tif", data, imagej=True, metadata={"axes": "TZCYX"})
    img = io.read_image(tmp_path / "t.tif")
    assert img.is_stack and not img.channels and img.pixels.shape == (3, 6, 7)


@pytest.mark.parametrize("axes, shape, words", [
    ("TZYX", (2, 3, 6, 7), "2 time points .*save each time point"),
    ("TYX", (2, 6, 7), "2 time points"),
])
def test_time_points_are_refused(tmp_path, rng, axes, shape, words):
    data = rng.integers(0, 255, size=shape, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "t.tif", data, imagej=True, metadata={"axes": axes})
    with pytest.raises(EmsegError, match=words):
        io.read_image(tmp_path / "t.tif")


@pytest.mark.parametrize("axes, shape", [("TZYX", (3, 4, 6, 7)), ("TYX", (5, 6, 7))])
def test_time_points_are_read_when_asked(tmp_path, rng, axes, shape):
    data = rng.integers(0, 4000, size=shape, dtype=np.uint16)
    tifffile.imwrite(tmp_path / "t.tif", data, imagej=True, resolution=(5.0, 4.0),
                     metadata={"axes": axes, "spacing": 0.5, "unit": "micron",
                               "finterval": 2.5})
    img = io.read_image(tmp_path / "t.tif", allow_time=True)
    assert img.time_points == shape[0] and img.interval == (2.5, "s")
    assert img.is_stack == ("Z" in axes) and not img.channels and not img.is_color
    np.testing.assert_array_equal(img.pixels, data)
    assert img.spatial_shape == shape[1:]
    np.testing.assert_allclose(img.spacing, (0.5, 0.25, 0.2) if "Z" in axes else (0.25, 0.2))
    assert img.unit == "µm"
    assert f"T: {shape[0]} time points (each segmented), 2.5 s apart" in img.axes
    for t in range(shape[0]):
        frame = img.frame(t)
        assert frame.time_points is None and frame.spatial_shape == shape[1:]
        np.testing.assert_array_equal(frame.pixels, data[t])
        np.testing.assert_allclose(frame.spacing, img.spacing)


def test_ome_tczyx_time_points_with_channels(tmp_path, rng):
    data = rng.integers(0, 4000, size=(2, 3, 4, 6, 7), dtype=np.uint16)  # T, C, Z, Y, X
    tifffile.imwrite(tmp_path / "t.ome.tif", data, ome=True, metadata={
        "axes": "TCZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 1.0,
        "TimeIncrement": 90, "TimeIncrementUnit": "ms"})
    img = io.read_image(tmp_path / "t.ome.tif", allow_time=True)
    assert img.time_points == 2 and img.channels and img.is_stack and not img.is_color
    assert img.pixels.shape == (2, 4, 6, 7, 3) and img.spatial_shape == (4, 6, 7)
    np.testing.assert_array_equal(img.pixels, np.moveaxis(data, 1, -1))
    np.testing.assert_allclose(img.spacing, (1.0, 0.2, 0.2))
    assert img.interval == (90.0, "ms") and img.unit == "µm"
    assert img.frame(1).pixels.shape == (4, 6, 7, 3)
    with pytest.raises(EmsegError, match="2 time points"):
        io.read_image(tmp_path / "t.ome.tif")


def test_time_points_count_against_the_pixel_limit(tmp_path, rng):
    data = rng.integers(0, 255, size=(4, 6, 7), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "t.tif", data, imagej=True, metadata={"axes": "TYX"})
    with pytest.raises(EmsegError, match="4 time points"):
        io.read_image(tmp_path / "t.tif", max_pixels=100, allow_time=True)


def test_channels_with_colour_samples_are_refused(tmp_path, rng):
    data = rng.integers(0, 255, size=(2, 6, 7, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", data, photometric="rgb", metadata={"axes": "CYXS"})
    with pytest.raises(EmsegError, match=r"both channels \(C\) and 3 colour samples"):
        io.read_image(tmp_path / "c.tif")


def test_unnamed_axis_beside_z_is_refused(tmp_path, rng):
    data = rng.integers(0, 255, size=(2, 3, 6, 7), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "q.tif", data, photometric="minisblack",
                     metadata={"axes": "QZYX"})
    with pytest.raises(EmsegError, match="Q \\(2\\) is not named Z, C or T"):
        io.read_image(tmp_path / "q.tif")


def test_channels_count_against_the_pixel_limit(tmp_path, rng):
    data = rng.integers(0, 255, size=(4, 6, 7), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", data, imagej=True, metadata={"axes": "CYX"})
    with pytest.raises(EmsegError, match="4 channels"):
        io.read_image(tmp_path / "c.tif", max_pixels=100)


def _joint_two_channels(rng, h=40, w=40):
    """Two classes (left and right halves) with the same values in each channel alone:
    along the line b = a on the left, b = 2000 - a on the right."""
    truth = np.zeros((h, w), np.int64)
    truth[:, w // 2:] = 1
    t = rng.normal(1000, 300, size=(h, w))
    a = t + rng.normal(0, 30, size=(h, w))
    b = np.where(truth == 0, t, 2000 - t) + rng.normal(0, 30, size=(h, w))
    return np.clip(np.stack([a, b]), 0, 4000).astype(np.uint16), truth


def test_channels_segment_jointly(tmp_path, rng):
    from emseg.workflows.run import RunOptions, segment_file

    pixels, truth = _joint_two_channels(rng)
    for ch in pixels:  # neither channel alone tells the classes apart
        assert abs(ch[truth == 0].mean() - ch[truth == 1].mean()) < 60
        assert abs(ch[truth == 0].std() - ch[truth == 1].std()) < 60
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, pixels, imagej=True, metadata={"axes": "CYX"})
    (tmp_path / "out").mkdir()
    report = segment_file(path, tmp_path / "out", RunOptions(classes=2))
    assert "C: 2 channels" in report["axes"]
    labels = io.read_image(tmp_path / "out" / "two_labels.png").pixels
    assert labels.shape == truth.shape
    found = labels == labels[0, 0]
    agreement = (found == (truth == 0)).mean()
    assert agreement > 0.9, agreement


def test_write_tiff_stack_imagej_calibrated(tmp_path, rng):
    labels = rng.integers(0, 4, size=(3, 6, 7), dtype=np.uint8)
    io.write_tiff_stack(tmp_path / "l.tif", labels, dtype=np.uint8, imagej=True,
                        spacing=(0.5, 0.25, 0.2), unit="µm")
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        assert tif.imagej_metadata["spacing"] == 0.5
        assert tif.imagej_metadata["unit"] == "micron"
        np.testing.assert_array_equal(tif.asarray(), labels)
    img = io.read_image(tmp_path / "l.tif")
    np.testing.assert_allclose(img.spacing, (0.5, 0.25, 0.2))
    assert img.unit == "µm" and img.is_stack
    io.write_tiff_stack(tmp_path / "a.tif", labels, dtype=np.uint8, imagej=True,
                        spacing=(2, 1, 1), unit="Å")
    img = io.read_image(tmp_path / "a.tif")
    assert img.unit == "Å" and img.spacing == (2, 1, 1)


def test_labels_of_a_calibrated_stack_keep_the_calibration(tmp_path, rng):
    from emseg.workflows.run import RunOptions, segment_file

    data = np.zeros((4, 16, 16), np.uint8)
    data[:, :, 8:] = 200
    data = (data + rng.integers(0, 20, size=data.shape)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "z.tif", data, imagej=True, resolution=(5.0, 5.0),
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "micron"})
    (tmp_path / "out").mkdir()
    report = segment_file(tmp_path / "z.tif", tmp_path / "out", RunOptions(classes=2))
    np.testing.assert_allclose(report["spacing"], (0.5, 0.2, 0.2))
    assert report["spacing_unit"] == "µm"
    with tifffile.TiffFile(tmp_path / "out" / "z_labels.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        assert tif.imagej_metadata["spacing"] == 0.5
        assert tif.imagej_metadata["unit"] == "micron"
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(5.0)
        labels = tif.asarray()
    assert set(np.unique(labels[:, :, :8])) == {1} and set(np.unique(labels[:, :, 8:])) == {2}


def test_read_channels_keeps_the_unit(tmp_path, rng):
    for name in ("a", "b"):
        data = rng.integers(0, 255, size=(3, 6, 7), dtype=np.uint8)
        tifffile.imwrite(tmp_path / f"{name}.tif", data, imagej=True, resolution=(5.0, 5.0),
                         metadata={"axes": "ZYX", "spacing": 0.5, "unit": "micron"})
    img = io.read_channels([tmp_path / "a.tif", tmp_path / "b.tif"])
    assert img.channels and img.pixels.shape == (3, 6, 7, 2)
    np.testing.assert_allclose(img.spacing, (0.5, 0.2, 0.2))
    assert img.unit == "µm"


def test_ome_with_several_images_is_refused(tmp_path):
    with tifffile.TiffWriter(tmp_path / "two.ome.tif", ome=True) as tif:
        tif.write(np.zeros((3, 6, 7), np.uint8), metadata={"axes": "ZYX"})
        tif.write(np.ones((3, 6, 7), np.uint8), metadata={"axes": "ZYX"})
    with pytest.raises(EmsegError, match="holding 2 images .*its own file"):
        io.read_image(tmp_path / "two.ome.tif")
