"""emseg: image segmentation and mixture modelling by Expectation-Maximization.

Heavy modules (numba kernels, scipy, scikit-image) load on first use, so that
``import emseg`` and ``emseg --help`` stay fast.
"""

import os as _os

# numba's OpenMP threads otherwise spin between parallel regions; on a machine whose
# cores are busy with other work that spinning stalls every compiled call (measured:
# a 135k-pixel colour image took 7.2 s instead of 2.9 s with another job running).
# Sleeping threads cost microseconds per call on an idle machine. A user's own setting
# wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._errors import (
    ConvergenceWarning,
    EmptyComponentWarning,
    EmsegError,
    KChoiceWarning,
    ModelMismatchWarning,
)
from ._version import __version__

__all__ = [
    "ConvergenceWarning",
    "EmptyComponentWarning",
    "CategoricalHMM",
    "EmsegError",
    "GaussianHMM",
    "GaussianMixture",
    "KChoiceWarning",
    "ModelMismatchWarning",
    "Segmentation",
    "SegmentationModel",
    "__version__",
    "fit_model",
    "load_model",
    "segment",
]

_LAZY = {
    "GaussianMixture": "emseg.mixture",
    "GaussianHMM": "emseg.hmm",
    "CategoricalHMM": "emseg.hmm",
    "SegmentationModel": "emseg.model",
    "fit_model": "emseg.model",
    "load_model": "emseg.model",
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
