"""Settings for the processes emseg runs itself: the ``emseg`` command and batch workers.

The library functions leave the process as they find it; these are applied only where
emseg owns the whole process and segments one image after another in it.
"""

import sys

# glibc's mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory():
    """Let glibc's allocator reuse freed memory instead of handing it back to the OS.

    An image's arrays are a few MB each; glibc gives large blocks back when they are
    freed (mmap, or trimming the top of the heap) and the next image takes fresh pages
    again, each a page fault, costly in a virtual machine: 1,800-3,000 faults and
    15-24 ms of system time per megapixel image were measured, against 10-15 faults and
    10 ms with blocks up to 32 MB kept on the heap and up to 256 MB of free heap kept.
    Peak memory is unchanged; what is kept is reused by the next image, and given back
    when the process ends. Does nothing where the C library has no ``mallopt``.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # setting either turns off glibc's own adjustment of both, so set both
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    )
