"""One image file in, its outputs out: the work behind ``emseg run`` and ``emseg batch``.

This module only chains the stages (io -> segmentation -> render -> io); it holds no
algorithm of its own and prints nothing. :func:`segment_file` returns the report it
wrote, so a caller can show a summary line or gather a batch table.
"""

import contextlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._shared.errors import EmsegError
from .steps import (file_stem, journal_path, output_writer, posteriors_dtype, report_head,
                    segment_source, slice_pictures, write_all)


@dataclass
class RunOptions:
    """Everything ``emseg run`` lets a user choose about one image."""

    classes: object = 3  # int or "auto"
    k_max: int = 8
    color_space: str = "auto"
    spatial: float = 0.0
    covariance: str = "full"
    seed: int = 0
    max_iter: object = "auto"  # a number, or "auto" (see GaussianMixture)
    tol: object = "auto"  # a number, or "auto" (see GaussianMixture)
    mask_path: str | None = None
    posteriors: bool = False
    posteriors_dtype: str = "uint8"  # uint8 (probability x 255), float16 or float32
    pve: bool = False  # partial-volume fractions (emseg.image.pve)
    objects: bool = False  # write <stem>_objects.csv (connected components, measured)
    min_size: int = 1  # with objects: components of fewer pixels are left out
    max_pixels: int | None = None
    beta: object = 0.0  # Potts prior strength, or "auto"; 0: no MRF
    mrf: str = "meanfield"
    neighbourhood: int | None = None
    channels: bool = False  # several files (or a 4-D NIfTI) as co-registered channels
    bias: bool = False  # estimate a bias field inside EM; write it and the restored image
    bias_fwhm: float | None = None  # its smoothness in mm (None: the library's default)
    html: bool = False  # also write <stem>_report.html (emseg.workflows.html)
    ome: bool = False  # TIFF outputs as OME-TIFF (<stem>_labels.ome.tif...), not ImageJ
    shared_model: bool = False  # a time series: one model fitted over all time points

    def __post_init__(self):
        if self.tol is None:  # the CLI's "not given"
            self.tol = "auto"
        if self.max_iter is None:
            self.max_iter = "auto"

    def to_dict(self):
        return asdict(self)


def output_paths(path, out, *, posteriors=False, stack=False, nifti=False, pve=False,
                 objects=False, bias=False, html=False, ome=False, model=False):
    """The files :func:`segment_file` writes for input ``path`` into folder ``out``.

    Labels are a PNG for an image, a multi-page TIFF for a stack, and with ``nifti``
    (a NIfTI volume or a DICOM series with its geometry: ``image.affine`` is set) NIfTI
    with that geometry, plus the ITK-SNAP label description ``<stem>_labels.txt``;
    posteriors and partial volumes (``pve``) a multi-page float32 TIFF, or with
    ``nifti`` one 4-D file of per-class maps (one volume per class, as FSL FAST's
    ``prob`` and ``pve`` maps); objects a CSV table. With ``bias``, the bias field and
    the restored image (the input divided by it): NIfTI with ``nifti``, else float32
    TIFF (one page per slice and channel). With ``html``, the HTML report, one page.
    With ``ome`` (and not ``nifti``) the TIFF outputs are named ``.ome.tif``. With
    ``model`` (a time series' shared model), the model, JSON, for ``emseg apply``.
    :func:`output_writer` writes each image in its format.
    """
    stem = file_stem(path)
    out = Path(out)
    tif = "ome.tif" if ome and not nifti else "tif"
    labels_ext = "nii.gz" if nifti else (tif if stack else "png")
    targets = {
        "labels": out / f"{stem}_labels.{labels_ext}",
        "overlay": out / f"{stem}_overlay.png",
        "segments": out / f"{stem}_segments.png",
        "report": out / f"{stem}_report.json",
    }
    if nifti:
        targets["label_descriptions"] = out / f"{stem}_labels.txt"
    if posteriors:
        targets["posteriors"] = out / f"{stem}_posteriors.{'nii.gz' if nifti else tif}"
    if pve:
        targets["pve"] = out / f"{stem}_pve.{'nii.gz' if nifti else tif}"
    if objects:
        targets["objects"] = out / f"{stem}_objects.csv"
    if bias:
        for name in ("bias", "restored"):
            targets[name] = out / f"{stem}_{name}.{'nii.gz' if nifti else tif}"
    if html:
        targets["html"] = out / f"{stem}_report.html"
    if model:
        targets["model"] = out / f"{stem}_model.json"
    return targets


def segment_file(path, out, options=None, *, overwrite=False, model=None):
    """Segment the image at ``path`` and write its outputs into the folder ``out``.

    Writes ``<stem>_labels.png`` (a multi-page ``_labels.tif`` for a stack),
    ``_overlay.png``, ``_segments.png``, ``_report.json`` and, when asked,
    ``_posteriors.tif`` and ``_pve.tif`` (NIfTI for a NIfTI input). Every output is
    checked writable before any work starts, and each is written to a temporary file
    then renamed; the report is written last, so
    its presence means the outputs it lists are complete. While the outputs are being
    written, :func:`journal_path` lists them. Returns the report (a dict).
    Raises :class:`~emseg.EmsegError` for bad input.

    With ``model`` (a :class:`~emseg.image.model.SegmentationModel`) the image is labelled
    with that model instead of fitting one; the options' model settings (classes,
    colour space...) are then not used, and the report records the model under
    ``shared_model``.

    A TIFF with time points (T) is segmented one time point after another, by
    :func:`emseg.workflows.timeseries.segment_series` (``options.shared_model``: one
    model fitted over all of them first).
    """
    options = options or RunOptions()
    start = time.perf_counter()
    source = _read(path, out, options, overwrite)
    if source.image.time_points is not None:
        from .timeseries import segment_series

        return segment_series(source, options, overwrite=overwrite, model=model, start=start)
    if options.shared_model:
        raise EmsegError(
            f"{source.path} has no time points (T axis): --shared-model in emseg run fits "
            "one model over the time points of a time series; for several files use "
            "emseg batch --shared-model"
        )
    seg = segment_source(source, options, model)
    written = []  # the files this call has written so far
    try:
        wrote = _write_outputs(source, seg, options, overwrite, written)
        report = _write_report(source, seg, options, model, overwrite, start, wrote, written)
    except BaseException:
        # failed or interrupted (Ctrl-C, SIGTERM) before the report: an incomplete set
        # of outputs would be refused by a rerun; remove what this call wrote
        for name in written:
            with contextlib.suppress(OSError):
                os.unlink(name)
        raise
    with contextlib.suppress(OSError):  # the report now proves the outputs are emseg's
        os.unlink(journal_path(source.path, out))
    return report


@dataclass(frozen=True)
class _Source:
    """What :func:`_read` gives the later steps of :func:`segment_file`."""

    path: object  # the input (the first file, for channels)
    out: object
    image: object  # an emseg.io.images.Image
    mask: object  # None, or True where pixels are segmented
    targets: dict  # output name -> path (see output_paths)
    stamp: dict | None  # the input file's input_stamp, taken before reading it
    seconds: float  # reading, and checking the outputs writable


def _read(path, out, options, overwrite):
    """Step 1 of :func:`segment_file`: read the image and the mask; check that every
    output may be written before any work starts."""
    from .. import io

    clock = time.perf_counter()
    stamp = input_stamp(path[0] if isinstance(path, (list, tuple)) else path)
    if isinstance(path, (list, tuple)):  # co-registered channels, one file each
        image = io.read_channels(path, max_pixels=options.max_pixels)
        path = path[0]
    else:
        image = io.read_image(path, max_pixels=options.max_pixels,
                              allow_channels=options.channels, allow_time=True)
    if options.ome and image.affine is not None:
        raise EmsegError(f"{path} has NIfTI outputs, with its geometry; --ome is for TIFF "
                         "outputs: leave it out")
    targets = output_paths(path, out, posteriors=options.posteriors,
                           stack=image.is_stack or image.time_points is not None,
                           nifti=image.affine is not None, pve=options.pve,
                           objects=options.objects, bias=options.bias, html=options.html,
                           ome=options.ome,
                           model=options.shared_model and image.time_points is not None)
    io.check_writable(list(targets.values()), overwrite)
    mask = image.valid
    if options.mask_path is not None:
        user_mask = io.read_mask(options.mask_path, image.spatial_shape)
        mask = user_mask if mask is None else mask & user_mask
    return _Source(path, out, image, mask, targets, stamp, time.perf_counter() - clock)


def _write_outputs(source, seg, options, overwrite, written):
    """Step 3 of :func:`segment_file`: render the pictures and write every output but
    the report, the journal first. Each file written is appended to ``written``.
    Returns the seconds spent rendering and writing, and each class's display colour
    (a :class:`_Written`)."""
    from .. import io
    from ..image import render

    clock = time.perf_counter()
    overlay, framed, segments, colors = _pictures(source.image, seg)
    label_values = render.label_image(seg.labels, seg.k)
    render_seconds = time.perf_counter() - clock

    objects = None
    if options.objects:
        from ..image.objects import measure_objects

        clock = time.perf_counter()
        image = source.image
        values = image.pixels[..., :3] if image.is_color else image.pixels  # no alpha
        objects = measure_objects(seg.labels, seg.k, values, spacing=image.spacing,
                                  min_size=options.min_size)
        render_seconds += time.perf_counter() - clock

    clock = time.perf_counter()
    writes = _writes(source, seg, options, framed, segments, label_values)
    if objects is not None:
        from ..io.records import write_columns

        writes.append((write_columns, source.targets["objects"], objects, {}))
    # emseg's own hidden bookkeeping: one an interrupted run left is replaced
    journal = journal_path(source.path, source.out)
    io.write_json(journal, {"outputs": [p.name for p in source.targets.values()]},
                  overwrite=True)
    written.append(journal)
    write_all(writes, overwrite, written)
    return _Written(render_seconds, time.perf_counter() - clock, colors, objects,
                    (overlay, segments))


def _writes(source, seg, options, overlay, segments, label_values):
    """``(writer, target, data, keywords)`` for every output but the report."""
    from .. import io
    from ..image import render

    image, targets = source.image, source.targets
    writes = [  # PNG encoding releases the GIL: large pictures are written side by side
        (io.write_png, targets["overlay"], overlay, {}),
        (io.write_png, targets["segments"], segments, {}),
        output_writer(image, targets["labels"], label_values, labels=True, ome=options.ome),
    ]
    if "label_descriptions" in targets:  # coloured as the overlay
        writes.append((io.write_itksnap_labels, targets["label_descriptions"],
                       render.palette(seg.k), {}))
    if options.posteriors:
        pages = render.posterior_pages(seg.posteriors, posteriors_dtype(image, options))
        writes.append(output_writer(image, targets["posteriors"], pages, ome=options.ome,
                                    scale=1 / 255 if pages.dtype == np.uint8 else 1.0))
    if options.pve:
        from ..image.pve import partial_volumes

        pages = render.posterior_pages(partial_volumes(
            image.pixels, seg, channel_axis=-1 if image.has_channel_axis else None))
        writes.append(output_writer(image, targets["pve"], pages, ome=options.ome))
    if options.bias:
        for name in ("bias", "restored"):
            data = np.asarray(getattr(seg, name), dtype=np.float32)
            if image.has_channel_axis:  # channels first: one page (volume) per channel
                data = np.moveaxis(data, -1, 0)
            writes.append(output_writer(image, targets[name], data, ome=options.ome))
    return writes


@dataclass(frozen=True)
class _Written:
    """What :func:`_write_outputs` tells the report."""

    render_seconds: float
    write_seconds: float
    colors: object  # each class's display colour, (k, 3) uint8
    objects: dict | None = None  # the per-object table (measure_objects), if asked
    pictures: tuple = ()  # (overlay without its legend, segments), for the HTML report


def _write_report(source, seg, options, model, overwrite, start, wrote, written):
    """Step 4 of :func:`segment_file`: the HTML page if asked, then the report, last;
    return it."""
    from .. import io

    from .html import overlay_thumbnail, write_image_report

    report = _report(source, seg, options, model, wrote, start)
    report["overlay_thumbnail"] = overlay_thumbnail(wrote.pictures[0])  # for index.html
    if options.html:
        clock = time.perf_counter()
        target = source.targets["html"]
        field = getattr(seg, "bias", None)
        if field is not None and source.image.has_channel_axis:
            field = np.asarray(field).mean(axis=-1)  # one picture: the channels' mean
        write_image_report(target, report, source.image, seg.labels, *wrote.pictures,
                           overwrite=overwrite, bias_field=field)
        written.append(target)
        report["timings_seconds"]["html"] = time.perf_counter() - clock
        report["timings_seconds"]["total"] = time.perf_counter() - start
    io.write_json(source.targets["report"], report, overwrite=overwrite)
    return report


def input_stamp(path):
    """The size and modification time (ns) of the input file at ``path``, recorded in
    its report: a rerun redoes an input whose file has changed since."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _report(source, seg, options, model, wrote, start):
    """The report :func:`segment_file` writes last (``start``: when it started)."""
    from ..image import render
    from ..image.objects import object_counts

    k = seg.k
    gm = seg.model
    image, colors = source.image, wrote.colors
    timings = {
        "read": source.seconds,
        **seg.timings,
        "render": wrote.render_seconds,
        "write": wrote.write_seconds,
        "total": time.perf_counter() - start,
    }
    report = {
        **report_head(source, options),
        "features": seg.features.to_dict(),
        "k": k,
        "bic_table": seg.bic_table,
        "pixels_segmented": int((seg.labels > 0).sum()),
        "label_values": "0 outside the mask, 1..k the classes, darkest first",
        "classes": [
            {
                "label": i + 1,
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
        "spacing": None if image.spacing is None else list(image.spacing),
        "spacing_unit": image.unit,  # None: mm for NIfTI/DICOM, pixels otherwise
        "axes": image.axes,  # a TIFF's axes and what each was read as
        "mrf": seg.mrf,
        "bias": None if seg.bias is None else {
            **seg.bias_fit,
            "range": [float(np.nanmin(seg.bias)), float(np.nanmax(seg.bias))],
            "note": "the field is mean 1 inside the mask and 1 outside; restored = input / field",
        },
        "log_likelihood": float(gm.lower_bound_ if model is None else seg.log_likelihood),
        "log_likelihood_history": gm.history_ if model is None else [],
        "iterations": gm.n_iter_,
        "converged": bool(gm.converged_),
        # each restart's final mean log-likelihood per pixel, and the settings "auto" chose
        "restart_log_likelihoods": gm.restart_lower_bounds_ if model is None else [],
        "fit_settings": {
            "n_init": gm.n_init_, "max_iter": gm.max_iter_, "tol": gm.tol_,
            "reg_covar": gm.reg_covar_,
        } if model is None else None,
        "objects": None if wrote.objects is None else {
            "min_size": options.min_size,
            "per_class": object_counts(wrote.objects, k).tolist(),
        },
        "timings_seconds": timings,
        "outputs": {name: str(p) for name, p in source.targets.items()},
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
    return report


def _pictures(image, seg):
    """Overlay, the overlay with a legend strip on its right (label, colour, mean value,
    fraction: the picture written; the HTML report shows the plain one beside the
    input, with its own table), segments, and each class's display colour. Boundaries
    are as wide as the picture's size asks (render.boundary_width). A volume is shown as
    a montage of nine slices spread through it, each numbered (z, counting from 0)."""
    from ..image import render
    from ..image.legend import with_legend

    k = seg.k
    pixels, labels = image.pixels, seg.labels
    if not image.is_stack:
        if image.channels:
            pixels = pixels[..., 0]  # channels: show the first (labels are ordered by it)
        if pixels.dtype == np.uint8:
            # shown as they are: each class's display colour is its mean pixel value
            # (of the channel shown, for co-registered channels)
            means = seg.mean_values[:, :1] if image.channels else seg.mean_values
            if means.shape[1] == 1:
                means = np.repeat(means, 3, axis=1)
            colors = np.clip(np.rint(means), 0, 255).astype(np.uint8)
        else:
            colors = render.class_colors(render.to_display(pixels), labels, k)
        overlay = render.overlay(pixels, labels, k,
                                 boundary_width=render.boundary_width(labels.shape))
        framed = with_legend(overlay, render.palette(k), seg.mean_values, seg.fractions)
        return overlay, framed, render.segments(labels, colors), colors
    slices = render.representative_slices(labels.shape[0])
    if image.channels:
        pixels = pixels[..., 0]
    overlays, segments, colors = slice_pictures(pixels[slices], labels[slices], k)
    names = [f"z={z}" for z in slices]
    overlay = render.montage(overlays, captions=names)
    framed = with_legend(overlay, render.palette(k), seg.mean_values, seg.fractions)
    return overlay, framed, render.montage(segments, captions=names), colors


def summarize_file(path, options=None, *, index=0, n_images=1, max_samples=None):
    """Read the image at ``path`` and return its :class:`~emseg.image.model.PixelSummary`
    for a shared fit (see :func:`emseg.image.model.summarize_image`)."""
    from .. import io
    from ..image.model import DEFAULT_MAX_SAMPLES, summarize_image

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
