"""The one line a first run prints before numba compiles emseg's kernels.

Compiling them takes 20-60 s, once per installation (then they load from numba's
cache), and nothing else is printed meanwhile. So, just before this process imports
one of emseg's kernel modules (the moment compiled kernels are about to be needed:
many inputs never need them, a small grey image for one), it says so on stderr, unless
``--quiet`` or the module's kernels are cached already
(:func:`emseg._shared.numba_cache.kernels_cached`). Once per process at most.

The kernels that worker processes load (``emseg batch``, ``fit``, ``apply`` with more
than one job, or on a Dask cluster) are not watched: those processes are not this one.
"""

import contextlib
import sys

import click

from .._shared import numba_cache

NOTICE = "emseg: compiling kernels, first run only (this can take a minute)"


class _Watch:
    """A finder on ``sys.meta_path`` that finds nothing: it only sees which modules are
    about to be imported, and tells the user the first time a kernel module whose
    kernels are not cached is."""

    def __init__(self, flags):
        self.flags = flags
        self.kernel_modules = None  # read from the package at the first emseg import

    def find_spec(self, name, path=None, target=None):
        if not name.startswith("emseg."):
            return None
        if self.kernel_modules is None:
            self.kernel_modules = frozenset(numba_cache.kernel_modules())
        if name in self.kernel_modules and not numba_cache.kernels_cached([name]):
            self.stop()
            if not self.flags.quiet:
                click.echo(NOTICE, err=True)
        return None

    def stop(self):
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)


@contextlib.contextmanager
def compile_notice(flags):
    """While the block runs, print :data:`NOTICE` before the first import of a kernel
    module whose kernels numba has not cached (see the module docstring). ``flags``:
    the command's :class:`~emseg.cli.options.Flags`, read when that happens."""
    watch = _Watch(flags)
    sys.meta_path.insert(0, watch)
    try:
        yield
    finally:
        watch.stop()
