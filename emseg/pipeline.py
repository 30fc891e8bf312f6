"""One image file in, its outputs out: the work behind ``emseg run`` and ``emseg batch``.

This module only chains the stages (io -> segmentation -> render -> io); it holds no
algorithm of its own and prints nothing. :func:`segment_file` returns the report it
wrote, so a caller can show a summary line or gather a batch table.
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path


from ._version import __version__


@dataclass
class RunOptions:
    """Everything ``emseg run`` lets a user choose about one image."""

    classes: object = 3  # int or "auto"
    k_max: int = 8
    color_space: str = "auto"
    spatial: float = 0.0
    covariance: str = "full"
    seed: int = 0
    max_iter: int = 100
    tol: float = 1e-3
    mask_path: str | None = None
    posteriors: bool = False
    max_pixels: int | None = None

    def to_dict(self):
        return asdict(self)


def output_paths(path, out, *, posteriors=False, stack=False):
    """The files :func:`segment_file` writes for input ``path`` into folder ``out``."""
    stem = Path(path).stem
    out = Path(out)
    targets = {
        "labels": out / f"{stem}_labels.{'tif' if stack else 'png'}",
        "overlay": out / f"{stem}_overlay.png",
        "segments": out / f"{stem}_segments.png",
        "report": out / f"{stem}_report.json",
    }
    if posteriors:
        targets["posteriors"] = out / f"{stem}_posteriors.tif"
    return targets


def segment_file(path, out, options=None, *, overwrite=False, model=None):
    """Segment the image at ``path`` and write its outputs into the folder ``out``.

    Writes ``<stem>_labels.png`` (a multi-page ``_labels.tif`` for a stack),
    ``_overlay.png``, ``_segments.png``, ``_report.json`` and, when asked,
    ``_posteriors.tif``. Every output is checked writable before any work starts, and
    each is written to a temporary file then renamed; the report is written last, so
    its presence means the outputs it lists are complete. Returns the report (a dict).
    Raises :class:`~emseg.EmsegError` for bad input.

    With ``model`` (a :class:`~emseg.model.SegmentationModel`) the image is labelled
    with that model instead of fitting one; the options' model settings (classes,
    colour space...) are then not used, and the report records the model under
    ``shared_model``.
    """
    from . import io, render
    from .segmentation import segment

    options = options or RunOptions()
    start = time.perf_counter()
    clock = start
    image = io.read_image(path, max_pixels=options.max_pixels)
    targets = output_paths(path, out, posteriors=options.posteriors, stack=image.is_stack)
    io.check_writable(list(targets.values()), overwrite)
    mask = image.valid
    if options.mask_path is not None:
        user_mask = io.read_mask(options.mask_path, image.spatial_shape)
        mask = user_mask if mask is None else mask & user_mask
    read_seconds = time.perf_counter() - clock

    channel_axis = -1 if image.is_color else None
    if model is not None:
        seg = segment(image.pixels, model=model, mask=mask, channel_axis=channel_axis)
    else:
        seg = segment(
            image.pixels,
            options.classes,
            color_space=options.color_space,
            spatial=options.spatial,
            mask=mask,
            covariance_type=options.covariance,
            random_state=options.seed,
            k_max=options.k_max,
            max_iter=options.max_iter,
            tol=options.tol,
            channel_axis=channel_axis,
        )

    clock = time.perf_counter()
    k = seg.k
    pixels, labels = image.pixels, seg.labels
    if image.is_stack:  # the pictures show the middle slice; the labels keep every one
        middle = labels.shape[0] // 2
        pixels, labels = pixels[middle], labels[middle]
    display = render.to_display(pixels)
    colors = render.class_colors(display, labels, k)
    label_values = render.label_image(seg.labels, k)
    overlay = render.overlay(pixels, labels, k)
    segments = render.segments(labels, colors)
    render_seconds = time.perf_counter() - clock

    clock = time.perf_counter()
    if image.is_stack:
        io.write_tiff_stack(targets["labels"], label_values, dtype=label_values.dtype,
                            overwrite=overwrite)
    else:
        io.write_png(targets["labels"], label_values, overwrite=overwrite)
    io.write_png(targets["overlay"], overlay, overwrite=overwrite)
    io.write_png(targets["segments"], segments, overwrite=overwrite)
    if options.posteriors:
        io.write_tiff_stack(
            targets["posteriors"], render.posterior_pages(seg.posteriors), overwrite=overwrite
        )
    write_seconds = time.perf_counter() - clock

    gm = seg.model
    timings = {
        "read": read_seconds,
        **seg.timings,
        "render": render_seconds,
        "write": write_seconds,
        "total": time.perf_counter() - start,
    }
    report = {
        "emseg_version": __version__,
        "input": str(path),
        "shape": list(image.pixels.shape),
        "dtype": str(image.pixels.dtype),
        "options": options.to_dict(),
        "features": seg.features.to_dict(),
        "k": k,
        "bic_table": seg.bic_table,
        "pixels_segmented": int((seg.labels >= 0).sum()),
        "classes": [
            {
                "label": i,
                "fraction": float(seg.fractions[i]),
                "mean_value": [float(v) for v in seg.mean_values[i]],
                "display_color": [int(c) for c in colors[i]],
                "overlay_color": [int(c) for c in render.palette(k)[i]],
            }
            for i in range(k)
        ],
        "model": {
            "covariance_type": gm.covariance_type,
            "weights": gm.weights_,
            "means": gm.means_,
            "covariances": gm.covariances_,
        },
        "log_likelihood": float(gm.lower_bound_ if model is None else seg.log_likelihood),
        "log_likelihood_history": gm.history_ if model is None else [],
        "iterations": gm.n_iter_,
        "converged": bool(gm.converged_),
        "timings_seconds": timings,
        "outputs": {name: str(p) for name, p in targets.items()},
    }
    if model is not None:
        # the image was labelled, not fitted: its log-likelihood is its own mean per
        # pixel under the model; iterations and converged are the shared fit's
        report["shared_model"] = {
            "source": model.source,
            "fingerprint": model.fingerprint(),
            "emseg_version": model.emseg_version,
            "training": {
                key: model.training.get(key)
                for key in ("n_images", "n_pixels", "exact", "log_likelihood")
            },
        }
    io.write_json(targets["report"], report, overwrite=overwrite)
    return report


def summarize_file(path, options=None, *, index=0, n_images=1, max_samples=None):
    """Read the image at ``path`` and return its :class:`~emseg.model.PixelSummary`
    for a shared fit (see :func:`emseg.model.summarize_image`)."""
    from . import io
    from .model import DEFAULT_MAX_SAMPLES, summarize_image

    options = options or RunOptions()
    image = io.read_image(path, max_pixels=options.max_pixels)
    mask = image.valid
    if options.mask_path is not None:
        user_mask = io.read_mask(options.mask_path, image.spatial_shape)
        mask = user_mask if mask is None else mask & user_mask
    return summarize_image(
        image.pixels,
        color_space=options.color_space,
        spatial=options.spatial,
        mask=mask,
        channel_axis=-1 if image.is_color else None,
        index=index,
        n_images=n_images,
        max_samples=DEFAULT_MAX_SAMPLES if max_samples is None else max_samples,
        random_state=options.seed,
    )


def fit_options(options):
    """The keywords of :func:`emseg.model.fit_summary` that ``options`` sets."""
    return dict(
        covariance_type=options.covariance,
        random_state=options.seed,
        k_max=options.k_max,
        max_iter=options.max_iter,
        tol=options.tol,
    )
