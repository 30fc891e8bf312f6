"""The outputs of medical inputs (emseg.workflows.run): a DICOM series' labels and
per-class maps come out as NIfTI in the series' patient space, checked against
SimpleITK's reading of the same series (ITK is what ITK-SNAP and 3D Slicer read with)."""

import json

import numpy as np
import pytest

from _helpers import dicom_series
from emseg._shared.errors import EmsegError
from emseg.workflows.run import RunOptions, segment_file

nib = pytest.importorskip("nibabel")
pytest.importorskip("pydicom")
sitk = pytest.importorskip("SimpleITK")

ORIENTATIONS = {  # ImageOrientationPatient: row then column direction cosines (LPS)
    "axial": (1, 0, 0, 0, 1, 0),
    "sagittal": (0, 1, 0, 0, 0, -1),
    "coronal": (1, 0, 0, 0, 0, -1),
    # rotated by 20, -35 and 50 degrees about x, y and z
    "oblique": (0.5265408, 0.6275069, 0.5735764, -0.8459450, 0.4537442, 0.2801665),
}


def two_tissues(seed=0, shape=(6, 10, 12)):
    """A (Z, Y, X) volume of two intensities (left half dark) with noise, and its truth."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, bool)
    truth[..., shape[2] // 2:] = True
    volume = np.where(truth, 800, 200) + rng.normal(0, 40, shape)
    return np.clip(volume, 0, None).astype(np.uint16), truth


def series_corners_lps(folder, shape_xyz):
    """LPS+ mm of the 8 corner voxels of the series as SimpleITK reads it."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    assert image.GetSize() == shape_xyz
    return corner_points(image)


def corner_points(image):
    """LPS+ mm of the 8 corner voxels of a SimpleITK image."""
    nx, ny, nz = image.GetSize()
    return np.array([image.TransformIndexToPhysicalPoint((i, j, k))
                     for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)])


def nifti_corners_ras(img):
    nx, ny, nz = img.shape[:3]
    return np.array([(img.affine @ [i, j, k, 1.0])[:3]
                     for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)])


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_dicom_series_labels_overlay_the_series(tmp_path, name):
    """``emseg run series/ -k 2 --posteriors --mask m``: the labels and maps are NIfTI
    whose 8 voxel-to-world corners are the series' (SimpleITK's, LPS turned to RAS),
    whether nibabel or ITK reads them; the labels (0 outside the mask, 1 dark, 2 bright)
    carry the label intent and an ITK-SNAP file that describes each value."""
    volume, truth = two_tissues()
    folder = tmp_path / "series"
    dicom_series(folder, volume, spacing=(3.0, 0.9, 0.6), orientation=ORIENTATIONS[name],
                 origin=(-100.25, 20.5, 35.75))
    inside = np.ones(truth.shape, bool)
    inside[:, :3, :4] = False
    nib.save(nib.Nifti1Image(np.transpose(inside, (2, 1, 0)).astype(np.uint8), np.eye(4)),
             tmp_path / "mask.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    report = segment_file(folder, out, RunOptions(classes=2, posteriors=True,
                                                  mask_path=str(tmp_path / "mask.nii.gz")))
    assert sorted(p.name for p in out.iterdir()) == [
        "series_labels.nii.gz", "series_labels.txt", "series_overlay.png",
        "series_posteriors.nii.gz", "series_report.json", "series_segments.png"]
    assert report["outputs"]["label_descriptions"] == str(out / "series_labels.txt")
    expected = series_corners_lps(folder, (12, 10, 6))

    labels = nib.load(out / "series_labels.nii.gz")
    assert labels.shape == (12, 10, 6)
    np.testing.assert_allclose(nifti_corners_ras(labels), expected * [-1, -1, 1], atol=1e-4)
    assert labels.header.get_sform(coded=True)[1] == 1
    assert labels.header.get_qform(coded=True)[1] == 1
    assert labels.header.get_xyzt_units()[0] == "mm"
    assert labels.header.get_intent() == ("label", (), "labels")
    assert np.issubdtype(labels.get_data_dtype(), np.integer)
    values = np.transpose(np.asarray(labels.dataobj), (2, 1, 0))  # back to (Z, Y, X)
    np.testing.assert_array_equal(values, np.where(inside, np.where(truth, 2, 1), 0))
    # ITK (ITK-SNAP, 3D Slicer) puts the label voxels on the series' voxels
    itk_labels = sitk.ReadImage(str(out / "series_labels.nii.gz"))
    np.testing.assert_allclose(corner_points(itk_labels), expected, atol=1e-4)

    pve = nib.load(out / "series_posteriors.nii.gz")
    assert pve.shape == (12, 10, 6, 2) and pve.header.get_intent()[0] == "none"
    np.testing.assert_allclose(pve.affine, labels.affine)

    # the label file: 0 clear, then each class's value with the overlay's colour
    text = (out / "series_labels.txt").read_text().splitlines()
    classes = {c["label"]: c["overlay_color"] for c in report["classes"]}
    assert text[-3:] == [
        '    0     0    0    0        0  0  0    "Clear Label"',
        *('{:5d} {:5d} {:4d} {:4d}        1  1  1    "class {}"'.format(
            value, *classes[value], value) for value in (1, 2)),
    ]


def test_nifti_input_labels_get_the_intent_and_the_label_file(tmp_path):
    """A NIfTI input keeps its own affine and header; its labels gain the label intent
    and lose the input's display range, so viewers show them as labels."""
    rng = np.random.default_rng(1)
    truth = np.zeros((12, 10, 6), bool)
    truth[6:] = True
    data = np.where(truth, 180.0, 60.0) + rng.normal(0, 10, truth.shape)
    affine = np.array([[0, 0, 3.0, -20], [-0.9, 0, 0, 10], [0, 0.9, 0, 5], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.header["cal_min"], img.header["cal_max"] = 0, 255
    nib.save(img, tmp_path / "t1.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    segment_file(tmp_path / "t1.nii.gz", out, RunOptions(classes=2))
    labels = nib.load(out / "t1_labels.nii.gz")
    np.testing.assert_allclose(labels.affine, affine)
    assert labels.header.get_intent() == ("label", (), "labels")
    assert labels.header["cal_max"] == 0
    assert (out / "t1_labels.txt").read_text().splitlines()[-1].endswith('"class 2"')


def test_dicom_series_without_geometry_gets_tiff_outputs(tmp_path):
    """No ImagePositionPatient: no patient space to keep, so the outputs are a stack's."""
    pydicom = pytest.importorskip("pydicom")
    volume, _ = two_tissues(2, (3, 8, 10))
    dicom_series(tmp_path / "plain", volume)
    for f in (tmp_path / "plain").iterdir():
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        ds.save_as(f)
    (tmp_path / "out").mkdir()
    segment_file(tmp_path / "plain", tmp_path / "out", RunOptions(classes=2))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "plain_labels.tif", "plain_overlay.png", "plain_report.json", "plain_segments.png"]


def test_uneven_dicom_series_refused_before_any_output(tmp_path):
    volume, _ = two_tissues(3, (5, 8, 10))
    dicom_series(tmp_path / "gap", volume, spacing=(2.0, 1.0, 1.0),
                 orientation=ORIENTATIONS["oblique"])
    (tmp_path / "gap" / "slice003.dcm").unlink()
    (tmp_path / "out").mkdir()
    with pytest.raises(EmsegError, match="not evenly spaced"):
        segment_file(tmp_path / "gap", tmp_path / "out", RunOptions(classes=2))
    assert list((tmp_path / "out").iterdir()) == []


def test_existing_label_file_refused_without_overwrite(tmp_path):
    """The label file is an output like the others: checked before any work starts."""
    volume, _ = two_tissues(4, (3, 8, 10))
    dicom_series(tmp_path / "s", volume)
    out = tmp_path / "out"
    out.mkdir()
    (out / "s_labels.txt").write_text("mine")
    with pytest.raises(EmsegError, match="s_labels.txt exists"):
        segment_file(tmp_path / "s", out, RunOptions(classes=2))
    assert sorted(p.name for p in out.iterdir()) == ["s_labels.txt"]
    report = segment_file(tmp_path / "s", out, RunOptions(classes=2), overwrite=True)
    assert json.loads((out / "s_report.json").read_text())["outputs"] == report["outputs"]
    assert (out / "s_labels.txt").read_text().startswith("#")
