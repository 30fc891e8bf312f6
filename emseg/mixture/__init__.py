"""Gaussian mixtures fitted by EM: the EM loop, the Gaussian algebra, k-means
seeding, chunked (Dask) fits and the choice of K. Knows nothing of images or files."""

from .._shared.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "GaussianMixture": "gaussian_mixture",
        "GaussianStats": "gaussian_mixture",
        "COVARIANCE_TYPES": "gaussian_mixture",
        "column_moments": "gaussian_mixture",
        "full_covariances": "gaussian_mixture",
        "logsumexp_rows": "gaussian_mixture",
        "n_parameters": "gaussian_mixture",
        "run_em": "em",
        "choose_k": "selection",
    },
)
