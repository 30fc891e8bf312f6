"""The progress of a batch on stderr: a bar with count and ETA, messages printed above it."""

import sys

import click

from .errors import warning_line


class ProgressView:
    """The ``progress`` callback of a batch (``emseg.workflows.batch``): one bar per
    phase, each input's error and warnings printed above it, silent with ``--quiet``
    except for errors, each image's result with ``--verbose``. Call :meth:`close` when
    the batch ends."""

    LABELS = {"fit": "reading for the shared model", "segment": "segmenting"}

    def __init__(self, flags):
        self.flags = flags
        self.bar = None  # the current phase's bar; None with --quiet
        self.phase = None

    def __call__(self, event):
        if not self.flags.quiet and event.phase != self.phase:
            self.close()
            self.phase = event.phase
            self.bar = click.progressbar(
                length=event.total,
                label=self.LABELS.get(event.phase, event.phase),
                show_pos=True,
                show_eta=True,
                file=sys.stderr,
            )
            self.bar.__enter__()
        row = event.row
        if row.status == "failed":
            self._above(f"emseg: error: {_with_path(row.path, row.error)}", error=True)
            if self.flags.debug and row.traceback:
                self._above(row.traceback.rstrip(), error=True)
        for message in row.warnings:
            self._above(warning_line(message, row.path))
        if self.flags.verbose and row.status == "ok" and event.phase == "segment":
            self._above(
                f"{row.path}: K={row.k}, {row.iterations} iterations, {row.seconds:.2f} s"
            )
        if self.bar is not None:
            self.bar.update(1)

    def _above(self, text, error=False):
        """Print ``text`` on its own line above the bar, then draw the bar again."""
        if self.flags.quiet and not error:
            return
        if self.bar is not None:
            click.echo("\r\033[K", err=True, nl=False)  # clear the bar's line
        click.echo(text, err=True)
        if self.bar is not None:
            self.bar.render_progress()

    def close(self):
        """Finish the current bar, if any."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _with_path(path, error):
    """``path: error``, unless the message already starts with the path."""
    return error if error.startswith(str(path)) else f"{path}: {error}"
