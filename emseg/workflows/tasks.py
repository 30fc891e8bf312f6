"""What a batch worker is given and what it gives back, for :mod:`emseg.workflows.batch`.

A :class:`Task` (segment one input) or a :class:`SummaryTask` (read one input for a
shared fit) carries paths and settings, never pixels; :func:`segment_task` and
:func:`summary_task` run them in a worker and return an :class:`Outcome`, never raising
for a bad input. All three are frozen dataclasses that pickle, for local worker
processes and for dask.distributed (cloudpickle) alike.
"""

import time
import traceback
import warnings
from dataclasses import dataclass

from .._shared.errors import EmsegError
from . import run
from .outputs import make_output_folder
from .pool import WorkerDied


@dataclass(frozen=True)
class Task:
    """Segment the image at ``path`` into ``out_dir``, a sub-folder of the batch's
    output folder ``root``, with ``options`` (a :class:`~emseg.workflows.run.RunOptions`).

    With a shared model, ``model_dict`` is its dict (:meth:`SegmentationModel.to_dict
    <emseg.image.model.SegmentationModel.to_dict>`), ``model_key`` its fingerprint (a
    worker rebuilds the model once per key) and ``model_source`` the file it came from.
    """

    path: str
    out_dir: str
    root: str
    options: object
    overwrite: bool = False
    model_key: str | None = None
    model_dict: dict | None = None
    model_source: str | None = None


@dataclass(frozen=True)
class SummaryTask:
    """Read the image at ``path`` for a shared fit: its pixel summary as input ``index``
    of ``n_images`` (see :func:`emseg.workflows.run.summarize_file`)."""

    path: str
    options: object
    index: int
    n_images: int
    max_samples: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What a task gives back.

    ``status`` is ``"ok"`` or ``"failed"`` (then ``error`` says why, in one line, and
    ``traceback`` is set for an internal error, a bug). A segmentation fills ``k``,
    ``iterations`` and ``log_likelihood`` from its report; a summary task ``summary``
    (a :class:`~emseg.image.model.PixelSummary`). ``warnings`` are the messages of the
    warnings raised meanwhile; ``seconds`` and ``cpu_seconds`` the wall and CPU time of
    the worker process (None when the task could not run).
    """

    status: str
    error: str = ""
    k: int | None = None
    iterations: int | None = None
    log_likelihood: float | None = None
    summary: object = None
    warnings: tuple = ()
    seconds: float | None = None
    cpu_seconds: float | None = None
    traceback: str | None = None

    @classmethod
    def from_exception(cls, exc):
        """The outcome of a task that raised outside its guard (a dead worker, a task
        that could not be sent or returned)."""
        if isinstance(exc, (EmsegError, WorkerDied)):
            return cls("failed", str(exc))
        text = " ".join(str(exc).split()) or type(exc).__name__
        return cls("failed", f"{type(exc).__name__}: {text}" if str(exc) else text)


_MODELS = {}  # model key -> SegmentationModel, validated once per worker process


def segment_task(task):
    """Segment one input (runs in a worker): a :class:`Task` in, an :class:`Outcome` out."""

    def work():
        make_output_folder(task.out_dir, task.root)  # again: the folder may have changed since
        model = _cached_model(task.model_key, task.model_dict, task.model_source)
        report = run.segment_file(task.path, task.out_dir, task.options,
                                  overwrite=task.overwrite, model=model)
        return {"k": report["k"], "iterations": report["iterations"],
                "log_likelihood": report["log_likelihood"]}

    return _guarded(work)


def summary_task(task):
    """The :class:`~emseg.image.model.PixelSummary` of one input (runs in a worker): a
    :class:`SummaryTask` in, an :class:`Outcome` out."""

    def work():
        return {"summary": run.summarize_file(
            task.path, task.options, index=task.index, n_images=task.n_images,
            max_samples=task.max_samples,
        )}

    return _guarded(work)


def _guarded(work):
    """Run ``work()`` (it returns the outcome's fields); a bad input becomes a failed
    outcome with its reason, never an exception."""
    start, cpu = time.perf_counter(), time.process_time()
    trace = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status, fields = "ok", work()
        except EmsegError as exc:
            status, fields = "failed", {"error": str(exc)}
        except MemoryError:
            status = "failed"
            fields = {"error": "out of memory; try fewer --jobs or a smaller image"}
        except Exception as exc:  # a bug: say so, keep the traceback for --debug
            status = "failed"
            fields = {"error": f"internal error ({type(exc).__name__}: {exc})"}
            trace = traceback.format_exc()
    return Outcome(
        status,
        warnings=tuple(str(w.message) for w in caught),
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu,
        traceback=trace,
        **fields,
    )


def _cached_model(key, model_dict, source):
    if key is None:
        return None
    model = _MODELS.get(key)
    if model is None:
        from ..image.model import SegmentationModel

        model = SegmentationModel.from_dict(model_dict)
        model.source = source
        _MODELS.clear()
        _MODELS[key] = model
    return model
