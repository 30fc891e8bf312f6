"""Medical volumes: NIfTI through nibabel, DICOM series through pydicom (``emseg[medical]``).

Part of the io stage: files in, arrays out, and back. Volumes are returned in emseg's
axis order ``(Z, Y, X)`` (slice, row, column) with the voxel ``spacing`` in the same
order, so slices are the images a viewer shows and the MRF weights neighbours by
physical distance, and with their ``affine``: NIfTI's 4x4 map from the voxel index
``(i, j, k)`` = (column, row, slice) to RAS+ millimetres (x towards the patient's
right, y anterior, z superior: the world of nibabel, FSL and NIfTI viewers).

A NIfTI file's affine is its own (nibabel's best of sform and qform). A DICOM series'
is built from its Image Plane tags, as dicom2nifti and nibabel's ``nicom`` do and as
SimpleITK's ``ImageSeriesReader`` reads the same series (the tests compare them): the
row and column direction cosines of ImageOrientationPatient, PixelSpacing (the
distance between rows, then between columns), the slices sorted along the normal
(row x column) by ImagePositionPatient, the slice step from the first and last
positions, checked even; then DICOM's LPS+ turned into RAS+ (x and y negated).

Labels and per-class maps are written back as NIfTI with that geometry, so they
overlay the input in any viewer (FSLeyes, ITK-SNAP, 3D Slicer): a NIfTI input's own
header, a DICOM series' affine as sform and qform (scanner coordinates, mm). Label
images carry the NIfTI label intent, and :func:`write_itksnap_labels` writes the colour
table ITK-SNAP reads beside them.
"""

import gzip
import math
from collections.abc import Sequence
import os
import warnings

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
    None; ``channels``: True when the last axis holds co-registered channels;
    ``affine``: (4, 4) float64 from the voxel index (i, j, k) = (column, row, slice),
    i.e. ``data[k, j, i]``, to RAS+ mm, or None for a DICOM series without geometry.
    """

    def __init__(self, data, spacing, path, nifti=None, channels=False, affine=None):
        self.data, self.spacing, self.path = data, tuple(spacing), path
        self.nifti, self.channels = nifti, channels
        self.affine = None if affine is None else np.array(affine, dtype=np.float64)


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
    return Volume(volume, spacing, path, nifti=img, channels=data.ndim == 4,
                  affine=img.affine)


def read_dicom_folder(path, *, max_pixels=None):
    """Read a folder of DICOM slices of one series into a (Z, Y, X) volume.

    Slices are ordered and placed by :func:`dicom_geometry` (the volume's ``spacing``
    and RAS+ ``affine``); rescale slope/intercept applied. A folder mixing several
    series, or slices of different sizes, is refused. The size is checked against
    ``max_pixels`` (as :func:`emseg.io.images.read_image`) from the headers, and RLE
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
    slices, spacing, affine = dicom_geometry(path, slices)
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
    return Volume(volume, spacing, path, affine=affine)


# DICOM's patient axes (LPS+: x to the left, y to the posterior) to NIfTI's RAS+
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Direction cosines: largest departure from unit length or from perpendicular, and
# largest difference between two slices of one stack (1e-3 is 0.06 degrees; exporters
# write at least five decimals).
_COSINE_TOLERANCE = 1e-3
# A slice further than this fraction of the slice step from where the regular grid
# (first to last slice) puts it is refused: one missing slice puts some slice half a
# step or more off, while positions rounded to 0.1 mm put a 1 mm grid 5% off at most.
_GRID_TOLERANCE = 0.1
# The slice step may leave the normal by this much (sine of the angle, 0.06 degrees)
# before the stack counts as sheared (CT gantry tilt) and a warning says so.
_SHEAR_TOLERANCE = 1e-3


def dicom_geometry(path, slices):
    """The order, voxel spacing and RAS+ affine of the slices of one DICOM series.

    ``slices`` are ``(name, dataset)`` pairs (the name only for messages). Returns the
    datasets in slice order, the spacing in mm along (Z, Y, X) and the (4, 4) affine
    from the voxel index (column, row, slice) to RAS+ mm, the way dicom2nifti and
    nibabel's ``nicom`` build it::

        LPS = P_0 + R * dx * i + C * dy * j + S * k     RAS = diag(-1, -1, 1) LPS

    with ``R``, ``C`` the row and column direction cosines (ImageOrientationPatient),
    ``dy, dx`` = PixelSpacing (between rows, between columns), ``P_0`` the first
    slice's ImagePositionPatient after sorting along the normal ``R x C`` (ascending, as
    ITK/GDCM sort), and the step ``S = (P_last - P_0) / (n - 1)`` (along the normal but
    for a CT gantry tilt, which is kept as a shear, with a warning). A single slice
    steps by SpacingBetweenSlices, else SliceThickness, else 1 mm.

    Refused with an :class:`~emseg.EmsegError`: slices of different orientations (the
    folder holds several stacks), two slices at one position (several echoes, phases
    or time points in one series), and slices off a regular grid (a missing slice):
    emseg's grid, and the affine of its outputs, would put them in the wrong place.
    Without ImagePositionPatient, ImageOrientationPatient or PixelSpacing on every
    slice there is no patient geometry: slices are ordered by InstanceNumber, spaced by
    PixelSpacing and SpacingBetweenSlices / SliceThickness where given (else 1 mm),
    and the affine is None.
    """
    if not all(
        all(getattr(ds, key, None) is not None for key in
            ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"))
        for _, ds in slices
    ):
        return _without_geometry(path, slices)
    names = [name for name, _ in slices]
    orientations = np.array([_tag(path, name, ds, "ImageOrientationPatient", 6)
                             for name, ds in slices])
    positions = np.array([_tag(path, name, ds, "ImagePositionPatient", 3)
                          for name, ds in slices])
    dy, dx = _pixel_spacing(path, *slices[0])
    row, col = orientations[0, :3], orientations[0, 3:]
    if (abs(np.linalg.norm(row) - 1) > _COSINE_TOLERANCE
            or abs(np.linalg.norm(col) - 1) > _COSINE_TOLERANCE
            or abs(row @ col) > _COSINE_TOLERANCE):
        raise EmsegError(
            f"{path}: {names[0]} has ImageOrientationPatient {orientations[0].tolist()}, "
            "not two perpendicular unit vectors; the file is damaged: re-export the series"
        )
    worst = int(np.argmax(np.abs(orientations - orientations[0]).max(axis=1)))
    if np.abs(orientations[worst] - orientations[0]).max() > _COSINE_TOLERANCE:
        raise EmsegError(
            f"{path}: {names[worst]} and {names[0]} are slices of different orientations "
            "(ImageOrientationPatient); the folder holds several stacks (a localizer?): "
            "put each stack in its own folder"
        )
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")
    positions, depth = positions[order], depth[order]
    names = [names[i] for i in order]
    n = len(order)
    if n > 1:
        step = (positions[-1] - positions[0]) / (n - 1)
        _check_grid(path, names, positions, depth, step)
    else:
        ds = slices[0][1]
        thickness = _positive(getattr(ds, "SpacingBetweenSlices", None)) or _positive(
            getattr(ds, "SliceThickness", None)) or 1.0
        step = normal * thickness
    shear = np.linalg.norm(np.cross(step / np.linalg.norm(step), normal))
    if shear > _SHEAR_TOLERANCE:
        warnings.warn(
            f"{path}: the slices are sheared (gantry tilt of "
            f"{np.degrees(np.arcsin(min(shear, 1.0))):.2f} degrees); the NIfTI outputs "
            "keep the shear in their sform (FSLeyes, nibabel), their qform is the "
            "nearest unsheared grid (what ITK-based viewers may show)",
            stacklevel=3,
        )
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * dx, col * dy, step
    lps[:3, 3] = positions[0]
    spacing = (float(np.linalg.norm(step)), dy, dx)
    return [slices[i][1] for i in order], spacing, LPS_TO_RAS @ lps


def _check_grid(path, names, positions, depth, step):
    """Refuse slices that are not on one regular grid from the first to the last."""
    gaps = np.diff(depth)
    size = float(np.linalg.norm(step))
    i = int(np.argmin(gaps))
    if gaps[i] <= _GRID_TOLERANCE * size:
        raise EmsegError(
            f"{path}: {names[i]} and {names[i + 1]} lie at one position "
            f"({gaps[i]:.3g} mm apart); the series holds several volumes (echoes, phases "
            "or time points): put each volume's slices in a folder of their own"
        )
    grid = positions[0] + np.arange(len(positions))[:, None] * step
    off = np.linalg.norm(positions - grid, axis=1)
    if off.max() > _GRID_TOLERANCE * size:
        i = int(np.argmax(np.abs(gaps - size)))
        raise EmsegError(
            f"{path}: the slices are not evenly spaced ({gaps.min():.4g} to "
            f"{gaps.max():.4g} mm apart; {gaps[i]:.4g} mm from {names[i]} to "
            f"{names[i + 1]}): a slice is missing or the folder mixes stacks; emseg "
            "needs a regular grid: add the missing slices or resample the series"
        )


def _without_geometry(path, slices):
    """Slice order and spacing of a series without patient geometry (affine None)."""
    ordered = sorted(slices, key=lambda s: _number(getattr(s[1], "InstanceNumber", 0)))
    ds = ordered[0][1]
    if getattr(ds, "PixelSpacing", None) is not None:
        dy, dx = _pixel_spacing(path, *ordered[0])
    else:
        dy = dx = 1.0
    dz = _positive(getattr(ds, "SpacingBetweenSlices", None)) or _positive(
        getattr(ds, "SliceThickness", None)) or 1.0
    return [ds for _, ds in ordered], (dz, dy, dx), None


def _tag(path, name, ds, keyword, count):
    """A multi-valued decimal tag as ``count`` finite floats."""
    value = getattr(ds, keyword)
    single = isinstance(value, (str, bytes)) or not isinstance(value, Sequence)
    try:
        values = [float(v) for v in ([value] if single else value)]
    except (TypeError, ValueError):
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise EmsegError(
            f"{path}: {name} has {keyword} {value!r}; expected {count} numbers: "
            "the file is damaged, re-export the series"
        )
    return values


def _pixel_spacing(path, name, ds):
    dy, dx = _tag(path, name, ds, "PixelSpacing", 2)
    if dy <= 0 or dx <= 0:
        raise EmsegError(
            f"{path}: {name} has PixelSpacing {[dy, dx]}; expected two positive "
            "distances in mm: the file is damaged, re-export the series"
        )
    return dy, dx


def _positive(value):
    """A tag's value as a positive float, or None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


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


# NIfTI-1's codes: intent NIFTI_INTENT_LABEL; xform NIFTI_XFORM_SCANNER_ANAT (scanner
# coordinates, what dcm2niix writes for a DICOM series)
NIFTI_INTENT_LABEL = 1002
_SCANNER_ANAT = 1


def write_nifti(path, array, like=None, *, affine=None, labels=False, scale=1.0,
                overwrite=False):
    """Write a (Z, Y, X) array, or (K, Z, Y, X) maps (one volume per class), as NIfTI.

    The geometry comes from ``like``, the input's nibabel image: its header and affine,
    so the output overlays the input exactly. Without ``like``, ``affine`` (4x4, from
    the voxel index (column, row, slice) to RAS+ mm, as :class:`Volume` holds it) is
    stored as sform and qform, both coded scanner coordinates, with millimetre units;
    with neither, the identity (no known geometry). ``labels=True`` marks an integer
    label image with the intent NIFTI_INTENT_LABEL named "labels", as FSLeyes, ITK-SNAP
    and 3D Slicer recognise it. Whatever intent, scaling and display range (cal_min,
    cal_max) the input had are not carried over. ``scale``: the header's slope, for
    maps stored as integers (probabilities as uint8 with ``scale=1/255``: readers such
    as nibabel's ``get_fdata`` and the viewers give the probabilities).
    """
    nib = _require("nibabel", "NIfTI files")

    arr = np.asarray(array)
    if labels and not np.issubdtype(arr.dtype, np.integer):
        raise EmsegError(f"cannot write {path}: labels must be integers, got {arr.dtype}")
    data = np.transpose(arr, (2, 1, 0)) if arr.ndim == 3 else np.transpose(arr, (3, 2, 1, 0))
    if like is not None:
        header = like.header.copy()
        img = nib.Nifti1Image(np.ascontiguousarray(data), like.affine, header)
        img.header["cal_min"] = img.header["cal_max"] = 0
    else:
        img = nib.Nifti1Image(np.ascontiguousarray(data), np.eye(4) if affine is None
                              else np.asarray(affine, dtype=np.float64))
        if affine is not None:
            img.set_sform(img.affine, code=_SCANNER_ANAT)
            img.set_qform(img.affine, code=_SCANNER_ANAT)
            img.header.set_xyzt_units("mm")
    img.set_data_dtype(arr.dtype)
    img.header.set_slope_inter(float(scale), 0.0)
    if labels:
        img.header.set_intent(NIFTI_INTENT_LABEL, (), name="labels")
    else:
        img.header.set_intent(0, (), name="")
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


def write_itksnap_labels(path, colors, names=None, *, overwrite=False):
    """Write the ITK-SNAP label description file of a label image of K classes.

    The field's convention, which emseg's label images follow: 0 is outside the mask
    (ITK-SNAP's invisible "Clear Label"), and class ``c`` (``colors[c - 1]``, a (K, 3)
    array of 0-255 RGB; named ``names[c - 1]``, by default "class c") is label ``c``,
    1..K, visible and opaque. One line per label, as ITK-SNAP writes them::

        IDX   -R-  -G-  -B-  -A--  VIS MSH  "LABEL"

    ITK-SNAP loads it with Segmentation > Import Label Descriptions (3D Slicer's and
    FSLeyes' lookup tables have formats of their own).
    """
    colors = np.asarray(colors)
    if colors.ndim != 2 or colors.shape[1] != 3:
        raise EmsegError(f"cannot write {path}: colours must be (K, 3), got {colors.shape}")
    names = [f"class {c}" for c in range(1, len(colors) + 1)] if names is None else names
    if len(names) != len(colors):
        raise EmsegError(
            f"cannot write {path}: {len(names)} names for {len(colors)} class colours"
        )
    lines = [
        "################################################",
        "# ITK-SnAP Label Description File",
        "# written by emseg: 0 outside the mask, 1..K the classes, darkest first",
        "# File format:",
        "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
        "# Fields:",
        "#    IDX:   Zero-based index",
        "#    -R-:   Red color component (0..255)",
        "#    -G-:   Green color component (0..255)",
        "#    -B-:   Blue color component (0..255)",
        "#    -A-:   Label transparency (0.00 .. 1.00)",
        "#    VIS:   Label visibility (0 or 1)",
        "#    MSH:   Label mesh visibility (0 or 1)",
        "#  LABEL:   Label description",
        "################################################",
        _label_line(0, (0, 0, 0), 0, "Clear Label"),
    ]
    for value, (rgb, name) in enumerate(zip(colors, names), start=1):
        lines.append(_label_line(value, rgb, 1, str(name).replace('"', "'")))
    path = os.fspath(path)
    with writing(path, overwrite) as tmp:
        with open_temp(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")


def _label_line(value, rgb, visible, name):
    r, g, b = (int(v) for v in rgb)
    return f"{value:5d} {r:5d} {g:4d} {b:4d} {visible:8d} {visible:2d} {visible:2d}    \"{name}\""
