"""A time series (a TIFF with a T axis) in, its outputs out: what ``emseg run`` does with
TZYX, TYX or TCZYX hyperstacks and OME-TIFF.

Each time point is segmented as an image of its own (:func:`~emseg.workflows.steps.
segment_source`), one after another, so the float posteriors of one time point at a
time are held: the outputs are gathered in their stored dtype (labels uint8, posteriors
uint8 x 255 by default): measured with tracemalloc on 1-megavoxel uint16 frames, K=3,
``posteriors``, the peak grew 6.3 MB per time point (2 + 1 + 3 MB: the input, labels,
uint8 posteriors), not the 25 MB float64 posteriors would take. With
``options.shared_model`` one
:class:`~emseg.image.model.SegmentationModel` is first fitted over all time points by
:func:`emseg.image.model.fit_model` (the pixel summaries ``emseg batch --shared-model``
merges, here of the frames), then every time point is labelled with it, so a label
means the same at every time; without, each time point is fitted alone (as segmenting
each frame alone would) and label ``i`` is the ``i``-th darkest class of its time point.

Outputs keep T: labels ``TZYX`` (``TYX``), posteriors and partial volumes ``TZCYX``
(``TCYX``) with the class as C, bias and restored images likewise, as ImageJ
hyperstacks or OME-TIFF (:func:`~emseg.workflows.steps.output_writer`) with the
calibration and frame interval of the input. The overlay and segments pictures are a
montage of up to nine time points (the middle slice of a volume), numbered; the object
table has a ``time`` column. The report has the classes over the whole series and one
entry per time point (``time_points``).
"""

import contextlib
import dataclasses
import os
import time

import numpy as np

from .._shared.errors import EmsegError

__all__ = ["segment_series"]


def segment_series(source, options, *, overwrite=False, model=None, start=None):
    """Segment every time point of ``source.image`` (read by ``segment_file``'s first
    step, with ``time_points`` set) and write the outputs named in ``source.targets``;
    the report last, returned (a dict). ``model``: a shared model given from outside
    (``emseg batch --shared-model``), used for every time point."""
    from .. import io
    from .steps import journal_path

    start = time.perf_counter() if start is None else start
    image = source.image
    _check_series(source, options, model)
    fit_seconds = 0.0
    shared = model
    if options.shared_model and model is None:
        clock = time.perf_counter()
        shared = _fit_series(image, source.mask, options)
        fit_seconds = time.perf_counter() - clock
    written = []
    try:
        journal = journal_path(source.path, source.out)
        io.write_json(journal, {"outputs": [p.name for p in source.targets.values()]},
                      overwrite=True)
        written.append(journal)
        gathered = _segment_frames(source, options, shared)
        report = _write(source, options, gathered, shared, model, overwrite, written,
                        start, fit_seconds)
    except BaseException:
        for name in written:  # as segment_file: no incomplete set of outputs is left
            with contextlib.suppress(OSError):
                os.unlink(name)
        raise
    with contextlib.suppress(OSError):
        os.unlink(journal_path(source.path, source.out))
    return report


def _check_series(source, options, model):
    """Refuse, before any work, what a time series cannot be given."""
    where = f"{source.path} is a time series ({source.image.time_points} time points)"
    if options.html:
        raise EmsegError(f"{where}; an HTML report of a time series is not made yet: "
                         "leave out --html")
    if options.shared_model or model is not None:
        if options.beta != 0:
            raise EmsegError(f"{where}; --beta cannot be combined with a shared model yet "
                             "(as in emseg batch): leave out one of them")
        if options.bias:
            raise EmsegError(f"{where}; --bias cannot be combined with a shared model yet: "
                             "each time point's field would change the pixels the model is "
                             "fitted to")
    if options.shared_model and source.image.channels:
        raise EmsegError(f"{where} with channels (C); a shared model is for grey or colour "
                         "images: leave out --shared-model, or save one channel")


def _frame_mask(mask, t, spatial_ndim):
    """Time point ``t``'s mask: ``mask`` is None, one spatial mask for every time point,
    or one per time point (the alpha of a time series)."""
    if mask is None:
        return None
    return mask[t] if mask.ndim > spatial_ndim else mask


def _fit_series(image, mask, options):
    """One model over all time points: the pixel summaries of the frames merged and
    fitted, as ``emseg batch --shared-model`` does with files."""
    from ..image.model import DEFAULT_MAX_SAMPLES, fit_model

    from .steps import fit_options

    ndim = len(image.spatial_shape)
    frames = [image.frame(t) for t in range(image.time_points)]
    masks = []
    for t, frame in enumerate(frames):
        m = _frame_mask(mask, t, ndim)
        masks.append(m if frame.valid is None or m is not None else frame.valid)
    return fit_model([f.pixels for f in frames], options.classes,
                     color_space=options.color_space, spatial=options.spatial, masks=masks,
                     channel_axis=-1 if image.is_color else None,
                     max_samples=DEFAULT_MAX_SAMPLES, **fit_options(options))


@dataclasses.dataclass
class _Gathered:
    """What segmenting the time points gave, in the outputs' stored dtypes."""

    labels: np.ndarray  # (T, ...spatial)
    k: int  # the largest K of any time point
    frames: list  # one dict per time point, for the report
    counts: np.ndarray  # (k,) pixels of each label over the series
    mean_sums: np.ndarray  # (k, channels) sum of count x mean value
    posteriors: np.ndarray | None = None  # (K, T, ...spatial)
    pve: np.ndarray | None = None
    bias: np.ndarray | None = None  # (T, ...) or (C, T, ...)
    restored: np.ndarray | None = None
    objects: dict | None = None
    pictures: dict = dataclasses.field(default_factory=dict)  # t -> (overlay, segments)
    seconds: float = 0.0
    features: dict | None = None  # the feature settings (those of every time point)


def _segment_frames(source, options, model):
    """Segment each time point; keep only its outputs, in their stored dtypes."""
    from ..image import render

    from .steps import posteriors_dtype, segment_source

    clock = time.perf_counter()
    image = source.image
    n = image.time_points
    spatial = image.spatial_shape
    # every time point up to nine, else nine spread from the first to the last
    shown = set(np.linspace(0, n - 1, min(n, 9)).round().astype(int).tolist())
    gathered = None
    for t in range(n):
        frame = image.frame(t)
        mask = _frame_mask(source.mask, t, len(spatial))
        if frame.valid is not None:
            mask = frame.valid if mask is None else mask & frame.valid
        seg = segment_source(dataclasses.replace(source, image=frame, mask=mask), options,
                             model)
        labels = render.label_image(seg.labels, seg.k)
        if gathered is None:
            gathered = _Gathered(np.zeros((n, *spatial), labels.dtype), seg.k, [],
                                 np.zeros(seg.k), np.zeros((seg.k, seg.mean_values.shape[1])))
        _grow(gathered, seg.k, labels.dtype)
        gathered.labels[t] = labels
        counts = np.bincount(labels.ravel(), minlength=seg.k + 1)[1:seg.k + 1]
        gathered.counts[:seg.k] += counts
        gathered.mean_sums[:seg.k] += counts[:, None] * np.nan_to_num(seg.mean_values)
        maps = {}
        if options.posteriors:
            maps["posteriors"] = render.posterior_pages(seg.posteriors,
                                                        posteriors_dtype(image, options))
        if options.pve:
            from ..image.pve import partial_volumes

            maps["pve"] = render.posterior_pages(partial_volumes(
                frame.pixels, seg, channel_axis=-1 if frame.has_channel_axis else None))
        for name, pages in maps.items():
            _store(gathered, name, t, n, pages, source.path, seg.k)
        if options.bias:
            for name in ("bias", "restored"):
                data = np.asarray(getattr(seg, name), dtype=np.float32)
                if frame.has_channel_axis:
                    data = np.moveaxis(data, -1, 0)
                _store(gathered, name, t, n, data, source.path, None)
        if options.objects:
            _add_objects(gathered, t, seg, frame, options)
        if t in shown:
            gathered.pictures[t] = _frame_pictures(frame, seg)
        gathered.frames.append(_frame_entry(t, seg, model))
        gathered.features = gathered.features or seg.features.to_dict()
        del seg, maps  # one time point's float posteriors at a time
    gathered.seconds = time.perf_counter() - clock
    return gathered


def _grow(gathered, k, dtype):
    """Room for ``k`` classes (``-k auto`` may choose more at a later time point)."""
    if k > gathered.k:
        extra = k - gathered.k
        gathered.counts = np.concatenate([gathered.counts, np.zeros(extra)])
        gathered.mean_sums = np.vstack([gathered.mean_sums,
                                        np.zeros((extra, gathered.mean_sums.shape[1]))])
        gathered.k = k
    if np.dtype(dtype).itemsize > gathered.labels.dtype.itemsize:
        gathered.labels = gathered.labels.astype(dtype)


def _store(gathered, name, t, n, data, path, k):
    """Put time point ``t``'s ``data`` (``(K or C, ...)`` or one map) into the series
    array ``name``: the leading axis stays first, T comes after it."""
    current = getattr(gathered, name)
    if current is None:
        shape = (data.shape[0], n, *data.shape[1:]) if data.ndim > gathered.labels.ndim - 1 \
            else (n, *data.shape)
        current = np.zeros(shape, data.dtype)
        setattr(gathered, name, current)
    per_class = current.ndim > gathered.labels.ndim
    if per_class and current.shape[0] != data.shape[0]:
        raise EmsegError(
            f"{path}: time point {t} has {data.shape[0]} classes but time point 0 has "
            f"{current.shape[0]}, so their {name} maps cannot be one hyperstack; fix the "
            "number of classes with -k, or fit one model over all with --shared-model"
        )
    if per_class:
        current[:, t] = data
    else:
        current[t] = data


def _add_objects(gathered, t, seg, frame, options):
    from ..image.objects import measure_objects

    values = frame.pixels[..., :3] if frame.is_color else frame.pixels
    table = measure_objects(seg.labels, seg.k, values, spacing=frame.spacing,
                            min_size=options.min_size)
    rows = len(next(iter(table.values()))) if table else 0
    if gathered.objects is None:
        gathered.objects = {"time": [], **{name: [] for name in table}}
    gathered.objects["time"].extend([t] * rows)
    for name, column in table.items():
        gathered.objects[name].extend(list(column))


def _frame_pictures(frame, seg):
    """The overlay and segments of one time point: the image itself, or the middle
    slice of a volume."""
    from .steps import slice_pictures

    pixels, labels = frame.pixels, seg.labels
    if frame.is_stack:
        middle = labels.shape[0] // 2
        pixels, labels = pixels[middle], labels[middle]
    if frame.channels:
        pixels = pixels[..., 0]  # the first channel, as the overlay of one image
    overlays, segments, _ = slice_pictures([pixels], [labels], seg.k)
    return overlays[0], segments[0]


def _frame_entry(t, seg, model):
    """One time point in the report."""
    gm = seg.model
    entry = {
        "t": t,
        "k": int(seg.k),
        "fractions": [float(f) for f in seg.fractions],
        "mean_values": [[float(v) for v in row] for row in seg.mean_values],
        "pixels_segmented": int((seg.labels > 0).sum()),
        "log_likelihood": float(gm.lower_bound_ if model is None else seg.log_likelihood),
        "iterations": int(gm.n_iter_),
        "converged": bool(gm.converged_),
        "mrf": seg.mrf,
        "bic_table": seg.bic_table,  # with -k auto: the K this time point chose
    }
    if model is None:  # fitted here: its own mixture
        entry["model"] = {"covariance_type": gm.covariance_type, "weights": gm.weights_,
                          "means": gm.means_, "covariances": gm.covariances_}
    if seg.bias is not None:
        entry["bias"] = {**seg.bias_fit, "range": [float(np.nanmin(seg.bias)),
                                                   float(np.nanmax(seg.bias))]}
    return entry


def _write(source, options, gathered, shared, model, overwrite, written, start,
           fit_seconds):
    """Render the pictures, write every output, then the report; return it."""
    from .. import io
    from ..image import render
    from ..image.legend import with_legend

    from .html import overlay_thumbnail
    from .steps import output_writer, write_all

    image, targets, k = source.image, source.targets, gathered.k
    clock = time.perf_counter()
    fractions = gathered.counts / max(gathered.counts.sum(), 1)
    means = gathered.mean_sums / np.maximum(gathered.counts, 1)[:, None]
    times = sorted(gathered.pictures)
    captions = [f"t={t}" + (f" z={image.spatial_shape[0] // 2}" if image.is_stack else "")
                for t in times]
    overlay = render.montage([gathered.pictures[t][0] for t in times], captions=captions)
    segments = render.montage([gathered.pictures[t][1] for t in times], captions=captions)
    framed = with_legend(overlay, render.palette(k), means, fractions)
    render_seconds = time.perf_counter() - clock

    clock = time.perf_counter()
    writes = [(io.write_png, targets["overlay"], framed, {}),
              (io.write_png, targets["segments"], segments, {}),
              output_writer(image, targets["labels"], gathered.labels, labels=True,
                            ome=options.ome)]
    for name in ("posteriors", "pve", "bias", "restored"):
        data = getattr(gathered, name)
        if data is not None:
            writes.append(output_writer(image, targets[name], data, ome=options.ome))
    if gathered.objects is not None:
        from ..io.records import write_columns

        writes.append((write_columns, targets["objects"], gathered.objects, {}))
    if "model" in targets and model is None:  # fitted here: kept for emseg apply
        writes.append((io.write_json, targets["model"], shared.to_dict(), {}))
    write_all(writes, overwrite, written)
    write_seconds = time.perf_counter() - clock

    report = _report(source, options, gathered, shared, model, fractions, means)
    report["overlay_thumbnail"] = overlay_thumbnail(overlay)
    report["timings_seconds"] = {
        "read": source.seconds, "fit": fit_seconds, "segment": gathered.seconds,
        "render": render_seconds, "write": write_seconds,
        "total": time.perf_counter() - start,
    }
    io.write_json(targets["report"], report, overwrite=overwrite)
    return report


def _report(source, options, gathered, shared, model, fractions, means):
    from ..image import render
    from ..image.objects import object_counts

    from .steps import report_head

    image, k, frames = source.image, gathered.k, gathered.frames
    pixels = np.array([f["pixels_segmented"] for f in frames], dtype=np.float64)
    log_likelihood = float(np.average([f["log_likelihood"] for f in frames],
                                      weights=np.maximum(pixels, 1)))
    palette = render.palette(k)
    report = {
        **report_head(source, options),
        "features": gathered.features,
        "k": k,
        "bic_table": None,  # per time point, in time_points
        "pixels_segmented": int(pixels.sum()),
        "label_values": "0 outside the mask, 1..k the classes, darkest first"
        + (" (the same classes at every time point: one model)" if shared is not None
           else " at each time point (each fitted alone)"),
        "classes": [
            {
                "label": i + 1,
                "fraction": float(fractions[i]),  # over all time points
                "mean_value": [float(v) for v in means[i]],
                "overlay_color": [int(c) for c in palette[i]],
            }
            for i in range(k)
        ],
        "time_points": frames,
        "frame_interval": None if image.interval is None else {
            "value": image.interval[0], "unit": image.interval[1]},
        "spacing": None if image.spacing is None else list(image.spacing),
        "spacing_unit": image.unit,
        "axes": image.axes,
        "mrf": None,  # per time point, in time_points
        "log_likelihood": log_likelihood,  # mean per pixel over the time points
        "iterations": max(f["iterations"] for f in frames),
        "converged": all(f["converged"] for f in frames),
        "objects": None if gathered.objects is None else {
            "min_size": options.min_size,
            "per_class": object_counts(gathered.objects, k).tolist(),
        },
        "outputs": {name: str(p) for name, p in source.targets.items()},
    }
    if shared is not None:
        gm = shared.mixture
        report["model"] = {"covariance_type": gm.covariance_type, "weights": gm.weights_,
                           "means": gm.means_, "covariances": gm.covariances_}
        report["shared_model"] = {
            "source": shared.source or f"fitted on the {len(frames)} time points",
            "fingerprint": shared.fingerprint(),
            "emseg_version": shared.emseg_version,
            "training": {key: shared.training.get(key) for key in
                         ("n_images", "n_pixels", "exact", "log_likelihood", "iterations",
                          "converged")},
        }
    return report
