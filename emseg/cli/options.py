"""Every option of the ``emseg`` commands that more than one command takes, defined once.

Each is a decorator, used as is by the commands that share it; where the commands
differ only in the help text or the default, the decorator is made by a function of
that difference. Groups of options that always go together (``model_options``,
``mrf_options``, ``batch_options``, ``output_options``, ``table_fit_options``) are
decorators too. Options used by one command only are defined with that command.

The flags that decide what a command prints (``--quiet``, ``--verbose``, ``--debug``)
are not passed to the command's function: their callbacks set them on the
:class:`Flags` carried by the click context object (``ctx.obj``), where the commands,
the error translator and the first-run notice read them.
"""

import dataclasses

import click


@dataclasses.dataclass
class Flags:
    """What a command prints: the click context object of every ``emseg`` command."""

    quiet: bool = False  # nothing but errors
    verbose: bool = False  # more detail
    debug: bool = False  # tracebacks instead of one-line errors

    def say(self, message):
        """Print a status line on stderr, unless ``--quiet``."""
        if not self.quiet:
            click.echo(message, err=True)


def _set_flag(ctx, param, value):
    setattr(ctx.ensure_object(Flags), param.name, value)


def _flag(*decls, help):
    return click.option(*decls, is_flag=True, help=help, expose_value=False,
                        callback=_set_flag)


quiet = _flag("-q", "--quiet", help="Print nothing but errors.")
verbose = _flag("-v", "--verbose", help="Print more detail.")
debug = _flag("--debug", help="Show tracebacks of errors.")


def overwrite(help):
    """``--overwrite``, with the help text naming what it replaces."""
    return click.option("--overwrite", is_flag=True, help=help)


def _stack(*decorators):
    """One decorator applying ``decorators`` in the order they are listed (the order
    of the options in the help)."""

    def apply(command):
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


# --------------------------------------------------------------------------- types


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


COVARIANCES = click.Choice(["full", "tied", "diag", "spherical"])

# far beyond any useful weight (the coordinates, 0..1, then outweigh any pixel value a
# file holds) and below where the fit overflows (measured: from 1e154 an internal error)
MAX_SPATIAL = 1e100


# --------------------------------------------------------------------------- arguments

model_file = click.argument("model_file", type=click.Path())
table = click.argument("table", type=click.Path())


# --------------------------------------------------------------------------- fitting


def covariance(help=None):
    """``--covariance``: the covariance type of each class or component."""
    return click.option("--covariance", type=COVARIANCES, default="full",
                        show_default=True, help=help)


def max_iter(help):
    """``--max-iter``, with the help text stating its default."""
    return click.option("--max-iter", type=click.IntRange(1), default=None, help=help)


def tol(help):
    """``--tol``: a finite number >= 0, default None (the library chooses)."""
    return click.option("--tol", type=FiniteFloatRange(min=0), default=None, help=help)


seed = click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
                    help="Random seed.")

model_options = _stack(
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
        "--spatial", type=FiniteFloatRange(0, MAX_SPATIAL), default=0.0,
        show_default=True,
        help="Weight of the pixel coordinates added to the features (0: none).",
    ),
    covariance("Covariance type of each class."),
    seed,
    max_iter("Most EM iterations [default: 1000 for small fits such as an image's grey "
             "levels, else 100]."),
    tol("Stop when the mean log-likelihood changes by less than this "
        "[default: 1e-6 for small fits such as an image's grey levels, else 1e-3]."),
)
"""The model options every segmenting command shares."""

mrf_options = _stack(
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
)
"""Spatial smoothing by a Markov random field (HMRF-EM)."""

bias_options = _stack(
    click.option(
        "--bias", is_flag=True,
        help="Correct a smooth intensity non-uniformity (bias field) inside EM, as FSL "
        "FAST; also writes <stem>_bias and <stem>_restored (NIfTI for NIfTI input, "
        "else float32 TIFF).",
    ),
    click.option(
        "--bias-fwhm", type=FiniteFloatRange(min=0, min_open=True), default=None,
        metavar="MM",
        help="Smoothness of the bias field: FWHM in mm [default: 40]; in pixels for "
        "a file without a voxel size [default: 40 per 256 pixels of its longest side].",
    ),
)
"""Bias-field correction inside EM (emseg.image.bias)."""


# --------------------------------------------------------------------------- images

posteriors = _stack(
    click.option("--posteriors", is_flag=True,
                 help="Also write per-class posterior maps (compressed TIFF, or NIfTI "
                 "for NIfTI and DICOM input)."),
    click.option("--posteriors-dtype", type=click.Choice(["uint8", "float16", "float32"]),
                 default="uint8", show_default=True,
                 help="How posteriors are stored: uint8 is probability x 255 (within "
                 "1/510; NIfTI's slope gives the probability), float32 full precision."),
)
"""Per-class posterior maps and how they are stored."""

objects = _stack(
    click.option("--objects", is_flag=True,
                 help="Also write <stem>_objects.csv: one row per connected component of "
                 "each class (size in calibrated units, centroid, bounding box, mean "
                 "intensity)."),
    click.option("--min-size", type=click.IntRange(1), default=1, show_default=True,
                 help="With --objects: leave out components of fewer pixels (voxels)."),
)
"""Per-object measurements."""

html = click.option(
    "--html", is_flag=True,
    help="Also write <stem>_report.html: one self-contained page to check the fit at a "
    "glance (pictures with a legend, histogram with the fitted mixture, likelihood, "
    "classes, options).",
)

ome = click.option(
    "--ome", is_flag=True,
    help="Write the TIFF outputs (labels of a stack or time series, posteriors, pve, "
    "bias) as OME-TIFF (<stem>_labels.ome.tif...) instead of ImageJ hyperstacks; both "
    "keep the input's axes and calibration.",
)

pve = click.option("--pve", is_flag=True,
                   help="Also write partial-volume estimates: each class's fraction of "
                   "every voxel, from a mixel model (FSL FAST's pve maps).")

max_pixels = click.option(
    "--max-pixels", type=click.IntRange(1), default=None,
    help="Allow images with more pixels than Pillow's decompression-bomb limit.",
)

max_samples = click.option(
    "--max-samples", type=click.IntRange(1), default=None,
    help="Float images are sampled for a shared model: about this many pixels in "
    "all (default 1,000,000). 8/16-bit images are always used whole.",
)

batch_options = _stack(
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
    max_pixels,
)
"""How a command finds its inputs and spreads the work."""

output_options = _stack(
    click.option(
        "-o", "--output-dir", type=click.Path(file_okay=False), default="outputs",
        show_default=True, help="Folder for the outputs.",
    ),
    overwrite("Replace existing outputs."),
    quiet,
    verbose,
    debug,
)
"""Where the outputs of the image commands go, and what they print."""


# --------------------------------------------------------------------------- tables


def table_output(**how):
    """``-o/--output``: the file a table command writes."""
    return click.option("-o", "--output", type=click.Path(), **how)


def table_model(help):
    """``--model``: a model file (JSON) a table command writes or reads."""
    return click.option("--model", "model_path", type=click.Path(), help=help)


def sequence_col(help):
    """``--sequence-col``: the column of sequence ids."""
    return click.option("--sequence-col", default=None, help=help)


table_max_iter = max_iter("Most EM iterations [default: 1000 for small tables, else 100].")

table_fit_options = _stack(
    click.option("--columns", type=ColumnsType(), default=None,
                 help="Feature columns (default: every numeric column)."),
    seed,
    tol("Stop when the mean log-likelihood per row changes by less."),
    click.option("--n-init", type=click.IntRange(1), default=None,
                 help="Restarts; the best is kept [default: mixtures 10, 3 or 1 by the "
                 "size of the table; HMMs 1]."),
    overwrite("Replace existing output files."),
    quiet,
    debug,
)
"""The options every table command that fits shares."""
