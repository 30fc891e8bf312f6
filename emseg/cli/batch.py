"""``emseg batch``, ``emseg fit`` and ``emseg apply``: many images, in worker processes
or on a Dask cluster, with a progress bar."""

import sys
from pathlib import Path

import click

from .errors import Failed, sigterm_as_interrupt, translated
from . import options as opt
from .progress import ProgressView


def _finish_batch(flags, result):
    """Say how the batch went; exit 1 if any input failed."""
    ok, skipped, failed = (result.count(s) for s in ("ok", "skipped", "failed"))
    parts = [f"{ok} segmented"]
    if skipped:
        parts.append(f"{skipped} skipped (outputs already complete; --overwrite redoes them)")
    parts.append(f"{failed} failed")
    flags.say(f"{', '.join(parts)}; summary in {result.summary_path}")
    if result.model_path is not None:
        flags.say(f"shared model: {result.model_path}")
    if failed:
        sys.exit(1)


@click.command("batch")
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@opt.model_options
@opt.mrf_options
@opt.bias_options
@opt.batch_options
@click.option(
    "--shared-model", is_flag=True,
    help="Fit one model on all the images (saved as OUTPUT_DIR/model.json), then label "
    "each with it, so a label means the same in every image.",
)
@opt.max_samples
@opt.posteriors
@opt.objects
@opt.html
@opt.ome
@opt.output_options
@click.pass_obj
def batch(flags, folders, recursive, pattern, jobs, scheduler, max_pixels, shared_model,
          max_samples, posteriors, posteriors_dtype, objects, min_size, html, ome, output_dir,
          overwrite, **model):
    """Segment every image in FOLDERS (or image files) into OUTPUT_DIR.

    Outputs mirror the sub-folders of each input folder; OUTPUT_DIR/summary.csv lists
    every input with its status (ok, failed, skipped), error, K, iterations,
    log-likelihood and seconds; OUTPUT_DIR/index.html shows them as a page (with
    --html, each image also gets its own report page, linked from it). A bad image never stops the batch; the exit code is 1
    if any failed. A rerun skips the images whose outputs are complete.
    """
    if shared_model and model["beta"] != 0:
        raise click.UsageError("--beta cannot be combined with --shared-model yet")
    if shared_model and model["bias"]:
        raise click.UsageError("--bias cannot be combined with --shared-model yet: each "
                               "image's field would change the pixels the model is fitted to")
    with sigterm_as_interrupt(), translated(flags):
        result = _batch(
            folders, Path(output_dir),
            dict(posteriors=posteriors, posteriors_dtype=posteriors_dtype, objects=objects,
                 min_size=min_size, html=html, ome=ome, max_pixels=max_pixels, **model),
            ProgressView(flags),
            recursive=recursive, pattern=pattern, jobs=jobs, shared_model=shared_model,
            overwrite=overwrite, scheduler=scheduler, max_samples=max_samples,
        )
    _finish_batch(flags, result)


def _batch(folders, out, settings, view, **batch):
    """``emseg batch``'s work, all of it under Ctrl-C handling: start the fork server
    (its imports overlap this process's own), then run the batch (which creates
    ``out`` once it has found the inputs)."""
    from ..workflows.processes import cores, start_worker_server

    if batch["scheduler"] is None and (batch["jobs"] or cores()) > 1:
        start_worker_server()
    from ..workflows.batch import run_batch
    from ..workflows.run import RunOptions

    try:
        return run_batch(folders, out, RunOptions(**settings), progress=view, **batch)
    finally:
        view.close()


@click.command("fit")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@opt.model_options
@click.option(
    "-m", "--model", "model_path", required=True, type=click.Path(dir_okay=False),
    help="Where to write the model (JSON).",
)
@opt.batch_options
@opt.max_samples
@opt.overwrite("Replace an existing model file.")
@opt.quiet
@opt.debug
@click.pass_obj
def fit(flags, inputs, model_path, recursive, pattern, jobs, scheduler, max_pixels,
        max_samples, overwrite, **model):
    """Fit one model on the pixels of all INPUTS (images or folders) and save it.

    8/16-bit images are fitted exactly (their histograms merged); float images through
    a seeded random sample (--max-samples). Label images with it by 'emseg apply'. If
    any input cannot be used, no model is written and the exit code is 1.
    """
    from ..io import check_writable
    from ..workflows.batch import find_inputs, fit_files
    from ..workflows.run import RunOptions

    options = RunOptions(max_pixels=max_pixels, **model)
    with translated(flags):
        paths = [item.path for item in find_inputs(inputs, ".", recursive=recursive,
                                                   pattern=pattern)]
        check_writable([model_path], overwrite)
    view = ProgressView(flags)
    try:
        with translated(flags):
            fitted, rows = fit_files(paths, options, jobs=jobs, scheduler=scheduler,
                                     max_samples=max_samples, progress=view)
    finally:
        view.close()
    failed = [row for row in rows if row.status == "failed"]
    if failed or fitted is None:
        raise Failed(f"model not written: {len(failed)} of {len(rows)} input(s) could not "
                     "be used")
    with translated(flags):
        fitted.save(model_path, overwrite=overwrite)
    t = fitted.training
    how = "histograms merged exactly" if t["exact"] else f"{t['sampled_images']} image(s) sampled"
    flags.say(
        f"{model_path}: K={fitted.k} from {t['n_images']} image(s), {t['n_pixels']:,} pixels "
        f"({how}), {t['iterations']} iterations, log-likelihood {t['log_likelihood']:.4f}"
    )


@click.command("apply")
@opt.model_file
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@opt.batch_options
@opt.posteriors
@opt.objects
@opt.html
@opt.output_options
@click.pass_obj
def apply(flags, model_file, inputs, recursive, pattern, jobs, scheduler, max_pixels,
          posteriors, posteriors_dtype, objects, min_size, html, output_dir, overwrite):
    """Label each of INPUTS (images or folders) with the model in MODEL_FILE.

    Nothing is refitted: label 2 means the same in every image. Outputs as for
    'emseg batch', with OUTPUT_DIR/summary.csv.
    """
    from ..image import load_model
    from ..workflows.batch import run_batch
    from ..workflows.run import RunOptions

    with translated(flags):
        fitted = load_model(model_file)
    out = Path(output_dir)
    options = RunOptions(posteriors=posteriors, posteriors_dtype=posteriors_dtype,
                         objects=objects, min_size=min_size,
                         html=html, max_pixels=max_pixels)
    view = ProgressView(flags)
    try:
        with sigterm_as_interrupt(), translated(flags):
            result = run_batch(
                inputs, out, options,
                recursive=recursive, pattern=pattern, jobs=jobs, model=fitted,
                overwrite=overwrite, scheduler=scheduler, progress=view,
            )
    finally:
        view.close()
    _finish_batch(flags, result)
