"""The ``emseg`` command line (the only package that imports click): the group ``main``.

Commands parse their arguments, call the library and map its errors (``EmsegError``)
to one-line messages: exit 2 for bad arguments, 1 for bad input data. A traceback is
shown only with ``--debug``. Heavy modules are imported inside the commands, so
``emseg --help`` answers at once.

- :mod:`.options`: the options several commands share, each defined once;
- :mod:`.errors`: the one translator from exceptions to messages and exit statuses;
- :mod:`.progress`: the progress bar of the batch commands;
- :mod:`.notice`: the line a first run prints before numba compiles the kernels;
- :mod:`.run`, :mod:`.batch` (``batch``, ``fit``, ``apply``), :mod:`.tables` (``gmm``,
  ``hmm``): the commands.
"""

import click

from .._shared.version import __version__
from .batch import apply, batch, fit
from .notice import compile_notice
from .options import Flags
from .run import run
from .tables import gmm, hmm


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="emseg")
@click.pass_context
def main(ctx):
    """Image segmentation and mixture modelling by Expectation-Maximization."""
    from ..workflows.processes import keep_freed_memory

    keep_freed_memory()
    ctx.obj = Flags()  # set by the command's --quiet, --verbose and --debug
    ctx.with_resource(compile_notice(ctx.obj))


for command in (run, batch, fit, apply, gmm, hmm):
    main.add_command(command)
