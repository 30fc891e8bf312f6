"""stderr carries emseg's lines only (issue 17): libraries' log lines (nibabel's header
fixes, libpng's chunk warnings printed by OpenCV's decoder) become one emseg warning or
nothing. Each case runs the CLI in a child process and compares its whole stderr."""

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def emseg(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "emseg", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
    )
    return done.returncode, done.stderr.splitlines()


def _chunk(tag, body):
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def png16_with(path, *chunks, ihdr=None):
    """A 16-bit RGB PNG of two halves, with ``chunks`` inserted after its IHDR."""
    cv2 = pytest.importorskip("cv2")
    pixels = np.full((12, 16, 3), 1000, np.uint16)
    pixels[:, 8:] = 60000
    data = cv2.imencode(".png", pixels)[1].tobytes()
    head = data[:33] if ihdr is None else data[:8] + _chunk(b"IHDR", ihdr)
    Path(path).write_bytes(head + b"".join(chunks) + data[33:])
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "chunk",
    [
        _chunk(b"iCCP", b"bad\x00\x00" + zlib.compress(b"not a profile")),  # too short
        _chunk(b"sRGB", b"\x09"),  # invalid
        _chunk(b"sBIT", b"\x00\x00\x00"),  # invalid
        _chunk(b"gAMA", struct.pack(">I", 45455)) * 2,  # duplicate
    ],
)
def test_odd_ancillary_chunks_of_a_16bit_colour_png_print_nothing(tmp_path, chunk):
    png16_with(tmp_path / "odd.png", chunk)
    code, err = emseg("run", "odd.png", "-o", "out", "-k", "2", "--quiet", cwd=tmp_path)
    assert (code, err) == (0, [])
    assert (tmp_path / "out" / "odd_labels.png").exists()


def test_16bit_colour_png_libpng_would_reject_is_one_line(tmp_path):
    ihdr = struct.pack(">IIBBBBB", 16, 12, 16, 2, 1, 0, 0)  # compression method 1
    png16_with(tmp_path / "bad.png", ihdr=ihdr)
    rows = b"".join(b"\x07" + bytes(6 * 16) for _ in range(12))  # filter type 7
    png16_with(tmp_path / "filter.png")
    data = (tmp_path / "filter.png").read_bytes()
    (tmp_path / "filter.png").write_bytes(
        data[:33] + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")
    )
    for name, reason in [("bad.png", "unknown compression, filter or interlace method"),
                         ("filter.png", "a row with an unknown filter type")]:
        code, err = emseg("run", name, "-o", "out", "--quiet", cwd=tmp_path)
        assert code == 1 and len(err) == 1, err
        # the path starts the line, once
        assert err[0].startswith(f"emseg: error: {name}") and reason in err[0], err
        assert err[0].count(name) == 1, err


@pytest.mark.slow
def test_nibabel_header_fixes_are_one_emseg_warning(tmp_path):
    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(0)
    volume = np.concatenate(
        [rng.normal(50, 5, (16, 16, 4)), rng.normal(150, 5, (16, 16, 4))], axis=2
    ).astype(np.float32)
    img = nib.Nifti1Image(volume, np.eye(4))
    img.header["sform_code"] = 7  # nibabel: "sform_code 7 not valid; setting to 0"
    img.header["pixdim"][1:4] = 0  # "pixdim[1,2,3] should be non-zero; setting 0 dims to 1"
    nib.save(img, tmp_path / "odd.nii")
    code, err = emseg("run", "odd.nii", "-o", "out", "-k", "2", cwd=tmp_path)
    assert code == 0 and len(err) == 2, err
    assert err[0].startswith("odd.nii: K=2"), err
    assert err[1] == (
        "emseg: warning: odd.nii: nibabel reported a problem while reading it (pixdim[1,2,3] "
        "should be non-zero; setting 0 dims to 1; sform_code 7 not valid; setting to 0); "
        "check the result"
    ), err
    code, err = emseg("run", "odd.nii", "-o", "quiet", "-k", "2", "--quiet", cwd=tmp_path)
    assert (code, err) == (0, [])


@pytest.mark.slow
def test_ctrl_c_on_a_local_dask_batch_prints_emseg_line_only(tmp_path):
    """Ctrl-C reaches the whole process group: the Dask workers too, which printed a
    KeyboardInterrupt traceback each."""
    pytest.importorskip("distributed")
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for i in range(40):
        pixels = rng.normal(100, 30, (800, 800)).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / "in" / f"img{i:02d}.png")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-m", "emseg", "batch", "in", "-o", "out", "--scheduler", "local",
         "--jobs", "2", "-k", "5"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "out").glob("*_labels.png")):
            assert child.poll() is None and time.monotonic() < deadline, "no output in 60 s"
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        err = child.communicate(timeout=60)[1].splitlines()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 130
    assert [line for line in err if line != "segmenting"] == [
        "emseg: error: interrupted; finished outputs are complete and a rerun resumes "
        "from them"
    ], err
