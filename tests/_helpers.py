"""Builders shared by several test files (imported as ``_helpers``; not a conftest)."""

import numpy as np


def dicom_slice(rows, columns, *, bits, transfer_syntax, series):
    """A grey DICOM dataset of ``rows`` x ``columns`` with its file meta and UIDs, no
    pixel data or geometry yet: the caller adds what its test is about."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 0
    return ds


def dicom_series(folder, volume, *, spacing=(2.5, 0.8, 0.7), orientation=(1, 0, 0, 0, 1, 0),
                 origin=(0.0, 0.0, 0.0), positions=None, series="1.2.3.4", start=0):
    """Write the (Z, Y, X) ``volume`` into ``folder`` as a series of 16-bit DICOM slices
    (the pixels as they are; rescale slope 2, intercept -100) and return the slices'
    ImagePositionPatient, in slice order, as written.

    ``orientation``: ImageOrientationPatient (row then column direction cosines, LPS);
    ``spacing``: (slice step, between rows, between columns) in mm. Slice ``z`` lies at
    ``origin + z * spacing[0] * normal`` (normal = row x column), or at
    ``positions[z]`` when given. File names run against slice order (the last slice is
    ``slice<start + 1>.dcm``), so only sorting by position puts them right.
    """
    from pydicom.uid import ExplicitVRLittleEndian

    folder.mkdir(exist_ok=True)
    cosines = np.asarray(orientation, dtype=float)
    normal = np.cross(cosines[:3], cosines[3:])
    if positions is None:
        positions = np.asarray(origin, float) + np.outer(np.arange(len(volume)) * spacing[0],
                                                         normal)
    positions = np.round(np.asarray(positions, dtype=float), 6)  # DICOM decimal strings
    for z, plane in enumerate(volume):
        ds = dicom_slice(*plane.shape, bits=16, transfer_syntax=ExplicitVRLittleEndian,
                         series=series)
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.ImageOrientationPatient = [float(c) for c in np.round(cosines, 8)]
        ds.ImagePositionPatient = [float(p) for p in positions[z]]
        ds.InstanceNumber = z + 1
        ds.SliceThickness = spacing[0]
        ds.RescaleSlope, ds.RescaleIntercept = 2, -100
        ds.PixelData = plane.astype(np.uint16).tobytes()
        ds.save_as(folder / f"slice{start + len(volume) - z:03d}.dcm", enforce_file_format=True)
    return positions


def three_bands(seed=0, shape=(60, 80), means=(40, 120, 200), sigma=15.0, round_first=False):
    """A uint8 image of three vertical bands of grey ``means`` with Gaussian noise."""


    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, int)
    truth[:, shape[1] // 3 :] = 1
    truth[:, 2 * shape[1] // 3 :] = 2
    values = np.array(means)[truth] + rng.normal(0, sigma, shape)
    return np.clip(np.rint(values) if round_first else values, 0, 255).astype(np.uint8)


def gaussian_blobs(rng, means, n_per, cov=None):
    """Rows drawn from Gaussians at ``means`` with ``n_per`` rows each, and their labels.

    ``cov`` is one (D, D) covariance shared by every blob, or a list of them.
    """
    means = np.asarray(means, dtype=np.float64)
    K, D = means.shape
    if cov is None:
        covs = [np.eye(D)] * K
    else:
        cov = np.asarray(cov, dtype=np.float64)
        covs = [cov] * K if cov.ndim == 2 else list(cov)
    rows = [
        rng.standard_normal((n, D)) @ np.linalg.cholesky(c).T + m
        for m, n, c in zip(means, n_per, covs)
    ]
    return np.concatenate(rows), np.repeat(np.arange(K), n_per)


def save_png(path, pixels):
    """Write ``pixels`` as an image file at ``path`` (Pillow; the folder is created)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_text(tmp_path, name, text):
    """Write ``text`` (str, as UTF-8, or bytes) to ``tmp_path / name``; return the path."""
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def float_bits(a):
    """The float64 values of ``a`` as their bit patterns, to compare arrays bit for bit
    (NaN and the sign of zero included)."""
    return np.asarray(a, dtype=np.float64).view(np.uint64)
