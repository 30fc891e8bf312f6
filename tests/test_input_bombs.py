"""Decompression bombs and forged headers (issue 17): sizes are checked from headers
before anything is decoded, and every decompression is bounded.

Each bomb is built here, small on disk, and inflates to ``BOMB`` bytes (256 MiB) or
declares far more pixels than it holds. The read runs in a child process, which
reports how far its peak resident memory (VmHWM) rose above what it used after its
imports; that rise must stay well below the bomb's size.
"""

import gzip
import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from emseg import EmsegError, io

MiB = 1 << 20
BOMB = 256 * MiB  # what each bomb inflates to
BOUND = 64 * MiB  # the most a refused read may add to the peak memory
REPO = Path(__file__).resolve().parent.parent


def _zeros_stream(n_bytes, *, gzip_wrapper=False):
    """A zlib (or gzip) stream of ``n_bytes`` zero bytes, made in a fraction of a
    second: one compressed MiB after a full flush is independent of what came before,
    so it is repeated, and the checksum is computed over the zeros directly."""
    zeros = bytes(MiB)
    wbits = -zlib.MAX_WBITS  # raw deflate; the wrapper is written here
    deflate = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert again == block or n_bytes == MiB
    n, rest = divmod(n_bytes, MiB)
    body = block + again * (n - 1) + deflate.compress(bytes(rest)) + deflate.flush()
    check = 1 if not gzip_wrapper else 0
    for _ in range(n):
        check = zlib.crc32(zeros, check) if gzip_wrapper else zlib.adler32(zeros, check)
    check = zlib.crc32(bytes(rest), check) if gzip_wrapper else zlib.adler32(bytes(rest), check)
    if gzip_wrapper:
        head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        return head + body + struct.pack("<II", check, n_bytes & 0xFFFFFFFF)
    return b"\x78\xda" + body + struct.pack(">I", check)


def _png_chunk(tag, body):
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def _peak_rise(path, **kwargs):
    """Read ``path`` in a child process: (its outcome, how far the peak RSS rose)."""
    code = textwrap.dedent(
        f"""
        import json, sys
        import cv2, nibabel, pydicom, tifffile, PIL.Image, numpy
        from emseg import io, EmsegError

        def status(key):
            for line in open("/proc/self/status"):
                if line.startswith(key):
                    return int(line.split()[1]) * 1024

        before = status("VmRSS:")
        try:
            io.read_image(sys.argv[1], **json.loads(sys.argv[2]))
            outcome = "read"
        except EmsegError as exc:
            outcome = "EmsegError: " + str(exc)
        print(json.dumps([outcome, status("VmHWM:") - before]))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), json.dumps(kwargs)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )
    outcome, rise = json.loads(done.stdout.strip().splitlines()[-1])
    return outcome, rise


# --------------------------------------------------------------------------- PNG


def png16_bomb(path):
    """A 16-bit RGB PNG declaring 2x2 pixels whose image data inflate to BOMB bytes."""
    ihdr = struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", _zeros_stream(BOMB)) + _png_chunk(b"IEND", b"")
    )
    return path


def test_png16_bomb_is_refused_without_inflating_it(tmp_path):
    path = png16_bomb(tmp_path / "bomb.png")
    assert path.stat().st_size < BOMB // 100
    outcome, rise = _peak_rise(path)
    assert outcome.startswith("EmsegError") and "bomb.png" in outcome, outcome
    assert "more image data than its 2x2 pixels" in outcome, outcome
    assert rise < BOUND, f"peak memory rose by {rise / MiB:.0f} MiB"
