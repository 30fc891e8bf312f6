"""How the ``emseg`` commands report what went wrong: one translator, :func:`translated`,
from exceptions to one-line messages and exit statuses.

What it translates, each into ``emseg: error: MESSAGE`` on stderr:

- :class:`~emseg.EmsegError`, bad input data or arguments found by the library: its
  message, exit status 1;
- ``MemoryError``, where the command names what to try instead (``out_of_memory``):
  "out of memory; try ...", exit 1;
- ``OSError``, where the command names what it was doing (``cannot``): "cannot DO:
  REASON", exit 1;
- any other ``Exception``, where the command asks for it (``bugs``: the work on one
  input of many, the table commands): "internal error (TYPE: TEXT); rerun with --debug
  for the traceback", exit 1;
- Ctrl-C (``KeyboardInterrupt``) and SIGTERM (:class:`Terminated`, raised in its place
  by :func:`sigterm_as_interrupt`), unless the command lets them through to an outer
  block (``stopped=None``): "interrupted; WHAT IS LEFT", exit 130, or "terminated;
  ...", exit 143.

Anything else propagates (a bug shows its traceback), and with ``--debug`` nothing is
translated. A translated error is a :class:`Failed`, a click exception: click exits
with its status. It is shown at once, where it happened (before a progress bar is
closed, as it always was), and not again by click. Bad arguments are click's own
usage errors (exit 2).
"""

import contextlib
import signal
import threading
import warnings

import click

from .._shared.errors import EmsegError

RESUMES = "finished outputs are complete and a rerun resumes from them"


class Failed(click.ClickException):
    """A translated error: ``emseg: error: MESSAGE`` on stderr, shown once, and the exit
    status (1; 130 after Ctrl-C, 143 after SIGTERM)."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code
        self.shown = False

    def show(self, file=None):
        if not self.shown:
            self.shown = True
            click.echo(f"emseg: error: {self.format_message()}", err=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler's stop), raised where Ctrl-C raises
    KeyboardInterrupt, so that the work stops the same way: workers stopped, unfinished
    outputs removed, the summary written. Exit status 143 (128 + 15) instead of 130."""


@contextlib.contextmanager
def sigterm_as_interrupt():
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


def warning_line(message, path=None):
    """``emseg: warning: PATH: MESSAGE``, naming the file once when the message does
    (``emseg: warning: MESSAGE`` without a path)."""
    message = str(message)
    if path is None or message.startswith(f"{path}:") or message.startswith(f"{path} "):
        return f"emseg: warning: {message}"
    return f"emseg: warning: {path}: {message}"


def _translation(exc, *, stopped, out_of_memory, cannot, bugs):
    """``(message, exit status)`` for ``exc``, or None to let it through."""
    if isinstance(exc, KeyboardInterrupt):
        if stopped is None:
            return None
        if isinstance(exc, Terminated):
            return f"terminated; {stopped}", 143
        return f"interrupted; {stopped}", 130
    if isinstance(exc, Failed):  # translated already, by an inner block
        return None
    if isinstance(exc, EmsegError):
        return str(exc), 1
    if isinstance(exc, MemoryError) and out_of_memory is not None:
        return f"out of memory; {out_of_memory}", 1
    if isinstance(exc, OSError) and cannot is not None:
        return f"cannot {cannot}: {exc.strerror or exc}", 1
    if isinstance(exc, Exception) and bugs:
        return (f"internal error ({type(exc).__name__}: {exc}); rerun with --debug for "
                "the traceback"), 1
    return None


def _about(path, message):
    """``message`` about input ``path``: starting with the path, once."""
    if path is None:
        return message
    name = " + ".join(map(str, path)) if isinstance(path, tuple) else str(path)
    return message if message.startswith(name) else f"{name}: {message}"


@contextlib.contextmanager
def translated(flags, *, path=None, stopped=RESUMES, out_of_memory=None, cannot=None,
               bugs=False, warn=False):
    """Run the block; turn its errors into a :class:`Failed` (see the module docstring).

    ``flags``: the command's :class:`~emseg.cli.options.Flags` (``--debug`` lets every
    error through, ``--quiet`` silences warnings). ``path``: the input the block works
    on, which starts every message. ``stopped``: what is left when Ctrl-C or SIGTERM
    stops the block (None: let them through). ``out_of_memory``: what to try instead.
    ``cannot``: what the block does, for an ``OSError``. ``bugs``: translate any other
    ``Exception`` too. ``warn``: record the warnings the block issues and print them,
    one line each, if it ends without an error.
    """
    recording = warnings.catch_warnings(record=True) if warn else contextlib.nullcontext()
    with recording as caught:
        if warn:
            warnings.simplefilter("always")
        try:
            yield
        except BaseException as exc:
            found = None if flags.debug else _translation(
                exc, stopped=stopped, out_of_memory=out_of_memory, cannot=cannot, bugs=bugs)
            if found is None:
                raise
            message, status = found
            failure = Failed(_about(path, message), status)
            failure.show()
            raise failure from exc
    for w in caught or ():
        flags.say(warning_line(w.message, path))
