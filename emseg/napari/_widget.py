"""napari widget: segment the chosen image layer by EM (:func:`emseg.segment`).

napari builds the widget from :func:`segment_image`'s signature (magicgui,
``autogenerate: true`` in ``napari.yaml``): an image-layer chooser, K, the MRF
smoothing ``beta`` and the bias-field switch. The annotations are strings, so this
module imports neither napari nor magicgui.
"""

from typing import Annotated

import numpy as np

from .._shared.errors import EmsegError
from ._reader import class_name

__all__ = ["segment_image"]


def segment_image(
    image: "napari.layers.Image",  # noqa: F821 (napari resolves it)
    k: Annotated[int, {"min": 2, "max": 64}] = 3,  # magicgui reads the bounds
    beta: Annotated[float, {"min": 0.0, "max": 10.0, "step": 0.1}] = 0.0,
    bias: bool = False,
) -> "napari.types.LayerDataTuple":  # noqa: F821
    """Segment ``image`` into ``k`` classes; return a Labels layer-data tuple.

    ``image``: an image layer (its ``scale`` becomes the voxel spacing the MRF and
    the bias field use) or an array: (H, W) grey, (H, W, 3|4) colour, (Z, H, W)
    volume, as :func:`emseg.segment` takes. ``beta`` > 0 smooths the labels with a Potts Markov
    random field; ``bias`` corrects a smooth intensity non-uniformity inside EM.
    The labels are 1..K, darkest first (0 only for pixels whose alpha is 0), coloured
    and named as emseg's overlay and report.
    """
    from ..image import render
    from ..image.segmentation import segment

    if image is None:
        raise EmsegError("no image to segment; open or choose an image layer")
    data = np.asarray(getattr(image, "data", image))
    spatial = data.ndim - (1 if getattr(image, "rgb", False) else 0)
    scale = getattr(image, "scale", None)
    spacing = None if scale is None else tuple(float(s) for s in scale[-spatial:])
    seg = segment(data, int(k), beta=float(beta), bias=bool(bias), spacing=spacing)
    k = seg.k
    colors = render.palette(k)
    classes = [
        {"label": i + 1, "overlay_color": colors[i].tolist(),
         "mean_value": [float(v) for v in seg.mean_values[i]],
         "fraction": float(seg.fractions[i])}
        for i in range(k)
    ]
    colormap = {None: (0.0, 0.0, 0.0, 0.0), 0: (0.0, 0.0, 0.0, 0.0)}
    colormap.update({c["label"]: (*(v / 255 for v in c["overlay_color"]), 1.0)
                     for c in classes})
    features = {
        "index": [0] + [c["label"] for c in classes],
        "name": ["outside the mask"] + [class_name(c) for c in classes],
        "mean_value": [None] + [c["mean_value"] for c in classes],
        "fraction": [None] + [c["fraction"] for c in classes],
    }
    labels = np.asarray(seg.labels).astype(np.uint8 if k < 256 else np.uint16, copy=False)
    keywords = {"name": f"emseg labels (K={k}, beta={beta:g}{', bias' if bias else ''})",
                "colormap": colormap, "features": features}
    if scale is not None:
        keywords["scale"] = spacing
    return labels, keywords, "labels"
