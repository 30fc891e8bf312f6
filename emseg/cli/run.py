"""``emseg run``: segment images one after another in this process."""

import sys
from pathlib import Path

import click

from .errors import Failed, sigterm_as_interrupt, translated
from . import options as opt

STOPPED = ("the outputs of the image being segmented were removed; those of the images "
           "before it are complete")


@click.command("run")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@opt.model_options
@opt.mrf_options
@opt.bias_options
@click.option(
    "--channels", is_flag=True,
    help="The IMAGES (e.g. t1.nii.gz t2.nii.gz), or the volumes of one 4-D NIfTI file, "
    "are co-registered channels of one input.",
)
@click.option("--mask", "mask_path", type=click.Path(), help="Mask image: non-zero = inside.")
@opt.posteriors
@opt.pve
@opt.objects
@opt.html
@opt.ome
@click.option(
    "--shared-model", is_flag=True,
    help="For a time series (a TIFF with a T axis): fit one model over all time points, "
    "then label each with it, so a label means the same at every time; the model is "
    "written as <stem>_model.json (for emseg apply).",
)
@opt.max_pixels
@opt.output_options
@click.pass_obj
def run(flags, images, channels, mask_path, posteriors, posteriors_dtype, pve, objects, min_size, html,
        ome, shared_model, max_pixels, output_dir, overwrite, **model):
    """Segment each IMAGE and write labels, overlay, segments and a report.

    For photo.png the outputs are photo_labels.png (the class of each pixel, 1 =
    darkest; 0 outside the mask), photo_overlay.png, photo_segments.png and
    photo_report.json (with --html also photo_report.html), in OUTPUT_DIR. A TIFF
    stack gets photo_labels.tif; a NIfTI volume t1.nii.gz gets t1_labels.nii.gz (and
    with --posteriors t1_posteriors.nii.gz, with --pve t1_pve.nii.gz: one volume per
    class) with its affine, and t1_labels.txt (ITK-SNAP label colours); other inputs
    get float32 TIFF stacks (photo_posteriors.tif, photo_pve.tif). A folder of DICOM
    slices is read as one volume and gets the same NIfTI outputs, in the series'
    patient space. With --bias also t1_bias.nii.gz and t1_restored.nii.gz
    (photo_bias.tif and photo_restored.tif for other inputs: float32, one page per
    slice and channel). The TIFF outputs of a TIFF input are ImageJ hyperstacks with
    its calibration (posteriors with the class as C), or OME-TIFF with --ome. A TIFF
    with time points (T) is segmented one time point after another, and its outputs
    keep T (labels TZYX).
    """
    seen = {}
    failed = 0
    with translated(flags, stopped=STOPPED), sigterm_as_interrupt():
        from ..workflows.run import RunOptions, file_stem

        out = Path(output_dir)
        with translated(flags, cannot=f"create output folder {out}"):
            out.mkdir(parents=True, exist_ok=True)
        options = RunOptions(mask_path=mask_path, posteriors=posteriors,
                             posteriors_dtype=posteriors_dtype, pve=pve,
                             objects=objects, min_size=min_size, max_pixels=max_pixels,
                             channels=channels, html=html, ome=ome,
                             shared_model=shared_model, **model)
        inputs = [tuple(images)] if channels and len(images) > 1 else images
        for path in inputs:
            stem = file_stem(path[0] if isinstance(path, tuple) else path)
            if stem in seen:
                Failed(f"{path}: its outputs would have the same names as {seen[stem]}'s; "
                       "run it separately with another -o").show()
                failed += 1
                continue
            seen[stem] = path
            failed += not _run_one(flags, path, out, options, overwrite)
    if failed:
        sys.exit(1)


def _run_one(flags, path, out, options, overwrite):
    """Segment one input and print its line; False if it failed (its error printed),
    so that the others go on."""
    try:
        with translated(flags, path=path, stopped=None, bugs=True, warn=True,
                        out_of_memory="try a smaller image or fewer classes"):
            from ..workflows.run import segment_file

            report = segment_file(path, out, options, overwrite=overwrite)
            _say_report(flags, path, report)
    except Failed:
        return False
    return True


def _say_report(flags, path, report):
    fractions = " ".join(f"{100 * c['fraction']:.1f}%" for c in report["classes"])
    seconds = report["timings_seconds"]["total"]
    name = " + ".join(map(str, path)) if isinstance(path, tuple) else path
    mrf = report.get("mrf")
    smoothing = (f", MRF beta {mrf['beta']:.3g} ({mrf['method']}, {mrf['iterations']} "
                 "iterations)") if mrf else ""
    flags.say(
        f"{name}: K={report['k']}, {report['iterations']} iterations{smoothing}, "
        f"{seconds:.2f} s, classes {fractions}"
    )
    if flags.verbose and report["bic_table"]:
        for row in report["bic_table"]:
            flags.say(f"  K={row['k']}: BIC {row['bic']:.1f}, separation "
                      f"{row['min_separation']:.2f}")
