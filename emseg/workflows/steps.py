"""The steps :func:`emseg.workflows.run.segment_file` chains that a time series
(:mod:`emseg.workflows.timeseries`) shares: segmenting one image as the options say
(:func:`segment_source`, :func:`fit_options`), how each image output is written (NIfTI
with the input's geometry, PNG, ImageJ hyperstacks or OME-TIFF with the input's
calibration and axes, or plain multi-page TIFF: :func:`output_writer`), writing them
(:func:`write_all`), and their names (:func:`file_stem`, :func:`journal_path`)."""

from pathlib import Path

import numpy as np

from .._shared.errors import EmsegError

__all__ = ["file_stem", "fit_options", "hyperstack_axes", "journal_path", "output_writer",
           "posteriors_dtype", "report_head", "segment_source", "slice_pictures", "write_all"]


def file_stem(path):
    """``photo.png`` -> ``photo``; ``t1.nii.gz`` -> ``t1``; a DICOM folder -> its name."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem if not Path(path).is_dir() else name


def journal_path(path, out):
    """The hidden file :func:`~emseg.workflows.run.segment_file` writes in ``out`` before the first output of
    input ``path`` and removes after its report: the names of the outputs it is writing.

    While it exists (an interrupted run), it and the report are the proof that files
    with those names are emseg's own, so a batch rerun may replace them and nothing else.
    """
    return Path(out) / f".{file_stem(path)}_outputs.json"




def posteriors_dtype(image, options):
    """The dtype posteriors are stored in: the option's, but float32 for float16 in
    NIfTI, ImageJ hyperstacks and OME-TIFF, which have no 16-bit float type."""
    if options.posteriors_dtype == "float16" and (
        image.affine is not None or image.axes is not None or options.ome
    ):
        return "float32"
    return options.posteriors_dtype


def output_writer(image, target, data, *, labels=False, scale=1.0, ome=False):
    """The write of ``data``, an output of ``image`` with its spatial shape, to
    ``target``, as a :func:`~emseg.workflows.run.write_all` job ``(writer, target, data, keywords)``:
    ``writer(target, data, overwrite=..., **keywords)``. ``data`` is integer labels
    (``labels=True``) or float maps (``(K, ...)``, one per class or channel, or a single
    map).

    An input with geometry (``image.affine``: a NIfTI volume, a DICOM series) gets NIfTI
    with that geometry (and the NIfTI label intent on labels). Labels of a 2-D image
    are a PNG. Outputs of a TIFF input (``image.axes`` is set), or any with ``ome``,
    are ImageJ hyperstacks (OME-TIFF with ``ome``) with the input's calibration and
    axes (:func:`hyperstack_axes`): labels ``[T]ZYX`` (``TYX`` for a 2-D time series),
    maps with the class (or channel) as C, ``[T][Z]CYX``; maps deflate-compressed.
    Other maps are a multi-page TIFF of their dtype, deflate-compressed. ``scale``:
    what a stored value is worth (1/255 for probabilities as uint8), kept in a NIfTI
    header's slope. The names to write them to are :func:`~emseg.workflows.run.output_paths`'s with
    ``nifti=image.affine is not None``.
    """
    from .. import io

    if image.affine is not None:
        keywords = {"like": image.nifti, "affine": image.affine, "labels": labels,
                    "scale": scale}
        return io.write_nifti, target, data, keywords
    if labels and not image.is_stack and image.time_points is None:
        return io.write_png, target, data, {}
    if image.axes is not None or ome:
        return io.write_hyperstack, target, data, {
            "axes": hyperstack_axes(image, data), "spacing": image.spacing,
            "unit": image.unit, "interval": image.interval, "ome": ome,
            "compress": not labels}
    if labels:  # an ImageJ stack with the input's calibration: Fiji opens it as one
        return io.write_tiff_stack, target, data, {
            "dtype": data.dtype, "imagej": True, "spacing": image.spacing,
            "unit": image.unit}
    return io.write_tiff_stack, target, data, {"dtype": data.dtype, "compress": True}


def hyperstack_axes(image, data):
    """The axes of ``data``, an output of ``image``: its spatial axes (``ZYX`` or
    ``YX``), after ``T`` for a time series, after ``C`` (the class or channel) when
    ``data`` has one more axis in front."""
    axes = ("T" if image.time_points is not None else "") + ("ZYX" if image.is_stack else "YX")
    extra = np.ndim(data) - len(axes)
    if extra not in (0, 1):
        raise EmsegError(f"an output of shape {np.shape(data)} does not fit axes {axes}")
    return "C" * extra + axes


def segment_source(source, options, model):
    """Step 2 of :func:`~emseg.workflows.run.segment_file`: fit and label ``source.image`` inside
    ``source.mask`` (or label it with ``model``) as ``options`` say; a
    :class:`~emseg.image.segmentation.Segmentation`."""
    from ..image.segmentation import segment

    image = source.image
    channel_axis = -1 if image.has_channel_axis else None
    if model is not None:
        return segment(image.pixels, model=model, mask=source.mask, channel_axis=channel_axis)
    return segment(
        image.pixels,
        options.classes,
        color_space=options.color_space,
        spatial=options.spatial,
        mask=source.mask,
        covariance_type=options.covariance,
        random_state=options.seed,
        k_max=options.k_max,
        max_iter=options.max_iter,
        tol=options.tol,
        channel_axis=channel_axis,
        multichannel=image.channels,
        beta=options.beta,
        mrf=options.mrf,
        neighbourhood=options.neighbourhood,
        spacing=image.spacing,
        bias=options.bias,
        bias_fwhm=options.bias_fwhm,
    )


def report_head(source, options):
    """The first entries of every report.json: emseg's version, the input (path, its
    size and time stamp, shape, dtype) and the options."""
    from .._shared.version import __version__

    image = source.image
    return {
        "emseg_version": __version__,
        "input": str(source.path),
        "input_file": source.stamp,
        "shape": list(image.pixels.shape),
        "dtype": str(image.pixels.dtype),
        "options": options.to_dict(),
    }


def slice_pictures(pixels, labels, k):
    """``(overlays, segments, colors)`` of 2-D slices: ``pixels`` and ``labels`` are
    sequences of slices (grey or RGB, and their labels, 0 outside the mask). Each slice
    is shown on display values stretched over its labelled pixels, with boundaries as
    wide as a slice's size asks; ``colors`` (each class's mean display colour over all
    the slices) fill the segments."""
    from ..image import render

    valid = [lab > 0 for lab in labels]
    display = [render.to_display(p, valid=v if v.any() else None)
               for p, v in zip(pixels, valid)]
    colors = render.class_colors(np.stack(display), np.stack(labels), k)
    width = render.boundary_width(labels[0].shape)
    overlays = [render.overlay(d, lab, k, boundary_width=width)
                for d, lab in zip(display, labels)]
    return overlays, [render.segments(lab, colors) for lab in labels], colors


# From this many bytes of pictures on, writing them two at a time pays: measured with
# emseg's allocator settings (emseg.workflows.processes), a 12-megapixel photo's three PNGs (84 MB)
# took 119-130 ms in two threads against 153 ms in one; a 1-megapixel grey image's
# (7 MB) no less time in one thread than in two, which also start and stop per image.
_PARALLEL_WRITE_BYTES = 16 << 20


def write_all(writes, overwrite, written):
    """Run the writes, two at a time when the pictures are large and this process may
    use two or more threads (the compiled kernels' share of the cores: a batch worker
    on a 2-core machine gets one, and writes one file after another); the first error,
    if any, is raised after all finish. Each file written is appended to ``written``
    as it is, so the caller can remove them if it stops before the report; when
    interrupted, the writes already running are waited for first."""
    from concurrent.futures import ThreadPoolExecutor

    from .._shared.compute import num_threads

    def write(fn, target, data, kw):
        fn(target, data, overwrite=overwrite, **kw)
        written.append(target)

    size = sum(np.asarray(data).nbytes for _, _, data, _ in writes)
    if size < _PARALLEL_WRITE_BYTES or num_threads() < 2:
        errors = []
        for fn, target, data, kw in writes:
            try:
                write(fn, target, data, kw)
            except Exception as exc:  # every write is attempted, as in the threads
                errors.append(exc)
        if errors:
            raise errors[0]
        return
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        futures = [pool.submit(write, *job) for job in writes]
        for f in futures:
            f.exception()  # wait for all (an interrupt lands here)
    finally:
        # then no thread writes a file after the caller has removed the others
        pool.shutdown(wait=True, cancel_futures=True)
    for f in futures:
        f.result()


def fit_options(options):
    """The keywords of :func:`emseg.image.model.fit_summary` that ``options`` sets."""
    return dict(
        covariance_type=options.covariance,
        random_state=options.seed,
        k_max=options.k_max,
        max_iter=options.max_iter,
        tol=options.tol,
    )
