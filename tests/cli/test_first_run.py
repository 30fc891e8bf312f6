"""The first run says, once, that numba is compiling the kernels (20-60 s of silence
otherwise); a run that finds them cached, or --quiet, does not. Each run is a child
process with its own NUMBA_CACHE_DIR."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emseg.cli.notice import NOTICE

REPO = Path(__file__).resolve().parents[2]


def start(tmp_path, cache, *args):
    """``emseg run`` on the small colour image in a child process using ``cache``."""
    env = dict(os.environ, PYTHONPATH=str(REPO), NUMBA_CACHE_DIR=str(cache))
    return subprocess.Popen(
        [sys.executable, "-m", "emseg", "run", "small.png", "-k", "2", *args],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(child):
    out, err = child.communicate(timeout=1200)
    assert child.returncode == 0, err
    assert out == ""
    return err.splitlines()


@pytest.mark.slow
def test_notice_once_on_an_empty_cache_never_when_cached_or_quiet(tmp_path):
    assert NOTICE == "emseg: compiling kernels, first run only (this can take a minute)"
    rng = np.random.default_rng(0)
    pixels = np.zeros((30, 40, 3))
    pixels[:, 20:] = [200, 60, 30]  # colour: its features and rendering use the kernels
    pixels = np.clip(pixels + rng.normal(0, 10, pixels.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "small.png")
    # both compile from an empty cache, side by side
    quiet = start(tmp_path, tmp_path / "cache-quiet", "-o", "out-quiet", "--quiet")
    first = start(tmp_path, tmp_path / "cache", "-o", "out-first")
    assert finish(quiet) == []
    err = finish(first)
    assert err[0] == NOTICE and err.count(NOTICE) == 1, err
    assert len(err) == 2 and err[1].startswith("small.png: K=2, "), err
    assert list((tmp_path / "cache").rglob("*.nbi"))  # compiled into the cache given
    err = finish(start(tmp_path, tmp_path / "cache", "-o", "out-second"))
    assert len(err) == 1 and err[0].startswith("small.png: K=2, "), err
