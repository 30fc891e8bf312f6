"""ImageJ hyperstacks and OME-TIFF as written by emseg.io.write_hyperstack, re-read by
tifffile (axes, calibration, frame interval) and by emseg itself."""

import numpy as np
import pytest
import tifffile

from emseg import io
from emseg._shared.errors import EmsegError


@pytest.fixture
def rng():
    return np.random.default_rng(4)


# (axes given, shape given, axes ImageJ/OME order)
LAYOUTS = [
    ("ZYX", (3, 6, 7), "ZYX"),
    ("CYX", (4, 6, 7), "CYX"),
    ("CZYX", (4, 3, 6, 7), "ZCYX"),  # emseg's class-first maps, put in ImageJ's order
    ("TZYX", (2, 3, 6, 7), "TZYX"),
    ("TYX", (5, 6, 7), "TYX"),
    ("CTZYX", (4, 2, 3, 6, 7), "TZCYX"),
]


def _reordered(data, given, written):
    return np.transpose(data, [given.index(a) for a in written])


@pytest.mark.parametrize("given, shape, written", LAYOUTS)
def test_imagej_hyperstacks_keep_axes_and_calibration(tmp_path, rng, given, shape, written):
    data = rng.integers(0, 255, size=shape, dtype=np.uint8)
    path = tmp_path / "h.tif"
    io.write_hyperstack(path, data, given, spacing=(0.5, 0.25, 0.2), unit="µm",
                        interval=(2.5, "s"))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and not tif.is_ome
        assert tif.series[0].axes == written
        np.testing.assert_array_equal(tif.asarray(), _reordered(data, given, written))
        meta = tif.imagej_metadata
        assert meta["unit"] == "micron"
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(5.0)
        num, den = tif.pages[0].tags["YResolution"].value
        assert num / den == pytest.approx(4.0)
        assert meta.get("spacing") == (0.5 if "Z" in written else None)
        assert meta.get("finterval") == (2.5 if "T" in written else None)
    image = io.read_image(path, allow_channels=True, allow_time=True)
    assert image.unit == "µm"
    expected = (0.5, 0.25, 0.2) if "Z" in written else (0.25, 0.2)
    np.testing.assert_allclose(image.spacing, expected)
    assert image.channels == ("C" in written)
    assert image.time_points == (shape[given.index("T")] if "T" in given else None)


@pytest.mark.parametrize("given, shape, written", LAYOUTS)
def test_ome_tiff_keeps_axes_and_calibration(tmp_path, rng, given, shape, written):
    data = rng.integers(0, 4000, size=shape, dtype=np.uint16)
    path = tmp_path / "h.ome.tif"
    io.write_hyperstack(path, data, given, spacing=(0.5, 0.25, 0.2), unit="µm",
                        interval=(2.5, "s"), ome=True)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and not tif.is_imagej
        assert tif.series[0].axes == written
        np.testing.assert_array_equal(tif.asarray(), _reordered(data, given, written))
        xml = tif.ome_metadata
    assert 'PhysicalSizeX="0.2"' in xml and 'PhysicalSizeY="0.25"' in xml
    assert 'PhysicalSizeXUnit="µm"' in xml
    assert ('PhysicalSizeZ="0.5"' in xml) == ("Z" in written)
    assert ('TimeIncrement="2.5"' in xml) == ("T" in written)
    image = io.read_image(path, allow_channels=True, allow_time=True)
    expected = (0.5, 0.25, 0.2) if "Z" in written else (0.25, 0.2)
    np.testing.assert_allclose(image.spacing, expected)
    assert image.unit == "µm"
    if "T" in written:
        assert image.interval == (2.5, "s")


def test_float16_and_float64_are_written_as_float32(tmp_path, rng):
    data = rng.random((2, 6, 7))
    for dtype in (np.float16, np.float64):
        for ome in (False, True):
            path = tmp_path / f"{np.dtype(dtype).name}{ome}.tif"
            io.write_hyperstack(path, data.astype(dtype), "CYX", ome=ome)
            with tifffile.TiffFile(path) as tif:
                assert tif.series[0].dtype == np.float32
                np.testing.assert_allclose(tif.asarray(), data.astype(dtype), rtol=1e-3)


def test_uncalibrated_and_unknown_units(tmp_path, rng):
    data = rng.integers(0, 255, size=(3, 6, 7), dtype=np.uint8)
    io.write_hyperstack(tmp_path / "plain.tif", data, "ZYX")
    with tifffile.TiffFile(tmp_path / "plain.tif") as tif:
        assert tif.is_imagej and "unit" not in tif.imagej_metadata
    assert io.read_image(tmp_path / "plain.tif").spacing is None
    # a unit OME does not name: the sizes are left out (OME would read them as µm)
    io.write_hyperstack(tmp_path / "odd.ome.tif", data, "ZYX", spacing=(2, 1, 1),
                        unit="furlong", ome=True)
    with tifffile.TiffFile(tmp_path / "odd.ome.tif") as tif:
        assert tif.is_ome and "PhysicalSize" not in tif.ome_metadata
    io.write_hyperstack(tmp_path / "odd.tif", data, "ZYX", spacing=(2, 1, 1), unit="furlong")
    image = io.read_image(tmp_path / "odd.tif")
    assert image.unit == "furlong" and image.spacing == (2, 1, 1)


def test_bad_axes_are_one_line(tmp_path):
    with pytest.raises(EmsegError, match="do not name the 3 axes"):
        io.write_hyperstack(tmp_path / "x.tif", np.zeros((2, 3, 4)), "YX")
    with pytest.raises(EmsegError, match="do not name"):
        io.write_hyperstack(tmp_path / "x.tif", np.zeros((2, 3, 4)), "QYX")
    with pytest.raises(EmsegError, match="do not name"):
        io.write_hyperstack(tmp_path / "x.tif", np.zeros((2, 3, 4)), "ZZX")
    assert not list(tmp_path.iterdir())


def test_an_existing_file_is_not_replaced(tmp_path):
    path = tmp_path / "x.tif"
    path.write_bytes(b"mine")
    with pytest.raises(EmsegError):
        io.write_hyperstack(path, np.zeros((3, 4), np.uint8), "YX")
    assert path.read_bytes() == b"mine"
    io.write_hyperstack(path, np.zeros((3, 4), np.uint8), "YX", overwrite=True)
    assert tifffile.imread(path).shape == (3, 4)
