"""emseg._shared.numba_cache: whether numba has cached emseg's compiled kernels, told
without loading numba. Checked against numba itself: a copy of the package with one
more small kernel module, compiled in a child process."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emseg._shared import numba_cache

PACKAGE = Path(os.path.abspath(numba_cache.__file__)).parents[1]

KNOWN = {
    "emseg._shared.kernels",
    "emseg.hmm._kernels",
    "emseg.image._mrf_kernels",
    "emseg.image._render_kernels",
    "emseg.io._table_format",
}

TINY = '''"""A kernel module for the test."""
from numba import njit


@njit(cache=True)
def plus_one(x):
    return x + 1
'''


def test_kernel_modules_are_the_modules_that_import_numba():
    found = numba_cache.kernel_modules()
    assert KNOWN <= set(found), found
    # a module that imports numba only inside a function (when loaded already) is not one
    assert "emseg._shared.compute" not in found
    assert "emseg._shared.numba_cache" not in found
    assert list(found) == sorted(found)


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the emseg package without any cache, with ``emseg._tiny_kernel``."""
    root = tmp_path / "src"
    shutil.copytree(PACKAGE, root / "emseg", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "emseg" / "_tiny_kernel.py").write_text(TINY)
    return root


def in_child(root, code, **env):
    """Run ``code`` with the package copy at ``root``; its stdout lines."""
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    environ.update(PYTHONPATH=str(root), **env)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environ, cwd=root, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


CHECK = (
    "import sys\n"
    "from emseg._shared import numba_cache as c\n"
    "print('emseg._tiny_kernel' in c.kernel_modules())\n"
    "print(c.kernels_cached(['emseg._tiny_kernel']))\n"
    "print('numba' in sys.modules)\n"
)
COMPILE = "from emseg._tiny_kernel import plus_one\nassert plus_one(1) == 2\n"


@pytest.mark.parametrize("where", ["NUMBA_CACHE_DIR", "__pycache__"])
def test_cached_once_numba_compiled_the_module(package_copy, tmp_path, where):
    pytest.importorskip("numba")
    env = {"XDG_CACHE_HOME": str(tmp_path / "user")}
    if where == "NUMBA_CACHE_DIR":
        env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    # found, not cached, and numba not loaded by asking
    assert in_child(package_copy, CHECK, **env) == ["True", "False", "False"]
    in_child(package_copy, COMPILE, **env)
    assert in_child(package_copy, CHECK, **env) == ["True", "True", "False"]
    beside = list((package_copy / "emseg" / "__pycache__").glob("_tiny_kernel.*.nbi"))
    assert bool(beside) == (where == "__pycache__")
    # the other modules' kernels are not cached in the copy
    assert in_child(package_copy, "from emseg._shared import numba_cache as c\n"
                    "print(c.kernels_cached())", **env) == ["False"]


def _index_name(stem, function="f", line=12, python=None):
    python = python or f"{sys.version_info[0]}{sys.version_info[1]}"
    return f"{stem}.{function}-{line}.py{python}{getattr(sys, 'abiflags', '')}.nbi"


def test_numba_cache_dir_alone_counts_when_set(package_copy, tmp_path):
    """With NUMBA_CACHE_DIR set numba writes nowhere else, so an index beside the
    source (left by a run without it) does not count; and only an index file of this
    module and this Python counts."""
    folder = package_copy / "emseg"
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / _index_name("_tiny_kernel", "plus_one", 4)).write_bytes(b"")
    code = "from emseg._shared import numba_cache as c\nprint(c.kernels_cached(['emseg._tiny_kernel']))"
    assert in_child(package_copy, code) == ["True"]
    cache = tmp_path / "cache"
    assert in_child(package_copy, code, NUMBA_CACHE_DIR=str(cache)) == ["False"]
    under = cache / f"emseg_{hashlib.sha1(str(folder).encode()).hexdigest()}"  # numba's name
    under.mkdir(parents=True)
    (under / "_tiny_kernel.plus_one-4.nbc").write_bytes(b"")  # not an index
    (under / _index_name("other")).write_bytes(b"")  # another module's
    (under / _index_name("_tiny_kernel", python="27")).write_bytes(b"")  # another Python's
    assert in_child(package_copy, code, NUMBA_CACHE_DIR=str(cache)) == ["False"]
    (under / _index_name("_tiny_kernel")).write_bytes(b"")
    assert in_child(package_copy, code, NUMBA_CACHE_DIR=str(cache)) == ["True"]


def test_the_users_cache_folder_counts(package_copy, tmp_path):
    """Where the source folder is read-only numba caches in the user's cache folder."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the user's cache folder is checked here as on Linux")
    code = "from emseg._shared import numba_cache as c\nprint(c.kernels_cached(['emseg._tiny_kernel']))"
    user = tmp_path / "user"
    assert in_child(package_copy, code, XDG_CACHE_HOME=str(user)) == ["False"]
    folder = str(package_copy / "emseg")
    under = user / "numba" / f"emseg_{hashlib.sha1(folder.encode()).hexdigest()}"
    under.mkdir(parents=True)
    (under / _index_name("_tiny_kernel")).write_bytes(b"")
    assert in_child(package_copy, code, XDG_CACHE_HOME=str(user)) == ["True"]
