"""emseg: image segmentation and mixture modelling by Expectation-Maximization.

Heavy modules (numba kernels, scipy, scikit-image) load on first use, so that
``import emseg`` and ``emseg --help`` stay fast.
"""

from ._errors import ConvergenceWarning, EmptyComponentWarning, EmsegError
from ._version import __version__

__all__ = [
    "ConvergenceWarning",
    "EmptyComponentWarning",
    "EmsegError",
    "GaussianMixture",
    "Segmentation",
    "__version__",
    "segment",
]

_LAZY = {
    "GaussianMixture": "emseg.mixture",
    "Segmentation": "emseg.segmentation",
    "segment": "emseg.segmentation",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'emseg' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
