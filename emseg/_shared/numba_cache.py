"""Whether numba's on-disk cache already holds emseg's compiled kernels, told without
loading numba.

emseg's kernels are compiled with ``cache=True``: the first call of each one in a new
installation compiles it (all together 20-60 s on a laptop), later processes load the
machine code from numba's cache in a fraction of a second. For each compiled function
numba keeps an index file, ``<module>.<function>-<line>.py<major><minor><abiflags>.nbi``,
in the first of these folders it can write to:

1. ``NUMBA_CACHE_DIR`` when it is set: there in a sub-folder per source folder,
   ``<folder name>_<sha1 of the folder's absolute path>``;
2. ``__pycache__`` beside the source file;
3. the user's cache folder (``$XDG_CACHE_HOME/numba`` or ``~/.cache/numba`` on Linux,
   ``~/Library/Caches/numba`` on macOS, ``%LOCALAPPDATA%\\numba\\Cache`` on Windows), in
   a sub-folder named as in 1.

The kernel modules are found by looking through the package for modules that import
numba at their top level, so a renamed or new kernel module is covered without a list
to update. What is checked is a few directory listings: importing numba costs a fresh
process 1.5-2 s, far more than the question is worth.

The check is per module: a module counts as cached when an index file of any of its
functions is there. A kernel of a cached module that was never called before (another
covariance type, say) is still compiled on its first call, in a few seconds. An index
left by another numba version or by an older source counts as cached too (numba then
compiles again); reading the index to tell would mean unpickling numba's own types.
``.numba_config.yaml`` files, which can also set the cache folder, are not read.
"""

import functools
import hashlib
import os
import re
import sys
from pathlib import Path

# the emseg folder, as numba names it: its absolute path, symbolic links not resolved
_PACKAGE = Path(os.path.abspath(__file__)).parents[1]
_IMPORTS_NUMBA = re.compile(rb"^(?:import|from)[ \t]+numba\b", re.MULTILINE)


@functools.lru_cache(maxsize=None)
def kernel_modules():
    """The dotted names of emseg's modules that import numba at their top level (those
    that define compiled kernels), sorted: for example ``"emseg._shared.kernels"``.

    Found by reading the package's ``.py`` files once per process (an import inside a
    function, indented, does not count: such modules only use numba when it is loaded).
    """
    names = []
    for path in sorted(_PACKAGE.rglob("*.py")):
        try:
            source = path.read_bytes()
        except OSError:
            continue
        if _IMPORTS_NUMBA.search(source):
            parts = path.relative_to(_PACKAGE.parent).with_suffix("").parts
            names.append(".".join(parts))
    return tuple(names)


def kernels_cached(modules=None):
    """True when numba's on-disk cache holds compiled kernels of each of ``modules``.

    ``modules`` are dotted names of emseg's kernel modules (default: all of
    :func:`kernel_modules`). A module counts as cached when numba's cache folder for
    its source file (see the module docstring for where numba puts it) holds an index
    file of one of its functions for this Python version. Numba itself is not loaded:
    this takes a few directory listings.
    """
    if modules is None:
        modules = kernel_modules()
    return all(_module_cached(name) for name in modules)


def _module_cached(name):
    source = _PACKAGE.parent.joinpath(*name.split(".")).with_suffix(".py")
    abiflags = getattr(sys, "abiflags", "")
    suffix = f".py{sys.version_info[0]}{sys.version_info[1]}{abiflags}.nbi"
    prefix = f"{source.stem}."
    for folder in _cache_folders(source):
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        if any(e.startswith(prefix) and e.endswith(suffix) for e in entries):
            return True
    return False


def _cache_folders(source):
    """Where numba may keep the cache of ``source``'s functions, in its order."""
    folder = os.path.dirname(os.path.abspath(source))
    # numba's name for the folder's cache under a cache root
    sub = "_".join([os.path.basename(folder), hashlib.sha1(folder.encode()).hexdigest()])
    chosen = os.environ.get("NUMBA_CACHE_DIR", "")
    if chosen:
        return [os.path.join(chosen, sub)]
    return [os.path.join(folder, "__pycache__"), os.path.join(_user_cache_root(), sub)]


def _user_cache_root():
    """numba's user-wide cache folder (``appdirs.user_cache_dir("numba")``)."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA", os.path.expanduser("~"))
        return os.path.join(local, "numba", "Cache")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/numba")
    return os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                        "numba")
