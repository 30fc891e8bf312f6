"""The ``emseg`` command line (the only module that imports click).

Commands parse their arguments, call the library and map its errors (``EmsegError``)
to one-line messages: exit 2 for bad arguments, 1 for bad input data. A traceback is
shown only with ``--debug``. Heavy modules are imported inside the commands, so
``emseg --help`` answers at once.
"""

import contextlib
import functools
import signal
import sys
import threading
import warnings
from pathlib import Path

import click

from .._shared.version import __version__


class ClassesType(click.ParamType):
    """``-k``: a whole number of classes >= 1, or ``auto``."""

    name = "K|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif str(value).strip().lower() == "auto":
            return "auto"
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a whole number or 'auto'", param, ctx)
        if number < 1:
            self.fail(f"{number} classes asked for; use 1 or more (or 'auto')", param, ctx)
        return number


class FiniteFloatRange(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses nan (every comparison with nan is
    false, so FloatRange lets it through) and infinity."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if number != number or number in (float("inf"), float("-inf")):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


# far beyond any useful weight (the coordinates, 0..1, then outweigh any pixel value a
# file holds) and below where the fit overflows (measured: from 1e154 an internal error)
_MAX_SPATIAL = 1e100


def model_options(command):
    """The model options every segmenting command shares."""
    decorators = [
        click.option(
            "-k", "--classes", type=ClassesType(), default=3, show_default=True,
            help="Number of classes, or 'auto' to choose it (BIC among well-separated fits).",
        ),
        click.option(
            "--k-max", type=click.IntRange(2), default=8, show_default=True,
            help="Largest K tried by '-k auto'.",
        ),
        click.option(
            "--color-space", type=click.Choice(["auto", "gray", "rgb", "lab", "hsv"]),
            default="auto", show_default=True,
            help="Features: auto is gray for grey images and lab for colour.",
        ),
        click.option(
            "--spatial", type=FiniteFloatRange(0, _MAX_SPATIAL), default=0.0,
            show_default=True,
            help="Weight of the pixel coordinates added to the features (0: none).",
        ),
        click.option(
            "--covariance", type=click.Choice(["full", "tied", "diag", "spherical"]),
            default="full", show_default=True, help="Covariance type of each class.",
        ),
        click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
                     help="Random seed."),
        click.option(
            "--max-iter", type=click.IntRange(1), default=None,
            help="Most EM iterations [default: 1000 for small fits such as an image's grey "
            "levels, else 100].",
        ),
        click.option(
            "--tol", type=FiniteFloatRange(min=0), default=None,
            help="Stop when the mean log-likelihood changes by less than this "
            "[default: 1e-6 for small fits such as an image's grey levels, else 1e-3].",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


class BetaType(click.ParamType):
    """``--beta``: a number >= 0, or ``auto``."""

    name = "BETA|auto"

    def convert(self, value, param, ctx):
        if str(value).strip().lower() == "auto":
            return "auto"
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number or 'auto'", param, ctx)
        if not number >= 0 or number == float("inf"):
            self.fail(f"{value} is not a finite number >= 0 (or 'auto')", param, ctx)
        return number


def mrf_options(command):
    """Spatial smoothing by a Markov random field (HMRF-EM)."""
    decorators = [
        click.option(
            "--beta", type=BetaType(), default=0.0, show_default=True,
            help="Strength of the Potts prior that smooths the labels (0: none; 'auto': "
            "estimate it; on natural photos it can grow past 10 and over-smooth). Typical "
            "values 0.3-1.5.",
        ),
        click.option(
            "--mrf", type=click.Choice(["meanfield", "icm"]), default="meanfield",
            show_default=True, help="How the MRF's E-step is computed.",
        ),
        click.option(
            "--neighbourhood", type=click.Choice(["4", "8", "6", "18", "26"]), default=None,
            callback=lambda ctx, param, v: None if v is None else int(v),
            help="Neighbours: 4 or 8 in 2-D (default 4), 6, 18 or 26 in 3-D (default 6).",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def output_options(command):
    decorators = [
        click.option(
            "-o", "--output-dir", type=click.Path(file_okay=False), default="outputs",
            show_default=True, help="Folder for the outputs.",
        ),
        click.option("--overwrite", is_flag=True, help="Replace existing outputs."),
        click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors."),
        click.option("-v", "--verbose", is_flag=True, help="Print more detail."),
        click.option("--debug", is_flag=True, help="Show tracebacks of errors."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="emseg")
def main():
    """Image segmentation and mixture modelling by Expectation-Maximization."""
    from ..workflows.processes import keep_freed_memory

    keep_freed_memory()


def _say(message, quiet=False):
    if not quiet:
        click.echo(message, err=True)


def _warning_line(path, message):
    """``emseg: warning: PATH: MESSAGE``, naming the file once when the message does."""
    message = str(message)
    if message.startswith(f"{path}:") or message.startswith(f"{path} "):
        return f"emseg: warning: {message}"
    return f"emseg: warning: {path}: {message}"


def _fail(message):
    click.echo(f"emseg: error: {message}", err=True)


def _output_folder(path, debug):
    """The output folder, created if missing; exit 1 with one line if it cannot be."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if debug:
            raise
        _fail(f"cannot create output folder {out}: {exc.strerror or exc}")
        sys.exit(1)
    return out


def _per_input(debug):
    """Run one input's work; turn its failure into a one-line message. True if it worked."""

    def decorate(work):
        @functools.wraps(work)
        def wrapper(path, *args, **kwargs):
            from .._shared.errors import EmsegError

            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    work(path, *args, **kwargs)
                for w in caught:
                    _say(_warning_line(path, w.message), kwargs.get("quiet", False))
                return True
            except EmsegError as exc:
                if debug:
                    raise
                _fail(f"{path}: {exc}")
            except MemoryError:
                if debug:
                    raise
                _fail(f"{path}: out of memory; try a smaller image or fewer classes")
            except Exception as exc:  # a bug: say so plainly, keep going with the others
                if debug:
                    raise
                _fail(
                    f"{path}: internal error ({type(exc).__name__}: {exc}); "
                    "rerun with --debug for the traceback"
                )
            return False

        return wrapper

    return decorate


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@model_options
@mrf_options
@click.option(
    "--channels", is_flag=True,
    help="The IMAGES (e.g. t1.nii.gz t2.nii.gz), or the volumes of one 4-D NIfTI file, "
    "are co-registered channels of one input.",
)
@click.option("--mask", "mask_path", type=click.Path(), help="Mask image: non-zero = inside.")
@click.option("--posteriors", is_flag=True, help="Also write per-class posterior maps (TIFF).")
@click.option(
    "--max-pixels", type=click.IntRange(1), default=None,
    help="Allow images with more pixels than Pillow's decompression-bomb limit.",
)
@output_options
def run(images, channels, mask_path, posteriors, max_pixels, output_dir, overwrite, quiet,
        verbose, debug, **model):
    """Segment each IMAGE and write labels, overlay, segments and a report.

    For photo.png the outputs are photo_labels.png (the class of each pixel, 0 =
    darkest; 255 outside the mask), photo_overlay.png, photo_segments.png and
    photo_report.json, in OUTPUT_DIR. A TIFF stack gets photo_labels.tif; a NIfTI
    volume t1.nii.gz gets t1_labels.nii.gz (and with --posteriors t1_pve.nii.gz, one
    volume per class) with its affine. A folder of DICOM slices is read as one volume.
    """
    seen = {}
    failed = 0
    try:
        with _sigterm_as_interrupt():
            from ..workflows.run import RunOptions, file_stem

            out = _output_folder(output_dir, debug)
            options = RunOptions(mask_path=mask_path, posteriors=posteriors,
                                 max_pixels=max_pixels, channels=channels, **model)
            work = _per_input(debug)(_run_one)
            inputs = [tuple(images)] if channels and len(images) > 1 else images
            for path in inputs:
                stem = file_stem(path[0] if isinstance(path, tuple) else path)
                if stem in seen:
                    _fail(f"{path}: its outputs would have the same names as {seen[stem]}'s; run it separately with another -o")
                    failed += 1
                    continue
                seen[stem] = path
                ok = work(path, out, options=options, overwrite=overwrite, quiet=quiet,
                          verbose=verbose)
                failed += not ok
    except KeyboardInterrupt as exc:
        if debug:
            raise
        _interrupted(exc, "the outputs of the image being segmented were removed; those "
                     "of the images before it are complete")
    if failed:
        sys.exit(1)


def _run_one(path, out, *, options, overwrite, quiet, verbose):
    from ..workflows.run import segment_file

    report = segment_file(path, out, options, overwrite=overwrite)
    fractions = " ".join(f"{100 * c['fraction']:.1f}%" for c in report["classes"])
    seconds = report["timings_seconds"]["total"]
    name = " + ".join(map(str, path)) if isinstance(path, tuple) else path
    mrf = report.get("mrf")
    smoothing = (f", MRF beta {mrf['beta']:.3g} ({mrf['method']}, {mrf['iterations']} "
                 "iterations)") if mrf else ""
    _say(
        f"{name}: K={report['k']}, {report['iterations']} iterations{smoothing}, "
        f"{seconds:.2f} s, classes {fractions}",
        quiet,
    )
    if verbose and report["bic_table"]:
        for row in report["bic_table"]:
            _say(f"  K={row['k']}: BIC {row['bic']:.1f}, separation "
                 f"{row['min_separation']:.2f}", quiet)


# --------------------------------------------------------------------------- many images


def batch_options(command):
    """How a command finds its inputs and spreads the work."""
    decorators = [
        click.option("-r", "--recursive", is_flag=True, help="Also look in sub-folders."),
        click.option(
            "--pattern", default=None, metavar="GLOB",
            help="Take files whose name matches GLOB, e.g. '*.tif' (default: PNG, JPEG, "
            "BMP and TIFF names).",
        ),
        click.option(
            "-j", "--jobs", type=click.IntRange(1), default=None,
            help="Worker processes (default: one per core).",
        ),
        click.option(
            "--scheduler", default=None, metavar="ADDR",
            help="Run on a Dask cluster: tcp://HOST:PORT, or 'local' (needs emseg[dask]).",
        ),
        click.option(
            "--max-pixels", type=click.IntRange(1), default=None,
            help="Allow images with more pixels than Pillow's decompression-bomb limit.",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def _max_samples_option(command):
    return click.option(
        "--max-samples", type=click.IntRange(1), default=None,
        help="Float images are sampled for a shared model: about this many pixels in "
        "all (default 1,000,000). 8/16-bit images are always used whole.",
    )(command)


class _ProgressView:
    """Shows batch progress on stderr: a bar with count and ETA, errors printed above it."""

    LABELS = {"fit": "reading for the shared model", "segment": "segmenting"}

    def __init__(self, quiet, debug, verbose=False):
        self.quiet = quiet
        self.debug = debug
        self.verbose = verbose
        self.bar = None
        self.phase = None

    def __call__(self, event):
        if not self.quiet and event.phase != self.phase:
            self.close()
            self.phase = event.phase
            self.bar = click.progressbar(
                length=event.total,
                label=self.LABELS.get(event.phase, event.phase),
                show_pos=True,
                show_eta=True,
                file=click.get_text_stream("stderr"),
            )
            self.bar.__enter__()
        row = event.row
        if row.status == "failed":
            self._above(f"emseg: error: {_with_path(row.path, row.error)}", error=True)
            if self.debug and row.traceback:
                self._above(row.traceback.rstrip(), error=True)
        for message in row.warnings:
            self._above(_warning_line(row.path, message))
        if self.verbose and row.status == "ok" and event.phase == "segment":
            self._above(
                f"{row.path}: K={row.k}, {row.iterations} iterations, {row.seconds:.2f} s"
            )
        if self.bar is not None:
            self.bar.update(1)

    def _above(self, text, error=False):
        if self.quiet and not error:
            return
        shown = self.bar is not None and not getattr(
            self.bar, "hidden", getattr(self.bar, "is_hidden", True)
        )
        if shown:
            click.echo("\r\033[K", err=True, nl=False)  # clear the bar's line
        click.echo(text, err=True)
        if shown:
            self.bar.render_progress()

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _with_path(path, error):
    """``path: error``, unless the message already starts with the path."""
    return error if error.startswith(str(path)) else f"{path}: {error}"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler's stop), raised where Ctrl-C raises
    KeyboardInterrupt, so that the work stops the same way: workers stopped, unfinished
    outputs removed, the summary written. Exit status 143 (128 + 15) instead of 130."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While the block runs, SIGTERM raises :class:`Terminated` (a second one ends the
    process at once, as by default)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def terminated(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(exc, what):
    """Say why the work stopped; exit 143 for SIGTERM, 130 for Ctrl-C."""
    _fail(f"{'terminated' if isinstance(exc, Terminated) else 'interrupted'}; {what}")
    sys.exit(143 if isinstance(exc, Terminated) else 130)


def _library_call(debug, work, *args, **kwargs):
    """Run ``work``; an EmsegError exits 1 with one line, Ctrl-C exits 130 and SIGTERM
    143 (also one line)."""
    from .._shared.errors import EmsegError

    try:
        return work(*args, **kwargs)
    except EmsegError as exc:
        if debug:
            raise
        _fail(str(exc))
        sys.exit(1)
    except KeyboardInterrupt as exc:
        if debug:
            raise
        _interrupted(exc, "finished outputs are complete and a rerun resumes from them")


def _finish_batch(result, quiet):
    ok, skipped, failed = (result.count(s) for s in ("ok", "skipped", "failed"))
    parts = [f"{ok} segmented"]
    if skipped:
        parts.append(f"{skipped} skipped (outputs already complete; --overwrite redoes them)")
    parts.append(f"{failed} failed")
    _say(f"{', '.join(parts)}; summary in {result.summary_path}", quiet)
    if result.model_path is not None:
        _say(f"shared model: {result.model_path}", quiet)
    if failed:
        sys.exit(1)


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@model_options
@mrf_options
@batch_options
@click.option(
    "--shared-model", is_flag=True,
    help="Fit one model on all the images (saved as OUTPUT_DIR/model.json), then label "
    "each with it, so a label means the same in every image.",
)
@_max_samples_option
@click.option("--posteriors", is_flag=True, help="Also write per-class posterior maps (TIFF).")
@output_options
def batch(folders, recursive, pattern, jobs, scheduler, max_pixels, shared_model, max_samples,
          posteriors, output_dir, overwrite, quiet, verbose, debug, **model):
    """Segment every image in FOLDERS (or image files) into OUTPUT_DIR.

    Outputs mirror the sub-folders of each input folder; OUTPUT_DIR/summary.csv lists
    every input with its status (ok, failed, skipped), error, K, iterations,
    log-likelihood and seconds. A bad image never stops the batch; the exit code is 1
    if any failed. A rerun skips the images whose outputs are complete.
    """
    if shared_model and model["beta"] != 0:
        raise click.UsageError("--beta cannot be combined with --shared-model yet")
    with _sigterm_as_interrupt():
        result = _library_call(
            debug, _batch, folders, Path(output_dir),
            dict(posteriors=posteriors, max_pixels=max_pixels, **model),
            _ProgressView(quiet, debug, verbose),
            recursive=recursive, pattern=pattern, jobs=jobs, shared_model=shared_model,
            overwrite=overwrite, scheduler=scheduler, max_samples=max_samples,
        )
    _finish_batch(result, quiet)


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


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@model_options
@click.option(
    "-m", "--model", "model_path", required=True, type=click.Path(dir_okay=False),
    help="Where to write the model (JSON).",
)
@batch_options
@_max_samples_option
@click.option("--overwrite", is_flag=True, help="Replace an existing model file.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def fit(inputs, model_path, recursive, pattern, jobs, scheduler, max_pixels, max_samples,
        overwrite, quiet, debug, **model):
    """Fit one model on the pixels of all INPUTS (images or folders) and save it.

    8/16-bit images are fitted exactly (their histograms merged); float images through
    a seeded random sample (--max-samples). Label images with it by 'emseg apply'. If
    any input cannot be used, no model is written and the exit code is 1.
    """
    from .. import io
    from ..workflows.batch import find_inputs, fit_files
    from ..workflows.run import RunOptions

    options = RunOptions(max_pixels=max_pixels, **model)
    paths = _library_call(
        debug, lambda: [item.path for item in find_inputs(inputs, ".", recursive=recursive,
                                                          pattern=pattern)]
    )
    _library_call(debug, io.check_writable, [model_path], overwrite)
    view = _ProgressView(quiet, debug)
    try:
        fitted, rows = _library_call(
            debug, fit_files, paths, options, jobs=jobs, scheduler=scheduler,
            max_samples=max_samples, progress=view,
        )
    finally:
        view.close()
    failed = [row for row in rows if row.status == "failed"]
    if failed or fitted is None:
        _fail(f"model not written: {len(failed)} of {len(rows)} input(s) could not be used")
        sys.exit(1)
    _library_call(debug, fitted.save, model_path, overwrite=overwrite)
    t = fitted.training
    how = "histograms merged exactly" if t["exact"] else f"{t['sampled_images']} image(s) sampled"
    _say(
        f"{model_path}: K={fitted.k} from {t['n_images']} image(s), {t['n_pixels']:,} pixels "
        f"({how}), {t['iterations']} iterations, log-likelihood {t['log_likelihood']:.4f}",
        quiet,
    )


@main.command()
@click.argument("model_file", type=click.Path())
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@batch_options
@click.option("--posteriors", is_flag=True, help="Also write per-class posterior maps (TIFF).")
@output_options
def apply(model_file, inputs, recursive, pattern, jobs, scheduler, max_pixels, posteriors,
          output_dir, overwrite, quiet, verbose, debug):
    """Label each of INPUTS (images or folders) with the model in MODEL_FILE.

    Nothing is refitted: label 2 means the same in every image. Outputs as for
    'emseg batch', with OUTPUT_DIR/summary.csv.
    """
    from ..workflows.batch import run_batch
    from ..image.model import load_model
    from ..workflows.run import RunOptions

    fitted = _library_call(debug, load_model, model_file)
    out = Path(output_dir)
    options = RunOptions(posteriors=posteriors, max_pixels=max_pixels)
    view = _ProgressView(quiet, debug, verbose)
    try:
        with _sigterm_as_interrupt():
            result = _library_call(
                debug, run_batch, inputs, out, options,
                recursive=recursive, pattern=pattern, jobs=jobs, model=fitted,
                overwrite=overwrite, scheduler=scheduler, progress=view,
            )
    finally:
        view.close()
    _finish_batch(result, quiet)


# --- tables: emseg gmm ..., emseg hmm ... --------------------------------------------------


class ColumnsType(click.ParamType):
    """``--columns a,b,c``: a comma-separated list of column names."""

    name = "A,B,..."

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        names = [n.strip() for n in str(value).split(",")]
        if not all(names):
            self.fail(f"{value!r} has an empty column name", param, ctx)
        return names


def _table_call(debug, quiet, work, *args, **kwargs):
    """Run a table command's work: library errors and bugs become one line and exit 1;
    warnings (no convergence...) are printed as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = _library_call(debug, work, *args, **kwargs)
        except MemoryError:
            if debug:
                raise
            _fail("out of memory; try fewer rows, columns or components")
            sys.exit(1)
        except Exception as exc:
            if debug:
                raise
            _fail(f"internal error ({type(exc).__name__}: {exc}); rerun with --debug for the traceback")
            sys.exit(1)
    for w in caught:
        _say(f"emseg: warning: {w.message}", quiet)
    return result


def table_fit_options(command):
    decorators = [
        click.option("--columns", type=ColumnsType(), default=None,
                     help="Feature columns (default: every numeric column)."),
        click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
                     help="Random seed."),
        click.option("--tol", type=FiniteFloatRange(min=0), default=None,
                     help="Stop when the mean log-likelihood per row changes by less."),
        click.option("--n-init", type=click.IntRange(1), default=None,
                     help="Restarts; the best is kept [default: mixtures 10, 3 or 1 by the "
                     "size of the table; HMMs 1]."),
        click.option("--overwrite", is_flag=True, help="Replace existing output files."),
        click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors."),
        click.option("--debug", is_flag=True, help="Show tracebacks of errors."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


_COVARIANCE = click.Choice(["full", "tied", "diag", "spherical"])


@main.group()
def gmm():
    """Gaussian mixtures on tables (CSV, TSV with a header row, or .npy).

    Empty cells and NA are missing values, fitted by EM on the observed columns.
    """


@gmm.command("fit")
@click.argument("table", type=click.Path())
@click.option("-k", "--classes", type=click.IntRange(1), required=True, help="Components.")
@click.option("--covariance", type=_COVARIANCE, default="full", show_default=True)
@click.option("--max-iter", type=click.IntRange(1), default=None,
              help="Most EM iterations [default: 1000 for small tables, else 100].")
@click.option("--model", "model_path", type=click.Path(), help="Write the fitted model (JSON).")
@click.option("--labels", "labels_path", type=click.Path(),
              help="Write labels.csv: row, label, probability of each class.")
@table_fit_options
def gmm_fit(table, classes, covariance, max_iter, model_path, labels_path, columns, seed, tol,
            n_init, overwrite, quiet, debug):
    """Fit a K-component mixture to TABLE's columns."""
    from ..workflows.tables import gmm_fit as work

    s = _table_call(debug, quiet, work, table, classes, columns=columns,
                    covariance_type=covariance, random_state=seed, max_iter=max_iter or "auto",
                    tol="auto" if tol is None else tol, n_init=n_init or "auto", model_path=model_path,
                    labels_path=labels_path, overwrite=overwrite)
    _say(f"{table}: {s['rows']} rows x {len(s['columns'])} columns ({', '.join(s['columns'])}) "
         f"read in {s['read_seconds']:.2f} s, {s['missing']} missing cells", quiet)
    _say(f"K={s['k']}: {s['iterations']} iterations in {s['fit_seconds']:.2f} s, "
         f"converged {s['converged']}, log-likelihood per row {s['log_likelihood']:.6g}, "
         f"BIC {s['bic']:.6g}", quiet)
    if not quiet and not model_path and not labels_path:
        gm = s["model"]
        for k in range(gm.n_components_):
            click.echo(f"component {k}: weight {gm.weights_[k]:.4f}, mean "
                       + " ".join(f"{v:.6g}" for v in gm.means_[k]))


@gmm.command("select")
@click.argument("table", type=click.Path())
@click.option("--k-max", type=click.IntRange(1), default=10, show_default=True)
@click.option("--covariance", "covariances", type=_COVARIANCE, multiple=True,
              help="Covariance types to try (repeatable; default all four).")
@click.option("--max-iter", type=click.IntRange(1), default=None,
              help="Most EM iterations [default: 1000 for small tables, else 100].")
@table_fit_options
def gmm_select(table, k_max, covariances, max_iter, columns, seed, tol, n_init, overwrite,
               quiet, debug):
    """Print BIC and AIC for K = 1..K-MAX and each covariance type; name the best."""
    from ..workflows.tables import gmm_select as work

    rows, best, _ = _table_call(debug, quiet, work, table, k_max, columns=columns,
                                covariance_types=covariances or None, random_state=seed,
                                max_iter=max_iter or "auto", tol="auto" if tol is None else tol,
                                n_init=n_init or "auto")
    click.echo(f"{'covariance':<10} {'K':>3} {'BIC':>16} {'AIC':>16} {'log-likelihood':>16}")
    for r in rows:
        click.echo(f"{r['covariance_type']:<10} {r['k']:>3} {r['bic']:>16.6g} "
                   f"{r['aic']:>16.6g} {r['log_likelihood']:>16.6g}")
    click.echo(f"best by BIC: K={best['k']}, covariance {best['covariance_type']}")


@gmm.command("predict")
@click.argument("model_file", type=click.Path())
@click.argument("table", type=click.Path())
@click.option("-o", "--output", type=click.Path(), default="labels.csv", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def gmm_predict(model_file, table, output, overwrite, quiet, debug):
    """Label TABLE's rows with a fitted model; write OUTPUT (row, label, probabilities)."""
    from ..workflows.tables import gmm_predict as work

    s = _table_call(debug, quiet, work, model_file, table, output, overwrite=overwrite)
    _say(f"{table}: {s['rows']} rows labelled into {output}; rows per class {s['counts']}", quiet)


@gmm.command("impute")
@click.argument("table", type=click.Path())
@click.option("-o", "--output", type=click.Path(), required=True, help="The filled table.")
@click.option("-k", "--classes", type=click.IntRange(1), default=None,
              help="Fit a mixture of K components here...")
@click.option("--model", "model_path", type=click.Path(), help="...or use a fitted model.")
@click.option("--covariance", type=_COVARIANCE, default="full", show_default=True)
@click.option("--max-iter", type=click.IntRange(1), default=None,
              help="Most EM iterations [default: 1000 for small tables, else 100].")
@table_fit_options
def gmm_impute(table, output, classes, model_path, covariance, max_iter, columns, seed, tol,
               n_init, overwrite, quiet, debug):
    """Fill TABLE's missing cells with their expected values under a mixture.

    Every other cell, column and character of the file is kept as it is.
    """
    from ..workflows.tables import gmm_impute as work

    s = _table_call(debug, quiet, work, table, output, k=classes, model_path=model_path,
                    columns=columns, covariance_type=covariance, random_state=seed,
                    max_iter=max_iter or "auto", tol="auto" if tol is None else tol, n_init=n_init or "auto",
                    overwrite=overwrite)
    _say(f"{table}: {s['filled']} missing cells filled (K={s['k']}) into {output}", quiet)


@main.group()
def hmm():
    """Hidden Markov models on tables of sequences (CSV, TSV or .npy)."""


@hmm.command("fit")
@click.argument("table", type=click.Path())
@click.option("-k", "--states", type=click.IntRange(1), required=True, help="Hidden states.")
@click.option("--sequence-col", default=None, help="Column of sequence ids (rows contiguous).")
@click.option("--categorical", default=None, help="Column of symbols: a categorical HMM.")
@click.option("--covariance", type=_COVARIANCE, default="full", show_default=True)
@click.option("--n-iter", type=click.IntRange(1), default=100, show_default=True)
@click.option("--model", "model_path", type=click.Path(), help="Write the fitted model (JSON).")
@click.option("--states-out", "states_path", type=click.Path(),
              help="Also write the Viterbi states of TABLE (CSV).")
@table_fit_options
def hmm_fit(table, states, sequence_col, categorical, covariance, n_iter, model_path,
            states_path, columns, seed, tol, n_init, overwrite, quiet, debug):
    """Fit a K-state HMM to TABLE by Baum-Welch."""
    from ..workflows.tables import hmm_fit as work

    s = _table_call(debug, quiet, work, table, states, columns=columns,
                    sequence_col=sequence_col, categorical=categorical,
                    covariance_type=covariance, random_state=seed, n_iter=n_iter,
                    tol=1e-4 if tol is None else tol, n_init=n_init or 1, model_path=model_path,
                    states_path=states_path, overwrite=overwrite)
    _say(f"{table}: {s['rows']} rows in {s['sequences']} sequence(s) read in "
         f"{s['read_seconds']:.2f} s", quiet)
    _say(f"K={s['k']}: {s['iterations']} iterations in {s['fit_seconds']:.2f} s, converged "
         f"{s['converged']}, log-likelihood {s['log_likelihood']:.8g}", quiet)


@hmm.command("decode")
@click.argument("model_file", type=click.Path())
@click.argument("table", type=click.Path())
@click.option("-o", "--output", type=click.Path(), default="states.csv", show_default=True)
@click.option("--algorithm", type=click.Choice(["viterbi", "map"]), default="viterbi",
              show_default=True)
@click.option("--sequence-col", default=None,
              help="Column of sequence ids (default: the one the model was fitted with).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def hmm_decode(model_file, table, output, algorithm, sequence_col, overwrite, quiet, debug):
    """Decode TABLE's hidden states with a fitted model; write OUTPUT (state, posterior)."""
    from ..workflows.tables import hmm_decode as work

    s = _table_call(debug, quiet, work, model_file, table, output, algorithm=algorithm,
                    sequence_col=sequence_col, overwrite=overwrite)
    _say(f"{table}: {s['rows']} rows in {s['sequences']} sequence(s) decoded ({algorithm}, "
         f"log-probability {s['log_probability']:.8g}) into {output}", quiet)
