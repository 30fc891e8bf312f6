"""Images as mixtures: pixel features, segmentation, the Markov random field,
partial volumes, shared segmentation models and rendering to arrays. Reads and writes
no files except through :mod:`emseg.io`."""

from .._shared.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "segment": "segmentation",
        "Segmentation": "segmentation",
        "SegmentationModel": "model",
        "fit_model": "model",
        "load_model": "model",
        "hmrf_em": "mrf",
        "FeatureSpec": "features",
        "partial_volumes": "pve",
    },
)
