"""Medical volumes: NIfTI through nibabel, DICOM series through pydicom (``emseg[medical]``).

Part of the io stage: files in, arrays out, and back. Volumes are returned in emseg's
axis order ``(Z, Y, X)`` (slice, row, column) with the voxel ``spacing`` in the same
order, so slices are the images a viewer shows and the MRF weights neighbours by
physical distance. Labels and per-class maps are written back as NIfTI with the
input's affine and header, so they overlay the input in any viewer (FSLeyes, ITK-SNAP).
"""

import gzip
import math
import os

import numpy as np

from .._shared.errors import EmsegError
from .atomic import open_temp, reason, writing
from .checks import check_size, describe_size, log_as_warnings, pixel_limit, to_float32

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_EXTRA = "pip install 'emseg[medical]'"


def is_nifti(path):
    """Whether ``path`` names a NIfTI file (``.nii`` or ``.nii.gz``)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _require(module, what):
    try:
        return __import__(module)
    except ImportError:
        raise EmsegError(f"reading {what} needs the optional extra: {_EXTRA}") from None


class Volume:
    """A volume read from a medical file.

    ``data``: (Z, Y, X) or, with several channels, (Z, Y, X, C) float32 or the file's
    integer dtype; ``spacing``: voxel size in mm along (Z, Y, X); ``nifti``: the
    nibabel image it came from (for writing results with its affine and header), or
    None; ``channels``: True when the last axis holds co-registered channels.
    """

    def __init__(self, data, spacing, path, nifti=None, channels=False):
        self.data, self.spacing, self.path = data, tuple(spacing), path
        self.nifti, self.channels = nifti, channels


def read_nifti(path, *, allow_channels=False, max_pixels=None):
    """Read a 3-D NIfTI volume (or 4-D with ``allow_channels``: the 4th axis as channels).

    The shape is checked from the header, before any voxel is read or inflated: a
    4-D file without ``allow_channels``, and a volume of more voxels (times channels)
    than ``max_pixels`` (as :func:`emseg.io.images.read_image`), are refused unread.
    """
    nib = _require("nibabel", "NIfTI files")

    path = os.fspath(path)
    limit = pixel_limit(max_pixels)
    try:
        # nibabel fixes odd headers as it loads them and logs each fix to stderr
        with log_as_warnings(path, "nibabel.global", "nibabel"):
            img = nib.load(path)  # the header only; the voxels stay in the file
        shape = tuple(int(n) for n in img.shape)
    except Exception as exc:  # nibabel raises many kinds for damaged files
        raise EmsegError(f"cannot read {path} as NIfTI: {exc}; is it damaged?") from None
    if len(shape) == 4 and shape[3] > 1 and not allow_channels:
        raise EmsegError(
            f"{path} is 4-D {shape}; pass --channels to use its volumes as "
            "co-registered channels"
        )
    if len(shape) not in (2, 3, 4):
        raise EmsegError(f"{path} has shape {shape}; expected a 3-D or 4-D volume")
    spatial = (shape[2] if len(shape) > 2 else 1, shape[1], shape[0])  # (Z, Y, X)
    n_channels = shape[3] if len(shape) == 4 else 1
    size_text = describe_size(spatial) + (f" x {n_channels} channels" if n_channels > 1 else "")
    check_size(path, math.prod(spatial) * n_channels, size_text, limit)
    try:
        data = np.asanyarray(img.dataobj)
    except MemoryError:
        raise
    except Exception as exc:
        raise EmsegError(f"cannot read {path} as NIfTI: {exc}; is it damaged?") from None
    zooms = tuple(float(z) for z in img.header.get_zooms())
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 4:  # allowed: the header was checked
        data = np.moveaxis(data, 3, 0)  # (C, X, Y, Z)
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise EmsegError(f"{path} holds {data.dtype} voxels; expected real numbers")
    if data.dtype not in (np.uint8, np.uint16):
        data = to_float32(path, data)
    # nibabel's (X, Y, Z) -> emseg's (Z, Y, X)
    if data.ndim == 4:
        volume = np.ascontiguousarray(np.transpose(data, (3, 2, 1, 0)))
    else:
        volume = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    spacing = tuple(zooms[:3][::-1]) if len(zooms) >= 3 else (1.0,) * 3
    spacing = tuple(s if s > 0 and np.isfinite(s) else 1.0 for s in spacing)
    return Volume(volume, spacing, path, nifti=img, channels=data.ndim == 4)


def read_dicom_folder(path, *, max_pixels=None):
    """Read a folder of DICOM slices of one series into a (Z, Y, X) volume.

    Slices are ordered along the slice normal by ImagePositionPatient (InstanceNumber
    when positions are missing); rescale slope/intercept applied. A folder mixing
    several series, or slices of different sizes, is refused. The size is checked
    against ``max_pixels`` (as :func:`emseg.io.images.read_image`) from the headers, and RLE
    data from their segment headers, before any pixel is decoded.
    """
    pydicom = _require("pydicom", "DICOM folders")

    path = os.fspath(path)
    limit = pixel_limit(max_pixels)
    slices = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if not os.path.isfile(full) or name.startswith("."):
            continue
        try:
            ds = pydicom.dcmread(full)
        except Exception:
            continue  # not DICOM (a README, a DICOMDIR index...): skip
        if "PixelData" not in ds:
            continue
        slices.append((name, ds))
    if not slices:
        raise EmsegError(f"{path} holds no DICOM image slices; point at a series folder")
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in slices}
    if len(series) > 1:
        raise EmsegError(
            f"{path} mixes {len(series)} DICOM series; put each series in its own folder"
        )
    try:
        shapes = {(int(ds.Rows), int(ds.Columns)) for _, ds in slices}
        planes = sum(_dicom_planes(ds) for _, ds in slices)
    except Exception as exc:
        raise EmsegError(
            f"cannot read the DICOM slices in {path}: {reason(exc)}; is one damaged?"
        ) from None
    if len(shapes) > 1:
        raise EmsegError(f"{path} has slices of different sizes {sorted(shapes)}")
    (rows, columns), = shapes
    check_size(path, rows * columns * planes, describe_size((planes, rows, columns)), limit)
    for name, ds in slices:
        _check_rle(path, name, ds, rows, columns)
    slices = [ds for _, ds in slices]

    def position(ds):
        ipp = getattr(ds, "ImagePositionPatient", None)
        iop = getattr(ds, "ImageOrientationPatient", None)
        if ipp is not None and iop is not None:
            normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
            return float(np.dot(normal, np.asarray(ipp, float)))
        return float(getattr(ds, "InstanceNumber", 0) or 0)

    slices.sort(key=position)
    try:
        planes = []
        for ds in slices:
            slope = float(getattr(ds, "RescaleSlope", 1) or 1)
            intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
            planes.append(to_float32(path, ds.pixel_array * slope + intercept))
    except EmsegError:
        raise
    except Exception as exc:
        raise EmsegError(f"cannot decode the DICOM pixels in {path}: {reason(exc)}") from None
    volume = np.stack(planes)
    if volume.ndim != 3:
        raise EmsegError(f"{path}: expected grey slices, got pixel shape {planes[0].shape}")
    row, col = (float(v) for v in getattr(slices[0], "PixelSpacing", (1.0, 1.0)))
    if len(slices) > 1:
        dz = abs(position(slices[1]) - position(slices[0]))
    else:
        dz = 0.0
    if not dz:
        dz = float(getattr(slices[0], "SliceThickness", 1.0) or 1.0)
    return Volume(volume, (dz, row, col), path)


def _dicom_planes(ds):
    """How many (Rows x Columns) planes a slice's pixel data hold: frames x samples."""
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    return max(frames, 1) * max(int(getattr(ds, "SamplesPerPixel", 1) or 1), 1)


def _check_rle(path, name, ds, rows, columns):
    """Refuse RLE Lossless pixel data whose segments decode to more than one plane.

    pydicom's RLE decoder expands a whole segment before comparing its length with
    the header's size, and two bytes of file can expand to 128: a few MB of forged
    segments take gigabytes. Each run is only counted here, stopping at the first
    segment that overflows, so the check costs no memory.
    """
    from pydicom.encaps import generate_frames
    from pydicom.uid import RLELossless

    if ds.file_meta.get("TransferSyntaxUID") != RLELossless:
        return
    plane = rows * columns
    try:
        frames = generate_frames(ds.PixelData, number_of_frames=_dicom_planes(ds))
        for frame in frames:
            count = int.from_bytes(frame[:4], "little")
            offsets = [int.from_bytes(frame[4 + 4 * i : 8 + 4 * i], "little")
                       for i in range(min(count, 15))] + [len(frame)]
            for start, stop in zip(offsets, offsets[1:]):
                if _rle_size(frame, start, min(stop, len(frame)), plane) > plane:
                    raise EmsegError(
                        f"{path}: {name} holds RLE data that decode to more than its "
                        f"{columns}x{rows} pixels; the file is corrupt or forged: "
                        "re-export it"
                    )
    except EmsegError:
        raise
    except Exception as exc:
        raise EmsegError(
            f"cannot decode the DICOM pixels in {path}: {name}: {reason(exc)}"
        ) from None


def _rle_size(data, pos, stop, most):
    """Bytes a PackBits (DICOM RLE) segment decodes to, counted up to just past ``most``."""
    size = 0
    while pos < stop and size <= most:
        n = data[pos]
        if n < 128:  # the next n + 1 bytes, literally (as many as the segment holds)
            size += min(n + 1, stop - pos - 1)
            pos += n + 2
        elif n > 128:  # the next byte, 257 - n times
            size += 257 - n
            pos += 2
        else:  # 128: no operation
            pos += 1
    return size


def write_nifti(path, array, like, *, overwrite=False):
    """Write a (Z, Y, X) array, or (K, Z, Y, X) maps, as NIfTI with ``like``'s affine and
    header (``like`` is the input's nibabel image, or None for an identity affine)."""
    nib = _require("nibabel", "NIfTI files")

    arr = np.asarray(array)
    data = np.transpose(arr, (2, 1, 0)) if arr.ndim == 3 else np.transpose(arr, (3, 2, 1, 0))
    if like is not None:
        header = like.header.copy()
        affine = like.affine
    else:
        header, affine = None, np.eye(4)
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine, header)
    img.set_data_dtype(arr.dtype)
    img.header.set_slope_inter(1.0, 0.0)
    path = os.fspath(path)
    with writing(path, overwrite) as tmp:
        # serialised into the one temporary file atomic_output created (exclusively):
        # nib.save would open a second name of its own, without O_EXCL
        with open_temp(tmp) as raw:
            if path.lower().endswith(".gz"):
                # as nibabel writes .nii.gz: level 1, no file name or time in the header
                with gzip.GzipFile("", "wb", 1, raw, mtime=0) as f:
                    img.to_file_map(img.make_file_map({"image": f, "header": f}))
            else:
                img.to_file_map(img.make_file_map({"image": raw, "header": raw}))
