"""Per-item work on a dask.distributed cluster, for :mod:`emseg.workflows.pool`.

``map_unordered(fn, items, scheduler)`` runs ``fn`` on each item on a cluster
(``"local"`` or a scheduler address) and yields ``(index, result)`` or
``(index, exception)`` as each item finishes. Optional (``pip install 'emseg[dask]'``):
dask is imported only when it is called.
"""

import contextlib
import os
import signal
import threading

from .._shared.errors import EmsegError

#: Seconds to wait when connecting to a scheduler address.
CONNECT_TIMEOUT = 5.0

_EXTRA_HINT = "Dask support needs the optional extra: pip install 'emseg[dask]'"



def map_unordered(fn, items, scheduler, *, n_workers=None, timeout=CONNECT_TIMEOUT):
    """Run ``fn(item)`` for every item on a dask.distributed cluster, yielding
    ``(index, result)``, or ``(index, exception)`` when ``fn`` raised, as each finishes.

    ``scheduler`` is ``"local"`` (a LocalCluster of ``n_workers`` single-threaded worker
    processes, default one per core, closed when the generator finishes or is closed) or
    a scheduler address such as ``"tcp://HOST:PORT"`` (``timeout`` seconds to connect).
    One item's failure never stops the others. ``fn`` and the items must pickle (with
    cloudpickle), and the workers must be able to import what ``fn`` uses.

    Being a generator, it connects (and raises EmsegError for an address it cannot
    reach, or when dask is not installed) on the first ``next()``. Closing it early
    closes the client, which cancels the items not yet run.
    """
    try:
        import distributed
    except ImportError:
        raise EmsegError(_EXTRA_HINT) from None
    items = list(items)
    with _connect(distributed, scheduler, n_workers, timeout) as client:
        futures = client.map(fn, items, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for future in distributed.as_completed(futures):
            try:
                value = future.result()
            except Exception as exc:  # the item's own error, re-raised from its worker
                value = exc
            future.release()
            yield index[future.key], value


@contextlib.contextmanager
def _workers_ignore_interrupts():
    """Start worker processes with Ctrl-C ignored, then restore the caller's handler.

    Ctrl-C in a terminal interrupts every process of the foreground group: each local
    Dask worker would end with a page of KeyboardInterrupt traceback on stderr, while
    emseg itself stops the batch and closes the cluster. A process started while SIGINT
    is ignored keeps ignoring it (Python then installs no handler, nor does asyncio), so
    the workers leave the interrupt to emseg. Only the main thread may set handlers;
    elsewhere nothing changes. A Ctrl-C during the cluster's start-up (a second or two)
    is lost; a worker the nanny restarts later starts with the default handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _connect:
    """A Client for ``scheduler``, and the LocalCluster it started, closed together."""

    def __init__(self, distributed, scheduler, n_workers, timeout):
        self.cluster = None
        if not isinstance(scheduler, str) or not scheduler:
            raise EmsegError(
                f"scheduler must be 'local' or an address like tcp://HOST:PORT, got "
                f"{scheduler!r}"
            )
        if scheduler == "local":
            import logging

            with _workers_ignore_interrupts():
                self.cluster = distributed.LocalCluster(
                    n_workers=n_workers or os.cpu_count() or 1,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",  # any free port: never clash with 8787
                    silence_logs=logging.CRITICAL,  # an item's error is yielded, not logged
                )
            self.client = distributed.Client(self.cluster)
            return
        try:
            self.client = distributed.Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EmsegError(
                f"cannot connect to the Dask scheduler at {scheduler} ({reason}); check "
                "the address and that `dask scheduler` is running there"
            ) from None

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
