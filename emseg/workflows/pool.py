"""Running a batch's tasks: in this process, in local worker processes, or on Dask.

:func:`map_tasks` runs ``fn(task)`` for every task and yields ``(index, outcome)`` as
each finishes (an exception when the task itself could not run). Local workers are a
``concurrent.futures.ProcessPoolExecutor`` started from the fork server of
:mod:`emseg.workflows.processes` (``spawn`` where there is none); at most ``2 x jobs``
tasks are queued at a time. A worker gets an equal share of the cores, ends with the
process that runs the batch however it ends (:func:`~emseg.workflows.processes.watch_parent`)
and ignores Ctrl-C: when the batch stops (Ctrl-C, SIGTERM, an error) the pool kills its
workers, and the caller removes the temporary files of their unfinished outputs.

A worker process that dies (killed, out of memory) is replaced; the tasks it held are
retried one at a time, and the one that kills a worker alone gets :class:`WorkerDied`.
"""

import contextlib
import os
from collections import deque

from .._shared.errors import EmsegError
from .processes import cores, keep_freed_memory, start_worker_server, watch_parent, worker_context


class WorkerDied(RuntimeError):
    """A worker process died (killed, or out of memory) while running one task alone."""


def map_tasks(fn, tasks, jobs, scheduler):
    """Yield ``(index, outcome)`` for each of ``tasks`` as ``fn(task)`` finishes (an
    exception when the task itself could not run): in this process when ``jobs`` is 1
    or there is one task, on the Dask ``scheduler`` when given (``"local"`` or an
    address), else in ``jobs`` worker processes. ``fn`` and the tasks must pickle."""
    if not tasks:
        return
    if scheduler is not None:
        try:
            from .cluster import map_unordered
        except ImportError:
            raise EmsegError(
                "--scheduler needs Dask support: pip install 'emseg[dask]'"
            ) from None
        extra = {"n_workers": jobs} if scheduler == "local" else {}
        yield from map_unordered(fn, tasks, scheduler, **extra)
    elif jobs == 1 or len(tasks) == 1:
        for index, task in enumerate(tasks):
            yield index, fn(task)
    else:
        yield from _map_processes(fn, tasks, jobs)


def _init_worker(threads, lifeline):
    """End the worker with the batch's process (``lifeline``: see
    :func:`emseg.workflows.processes.watch_parent`); give it an equal share of the cores; let it
    reuse the memory of one image for the next."""
    from .._shared.compute import set_num_threads

    watch_parent(lifeline)
    keep_freed_memory()
    set_num_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except Exception:  # pragma: no cover - OpenCV is a dependency; threads only tune speed
        pass
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # optional: BLAS threads only tune speed
        pass


def _ping():
    return os.getpid()


def _check_started(pool):
    """Refuse a pool whose workers cannot even start (then no task is to blame)."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        with _signals_held():
            future = pool.submit(_ping)
        future.result()
    except BrokenProcessPool:
        raise EmsegError(
            "worker processes could not start (see the messages above); run with 1 job "
            "(--jobs 1), or from a script file rather than standard input"
        ) from None


def _map_processes(fn, tasks, jobs):
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    start_worker_server()  # if not started yet: with Ctrl-C ignored in its workers
    context = worker_context()
    threads = max(1, cores() // jobs)
    queue = deque(range(len(tasks)))
    suspects = deque()  # tasks running when a worker died: retried one at a time
    while queue or suspects:
        alone = not queue
        source = suspects if alone else queue
        workers = 1 if alone else min(jobs, len(queue))
        limit = 1 if alone else 2 * workers
        # the workers end when this process ends or closes its end of the lifeline
        lifeline, held = context.Pipe(duplex=False)
        pool = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker,
            initargs=(threads, lifeline),
        )
        running = {}
        broken = False
        stopped = True  # until the loop ends normally: Ctrl-C, SIGTERM, a bug
        try:
            _check_started(pool)
            while source or running:
                while source and not broken and len(running) < limit:
                    index = source.popleft()
                    with _signals_held():  # it may start a worker
                        running[pool.submit(fn, tasks[index])] = index
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = running.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        broken = True
                        if alone:
                            yield index, WorkerDied(
                                "a worker process died while reading or segmenting it "
                                "(killed, or out of memory?)"
                            )
                        else:
                            suspects.append(index)
                        continue
                    except Exception as exc:  # the task could not be sent or returned
                        outcome = exc
                    yield index, outcome
                if broken and not running:
                    break
            stopped = False
        finally:
            if stopped:
                _stop_workers(pool)
            pool.shutdown(wait=True, cancel_futures=True)
            held.close()
            lifeline.close()


@contextlib.contextmanager
def _signals_held():
    """Hold Ctrl-C and SIGTERM until the block ends, then act on them as usual.

    ``submit`` may start a worker: interrupted after the fork server forked it but
    before the pool recorded it, the worker would not be stopped with the others, and
    would print a traceback on reading its queues, removed by then."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for sig in dict.fromkeys(caught):
            handler = previous[sig]
            if callable(handler):
                handler(sig, None)  # Python's: Ctrl-C raises KeyboardInterrupt
            elif handler in (None, signal.SIG_DFL):
                signal.raise_signal(sig)


def _stop_workers(pool):
    """Kill the workers of ``pool`` now, rather than wait for their images: the batch is
    stopping (they ignore Ctrl-C, see :func:`emseg.workflows.processes.start_worker_server`). The
    temporary files of their unfinished outputs stay, hidden; the caller removes them."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            process.kill()
