"""Writing files so that a crash never leaves half a file and nothing is overwritten
unless asked.

:func:`atomic_output` creates a temporary file (exclusively, never following a link) in
the target's folder and renames it over the target only once it is complete; with
``overwrite=False`` ``os.link`` refuses an existing target atomically. :func:`writing`
is the same with OS errors reported as one-line :class:`~emseg.EmsegError`;
:func:`open_temp` opens the temporary file without following links;
:func:`check_writable` checks a list of outputs before anything is written.
Every writer of emseg goes through here.
"""

import contextlib
import os
import secrets

from .._shared.errors import EmsegError

__all__ = ["atomic_output", "check_writable", "open_temp", "reason", "writing"]


def reason(exc):
    """An exception's message on one line, not too long."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def check_writable(paths, overwrite=False):
    """Check that every path in ``paths`` can be written, before writing any.

    Raises
    ------
    EmsegError
        If a path exists (and ``overwrite`` is False) or is a folder, its folder is
        missing or not writable, or two outputs are the same file.
    """
    seen = {}
    for path in paths:
        path = os.fspath(path)
        key = os.path.normcase(os.path.abspath(path))
        if key in seen:
            raise EmsegError(
                f"{path} is given twice as an output; choose different output names"
            )
        seen[key] = path
        _check_target(path, overwrite)


def _check_target(path, overwrite):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        raise EmsegError(
            f"cannot write {path}: folder {folder} does not exist; create it first"
        )
    if not os.path.isdir(folder):
        raise EmsegError(
            f"cannot write {path}: {folder} is a file, not a folder; choose another output path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EmsegError(
            f"cannot write {path}: folder {folder} is not writable; "
            "choose another output folder"
        )
    if os.path.isdir(path):
        raise EmsegError(f"cannot write {path}: it is a folder; choose a file name")
    if os.path.lexists(path) and not overwrite:
        raise EmsegError(f"{path} exists; pass --overwrite to replace it")


@contextlib.contextmanager
def atomic_output(path, overwrite=False):
    """Yield a temporary path to write; on success it becomes ``path``.

    The temporary file is created (empty) in the target's folder, named
    ``.<name>.<random>.tmp``. When the block ends normally it is renamed over
    ``path`` with :func:`os.replace`; when the block raises, it is deleted and the
    exception propagates. With ``overwrite=False`` an existing ``path`` is refused
    both before the block and at the rename.

    Raises
    ------
    EmsegError
        If ``path`` exists and ``overwrite`` is False, or its folder is missing or not
        writable.
    """
    path = os.fspath(path)
    _check_target(path, overwrite)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = _create_temp(path, folder)
    try:
        yield tmp
        _commit(tmp, path, overwrite)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _create_temp(path, folder):
    base = os.path.basename(path)
    for _ in range(100):
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(4)}.tmp")
        try:
            # os.open honours the umask, so the final file gets the usual permissions
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise EmsegError(
                f"cannot write {path}: could not create a file in folder {folder} "
                f"({reason(exc)}); choose another output folder"
            ) from None
        os.close(fd)
        return tmp
    raise EmsegError(  # pragma: no cover - 100 random name collisions
        f"cannot write {path}: could not find a free temporary name in {folder}"
    )


def _commit(tmp, path, overwrite):
    if overwrite:
        os.replace(tmp, path)
        return
    # os.link refuses an existing target atomically; fall back where links are
    # unsupported (some network and FAT file systems)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise EmsegError(f"{path} exists; pass --overwrite to replace it") from None
    except OSError:
        if os.path.lexists(path):
            raise EmsegError(f"{path} exists; pass --overwrite to replace it") from None
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


def open_temp(tmp, mode="wb", **kwargs):
    """Open the temporary file :func:`atomic_output` created, never following a link:
    someone who can write in the folder could have replaced it by one since."""
    return open(tmp, mode, opener=_no_follow, **kwargs)


def _no_follow(name, flags):
    return os.open(name, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)


@contextlib.contextmanager
def writing(path, overwrite):
    """atomic_output, with OS errors while writing reported as EmsegError."""
    try:
        with atomic_output(path, overwrite) as tmp:
            yield tmp
    except OSError as exc:
        raise EmsegError(f"could not write {path}: {reason(exc)}") from None
