"""napari reader: emseg's outputs as layers.

``<stem>_labels.png|.tif|.nii.gz`` opens as a Labels layer coloured and named as the
overlay (from ``<stem>_report.json`` beside it: each class's ``overlay_color``, mean
value and fraction), ``<stem>_posteriors`` and ``<stem>_pve`` maps as one Image layer
per class, in the class colour. The report's voxel ``spacing`` becomes the layers'
``scale``. ImageJ hyperstacks and OME-TIFF (``.ome.tif``) are read by their axes: the
posteriors of a TIFF input have the class as C (``ZCYX``, ``TZCYX``...), and the
outputs of a time series keep T as their first axis (scale 1: one step per time
point). Files are read through :mod:`emseg.io`, so a damaged file is one line
(:class:`~emseg.EmsegError`). A path that is not an emseg output (no report beside
it) gets None: napari then asks another reader (its ``napari_get_reader`` protocol).
"""

import os

import numpy as np

from .._shared.errors import EmsegError

__all__ = ["get_reader", "output_kind", "read_outputs"]

# output suffix -> (layer type, the name of its maps)
_KINDS = {"_labels": ("labels", None), "_posteriors": ("image", "posterior"),
          "_pve": ("image", "partial volume")}
_EXTENSIONS = (".nii.gz", ".ome.tif", ".ome.tiff", ".tif", ".tiff", ".png")
_TRANSPARENT = (0.0, 0.0, 0.0, 0.0)


def output_kind(path):
    """``(stem path, suffix, report path)`` when ``path`` names an emseg output with
    its ``<stem>_report.json`` beside it, else None. ``suffix`` is "_labels",
    "_posteriors" or "_pve"; a PNG is only ever labels."""
    path = os.fspath(path)
    name = path.lower()
    for ext in _EXTENSIONS:
        if not name.endswith(ext):
            continue
        base = path[: len(path) - len(ext)]
        for suffix in _KINDS:
            if base.endswith(suffix) and not (ext == ".png" and suffix != "_labels"):
                stem = base[: len(base) - len(suffix)]
                report = stem + "_report.json"
                if os.path.basename(stem) and os.path.isfile(report):
                    return stem, suffix, report
    return None


def get_reader(path):
    """napari's ``napari_get_reader``: :func:`read_outputs` when every path given is
    an emseg output with its report beside it, else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or any(output_kind(p) is None for p in paths):
        return None
    return read_outputs


def read_outputs(path):
    """The layers of one emseg output, or of a list of them: ``[(data, keywords,
    layer_type), ...]``.

    Labels: integer data (0 outside the mask, 1..K the classes), ``colormap`` a dict
    from label to the overlay's RGBA (0 transparent), ``features`` a table per label
    (``index``, ``name``, ``mean_value``, ``fraction``). Posteriors and partial volumes:
    float32 in [0, 1], one layer per class, named after it and coloured as it.

    Raises :class:`~emseg.EmsegError` when a file, or its report, is damaged or does not
    match the other (a label the report does not list, maps not one per class).
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers = []
    for p in paths:
        kind = output_kind(p)
        if kind is None:
            raise EmsegError(f"{p} is not an emseg output: no <stem>_report.json beside it")
        stem, suffix, report_path = kind
        report = _read_report(report_path)
        if suffix == "_labels":
            layers.append(_labels_layer(os.fspath(p), stem, report, report_path))
        else:
            layers.extend(_map_layers(os.fspath(p), stem, suffix, report, report_path))
    return layers


def _read_report(path):
    """The report as a dict, checked for what the layers need."""
    from ..io.jsonfile import load_json

    report = load_json(path)
    classes = report.get("classes") if isinstance(report, dict) else None
    if not isinstance(classes, list) or not classes or not all(
        isinstance(c, dict) and {"label", "overlay_color"} <= set(c) for c in classes
    ):
        raise EmsegError(f"{path} lists no classes with label and overlay_color; "
                         "is it an emseg report?")
    return report


def class_name(info):
    """The display name of one report class: "class 2 (mean 118, 31%)"."""
    text = f"class {int(info['label'])}"
    mean = info.get("mean_value")
    details = []
    if isinstance(mean, list) and mean:
        details.append("mean " + "/".join(f"{float(v):.4g}" for v in mean))
    if info.get("fraction") is not None:
        details.append(f"{100 * float(info['fraction']):.3g}%")
    return f"{text} ({', '.join(details)})" if details else text


def _rgba(info):
    r, g, b = (int(c) / 255 for c in info["overlay_color"][:3])
    return (r, g, b, 1.0)


def _scale(report, ndim, timed=False):
    """The report's spacing, if it has one for each of the ``ndim`` axes (after a T
    axis, scale 1, when ``timed``)."""
    spacing = report.get("spacing")
    if isinstance(spacing, list) and len(spacing) == ndim - timed:
        return {"scale": (1.0,) * timed + tuple(float(s) for s in spacing)}
    return {}


def _read(path, channels):
    from ..io.images import read_image

    return read_image(path, max_pixels=np.iinfo(np.int64).max, allow_channels=channels,
                      allow_time=True)


def _labels_layer(path, stem, report, report_path):
    classes = sorted(report["classes"], key=lambda c: int(c["label"]))
    k = len(classes)
    image = _read(path, False)
    pixels, timed = image.pixels, image.time_points is not None
    if image.is_color or pixels.ndim - timed not in (2, 3):
        raise EmsegError(f"{path} has shape {pixels.shape}; emseg labels are 2-D or 3-D"
                         + (" at each time point" if timed else ""))
    top = float(np.max(pixels)) if pixels.size else 0.0
    if top > k or float(np.min(pixels)) < 0 or not np.array_equal(pixels, np.rint(pixels)):
        raise EmsegError(f"{path} holds values outside 0..{k}, the labels {report_path} "
                         "lists; are they from the same run?")
    labels = pixels.astype(np.uint8 if k < 256 else np.uint16)
    colormap = {None: _TRANSPARENT, 0: _TRANSPARENT}
    colormap.update({int(c["label"]): _rgba(c) for c in classes})
    features = {
        "index": [0] + [int(c["label"]) for c in classes],
        "name": ["outside the mask"] + [class_name(c) for c in classes],
        "mean_value": [None] + [c.get("mean_value") for c in classes],
        "fraction": [None] + [c.get("fraction") for c in classes],
    }
    keywords = {"name": f"{os.path.basename(stem)} labels", "colormap": colormap,
                "features": features, **_scale(report, labels.ndim, timed)}
    return labels, keywords, "labels"


def _map_layers(path, stem, suffix, report, report_path):
    classes = sorted(report["classes"], key=lambda c: int(c["label"]))
    k = len(classes)
    image = _read(path, True)
    maps = image.pixels
    timed = image.time_points is not None
    if image.channels:  # the class as C (a hyperstack), or a 4-D NIfTI: (Z, Y, X, K)
        maps = np.moveaxis(maps, -1, 0)
    if image.is_color or maps.ndim < 3 or maps.shape[0] % k or (
            image.channels and maps.shape[0] != k):
        raise EmsegError(f"{path} has shape {image.pixels.shape}, not one map per class of "
                         f"the {k} {report_path} lists; are they from the same run?")
    if not image.channels:  # plain pages (K * Z, H, W) -> (K, Z, H, W)
        maps = maps.reshape(k, -1, *maps.shape[-2:])
        if maps.shape[1] == 1:
            maps = maps[:, 0]
    if maps.dtype == np.uint8:  # probability x 255 (--posteriors-dtype uint8)
        maps = maps.astype(np.float32) / np.float32(255)
    else:
        maps = maps.astype(np.float32, copy=False)
    what = _KINDS[suffix][1]
    scale = _scale(report, maps.ndim - 1, timed)
    layers = []
    for info, data in zip(classes, maps, strict=True):
        colormap = {"colors": [[0.0, 0.0, 0.0, 1.0], list(_rgba(info))],
                    "name": f"emseg class {int(info['label'])} of {k}"}
        keywords = {"name": f"{os.path.basename(stem)} {what} {class_name(info)}",
                    "colormap": colormap, "contrast_limits": (0.0, 1.0),
                    "blending": "additive", **scale}
        layers.append((data, keywords, "image"))
    return layers
