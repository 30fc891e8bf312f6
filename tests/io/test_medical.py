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


# ------------------------------------------------------------------ DICOM geometry
# SimpleITK (ITK/GDCM) reads the same series as the reference; its world is LPS+,
# NIfTI's RAS+: x and y negated.

ORIENTATIONS = {  # ImageOrientationPatient: row then column direction cosines (LPS)
    "axial": (1, 0, 0, 0, 1, 0),
    "sagittal": (0, 1, 0, 0, 0, -1),
    "coronal": (1, 0, 0, 0, 0, -1),
    "oblique": None,  # a rotation about all three axes, below
}


def orientation(name):
    if ORIENTATIONS[name] is not None:
        return ORIENTATIONS[name]
    from scipy.spatial.transform import Rotation

    rotation = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
    return tuple(rotation[:, 0]) + tuple(rotation[:, 1])


def sitk_series(folder):
    """The series as SimpleITK's ImageSeriesReader reads it."""
    sitk = pytest.importorskip("SimpleITK")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def corners(shape_xyz):
    """The 8 corner voxel indices (i, j, k) of a volume of NIfTI shape (X, Y, Z)."""
    return [(i, j, k) for i in (0, shape_xyz[0] - 1) for j in (0, shape_xyz[1] - 1)
            for k in (0, shape_xyz[2] - 1)]


def sitk_corners_ras(image):
    """RAS+ mm of the 8 corner voxels of a SimpleITK image, in :func:`corners` order."""
    lps = [image.TransformIndexToPhysicalPoint(c) for c in corners(image.GetSize())]
    return np.array(lps) * [-1, -1, 1]


def affine_corners(affine, shape_xyz):
    return np.array([(affine @ [*c, 1.0])[:3] for c in corners(shape_xyz)])


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_dicom_affine_and_voxels_equal_simpleitk(tmp_path, name):
    """Anisotropic voxels, 6 slices at an awkward origin: emseg's RAS+ affine puts all 8
    corners where SimpleITK's series reader does, and the voxels are the same."""
    volume = np.random.default_rng(4).integers(0, 1000, (6, 7, 9)).astype(np.uint16)
    dicom_series(tmp_path / name, volume, spacing=(3.0, 0.9, 0.6), orientation=orientation(name),
                 origin=(-100.25, 20.5, 35.75))
    image = io.read_image(tmp_path / name)
    reference = sitk_series(tmp_path / name)
    sitk = pytest.importorskip("SimpleITK")
    np.testing.assert_allclose(image.pixels, sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(affine_corners(image.affine, (9, 7, 6)),
                               sitk_corners_ras(reference), atol=1e-4)
    assert image.spacing == pytest.approx(reference.GetSpacing()[::-1], abs=1e-6)
    assert image.spacing == pytest.approx((3.0, 0.9, 0.6), abs=1e-5)
    # the direction cosines, turned to RAS+, are the affine's columns over the spacing
    lps = np.array(orientation(name), float)
    np.testing.assert_allclose(image.affine[:3, 0] / 0.6, lps[:3] * [-1, -1, 1], atol=1e-7)
    np.testing.assert_allclose(image.affine[:3, 1] / 0.9, lps[3:] * [-1, -1, 1], atol=1e-7)


def test_dicom_slices_in_shuffled_file_order_are_sorted_along_the_normal(tmp_path):
    """File names and InstanceNumbers in a random order: the positions decide."""
    volume = np.random.default_rng(5).integers(0, 1000, (7, 5, 6)).astype(np.uint16)
    folder = tmp_path / "shuffled"
    dicom_series(folder, volume, spacing=(1.5, 1.0, 1.0), orientation=orientation("oblique"))
    files = sorted(folder.iterdir())
    order = np.random.default_rng(6).permutation(len(files))
    for new, f in zip(order, files):
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = int(new) + 1
        ds.save_as(f)
        f.rename(folder / f"x{new:02d}.dcm")
    image = io.read_image(folder)
    np.testing.assert_allclose(image.pixels, volume * 2.0 - 100)
    reference = sitk_series(folder)
    np.testing.assert_allclose(affine_corners(image.affine, (6, 5, 7)),
                               sitk_corners_ras(reference), atol=1e-4)


def test_dicom_series_stepping_against_the_normal_is_read_from_its_lowest_slice(tmp_path):
    """Positions that decrease along the normal (files written head first): slice 0 of
    the volume is the lowest along the normal, as ITK sorts."""
    volume = np.random.default_rng(7).integers(0, 1000, (4, 5, 6)).astype(np.uint16)
    positions = [(0, 0, -2.0 * z) for z in range(4)]
    dicom_series(tmp_path / "down", volume, spacing=(2.0, 1.0, 1.0), positions=positions)
    image = io.read_image(tmp_path / "down")
    np.testing.assert_allclose(image.pixels, volume[::-1] * 2.0 - 100)
    np.testing.assert_allclose(image.affine[:3, 3], [0, 0, -6.0])
    np.testing.assert_allclose(image.affine[:3, 2], [0, 0, 2.0])


def test_dicom_series_with_a_missing_slice_refused(tmp_path):
    volume = np.zeros((6, 4, 4), np.uint16)
    dicom_series(tmp_path / "gap", volume, spacing=(2.0, 1.0, 1.0),
                 orientation=orientation("oblique"))
    (tmp_path / "gap" / "slice003.dcm").unlink()  # the fourth slice
    with pytest.raises(EmsegError, match=r"not evenly spaced \(2 to 4 mm apart; 4 mm from "
                                         r"slice004.dcm to slice002.dcm\).*missing"):
        read_dicom_folder(tmp_path / "gap")


@pytest.mark.parametrize("gaps, ok", [
    ((2.0, 2.0, 2.0, 2.0), True),
    ((2.0, 2.1, 1.9, 2.0), True),  # within a tenth of a step of the grid (rounding)
    ((2.0, 2.6, 1.4, 2.0), False),  # 0.6 mm off a 2 mm grid
    ((1.0, 3.0, 1.0, 3.0), False),
])
def test_dicom_uneven_positions_refused_beyond_a_tenth_of_a_step(tmp_path, gaps, ok):
    volume = np.zeros((5, 4, 4), np.uint16)
    depth = np.concatenate([[0.0], np.cumsum(gaps)])
    dicom_series(tmp_path / "s", volume, positions=[(0, 0, d) for d in depth])
    if ok:
        assert read_dicom_folder(tmp_path / "s").spacing[0] == pytest.approx(2.0)
    else:
        with pytest.raises(EmsegError, match="not evenly spaced"):
            read_dicom_folder(tmp_path / "s")


def test_dicom_slices_at_one_position_refused(tmp_path):
    """Two echoes of one stack in one series: each position twice."""
    volume = np.zeros((4, 4, 4), np.uint16)
    dicom_series(tmp_path / "echoes", volume, positions=[(0, 0, z // 2) for z in range(4)])
    with pytest.raises(EmsegError, match="lie at one position.*several volumes"):
        read_dicom_folder(tmp_path / "echoes")


def test_dicom_slices_of_different_orientations_refused(tmp_path):
    volume = np.zeros((3, 4, 4), np.uint16)
    dicom_series(tmp_path / "mixed", volume)
    f = tmp_path / "mixed" / "slice002.dcm"
    ds = pydicom.dcmread(f)
    ds.ImageOrientationPatient = list(ORIENTATIONS["coronal"])
    ds.save_as(f)
    with pytest.raises(EmsegError, match="different orientations.*several stacks"):
        read_dicom_folder(tmp_path / "mixed")


@pytest.mark.parametrize("tag, value, message", [
    ("ImageOrientationPatient", [1, 0, 0, 0.5, 0.5, 0], "not two perpendicular unit"),
    ("ImageOrientationPatient", [1, 0, 0, 0, 1], "expected 6 numbers"),
    ("PixelSpacing", [0, 1], "two positive distances"),
])
def test_dicom_damaged_geometry_gets_one_line(tmp_path, tag, value, message):
    volume = np.zeros((3, 4, 4), np.uint16)
    dicom_series(tmp_path / "bad", volume)
    for f in (tmp_path / "bad").iterdir():
        ds = pydicom.dcmread(f)
        setattr(ds, tag, value)
        ds.save_as(f)
    with pytest.raises(EmsegError, match=message):
        read_dicom_folder(tmp_path / "bad")


def test_dicom_gantry_tilt_kept_as_a_shear_with_a_warning(tmp_path):
    """CT with a tilted gantry: each slice shifts along the column direction. The
    affine's step is the true one (P_last - P_0) / (n - 1), so every voxel is where the
    positions put it, and a warning says so."""
    volume = np.zeros((5, 4, 4), np.uint16)
    tilt = np.radians(12)
    positions = [(0.0, 2.5 * z * np.sin(tilt), 2.5 * z * np.cos(tilt)) for z in range(5)]
    written = dicom_series(tmp_path / "tilt", volume, positions=positions)
    with pytest.warns(UserWarning, match="sheared \\(gantry tilt of 12.00 degrees\\)"):
        vol = read_dicom_folder(tmp_path / "tilt")
    for z, p in enumerate(written):
        np.testing.assert_allclose((vol.affine @ [0, 0, z, 1])[:3], p * [-1, -1, 1], atol=1e-6)
    assert vol.spacing[0] == pytest.approx(2.5)


def test_dicom_without_geometry_is_ordered_by_instance_number(tmp_path):
    """No ImagePositionPatient: InstanceNumber orders the slices, SliceThickness spaces
    them, and there is no patient-space affine."""
    volume = np.random.default_rng(8).integers(0, 1000, (3, 4, 5)).astype(np.uint16)
    dicom_series(tmp_path / "plain", volume, spacing=(4.0, 0.5, 0.25))
    for f in (tmp_path / "plain").iterdir():
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        ds.save_as(f)
    vol = read_dicom_folder(tmp_path / "plain")
    np.testing.assert_allclose(vol.data, volume * 2.0 - 100)
    assert vol.spacing == (4.0, 0.5, 0.25) and vol.affine is None


def test_single_dicom_slice_steps_by_its_thickness(tmp_path):
    volume = np.zeros((1, 4, 5), np.uint16)
    dicom_series(tmp_path / "one", volume, spacing=(5.0, 0.5, 0.25),
                 orientation=ORIENTATIONS["coronal"], origin=(1, 2, 3))
    vol = read_dicom_folder(tmp_path / "one")
    # LPS column (0, 0, -1) and normal row x column = (0, 1, 0), in RAS+
    np.testing.assert_allclose(vol.affine, [[-0.25, 0, 0, -1], [0, 0, -5.0, -2],
                                            [0, -0.5, 0, 3], [0, 0, 0, 1]])


# ------------------------------------------------------------------ NIfTI outputs


def test_write_nifti_with_an_affine_sets_sform_qform_and_mm(tmp_path):
    affine = np.array([[-0.6, 0.1, 0.0, 10.0], [0.0, -0.8, 0.3, -5.0],
                       [0.05, 0.0, 2.9, 7.0], [0, 0, 0, 1]])
    q, _ = np.linalg.qr(affine[:3, :3])  # a rigid grid: qform holds it exactly
    affine[:3, :3] = q @ np.diag([0.6, 0.8, 3.0])
    maps = np.random.default_rng(9).random((2, 3, 4, 5)).astype(np.float32)
    write_nifti(tmp_path / "maps.nii.gz", maps, affine=affine)
    img = nib.load(tmp_path / "maps.nii.gz")
    assert img.shape == (5, 4, 3, 2)
    np.testing.assert_allclose(img.affine, affine, atol=1e-6)
    sform, sform_code = img.header.get_sform(coded=True)
    qform, qform_code = img.header.get_qform(coded=True)
    assert sform_code == qform_code == 1  # NIFTI_XFORM_SCANNER_ANAT, as dcm2niix
    # the qform is a float32 quaternion: near a half-turn (LPS to RAS is one) its
    # rotation keeps about 4 digits; the sform keeps the affine (float32 rows)
    np.testing.assert_allclose(qform, affine, atol=1e-3)
    assert img.header.get_xyzt_units()[0] == "mm"
    assert img.header.get_intent()[0] == "none"
    np.testing.assert_array_equal(np.asarray(img.dataobj), np.transpose(maps, (3, 2, 1, 0)))


def test_write_nifti_labels_carry_the_label_intent(tmp_path):
    path, _, affine = nifti_volume(tmp_path)
    source = nib.load(path)
    source.header.set_intent("z score")  # an input's intent and display range stay behind
    source.header["cal_min"], source.header["cal_max"] = 50, 150
    labels = np.arange(12 * 16 * 20, dtype=np.uint8).reshape(12, 16, 20) % 4
    write_nifti(tmp_path / "labels.nii.gz", labels, source, labels=True)
    img = nib.load(tmp_path / "labels.nii.gz")
    assert img.header.get_intent() == ("label", (), "labels")
    assert int(img.header["intent_code"]) == 1002
    assert img.header["cal_max"] == 0 and img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.affine, affine)
    write_nifti(tmp_path / "pve.nii.gz", labels.astype(np.float32), source)
    assert nib.load(tmp_path / "pve.nii.gz").header.get_intent()[0] == "none"
    with pytest.raises(EmsegError, match="labels must be integers"):
        write_nifti(tmp_path / "bad.nii.gz", labels.astype(np.float32), source, labels=True)


def test_itksnap_label_descriptions(tmp_path):
    from emseg.io.medical import write_itksnap_labels

    colors = np.array([[230, 25, 75], [60, 180, 75], [0, 130, 200]], np.uint8)
    write_itksnap_labels(tmp_path / "t1_labels.txt", colors)
    lines = (tmp_path / "t1_labels.txt").read_text().splitlines()
    assert all(line.startswith("#") for line in lines[:-4])
    assert lines[-4:] == [
        '    0     0    0    0        0  0  0    "Clear Label"',
        '    1   230   25   75        1  1  1    "class 1"',
        '    2    60  180   75        1  1  1    "class 2"',
        '    3     0  130  200        1  1  1    "class 3"',
    ]
    # as ITK-SNAP parses it: whitespace-separated fields, then the quoted name
    fields = [line.split(None, 7) for line in lines if not line.startswith("#")]
    assert [int(f[0]) for f in fields] == [0, 1, 2, 3]
    assert [f[7].strip('"') for f in fields][1:] == ["class 1", "class 2", "class 3"]
    write_itksnap_labels(tmp_path / "named.txt", colors[:1], ['white "matter"'])
    assert (tmp_path / "named.txt").read_text().splitlines()[-1].endswith(
        "\"white 'matter'\"")
    with pytest.raises(EmsegError, match="exists"):
        write_itksnap_labels(tmp_path / "t1_labels.txt", colors)
    with pytest.raises(EmsegError, match="2 names for 3"):
        write_itksnap_labels(tmp_path / "x.txt", colors, ["a", "b"])
