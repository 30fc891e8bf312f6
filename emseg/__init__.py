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

from ._shared.errors import (
    ConvergenceWarning,
    EmptyComponentWarning,
    EmsegError,
    KChoiceWarning,
    ModelMismatchWarning,
)
from ._shared.version import __version__

__all__ = [
    "ConvergenceWarning",
    "EmptyComponentWarning",
    "CategoricalHMM",
    "EmsegError",
    "GaussianHMM",
    "GaussianMixture",
    "KChoiceWarning",
    "ModelMismatchWarning",
    "NotFittedError",
    "Segmentation",
    "SegmentationModel",
    "__version__",
    "fit_model",
    "load_model",
    "partial_volumes",
    "segment",
]

from ._shared.lazy import lazy_exports as _lazy_exports  # noqa: E402

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "GaussianMixture": "mixture.gaussian_mixture",
        "NotFittedError": "_shared.errors",
        "GaussianHMM": "hmm.gaussian",
        "CategoricalHMM": "hmm.categorical",
        "SegmentationModel": "image.model",
        "fit_model": "image.model",
        "load_model": "image.model",
        "Segmentation": "image.segmentation",
        "segment": "image.segmentation",
        "partial_volumes": "image.pve",
    },
)
