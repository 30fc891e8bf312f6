"""The ``emseg`` command line (the only module that imports click)."""

import click

from ._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="emseg")
def main():
    """Image segmentation and mixture modelling by Expectation-Maximization."""
