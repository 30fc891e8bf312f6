"""Settings for the processes emseg runs itself: the ``emseg`` command and batch workers.

The library functions leave the process as they find it; these are applied only where
emseg owns the whole process and segments one image after another in it.
"""

import sys

# glibc's mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory():
    """Let glibc's allocator reuse freed memory instead of handing it back to the OS.

    An image's arrays are a few MB each; glibc gives large blocks back when they are
    freed (mmap, or trimming the top of the heap) and the next image takes fresh pages
    again, each a page fault, costly in a virtual machine: 1,800-3,300 faults and
    15-24 ms of system time per megapixel image were measured, against 14-19 faults and
    6-8 ms with blocks up to 32 MB kept on the heap and up to 256 MB of free heap kept.
    What is kept is reused by the next image, and given back when the process ends
    (peak memory with these settings was not measured). Does nothing where the C
    library has no ``mallopt``.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # setting either turns off glibc's own adjustment of both, so set both
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    )


def cores():
    """The cores this process may use (its CPU affinity where the OS tells)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# What a batch worker imports to segment an image (its tasks, and the pool's start-up
# function). The fork server imports them once, and each worker it forks starts with
# them loaded (numba is not among them: it loads in a worker only for the inputs that
# need compiled kernels).
WORKER_MODULES = (
    "emseg.workflows.tasks",
    "emseg.workflows.pool",
    "emseg.workflows.run",
    "emseg.image.segmentation",
    "emseg.image.render",
    "emseg.io.images",
    "emseg.io.jsonfile",
    "PIL.PngImagePlugin",
    "isal.isal_zlib",
)


def worker_context():
    """The multiprocessing context for local batch workers: a fork server that has
    imported :data:`WORKER_MODULES` where the OS has one, else ``spawn``."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_MODULES))  # used when the server starts
    return context


def start_worker_server():
    """Start the fork server now, so that it imports the worker modules while this
    process goes on (finding the inputs, importing its own modules): the workers of a
    batch then start about as soon as the batch would start in this process alone.

    The server is started with Ctrl-C (SIGINT) ignored, which it and every worker it
    forks inherit from birth: a Ctrl-C in a terminal reaches the whole process group,
    and a worker interrupted while it starts, imports or waits for a task prints a
    traceback. The process that runs the batch stops its workers itself (see
    :func:`watch_parent` and :mod:`emseg.workflows.pool`). Where there is no fork server,
    nothing to do: workers are spawned when a batch needs them."""
    if worker_context().get_start_method() != "forkserver":
        return
    import signal
    import threading
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()  # signal dispositions can only be set from there
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def watch_parent(lifeline):
    """End this worker process at once when the process that started its batch ends.

    ``lifeline`` is the reading end of a pipe whose writing end only that process
    holds: when it dies (killed, out of memory) or closes it, reading gives EOF, and a
    daemon thread kills this process, so no worker goes on writing outputs for a batch
    that no longer exists. Its temporary files stay, hidden; a rerun removes them.
    On Linux the kernel also kills the worker when its parent (the fork server, which
    ends with the batch's process) ends (``PR_SET_PDEATHSIG``)."""
    import os
    import signal
    import threading

    _die_with_parent()

    def wait_for_eof():
        try:
            while True:
                lifeline.recv_bytes()  # nothing is ever sent; returns only at EOF
        except (EOFError, OSError):
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait_for_eof, name="emseg-lifeline", daemon=True).start()


_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import os
    import signal

    parent = os.getppid()
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before the request was made
        os.kill(os.getpid(), signal.SIGKILL)
