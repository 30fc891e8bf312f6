"""Reading images and masks: the first stage of the pipeline.

It turns files into arrays and fits nothing. Every problem with an input file is an
:class:`~emseg.EmsegError` with a one-line message that names the file, the problem
and the fix; no Pillow or tifffile exception escapes.

:func:`read_image` reads PNG, JPEG and BMP through Pillow (EXIF orientation applied),
16-bit colour PNGs through :mod:`.png`, TIFF through :mod:`.tiff` (a multi-page TIFF is
a 3-D stack; ImageJ hyperstacks and OME-TIFF by their axes: Z a volume, C channels,
with their calibration), and NIfTI volumes and DICOM folders through :mod:`.medical`. Pixels keep
their dtype (uint8, uint16 or float32); an alpha channel becomes ``Image.valid``.
:func:`read_mask` reads a mask for an image; :func:`read_channels` stacks co-registered
single-channel files. The size a header declares is checked against the pixel limit
(:mod:`.checks`) before anything is decoded.

The writers live beside the readers of their format: :func:`~emseg.io.png.write_png`,
:func:`~emseg.io.tiff_write.write_tiff_stack`, :func:`~emseg.io.jsonfile.write_json`, all
through :func:`~emseg.io.atomic.atomic_output`; ``emseg.io`` lists them all.
"""

import contextlib
import dataclasses
import math
import os
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from .._shared.errors import EmsegError
from .atomic import reason
from .checks import TooLarge, check_size, describe_size, pixel_limit
from .medical import is_nifti, read_dicom_folder, read_nifti
from .png import is_16bit_color_png, read_16bit_color_png
from .tiff import is_tiff, read_tiff

__all__ = ["Image", "read_channels", "read_image", "read_mask"]

_PILLOW_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "BMP": "BMP", "DIB": "BMP"}
_SUPPORTED = "PNG, JPEG, BMP or TIFF"

# Pillow's decompression-bomb limit is a module global; read_image(max_pixels=N)
# changes it for one call, so the change and its restoration are serialised.
_PILLOW_LIMIT_LOCK = threading.RLock()


@dataclass(eq=False)
class Image:
    """An image as read from a file.

    Attributes
    ----------
    pixels : ndarray
        uint8, uint16 or float32, in the file's own dtype. Shape ``(H, W)`` grey,
        ``(H, W, 3)`` RGB, or for a multi-page TIFF ``(Z, H, W)`` / ``(Z, H, W, 3)``.
        Never has an alpha channel: alpha becomes ``valid``.
    valid : ndarray of bool or None
        Spatial shape (``pixels.shape`` without the colour axis); False where the
        alpha channel is 0. None when every pixel is valid (no alpha, or no
        transparent pixel).
    path : str
        The file the image was read from.
    is_stack : bool
        True for a multi-page TIFF read as a 3-D stack. Needed to tell an RGB image
        ``(H, W, 3)`` from a grey stack of three-pixel-wide pages ``(Z, H, 3)``.
    spacing : tuple or None
        Voxel size along the spatial axes ((z, y, x) or (y, x)) when the file gives
        it: NIfTI and DICOM in mm, an ImageJ or OME-TIFF stack in ``unit``.
    channels : bool
        True when the last axis holds co-registered channels (``--channels``, or the
        C axis of an ImageJ hyperstack or OME-TIFF), used together as features.
    """

    pixels: np.ndarray
    valid: np.ndarray | None
    path: str
    is_stack: bool = False
    spacing: tuple | None = None  # voxel size along the spatial axes, when the file says
    nifti: object = None  # the nibabel image a NIfTI volume came from (affine, header)
    # a NIfTI volume's or DICOM series' (4, 4) map from the voxel index (column, row,
    # slice) to RAS+ mm (see emseg.io.medical); None when the file has no geometry
    affine: np.ndarray | None = None
    channels: bool = False  # the last axis holds co-registered channels, not RGB
    unit: str | None = None  # the unit of ``spacing`` (e.g. "µm"), when the file names one
    axes: str | None = None  # a TIFF's axes and what each was read as, for the report
    # a time series (read_image(allow_time=True)): the number of time points, the
    # leading axis of ``pixels`` and ``valid``; :meth:`frame` gives one of them
    time_points: int | None = None
    interval: tuple | None = None  # (value, unit) between time points, when the file says

    @property
    def is_color(self):
        """True for RGB pixels (the last axis holds the three channels)."""
        ndim = (4 if self.is_stack else 3) + (self.time_points is not None)
        return not self.channels and self.pixels.ndim == ndim

    def frame(self, t):
        """Time point ``t`` of a time series as an image of its own (a view)."""
        return dataclasses.replace(
            self, pixels=self.pixels[t], time_points=None,
            valid=None if self.valid is None else self.valid[t])

    @property
    def has_channel_axis(self):
        """True when the last axis holds colour or co-registered channels."""
        return self.channels or self.is_color

    @property
    def spatial_shape(self):
        """``pixels.shape`` without the colour axis (and the T axis of a time series):
        (H, W) or (Z, H, W)."""
        shape = self.pixels.shape[:-1] if self.has_channel_axis else self.pixels.shape
        return shape if self.time_points is None else shape[1:]


# --------------------------------------------------------------------------- reading


def read_image(path, *, max_pixels=None, allow_channels=False, allow_time=False):
    """Read a PNG, JPEG, BMP or TIFF file, a NIfTI volume or a folder of DICOM slices
    into an :class:`Image` (NIfTI and DICOM need the extra ``emseg[medical]``).

    Volumes come in (Z, Y, X) order with their voxel spacing; a 4-D NIfTI file is
    refused unless ``allow_channels`` (its volumes then become channels). A TIFF with
    several time points (T) is refused unless ``allow_time``: then, when it has them,
    ``pixels`` has T first and ``time_points`` says how many (:meth:`Image.frame`).

    Parameters
    ----------
    path : str or os.PathLike
    max_pixels : int, optional
        Largest image (width x height; all pages together for a TIFF stack) to
        accept. By default Pillow's decompression-bomb limit
        (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 million pixels) applies; pass a
        larger number to read a larger image you trust. The global Pillow setting is
        restored afterwards.

    Raises
    ------
    EmsegError
        If the file is missing, empty, not an image, corrupt or truncated, in an
        unsupported format or pixel mode, too large, or smaller than 2 pixels.
    """
    path = os.fspath(path)
    limit = pixel_limit(max_pixels)
    if os.path.isdir(path) and any(
        not n.startswith(".") for n in os.listdir(path)
    ) and not _looks_like_image_folder(path):
        vol = read_dicom_folder(path, max_pixels=limit)
        return _volume_image(path, vol)
    _check_input_file(path)
    if is_nifti(path):
        vol = read_nifti(path, allow_channels=allow_channels, max_pixels=limit)
        return _volume_image(path, vol)
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError as exc:
        raise EmsegError(f"cannot read {path}: {reason(exc)}; check its permissions") from None
    if is_tiff(head):
        tiff = read_tiff(path, limit, allow_time=allow_time)
        image = _finish(path, tiff.pixels, tiff.alpha, tiff.is_stack, channels=tiff.channels,
                        time_points=tiff.time_points)
        image.spacing, image.unit, image.axes = tiff.spacing, tiff.unit, tiff.axes
        image.interval = tiff.interval
        return image
    pixels, alpha = _read_pillow(path, head, limit)
    return _finish(path, pixels, alpha, False)


def _looks_like_image_folder(path):
    """A folder of ordinary images (a batch input), not a DICOM series."""
    names = [n.lower() for n in os.listdir(path) if not n.startswith(".")]
    plain = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz")
    return bool(names) and all(n.endswith(plain) for n in names)


def _volume_image(path, vol):
    image = _finish(path, vol.data, None, is_stack=True, channels=vol.channels)
    image.spacing, image.nifti, image.affine = vol.spacing, vol.nifti, vol.affine
    return image


def read_channels(paths, *, max_pixels=None):
    """Co-registered single-channel images or volumes (e.g. T1 and T2) as one
    multi-channel :class:`Image`; they must have one shape (and spacing, if known)."""
    images = [read_image(p, max_pixels=max_pixels) for p in paths]
    for im in images[1:]:
        if im.spatial_shape != images[0].spatial_shape:
            raise EmsegError(
                f"{im.path} has shape {im.spatial_shape} but {images[0].path} has "
                f"{images[0].spatial_shape}; channels must be co-registered (same shape)"
            )
        if im.has_channel_axis:
            raise EmsegError(f"{im.path} already has channels; pass single-channel files")
    if images[0].has_channel_axis:
        raise EmsegError(f"{images[0].path} already has channels; pass single-channel files")
    dtypes = {im.pixels.dtype for im in images}
    pixels = np.stack(
        [im.pixels if len(dtypes) == 1 else im.pixels.astype(np.float32) for im in images],
        axis=-1,
    )
    valid = None
    for im in images:
        if im.valid is not None:
            valid = im.valid if valid is None else valid & im.valid
    first = images[0]
    return Image(pixels=pixels, valid=valid, path=first.path, is_stack=first.is_stack,
                 spacing=first.spacing, nifti=first.nifti, affine=first.affine,
                 channels=True, unit=first.unit)


def read_mask(path, shape, *, max_pixels=None):
    """Read a mask for an image of spatial shape ``shape``: True inside.

    A pixel is inside where any colour channel (or channel of a hyperstack) is non-zero (and, if the mask has an
    alpha channel, the pixel is not fully transparent). A 2-D mask for a 3-D stack
    ``(Z, H, W)`` applies to every slice.

    The decompression-bomb guard of :func:`read_image` applies with the image's own
    size as the limit (a mask larger than its image cannot fit it), so a mask never
    takes more than the image did, whatever ``--max-pixels`` allowed the image;
    ``max_pixels`` lowers that limit further.

    Raises
    ------
    EmsegError
        If the file cannot be read (as :func:`read_image`), its size differs from
        ``shape`` (larger masks refused from the header, before decoding), or it
        selects no pixel.
    """
    shape = tuple(int(n) for n in shape)
    limit = math.prod(shape)
    if max_pixels is not None:
        limit = min(limit, pixel_limit(max_pixels))
    try:
        image = read_image(path, max_pixels=limit)
    except TooLarge as exc:
        if max_pixels is not None and exc.n_pixels <= math.prod(shape):
            raise
        raise EmsegError(
            f"mask {path} is {exc.size_text} but the image is {describe_size(shape)}; "
            "use a mask of the same size as the image"
        ) from None
    inside = image.pixels.any(axis=-1) if image.has_channel_axis else image.pixels != 0
    if image.valid is not None:
        inside &= image.valid
    if inside.shape != shape:
        if inside.ndim == 2 and len(shape) == 3 and inside.shape == shape[1:]:
            inside = np.broadcast_to(inside, shape).copy()
        else:
            raise EmsegError(
                f"mask {image.path} is {describe_size(inside.shape)} but the image is "
                f"{describe_size(shape)}; use a mask of the same size as the image"
            )
    if not inside.any():
        raise EmsegError(
            f"mask {image.path} selects no pixel (all zero); "
            "mark the region to segment with non-zero values"
        )
    return inside


def _check_input_file(path):
    if not os.path.exists(path):
        raise EmsegError(f"{path} does not exist; check the path")
    if os.path.isdir(path):
        raise EmsegError(f"{path} is a folder, not an image file; pass an image file")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise EmsegError(f"cannot read {path}: {reason(exc)}") from None
    if size == 0:
        raise EmsegError(f"{path} is empty (0 bytes); re-export or re-copy the image")


def _finish(path, pixels, alpha, is_stack, channels=False, time_points=None):
    """Common checks on decoded pixels; turn alpha into ``valid``."""
    timed = time_points is not None
    spatial = (
        pixels.shape[:-1] if channels or pixels.ndim == (4 if is_stack else 3) + timed
        else pixels.shape
    )[timed:]
    if math.prod(spatial) < 2:
        raise EmsegError(
            f"{path} is {describe_size(spatial)}, too small to segment; "
            "an image needs at least 2 pixels"
        )
    valid = None
    if alpha is not None:
        valid = alpha != 0
        if not valid.any():
            raise EmsegError(
                f"{path} is fully transparent (alpha 0 everywhere), nothing to segment; "
                "remove the alpha channel or fix its values"
            )
        if valid.all():
            valid = None
    return Image(pixels=pixels, valid=valid, path=path, is_stack=is_stack, channels=channels,
                 time_points=time_points)


# Pillow ------------------------------------------------------------------------------


@contextlib.contextmanager
def _pillow_pixel_limit(limit):
    """Set Pillow's decompression-bomb limit to ``limit`` for the block, then restore."""
    from PIL import Image as PILImage

    with _PILLOW_LIMIT_LOCK:
        saved = PILImage.MAX_IMAGE_PIXELS
        PILImage.MAX_IMAGE_PIXELS = limit
        try:
            yield
        finally:
            PILImage.MAX_IMAGE_PIXELS = saved


def _read_pillow(path, head, limit):
    from PIL import Image as PILImage
    from PIL import ImageOps

    with _pillow_pixel_limit(limit), warnings.catch_warnings():
        # read_image checks the size itself and raises; no warning on the way
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        try:
            im = PILImage.open(path)
        except PILImage.DecompressionBombError as exc:
            width, height = _pillow_header_size(path)
            check_size(path, width * height, f"{width}x{height}", limit)
            raise EmsegError(  # pragma: no cover - check_size raises whenever Pillow does
                f"{path} is above the pixel limit that guards against decompression "
                f"bombs ({reason(exc)}); if you trust this file, pass --max-pixels"
            ) from None
        except PILImage.UnidentifiedImageError:
            raise EmsegError(
                f"{path} is not an image in a format emseg reads; use {_SUPPORTED}"
            ) from None
        except MemoryError:
            raise
        except Exception as exc:
            raise EmsegError(
                f"{path} could not be opened as an image ({reason(exc)}); "
                "the file may be corrupt: re-export it"
            ) from None
        with im:
            fmt = _PILLOW_FORMATS.get(im.format)
            if fmt is None:
                raise EmsegError(
                    f"{path} is a {im.format} image, which emseg does not read; "
                    f"convert it to {_SUPPORTED}"
                )
            width, height = im.size
            check_size(path, width * height, f"{width}x{height}", limit)
            if fmt == "JPEG":
                _check_jpeg_data(path, width, height)
            if fmt == "PNG" and is_16bit_color_png(head):
                # Pillow silently drops 16-bit colour PNGs to 8 bits; OpenCV does not.
                return read_16bit_color_png(path, im, colour_type=head[25])
            try:
                im.load()
            except PILImage.DecompressionBombError as exc:
                raise EmsegError(
                    f"{path} is above the pixel limit that guards against decompression "
                    f"bombs ({reason(exc)}); if you trust this file, pass --max-pixels"
                ) from None
            except MemoryError:
                raise
            except Exception as exc:
                raise EmsegError(
                    f"{path} could not be decoded ({reason(exc)}); the file is "
                    "corrupt or truncated: re-export or re-copy it"
                ) from None
            try:
                ImageOps.exif_transpose(im, in_place=True)  # no copy when upright
            except MemoryError:
                raise
            except Exception as exc:  # a broken EXIF block; the pixels are fine
                warnings.warn(
                    f"{path}: EXIF orientation could not be read ({reason(exc)}); "
                    "using the image as stored",
                    stacklevel=3,
                )
            return _pillow_pixels(im, path)


def _pillow_header_size(path):
    """(width, height) from the header, with Pillow's limit off (only to report it)."""
    from PIL import Image as PILImage

    with _pillow_pixel_limit(None):
        try:
            with PILImage.open(path) as im:
                return im.size
        except Exception:  # pragma: no cover - it opened a moment ago
            return 0, 0


def _pillow_pixels(im, path):
    """Pixels and alpha (or None) of a loaded Pillow image, by mode."""
    mode = im.mode
    if mode in ("L", "RGB") and "transparency" in im.info:
        mode, im = _convert(im, "LA" if mode == "L" else "RGBA", path)
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        mode, im = _convert(im, "RGBA" if has_alpha else "RGB", path)
    elif mode in ("CMYK", "YCbCr", "RGBX", "RGBa"):
        mode, im = _convert(im, "RGBA" if mode == "RGBa" else "RGB", path)
    elif mode == "La":
        mode, im = _convert(im, "LA", path)

    if mode == "1":
        return np.asarray(im, dtype=bool).astype(np.uint8) * np.uint8(255), None
    if mode in ("L", "RGB"):
        return np.asarray(im, dtype=np.uint8).copy(), None
    if mode in ("LA", "RGBA"):
        arr = np.asarray(im, dtype=np.uint8)
        pixels = arr[..., 0].copy() if mode == "LA" else arr[..., :3].copy()
        return pixels, arr[..., -1].copy()
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16), None
    if mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.uint16).max):
            return arr.astype(np.float32), None
        return arr.astype(np.uint16), None
    if mode == "F":
        return np.asarray(im, dtype=np.float32).copy(), None
    raise EmsegError(
        f"{path} has pixel mode {mode}, which emseg does not read; "
        "convert it to 8- or 16-bit grey or RGB"
    )


def _convert(im, mode, path):
    try:
        return mode, im.convert(mode)
    except MemoryError:
        raise
    except Exception as exc:
        raise EmsegError(
            f"{path}: could not convert pixel mode {im.mode} to {mode} ({reason(exc)}); "
            "convert the image to grey or RGB"
        ) from None


def _check_jpeg_data(path, width, height):
    """Refuse a JPEG whose file is too small to hold the pixels its header declares.

    libjpeg fills whatever the data do not cover with grey, so a few hundred bytes
    declaring 9000x9000 pixels would be read as 81 megapixels of nothing. Every 8x8
    block of a Huffman-coded JPEG (baseline or progressive) costs at least one bit
    (its DC code), so a file of fewer bytes than blocks / 8 cannot be whole.
    Arithmetic coding (frame markers C9-CB, CD-CF) has no such floor: not checked.
    """
    blocks = -(-width // 8) * -(-height // 8)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            arithmetic = _jpeg_frame_marker(f) in (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
    except OSError as exc:
        raise EmsegError(f"cannot read {path}: {reason(exc)}") from None
    if not arithmetic and size * 8 < blocks:
        raise EmsegError(
            f"{path} declares {width}x{height} pixels but holds only {size:,} bytes, "
            f"fewer than that many pixels need (at least {-(-blocks // 8):,}); the file "
            "is truncated or forged: re-export or re-copy it"
        )


def _jpeg_frame_marker(f):
    """The JPEG frame (SOFn) marker's second byte, read from the segment headers."""
    f.seek(2)  # past SOI
    while True:
        head = f.read(4)
        if len(head) < 4 or head[0] != 0xFF:
            return None
        marker, length = head[1], int.from_bytes(head[2:4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        if marker == 0xDA:  # start of scan before any frame header
            return None
        f.seek(length - 2, os.SEEK_CUR)
