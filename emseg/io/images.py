"""Reading images and masks, and writing results atomically.

This is the first and the last stage of the pipeline: it turns files into arrays and
arrays into files, and fits nothing. Every problem with an input or output file is an
:class:`~emseg.EmsegError` with a one-line message that names the file, the problem
and the fix; no Pillow or tifffile exception escapes.

Reading
    :func:`read_image` reads PNG, JPEG and BMP through Pillow (EXIF orientation
    applied) and TIFF through tifffile (a multi-page TIFF is a 3-D stack). Pixels keep
    their dtype (uint8, uint16 or float32); an alpha channel becomes ``Image.valid``.
    :func:`read_mask` reads a mask for an image.

Writing
    :func:`write_png`, :func:`write_tiff_stack` and :func:`write_json` write through
    :func:`atomic_output`: a temporary file in the target folder, created exclusively
    and opened without following links, renamed over the target only once it is
    complete, so a crash never leaves half a file. They refuse
    to replace an existing file unless ``overwrite=True``, and write the same bytes for
    the same data (no timestamps). :func:`check_writable` checks a list of outputs up
    front, so a command can refuse before it writes anything.
"""

import contextlib
import logging
import math
import os
import re
import threading
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from .._shared.errors import EmsegError
from .atomic import atomic_output, check_writable, open_temp, reason, writing
from .jsonfile import write_json

__all__ = [
    "Image",
    "atomic_output",
    "check_writable",
    "read_image",
    "read_mask",
    "write_json",
    "write_png",
    "write_tiff_stack",
]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PILLOW_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "BMP": "BMP", "DIB": "BMP"}
_SUPPORTED = "PNG, JPEG, BMP or TIFF"

_SURROGATE = re.compile("[\ud800-\udfff]")

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
    """

    pixels: np.ndarray
    valid: np.ndarray | None
    path: str
    is_stack: bool = False
    spacing: tuple | None = None  # voxel size along the spatial axes, when the file says
    nifti: object = None  # the nibabel image a NIfTI volume came from (affine, header)
    channels: bool = False  # the last axis holds co-registered channels, not RGB

    @property
    def is_color(self):
        """True for RGB pixels (the last axis holds the three channels)."""
        return not self.channels and self.pixels.ndim == (4 if self.is_stack else 3)

    @property
    def has_channel_axis(self):
        """True when the last axis holds colour or co-registered channels."""
        return self.channels or self.is_color

    @property
    def spatial_shape(self):
        """``pixels.shape`` without the colour axis: (H, W) or (Z, H, W)."""
        return self.pixels.shape[:-1] if self.has_channel_axis else self.pixels.shape


# --------------------------------------------------------------------------- reading


def read_image(path, *, max_pixels=None, allow_channels=False):
    """Read a PNG, JPEG, BMP or TIFF file, a NIfTI volume or a folder of DICOM slices
    into an :class:`Image` (NIfTI and DICOM need the extra ``emseg[medical]``).

    Volumes come in (Z, Y, X) order with their voxel spacing; a 4-D NIfTI file is
    refused unless ``allow_channels`` (its volumes then become channels).

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
    limit = _pixel_limit(max_pixels)
    if os.path.isdir(path) and any(
        not n.startswith(".") for n in os.listdir(path)
    ) and not _looks_like_image_folder(path):
        from .medical import read_dicom_folder

        vol = read_dicom_folder(path, max_pixels=limit)
        return _volume_image(path, vol)
    _check_input_file(path)
    from .medical import is_nifti

    if is_nifti(path):
        from .medical import read_nifti

        vol = read_nifti(path, allow_channels=allow_channels, max_pixels=limit)
        return _volume_image(path, vol)
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError as exc:
        raise EmsegError(f"cannot read {path}: {reason(exc)}; check its permissions") from None
    if head[:4] in _TIFF_MAGIC:
        pixels, alpha, is_stack = _read_tiff(path, limit)
    else:
        pixels, alpha = _read_pillow(path, head, limit)
        is_stack = False
    return _finish(path, pixels, alpha, is_stack)


def _looks_like_image_folder(path):
    """A folder of ordinary images (a batch input), not a DICOM series."""
    names = [n.lower() for n in os.listdir(path) if not n.startswith(".")]
    plain = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz")
    return bool(names) and all(n.endswith(plain) for n in names)


def _volume_image(path, vol):
    image = _finish(path, vol.data, None, is_stack=True, channels=vol.channels)
    image.spacing, image.nifti = vol.spacing, vol.nifti
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
                 spacing=first.spacing, nifti=first.nifti, channels=True)


def read_mask(path, shape, *, max_pixels=None):
    """Read a mask for an image of spatial shape ``shape``: True inside.

    A pixel is inside where any colour channel is non-zero (and, if the mask has an
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
        limit = min(limit, _pixel_limit(max_pixels))
    try:
        image = read_image(path, max_pixels=limit)
    except _TooLarge as exc:
        if max_pixels is not None and exc.n_pixels <= math.prod(shape):
            raise
        raise EmsegError(
            f"mask {path} is {exc.size_text} but the image is {_describe_size(shape)}; "
            "use a mask of the same size as the image"
        ) from None
    inside = image.pixels.any(axis=-1) if image.is_color else image.pixels != 0
    if image.valid is not None:
        inside &= image.valid
    if inside.shape != shape:
        if inside.ndim == 2 and len(shape) == 3 and inside.shape == shape[1:]:
            inside = np.broadcast_to(inside, shape).copy()
        else:
            raise EmsegError(
                f"mask {image.path} is {_describe_size(inside.shape)} but the image is "
                f"{_describe_size(shape)}; use a mask of the same size as the image"
            )
    if not inside.any():
        raise EmsegError(
            f"mask {image.path} selects no pixel (all zero); "
            "mark the region to segment with non-zero values"
        )
    return inside


def _pixel_limit(max_pixels):
    """The pixel limit for one read: ``max_pixels`` or Pillow's global (None: none)."""
    if max_pixels is None:
        from PIL import Image as PILImage

        return PILImage.MAX_IMAGE_PIXELS
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise EmsegError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if max_pixels < 1:
        raise EmsegError(f"max_pixels must be a positive integer, got {max_pixels}")
    return int(max_pixels)


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


class _TooLarge(EmsegError):
    """A file above the pixel limit (its size known from the header)."""

    def __init__(self, message, n_pixels, size_text):
        super().__init__(message)
        self.n_pixels, self.size_text = n_pixels, size_text


def _check_size(path, n_pixels, size_text, limit):
    if limit is not None and n_pixels > limit:
        raise _TooLarge(
            f"{path} is {size_text} = {n_pixels:,} pixels, above the limit of "
            f"{limit:,} that guards against decompression bombs; if you trust this "
            f"file, pass --max-pixels {n_pixels} (or more)",
            n_pixels, size_text,
        )


def _finish(path, pixels, alpha, is_stack, channels=False):
    """Common checks on decoded pixels; turn alpha into ``valid``."""
    spatial = (
        pixels.shape[:-1] if channels or pixels.ndim == (4 if is_stack else 3) else pixels.shape
    )
    if math.prod(spatial) < 2:
        raise EmsegError(
            f"{path} is {_describe_size(spatial)}, too small to segment; "
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
    return Image(pixels=pixels, valid=valid, path=path, is_stack=is_stack, channels=channels)


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
            _check_size(path, width * height, f"{width}x{height}", limit)
            raise EmsegError(  # pragma: no cover - _check_size raises whenever Pillow does
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
            _check_size(path, width * height, f"{width}x{height}", limit)
            if fmt == "JPEG":
                _check_jpeg_data(path, width, height)
            if fmt == "PNG" and _png_is_16bit_color(head):
                # Pillow silently drops 16-bit colour PNGs to 8 bits; OpenCV does not.
                return _read_png16_color(path, im, colour_type=head[25])
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


def _png_is_16bit_color(head):
    """True for a 16-bit grey+alpha, RGB or RGBA PNG (IHDR bit depth and colour type)."""
    if not head.startswith(_PNG_MAGIC) or head[12:16] != b"IHDR" or len(head) < 26:
        return False
    return head[24] == 16 and head[25] in (2, 4, 6)


def _read_png16_color(path, im, colour_type):
    """Read a 16-bit colour PNG with OpenCV; ``im`` (Pillow, header read) gives EXIF."""
    import cv2

    try:
        data = np.fromfile(path, dtype=np.uint8)
        problem = _png_problem(data)
        if problem is not None:  # libpng would print to stderr; refuse first
            raise EmsegError(
                f"{path} could not be decoded ({problem}); the file is corrupt or "
                "truncated: re-export or re-copy it"
            )
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # no stderr
        try:
            arr = cv2.imdecode(_png_pixel_chunks(data), cv2.IMREAD_UNCHANGED)
        finally:
            cv2.utils.logging.setLogLevel(level)
    except (EmsegError, MemoryError):
        raise
    except Exception as exc:
        arr, problem = None, reason(exc)
    else:
        problem = "OpenCV could not decode it"
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        raise EmsegError(
            f"{path} could not be decoded ({problem}); the file is corrupt or "
            "truncated: re-export or re-copy it"
        )
    if colour_type == 4:  # grey + alpha: OpenCV expands the grey to three channels
        pixels, alpha = arr[..., 0], arr[..., 3]
    elif arr.shape[2] == 4:
        pixels, alpha = arr[..., 2::-1], arr[..., 3]
    else:
        pixels, alpha = arr[..., ::-1], None
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block; use the image as stored
        orientation = 1
    pixels = np.ascontiguousarray(_orient(pixels, orientation))
    if alpha is not None:
        alpha = np.ascontiguousarray(_orient(alpha, orientation))
    return pixels, alpha


def _png_problem(data):
    """What is structurally wrong with PNG bytes (bad CRC, truncation, more or less
    image data than the header's size needs), or None.

    The image data are inflated a MiB at a time and thrown away, and never beyond
    what the header's size needs: a small file that inflates to gigabytes (a
    decompression bomb) costs no memory and is refused as soon as it overflows.
    """
    data = memoryview(data)
    pos, idat = 8, []
    while True:
        if pos + 12 > len(data):
            return "truncated: no IEND chunk"
        length = int.from_bytes(data[pos : pos + 4], "big")
        tag = bytes(data[pos + 4 : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return f"truncated inside a {tag.decode('latin-1')!r} chunk"
        body = data[pos + 4 : end - 4]
        if zlib.crc32(body) != int.from_bytes(data[end - 4 : end], "big"):
            return f"bad checksum in a {tag.decode('latin-1')!r} chunk"
        if tag == b"IDAT":
            idat.append(body[4:])
        if tag == b"IEND":
            break
        pos = end
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[26] != 0 or data[27] != 0 or data[28] > 1:
        return "unknown compression, filter or interlace method in its header"
    runs = _png_row_runs(width, height, data[24], data[25], data[28])
    need = sum(length * n for _, length, n in runs)
    inflate, size = zlib.decompressobj(), 0
    try:
        for chunk in idat:
            while chunk and not inflate.eof:
                rows = inflate.decompress(chunk, 1 << 20)
                if size + len(rows) > need:
                    return f"more image data than its {width}x{height} pixels need"
                if _png_bad_filter(runs, size, rows):
                    return "a row with an unknown filter type"
                size += len(rows)
                chunk = inflate.unconsumed_tail
    except zlib.error as exc:
        return f"broken image data: {exc}"
    return None if inflate.eof and size == need else "image data ends early"


# The chunks that decide a PNG's pixels as OpenCV decodes them (no colour management)
_PNG_PIXEL_CHUNKS = (b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND")


def _png_pixel_chunks(data):
    """Checked PNG bytes (see :func:`_png_problem`) with only the chunks that make
    the pixels: libpng prints a line to stderr for each odd ancillary chunk (``libpng
    warning: iCCP: too short``, ``sRGB: invalid``, ``gAMA: duplicate``) that no log
    level of OpenCV's silences, and none of them changes what OpenCV decodes."""
    data = memoryview(data)
    pos, kept = 8, [bytes(data[:8])]
    while pos + 12 <= len(data):
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        if bytes(data[pos + 4 : pos + 8]) in _PNG_PIXEL_CHUNKS:
            kept.append(data[pos:end])
        pos = end
    return np.frombuffer(b"".join(kept), np.uint8)


def _png_row_runs(width, height, depth, colour_type, interlace):
    """The filtered rows a PNG of this header holds once inflated, as runs of
    ``(first byte, row length, number of rows)``: one run, or one per Adam7 pass."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour_type, 4)
    if not interlace:
        sizes = [(width, height)]
    else:
        passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                  (1, 0, 2, 2), (0, 1, 1, 2))  # Adam7: first column, first row, steps
        sizes = [((width - x + dx - 1) // dx, (height - y + dy - 1) // dy)
                 for x, y, dx, dy in passes]
    runs, start = [], 0
    for w, h in sizes:
        if w and h:  # each row: a filter byte, then the packed samples
            runs.append((start, 1 + (w * channels * depth + 7) // 8, h))
            start += runs[-1][1] * h
    return runs


def _png_data_size(width, height, depth, colour_type, interlace):
    """Bytes of filtered rows a PNG of this header holds once inflated."""
    return sum(length * n for _, length, n in
               _png_row_runs(width, height, depth, colour_type, interlace))


def _png_bad_filter(runs, base, chunk):
    """Whether inflated bytes ``chunk``, from offset ``base``, hold a row filter type
    other than 0-4 (libpng would print "bad adaptive filter value" to stderr)."""
    chunk = np.frombuffer(chunk, np.uint8)
    for start, length, n in runs:
        end = start + length * n
        if end <= base or start >= base + len(chunk):
            continue
        first = start + max(0, -(-(base - start) // length)) * length
        if first < min(end, base + len(chunk)) and (
            chunk[first - base : min(end, base + len(chunk)) - base : length] > 4
        ).any():
            return True
    return False


def _orient(arr, orientation):
    """Apply an EXIF orientation (1-8) to an array, as ``ImageOps.exif_transpose`` does."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return arr if op is None else op(arr)


# TIFF --------------------------------------------------------------------------------


def _read_tiff(path, limit):
    import tifffile

    try:
        with _log_as_warnings(path, "tifffile", "tifffile"), tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise EmsegError(f"{path} is a TIFF file with no image in it; re-export it")
            _check_tiff_pages(path, tif.series)
            series = tif.series[0]
            page = series.keyframe
            axes, shape = series.axes, tuple(series.shape)
            photometric = int(page.photometric)
            colormap = page.colormap
            _check_tiff_layout(path, axes, shape, photometric, limit)
            _check_tiff_inflation(path, tif.filehandle, series)
            data = series.asarray()
            if data.shape != shape:
                raise ValueError(f"its pixels decode to shape {data.shape}, not {shape}")
    except EmsegError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        raise EmsegError(
            f"cannot read {path}: corrupt TIFF ({reason(exc)}), truncated or in a TIFF "
            "variant emseg does not read; re-export it"
        ) from None
    return _tiff_pixels(path, data, axes, photometric, colormap)


def _check_tiff_pages(path, series):
    """Refuse a TIFF whose full-resolution pages differ in size or type.

    tifffile groups equal pages into series; emseg reads the first series as the
    image (a stack when it has several pages), so any other one would be dropped
    silently. Reduced-resolution pages (thumbnails, pyramid levels) are not images
    of their own and are ignored.
    """
    images = [s for s in series if not getattr(s.keyframe, "is_reduced", False)]
    kinds = {(s.keyframe.imagewidth, s.keyframe.imagelength, str(s.keyframe.dtype),
              s.keyframe.samplesperpixel) for s in images}
    if len(kinds) < 2:
        return
    groups = []
    for s in images[:4]:
        first = s.pages[0].index if s.pages and s.pages[0] is not None else "?"
        first = first[0] if isinstance(first, tuple) else first
        page = s.keyframe
        groups.append(
            f"page {first}{f' (+{len(s.pages) - 1} more)' if len(s.pages) > 1 else ''}: "
            f"{page.imagewidth}x{page.imagelength} {page.dtype}"
        )
    more = f" and {len(images) - 4} more groups" if len(images) > 4 else ""
    raise EmsegError(
        f"{path} holds pages of different sizes or types ({'; '.join(groups)}{more}); "
        "emseg reads a multi-page TIFF as one stack of equal pages: save each size as "
        "its own file"
    )


# TIFF compressions that tifffile, without imagecodecs, inflates with an unbounded
# zlib.decompress or lzma.decompress: deflate (8, 32946) and LZMA (34925).
_TIFF_INFLATERS = {8: zlib.decompressobj, 32946: zlib.decompressobj}


def _lzma_inflater():
    import lzma

    return lzma.LZMADecompressor()


_TIFF_INFLATERS[34925] = _lzma_inflater


def _check_tiff_inflation(path, fh, series):
    """Refuse a deflate or LZMA TIFF whose strips or tiles inflate past their size.

    tifffile inflates each strip or tile in one call, unbounded, so a TIFF declaring a
    few pixels whose one strip inflates to gigabytes would take that much memory
    before anything could check it. Here each strip or tile is inflated a MiB at a
    time and thrown away, and never beyond the bytes a full strip or tile of the page
    holds (its chunk shape times the sample size: an upper bound for the last strip
    and for packed bit depths). Other compressions are left to tifffile: uncompressed
    pages cost nothing here, and PackBits expands at most 64-fold.
    """
    page = series.keyframe
    inflater = _TIFF_INFLATERS.get(int(page.compression))
    if inflater is None:
        return
    need = math.prod(page.chunks) * page.dtype.itemsize
    for number, frame in enumerate(series.pages):
        if frame is None:
            continue
        for index, (offset, count) in enumerate(zip(frame.dataoffsets, frame.databytecounts)):
            if count and _inflates_past(fh, offset, count, inflater(), need):
                kind = "tile" if page.is_tiled else "strip"
                where = f" of page {number}" if len(series.pages) > 1 else ""
                raise EmsegError(
                    f"{path}: compressed {kind} {index}{where} inflates to more than "
                    f"the {need:,} bytes it can hold (corrupt, or a decompression "
                    "bomb); re-export it"
                )


def _inflates_past(fh, offset, count, inflate, need):
    """Whether ``count`` compressed bytes at ``offset`` inflate to more than ``need``."""
    fh.seek(offset)
    size, pending, step = 0, b"", 1 << 20
    while not inflate.eof:
        # zlib hands back the input it did not use; LZMA keeps it and says so
        if not pending and getattr(inflate, "needs_input", True):
            pending = fh.read(min(count, step)) if count > 0 else b""
            if not pending:
                return False
            count -= len(pending)
        size += len(inflate.decompress(pending, max_length=min(need + 1 - size, step)))
        if size > need:
            return True
        pending = getattr(inflate, "unconsumed_tail", b"")
    return False


class _Collect(logging.Filter):
    def __init__(self):
        super().__init__()
        self.messages = []

    def filter(self, record):
        self.messages.append(record.getMessage())
        return False  # nothing reaches the log handlers


@contextlib.contextmanager
def _log_as_warnings(path, logger_name, library):
    """Keep a library's log messages off stderr; after a good read, warn once with them.

    tifffile and nibabel log what they find odd in a file (nibabel through a handler
    of its own that prints to stderr), which would add lines of theirs to emseg's one
    line per problem. Their messages are collected instead, and a read that succeeds
    gives one warning naming the file and the distinct messages (a failed read raises
    its own error, which says more).
    """
    logger = logging.getLogger(logger_name)
    collect = _Collect()
    logger.addFilter(collect)
    try:
        yield
    finally:
        logger.removeFilter(collect)
    if collect.messages:  # reached only when the read succeeded
        said = "; ".join(dict.fromkeys(reason(m) for m in collect.messages))
        warnings.warn(
            f"{path}: {library} reported a problem while reading it "
            f"({reason(said)}); check the result",
            stacklevel=4,
        )


def _tiff_layout(axes, shape):
    """Sizes of the sample axis and of the non-singleton extra (stack) axes."""
    samples = shape[axes.index("S")] if "S" in axes else 1
    extra = [n for a, n in zip(axes, shape) if a not in "YXS" and n > 1]
    return samples, extra


def _check_tiff_layout(path, axes, shape, photometric, limit):
    if "Y" not in axes or "X" not in axes:
        raise EmsegError(
            f"{path} has TIFF axes {axes} without both Y and X; re-export it as an image"
        )
    samples, extra = _tiff_layout(axes, shape)
    if len(extra) > 1:
        raise EmsegError(
            f"{path} has TIFF axes {axes} with shape {tuple(shape)}: more than one stack "
            "axis; export a single 2-D image or one 3-D stack"
        )
    if samples not in (1, 2, 3, 4):
        raise EmsegError(
            f"{path} has {samples} samples per pixel; emseg reads grey, grey+alpha, RGB "
            "or RGBA: export those channels"
        )
    if photometric not in (0, 1, 2, 3, 6):  # MINISWHITE, MINISBLACK, RGB, PALETTE, YCBCR
        raise EmsegError(
            f"{path} has TIFF photometric interpretation {photometric}, which emseg "
            "does not read; convert it to grey or RGB"
        )
    height, width = shape[axes.index("Y")], shape[axes.index("X")]
    n_pixels = height * width * (extra[0] if extra else 1)
    size_text = f"{width}x{height}" + (f"x{extra[0]}" if extra else "")
    _check_size(path, n_pixels, size_text, limit)


def _tiff_pixels(path, data, axes, photometric, colormap):
    """Reorder to (Z, H, W, C), split alpha off, and settle the dtype."""
    # stack axis first, then Y and X, then the samples; singleton axes dropped
    order = [i for i, a in enumerate(axes) if a not in "YXS"]
    order += [axes.index("Y"), axes.index("X")]
    if "S" in axes:
        order.append(axes.index("S"))
    data = np.transpose(data, order)
    letters = [axes[i] for i in order]
    keep = tuple(slice(None) if a in "YX" or n > 1 else 0 for a, n in zip(letters, data.shape))
    data = data[keep]
    is_stack = any(a not in "YXS" and n > 1 for a, n in zip(letters, data.shape))
    samples = data.shape[-1] if data.ndim == (4 if is_stack else 3) else 1

    if photometric == 3:  # PALETTE: indices into a (3, N) uint16 colour map
        if colormap is None or samples != 1:
            raise EmsegError(f"{path} is a palette TIFF without a colour map; re-export it")
        colormap = np.asarray(colormap)
        if colormap.max() <= 255:
            colormap = colormap.astype(np.uint8)
        elif not (colormap % 257).any():
            colormap = (colormap // 257).astype(np.uint8)
        index = np.clip(data.astype(np.intp), 0, colormap.shape[1] - 1)
        rgb = np.moveaxis(colormap[:, index], 0, -1)
        return np.ascontiguousarray(rgb), None, is_stack
    alpha = None
    if samples in (2, 4):
        alpha = np.ascontiguousarray(data[..., -1])
        data = data[..., 0] if samples == 2 else data[..., :3]
    data = _tiff_dtype(path, data)
    if photometric == 0:  # MINISWHITE: 0 is white
        data = _invert(data)
    return np.ascontiguousarray(data), alpha, is_stack


def _tiff_dtype(path, data):
    """uint8 / uint16 / float32, converting other dtypes without losing values."""
    dt = data.dtype
    if dt == bool:
        return data.astype(np.uint8) * np.uint8(255)
    if dt in (np.uint8, np.uint16, np.float32):
        return data
    if np.issubdtype(dt, np.floating):
        return _float32(path, data)
    if np.issubdtype(dt, np.integer):
        if data.size and data.min() >= 0 and data.max() <= 255 and dt.itemsize == 1:
            return data.astype(np.uint8)
        if data.size and data.min() >= 0 and data.max() <= np.iinfo(np.uint16).max:
            return data.astype(np.uint16)
        return data.astype(np.float32)
    raise EmsegError(
        f"{path} has pixels of type {dt}, which emseg does not read; "
        "export 8- or 16-bit integers or 32-bit floats"
    )


def _float32(path, data):
    """``data`` as float32, emseg's one float dtype, refusing finite values beyond
    its range (about 3.4e38) rather than turning them into infinities."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(data).astype(np.float32)
    if out.dtype.itemsize < np.asarray(data).dtype.itemsize and np.isinf(out).any():
        lost = np.isinf(out) & np.isfinite(data)
        if lost.any():
            peak = float(np.max(np.abs(np.asarray(data)[lost])))
            raise EmsegError(
                f"{path} holds values up to {peak:.3g}, beyond the range of 32-bit "
                f"floats ({np.finfo(np.float32).max:.3g}) that emseg reads images as; "
                "rescale the data (divide by a power of ten) and save it again"
            )
    return out


def _invert(data):
    if data.dtype.kind == "u":
        return np.iinfo(data.dtype).max - data
    return data.max() - data


def _describe_size(shape):
    """'640x480 pixels' (width x height), or '640x480x12' for a stack."""
    shape = tuple(shape)
    if len(shape) == 2:
        return f"{shape[1]}x{shape[0]} pixels"
    if len(shape) == 3:
        return f"{shape[2]}x{shape[1]} pixels x {shape[0]} slices"
    return f"shape {shape}"


# --------------------------------------------------------------------------- writing


def write_png(path, array, *, overwrite=False):
    """Write a uint8 or uint16, grey ``(H, W)`` or RGB ``(H, W, 3)`` array as a PNG.

    The bytes depend only on the pixels (no timestamp or other metadata).
    """
    path = os.fspath(path)
    arr = np.asarray(array)
    if arr.dtype not in (np.uint8, np.uint16):
        raise EmsegError(
            f"cannot write {path}: PNG pixels must be uint8 or uint16, got {arr.dtype}; "
            "convert them first (render.to_display, render.label_image)"
        )
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise EmsegError(
            f"cannot write {path}: a PNG needs shape (H, W) or (H, W, 3), got {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EmsegError(f"cannot write {path}: the image is empty (shape {arr.shape})")
    with writing(path, overwrite) as tmp:
        with open_temp(tmp) as f:
            for piece in _png_pieces(arr):
                f.write(piece)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_BLOCK_BYTES = 1 << 22  # rows are filtered and deflated this many bytes at a time
_PNG_IDAT_BYTES = 1 << 20  # compressed data is written in IDAT chunks of about this size


def _png_pieces(arr):
    """The bytes of a PNG of ``arr`` (uint8/uint16, (H, W) or (H, W, 3)), in pieces.

    Every row takes PNG's "up" filter (each byte minus the byte above it), computed by
    numpy a block of rows at a time into one reused buffer, and the rows are deflated
    by ISA-L (the ``isal`` package) at its level 2: for a 12-megapixel photo's overlay
    4-5x faster than zlib at level 1 (the fastest OpenCV and Pillow offer), at about
    the same size. Nothing but the pixels goes in, so the same array always gives the
    same bytes.
    """
    import struct
    import zlib

    from isal import isal_zlib

    def chunk(tag, body):
        crc = zlib.crc32(body, zlib.crc32(tag))
        return [struct.pack(">I", len(body)), tag, bytes(body), struct.pack(">I", crc)]

    h, w = arr.shape[:2]
    depth = 16 if arr.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(arr, dtype=">u2" if depth == 16 else np.uint8)
    rows = rows.view(np.uint8).reshape(h, -1)
    colour_type = 2 if arr.ndim == 3 else 0  # truecolour or greyscale
    yield _PNG_SIGNATURE
    yield from chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0))

    block = max(1, _PNG_BLOCK_BYTES // (rows.shape[1] + 1))
    filtered = np.empty((min(block, h), rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type "up"; the row above the first counts as zeros
    deflate = isal_zlib.compressobj(2)
    pending = bytearray()
    for start in range(0, h, block):
        stop = min(h, start + block)
        out = filtered[: stop - start]
        if start == 0:
            out[0, 1:] = rows[0]
            np.subtract(rows[1:stop], rows[: stop - 1], out=out[1:, 1:])
        else:
            np.subtract(rows[start:stop], rows[start - 1 : stop - 1], out=out[:, 1:])
        pending += deflate.compress(out)
        if len(pending) >= _PNG_IDAT_BYTES:
            yield from chunk(b"IDAT", pending)
            pending.clear()
    pending += deflate.flush()
    yield from chunk(b"IDAT", pending)
    yield from chunk(b"IEND", b"")


def write_tiff_stack(path, pages, *, dtype=np.float32, overwrite=False):
    """Write ``pages`` (``(k, H, W)``, or one ``(H, W)`` page) as a multi-page TIFF of
    ``dtype`` (float32 unless told: label stacks are uint8 or uint16).

    Each leading index is one page (a ``(k, Z, H, W)`` array gives k*Z pages, with its
    shape recorded for tifffile). Uncompressed; no timestamp, so the bytes depend only
    on the data.
    """
    path = os.fspath(path)
    try:
        arr = np.asarray(pages, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise EmsegError(
            f"cannot write {path}: pages are not a numeric array ({reason(exc)})"
        ) from None
    if arr.ndim < 2 or 0 in arr.shape:
        raise EmsegError(
            f"cannot write {path}: TIFF pages need shape (k, H, W) or (H, W), got {arr.shape}"
        )
    import tifffile

    with writing(path, overwrite) as tmp, open_temp(tmp) as f:
        tifffile.imwrite(
            f,
            np.ascontiguousarray(arr),
            photometric="minisblack",  # never read three pages as one RGB image
            software=False,
            datetime=None,
        )
