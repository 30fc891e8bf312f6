import numpy as np
import pytest

from emseg.io import images as io
from emseg._shared.errors import EmsegError

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")

from _helpers import dicom_series  # noqa: E402
from emseg.io.medical import read_dicom_folder, write_nifti  # noqa: E402


def nifti_volume(tmp_path, shape=(20, 16, 12), zooms=(0.9, 1.1, 3.0), name="t1.nii.gz"):
    rng = np.random.default_rng(0)
    data = rng.normal(100, 10, shape).astype(np.float32)  # (X, Y, Z) as nibabel stores it
    affine = np.diag(list(zooms) + [1.0])
    affine[:3, 3] = [-10, 5, 2]
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms(zooms)
    path = tmp_path / name
    nib.save(img, path)
    return path, data, affine


def test_nifti_reads_in_slice_row_column_order_with_spacing(tmp_path):
    path, data, _ = nifti_volume(tmp_path)
    image = io.read_image(path)
    assert image.is_stack and not image.is_color
    assert image.pixels.shape == (12, 16, 20)  # (Z, Y, X)
    np.testing.assert_array_equal(image.pixels, np.transpose(data, (2, 1, 0)))
    assert image.spacing == pytest.approx((3.0, 1.1, 0.9))


def test_nifti_round_trip_keeps_affine_and_shape(tmp_path):
    path, data, affine = nifti_volume(tmp_path)
    image = io.read_image(path)
    labels = (image.pixels > 100).astype(np.uint8)
    out = tmp_path / "labels.nii.gz"
    write_nifti(out, labels, image.nifti)
    back = nib.load(out)
    assert back.shape == data.shape
    np.testing.assert_allclose(back.affine, affine)
    assert back.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(back.dataobj), np.transpose(labels, (2, 1, 0)))
    assert io.read_image(out).pixels.shape == labels.shape
    with pytest.raises(EmsegError, match="exists"):
        write_nifti(out, labels, image.nifti)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_4d_nifti_needs_channels(tmp_path):
    data = np.random.default_rng(1).normal(size=(6, 5, 4, 2)).astype(np.float32)
    path = tmp_path / "multi.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(EmsegError, match="--channels"):
        io.read_image(path)
    image = io.read_image(path, allow_channels=True)
    assert image.channels and image.pixels.shape == (4, 5, 6, 2)
    assert image.spatial_shape == (4, 5, 6)


def test_channels_of_different_shapes_refused(tmp_path):
    a, _, _ = nifti_volume(tmp_path, name="a.nii.gz")
    b, _, _ = nifti_volume(tmp_path, shape=(20, 16, 10), name="b.nii.gz")
    with pytest.raises(EmsegError, match="co-registered"):
        io.read_channels([a, b])
    c, _, _ = nifti_volume(tmp_path, name="c.nii.gz")
    both = io.read_channels([a, c])
    assert both.pixels.shape == (12, 16, 20, 2) and both.channels


def test_damaged_nifti_gets_one_line(tmp_path):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(b"not a nifti file at all")
    with pytest.raises(EmsegError, match="bad.nii.gz"):
        io.read_image(path)


def test_dicom_folder_sorted_by_position_with_rescale_and_spacing(tmp_path):
    volume = np.random.default_rng(2).integers(0, 1000, (5, 8, 9)).astype(np.uint16)
    dicom_series(tmp_path / "series", volume)
    (tmp_path / "series" / "README.txt").write_text("not dicom")
    image = io.read_image(tmp_path / "series")
    assert image.pixels.shape == (5, 8, 9)
    np.testing.assert_allclose(image.pixels, volume * 2.0 - 100)
    assert image.spacing == pytest.approx((2.5, 0.8, 0.7))


def test_dicom_folder_with_mixed_series_refused(tmp_path):
    volume = np.zeros((2, 4, 4), np.uint16)
    dicom_series(tmp_path / "mixed", volume, series="1.1")
    dicom_series(tmp_path / "mixed", volume, series="2.2", start=10)
    with pytest.raises(EmsegError, match="mixes 2 DICOM series"):
        read_dicom_folder(tmp_path / "mixed")


@pytest.mark.parametrize("name", ["labels.nii.gz", "labels.nii"])
def test_write_nifti_never_writes_through_a_planted_symlink(tmp_path, monkeypatch, name):
    """Someone who can write to the output folder plants symlinks at every name emseg
    could write besides its own exclusive temporary file: none is followed, and the
    output is whole (as nibabel itself writes it)."""
    import secrets

    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    monkeypatch.setattr(secrets, "token_hex", lambda n: "0123abcd")  # a predictable temp
    tmp = f".{name}.0123abcd.tmp"
    for planted in (tmp + ".nii.gz", tmp + ".nii", tmp + ".gz"):
        (out_dir / planted).symlink_to(victim)
    labels = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    write_nifti(out_dir / name, labels, None)
    assert victim.read_bytes() == b"precious"
    reference = nib.Nifti1Image(np.transpose(labels, (2, 1, 0)), np.eye(4))
    reference.set_data_dtype(np.uint8)
    reference.header.set_slope_inter(1.0, 0.0)
    nib.save(reference, tmp_path / name)
    assert (out_dir / name).read_bytes() == (tmp_path / name).read_bytes()


def test_dicom_rle_series_reads_after_its_segments_are_checked(tmp_path):
    """The RLE size check (a decompression-bomb guard) counts runs as pydicom decodes
    them: a genuine RLE Lossless series, 16-bit (two segments per slice), reads."""
    from pydicom.uid import RLELossless

    volume = np.random.default_rng(3).integers(0, 1000, (3, 9, 11)).astype(np.uint16)
    volume[:, :4] = 7  # long runs as well as literal ones
    dicom_series(tmp_path / "rle", volume)
    for path in (tmp_path / "rle").iterdir():
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(next((tmp_path / "rle").iterdir())).file_meta.TransferSyntaxUID \
        == RLELossless
    image = io.read_image(tmp_path / "rle")
    np.testing.assert_allclose(image.pixels, volume * 2.0 - 100)
