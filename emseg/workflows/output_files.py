"""How each image output of :func:`emseg.workflows.run.segment_file` is written: NIfTI
with the input's geometry, PNG, ImageJ hyperstacks or OME-TIFF with the input's
calibration and axes, or plain multi-page TIFF (:func:`output_writer`)."""

import numpy as np

from .._shared.errors import EmsegError

__all__ = ["hyperstack_axes", "output_writer", "posteriors_dtype"]


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
