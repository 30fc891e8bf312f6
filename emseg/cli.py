"""The ``emseg`` command line (the only module that imports click).

Commands parse their arguments, call the library and map its errors (``EmsegError``)
to one-line messages: exit 2 for bad arguments, 1 for bad input data. A traceback is
shown only with ``--debug``. Heavy modules are imported inside the commands, so
``emseg --help`` answers at once.
"""

import functools
import sys
import time
import warnings
from pathlib import Path

import click

from ._version import __version__


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


def model_options(command):
    """The model options every segmenting command shares."""
    decorators = [
        click.option(
            "-k", "--classes", type=ClassesType(), default=3, show_default=True,
            help="Number of classes, or 'auto' to choose it by BIC.",
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
            "--spatial", type=click.FloatRange(min=0), default=0.0, show_default=True,
            help="Weight of the pixel coordinates added to the features (0: none).",
        ),
        click.option(
            "--covariance", type=click.Choice(["full", "tied", "diag", "spherical"]),
            default="full", show_default=True, help="Covariance type of each class.",
        ),
        click.option("--seed", type=int, default=0, show_default=True, help="Random seed."),
        click.option(
            "--max-iter", type=click.IntRange(1), default=100, show_default=True,
            help="Most EM iterations.",
        ),
        click.option(
            "--tol", type=click.FloatRange(min=0), default=1e-3, show_default=True,
            help="Stop when the mean log-likelihood changes by less than this.",
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


def _say(message, quiet=False):
    if not quiet:
        click.echo(message, err=True)


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
            from ._errors import EmsegError

            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    work(path, *args, **kwargs)
                for w in caught:
                    _say(f"emseg: warning: {path}: {w.message}", kwargs.get("quiet", False))
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
@click.option("--mask", "mask_path", type=click.Path(), help="Mask image: non-zero = inside.")
@click.option("--posteriors", is_flag=True, help="Also write per-class posterior maps (TIFF).")
@click.option(
    "--max-pixels", type=click.IntRange(1), default=None,
    help="Allow images with more pixels than Pillow's decompression-bomb limit.",
)
@output_options
def run(images, mask_path, posteriors, max_pixels, output_dir, overwrite, quiet, verbose, debug, **model):
    """Segment each IMAGE and write labels, overlay, segments and a report.

    For photo.png the outputs are photo_labels.png (the class of each pixel, 0 =
    darkest; 255 outside the mask), photo_overlay.png, photo_segments.png and
    photo_report.json, in OUTPUT_DIR.
    """
    from .pipeline import RunOptions

    out = _output_folder(output_dir, debug)
    options = RunOptions(mask_path=mask_path, posteriors=posteriors, max_pixels=max_pixels, **model)
    seen = {}
    failed = 0
    work = _per_input(debug)(_run_one)
    for path in images:
        stem = Path(path).stem
        if stem in seen:
            _fail(f"{path}: its outputs would have the same names as {seen[stem]}'s; run it separately with another -o")
            failed += 1
            continue
        seen[stem] = path
        ok = work(path, out, options=options, overwrite=overwrite, quiet=quiet, verbose=verbose)
        failed += not ok
    if failed:
        sys.exit(1)


def _run_one(path, out, *, options, overwrite, quiet, verbose):
    from .pipeline import segment_file

    report = segment_file(path, out, options, overwrite=overwrite)
    fractions = " ".join(f"{100 * c['fraction']:.1f}%" for c in report["classes"])
    seconds = report["timings_seconds"]["total"]
    _say(
        f"{path}: K={report['k']}, {report['iterations']} iterations, {seconds:.2f} s, "
        f"classes {fractions}",
        quiet,
    )
    if verbose and report["bic_table"]:
        for row in report["bic_table"]:
            _say(f"  K={row['k']}: BIC {row['bic']:.1f}", quiet)
