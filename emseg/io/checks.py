"""Checks shared by the image readers (:mod:`.images`, :mod:`.png`, :mod:`.tiff`) and
the medical ones (:mod:`.medical`): the pixel limit that guards against decompression
bombs, the size a file declares, float32 conversion without overflow, and library log
messages turned into one warning.

Every reader checks the size a file's header declares against :func:`pixel_limit`
before it decodes a pixel; :func:`check_size` raises :class:`TooLarge`, an
:class:`~emseg.EmsegError` that remembers the size (``read_mask`` turns it into "the
mask is larger than its image").
"""

import contextlib
import logging
import warnings

import numpy as np

from .._shared.errors import EmsegError
from .atomic import reason

__all__ = [
    "TooLarge",
    "check_size",
    "describe_size",
    "log_as_warnings",
    "pixel_limit",
    "to_float32",
]


def pixel_limit(max_pixels):
    """The pixel limit for one read: ``max_pixels`` or Pillow's global (None: none).

    Raises :class:`~emseg.EmsegError` when ``max_pixels`` is not a positive integer.
    """
    if max_pixels is None:
        from PIL import Image as PILImage

        return PILImage.MAX_IMAGE_PIXELS
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise EmsegError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if max_pixels < 1:
        raise EmsegError(f"max_pixels must be a positive integer, got {max_pixels}")
    return int(max_pixels)


class TooLarge(EmsegError):
    """A file above the pixel limit (its size known from the header)."""

    def __init__(self, message, n_pixels, size_text):
        super().__init__(message)
        self.n_pixels, self.size_text = n_pixels, size_text


def check_size(path, n_pixels, size_text, limit):
    """Raise :class:`TooLarge` when ``n_pixels`` (read from a header, described as
    ``size_text``) exceed ``limit`` (None: no limit)."""
    if limit is not None and n_pixels > limit:
        raise TooLarge(
            f"{path} is {size_text} = {n_pixels:,} pixels, above the limit of "
            f"{limit:,} that guards against decompression bombs; if you trust this "
            f"file, pass --max-pixels {n_pixels} (or more)",
            n_pixels, size_text,
        )


def describe_size(shape):
    """'640x480 pixels' (width x height), or '640x480x12' for a stack."""
    shape = tuple(shape)
    if len(shape) == 2:
        return f"{shape[1]}x{shape[0]} pixels"
    if len(shape) == 3:
        return f"{shape[2]}x{shape[1]} pixels x {shape[0]} slices"
    return f"shape {shape}"


def to_float32(path, data):
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


class _Collect(logging.Filter):
    def __init__(self):
        super().__init__()
        self.messages = []

    def filter(self, record):
        self.messages.append(record.getMessage())
        return False  # nothing reaches the log handlers


@contextlib.contextmanager
def log_as_warnings(path, logger_name, library):
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
