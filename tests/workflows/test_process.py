"""Process settings for the processes emseg owns (emseg.workflows.processes)."""

import multiprocessing
import platform
import sys

import pytest

from emseg.workflows import processes as _process


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_keep_freed_memory_sets_glibc_thresholds():
    assert _process.keep_freed_memory() is True


def test_worker_context_preloads_the_worker_modules():
    context = _process.worker_context()
    if "forkserver" in multiprocessing.get_all_start_methods():
        assert context.get_start_method() == "forkserver"
        from multiprocessing import forkserver

        assert forkserver._forkserver._preload_modules == list(_process.WORKER_MODULES)
    else:
        assert context.get_start_method() == "spawn"


def test_worker_modules_import_without_numba():
    import subprocess

    code = ("import sys\n"
            f"for name in {list(_process.WORKER_MODULES)!r}: __import__(name)\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_cores_is_positive():
    assert _process.cores() >= 1
