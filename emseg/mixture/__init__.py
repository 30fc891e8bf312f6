"""Gaussian mixtures fitted by EM: the EM loop, the Gaussian algebra, k-means
seeding, chunked (Dask) fits and the choice of K. Knows nothing of images or files."""

from .._shared.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "GaussianMixture": "gaussian_mixture",
        "full_covariances": "gaussian_mixture",
        "reorder_components": "gaussian_mixture",
        "update_parameters": "gaussian_mixture",
        "COVARIANCE_TYPES": "gaussian",
        "GaussianParams": "gaussian",
        "GaussianStats": "gaussian",
        "check_allocation": "gaussian",
        "logsumexp_rows": "gaussian",
        "m_step": "gaussian",
        "n_parameters": "gaussian",
        "weighted_log_prob": "gaussian",
        "TrainingData": "training_data",
        "column_moments": "training_data",
        "run_em": "em",
        "choose_k": "selection",
    },
)
