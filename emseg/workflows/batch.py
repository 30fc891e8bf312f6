"""Many images at once: the engine behind ``emseg batch``, ``emseg fit`` and ``emseg apply``.

This module chains :mod:`emseg.workflows.run` over many files; it holds no algorithm and
prints nothing (progress goes to a ``progress`` callback). Its parts:
:mod:`~emseg.workflows.tasks` (what a worker is given and gives back),
:mod:`~emseg.workflows.pool` (running the tasks: worker processes or Dask) and
:mod:`~emseg.workflows.outputs` (what a batch knows about its own outputs).

Inputs
    :func:`~emseg.workflows.inputs.find_inputs` lists the images in folders (``recursive``, ``pattern``); each
    output folder mirrors the input's sub-folders (under one sub-folder per input
    folder when several are given). Hidden files are never inputs, nor the files
    emseg wrote inside the output folder (``summary.csv``, ``model.json``, and the
    outputs of an input beside them or that its report lists; see
    :class:`~emseg.workflows.outputs.OwnOutputs`), whatever ``pattern``. Output
    sub-folders are made one level at a time; one that is a link leading out of the
    output folder fails its inputs.

Work
    Each input is one :class:`~emseg.workflows.tasks.Task`, run by
    :func:`emseg.workflows.run.segment_file` in a worker process (``jobs`` of them;
    ``concurrent.futures.ProcessPoolExecutor`` with the ``forkserver`` start method
    where available, else ``spawn``; see :func:`emseg.workflows.pool.map_tasks`). At
    most ``2 x jobs`` tasks are queued at a time and a task carries a path, never
    pixels, so memory stays about ``jobs`` x one image. With ``scheduler`` the tasks run
    on a Dask cluster instead (:func:`emseg.workflows.cluster.map_unordered`); results
    are the same.

    One batch at a time writes to an output folder
    (:func:`~emseg.workflows.outputs.lock_output`); a second one
    is refused at once. Local workers end with the process that runs the batch, however
    it ends (:func:`emseg.workflows.processes.watch_parent`), and ignore Ctrl-C: when the batch
    stops (Ctrl-C, SIGTERM, an error) it kills them and removes the temporary files of
    their unfinished outputs.

Failures
    A bad input never stops the batch: it is recorded ``failed`` with its one-line
    reason. A worker process that dies (killed, out of memory) is replaced; the inputs
    it held are retried one at a time, and the one that kills a worker alone fails.

Reruns
    Every output is written to a temporary file and renamed, and the report is written
    last, so an input whose report exists and lists only existing outputs is complete:
    a rerun skips it (``overwrite`` redoes it), unless the input file's size or
    modification time differs from the report's: then it is redone. An input with
    some outputs but no
    complete report was interrupted: it is redone, replacing the outputs emseg provably
    wrote (those its report or :func:`~emseg.workflows.run.journal_path` lists); any other
    file with an output's name is refused, never replaced, as ``emseg run`` refuses it.
    Before an input is segmented, the temporary files a killed run left for it are
    removed. Outputs made with other options are not skipped but refused (pass
    ``overwrite``).

Shared model
    ``shared_model=True`` first fits one :class:`~emseg.image.model.SegmentationModel` on all
    the inputs (per-image :class:`~emseg.image.model.PixelSummary` computed in the workers,
    merged exactly), saves it as ``OUT/model.json``, then labels every input with it. A
    rerun reuses ``OUT/model.json``, so an interrupted batch resumes with the same
    labels; it refuses one fitted with other options, or on other inputs (the model
    records their paths, sizes and modification times).

``OUT/index.html`` shows the same rows as a page (:mod:`~emseg.workflows.html_index`),
with a thumbnail of each overlay and links to the images' HTML reports (``--html``).
``OUT/summary.csv`` has one row per input: path, status (ok / failed / skipped),
error, K, iterations, log_likelihood, seconds. A path or error that a spreadsheet would
take for a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or CR) gets a leading
``'``. It is written atomically at the end, and
also when the batch is interrupted (unfinished inputs then read ``failed``,
``interrupted``; an input whose outputs were complete when the batch stopped reads
``ok``, even if its worker's result had not come back yet).
"""

import csv
import json
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .._shared.errors import EmsegError
from .inputs import Input, find_inputs
from .outputs import (
    INDEX_NAME,
    MODEL_NAME,
    SUMMARY_NAME,
    lock_output,
    make_output_folder,
    previous_outputs,
    remove_own_outputs,
    remove_stale_temps,
    written_since,
)
from .pool import map_tasks
from .processes import cores
from .run import file_stem
from .tasks import Outcome, SummaryTask, Task, segment_task, summary_task

SUMMARY_COLUMNS = ("path", "status", "error", "K", "iterations", "log_likelihood", "seconds")


@dataclass
class Row:
    """The outcome of one input: one row of ``summary.csv``."""

    path: str
    status: str = "pending"  # then ok, failed or skipped
    error: str = ""
    k: int | None = None
    iterations: int | None = None
    log_likelihood: float | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None  # CPU time of the process that did the work
    warnings: list = field(default_factory=list)
    traceback: str | None = None  # for an internal error (a bug), to show with --debug

    def as_csv(self):
        return {
            "path": _text_cell(self.path),
            "status": self.status,
            "error": _text_cell(self.error),
            "K": "" if self.k is None else self.k,
            "iterations": "" if self.iterations is None else self.iterations,
            "log_likelihood": "" if self.log_likelihood is None else repr(float(self.log_likelihood)),
            "seconds": "" if self.seconds is None else f"{self.seconds:.3f}",
        }


# a spreadsheet reads a cell starting with one of these as a formula (OWASP, "CSV
# Injection"); file names and error messages may, so they get a leading quote
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SURROGATE = re.compile("[\ud800-\udfff]")  # a file name's bytes that are not UTF-8


def _text_cell(text):
    """A path or message as one cell that shows as text: a file name's bytes that are
    not UTF-8 (Python's surrogate escapes) as ``\\xNN``, CR and LF as ``\\r`` and
    ``\\n`` (the csv module does not quote a lone CR), and a leading ``'`` before what
    would start a formula."""
    text = _SURROGATE.sub(_escaped, text).replace("\r", "\\r").replace("\n", "\\n")
    return "'" + text if text.startswith(_FORMULA_START) else text


def _escaped(match):
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


@dataclass
class Progress:
    """What a ``progress`` callback receives after each input finishes.

    ``phase`` is ``"fit"`` (reading the inputs for a shared model) or ``"segment"``;
    ``done`` of ``total`` inputs of that phase are finished; ``row`` is the input that
    just finished (its status, error and warnings).
    """

    phase: str
    done: int
    total: int
    row: Row


@dataclass
class BatchResult:
    rows: list
    summary_path: Path
    model_path: Path | None = None

    @property
    def failed(self):
        return [r for r in self.rows if r.status == "failed"]

    def count(self, status):
        return sum(r.status == status for r in self.rows)


# --------------------------------------------------------------------------- the batch


def run_batch(
    inputs,
    out,
    options=None,
    *,
    recursive=False,
    pattern=None,
    jobs=None,
    shared_model=False,
    model=None,
    overwrite=False,
    scheduler=None,
    max_samples=None,
    progress=None,
):
    """Segment every image of ``inputs`` into ``out``; return a :class:`BatchResult`.

    ``options``: a :class:`~emseg.workflows.run.RunOptions` for every image. ``jobs``:
    worker processes (default ``os.cpu_count()``; 1 runs in this process).
    ``shared_model``: fit one model on all inputs first (saved as ``out/model.json``)
    and label every image with it. ``model``: label every image with this
    :class:`~emseg.image.model.SegmentationModel` instead. ``scheduler``: a Dask scheduler
    address or ``"local"`` (needs ``emseg[dask]``). ``progress(Progress)`` is called
    after each input. See the module docstring for reruns and failures.
    """
    from .run import RunOptions

    options = options or RunOptions()
    jobs = _check_jobs(jobs)
    if shared_model and model is not None:
        raise EmsegError("give either shared_model=True or a model, not both")
    if model is not None:  # the reports then show the settings the labels came from
        options = replace(
            options,
            classes=model.k,
            color_space=model.features.color_space,
            spatial=model.features.spatial,
            covariance=model.mixture.covariance_type,
        )
    out = Path(out)
    items = find_inputs(inputs, out, recursive=recursive, pattern=pattern)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmsegError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    with lock_output(out):
        return _run_locked(items, out, options, jobs, shared_model, model, overwrite,
                           scheduler, max_samples, progress)


def _run_locked(items, out, options, jobs, shared_model, model, overwrite, scheduler,
                max_samples, progress):
    from .html_index import check_index

    rows = [Row(str(item.path)) for item in items]
    summary_path = out / SUMMARY_NAME
    check_index(out / INDEX_NAME, overwrite)
    model_path = out / MODEL_NAME if shared_model else None
    if shared_model:
        model = _previous_model(model_path, options, overwrite, max_samples, items)
    started = time.time()
    try:
        if shared_model and model is None:
            model = _fit_shared(items, rows, model_path, options, jobs, scheduler,
                                max_samples, progress)
        _segment_all(items, rows, out, options, model, overwrite, jobs, scheduler, progress)
    except BaseException:
        # record what was done, even when no result had come back yet: a worker may
        # have finished writing an image's outputs just before the interrupt
        temps = {}
        for item, row in zip(items, rows):
            if row.status != "pending":
                continue
            report = written_since(item.path, item.out_dir, started)
            if report is not None:
                row.status = "ok"
                _fill_from_report(row, report)
                continue
            row.status, row.error = "failed", "interrupted: the batch stopped first"
            if scheduler is None:  # local workers are all stopped by now
                remove_stale_temps(item.out_dir, item.path, temps)
        _write_summary_quietly(summary_path, rows, items)
        raise
    write_summary(summary_path, rows)
    write_index(out / INDEX_NAME, items, rows)
    return BatchResult(rows, summary_path, model_path)


def fit_files(paths, options=None, *, jobs=None, scheduler=None, max_samples=None,
              progress=None):
    """Fit one :class:`~emseg.image.model.SegmentationModel` on the images at ``paths``.

    Reads the images in ``jobs`` worker processes (or on a Dask ``scheduler``) and
    merges their :class:`~emseg.image.model.PixelSummary`; ``options`` gives K and the model
    settings. Returns ``(model, rows)``: one :class:`Row` per path, ``failed`` with its
    reason when the image could not be used. ``model`` is None when no image could.
    """
    from .run import RunOptions

    options = options or RunOptions()
    paths = [Path(p) for p in paths]
    rows = [Row(str(p)) for p in paths]
    items = [Input(p, Path(".")) for p in paths]
    model = _fit(items, rows, list(range(len(items))), options, _check_jobs(jobs), scheduler,
                 max_samples, progress)
    for row in rows:
        if row.status == "pending":
            row.status = "ok"
    return model, rows


def write_summary(path, rows):
    """Write ``rows`` as ``summary.csv`` at ``path`` (atomically, replacing it)."""
    from ..io.atomic import open_temp, writing

    with writing(path, overwrite=True) as tmp:
        with open_temp(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, SUMMARY_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow(row.as_csv())


def write_index(path, items, rows):
    """Write the batch's ``index.html`` at ``path`` (see :mod:`emseg.workflows.html_index`)."""
    from .html_index import write_batch_index

    write_batch_index(path, items, rows)


def _write_summary_quietly(path, rows, items):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_summary(path, rows)
        write_index(path.parent / INDEX_NAME, items, rows)
    except Exception:  # the batch is already failing; its own error matters more
        pass


def _check_jobs(jobs):
    if jobs is None:
        return cores()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise EmsegError(f"jobs must be a whole number >= 1, got {jobs!r}")
    return jobs


def _previous_model(model_path, options, overwrite, max_samples=None, items=None):
    """The shared model a previous run left at ``model_path`` (None: fit one); refused
    if it was fitted with other options or on other inputs than ``items``."""
    from ..image.model import DEFAULT_MAX_SAMPLES, load_model

    if overwrite or not model_path.exists():
        return None
    model = load_model(model_path)
    fix = "pass --overwrite to refit it (and redo every image), or use another output folder"
    if model.training.get("fit_settings") != _fit_settings(options):
        raise EmsegError(f"{model_path} was fitted with other options; {fix}")
    if items is not None and model.training.get("inputs") != _inputs_record(items):
        fitted_on = model.training.get("inputs") or {}
        raise EmsegError(
            f"{model_path} was fitted on other inputs ({fitted_on.get('n_images', '?')} "
            f"image(s), or the same ones since changed; now {len(items)}); {fix}"
        )
    # the pixel sample only matters when the fit was made from one (float images)
    used = model.training.get("max_samples")
    if not model.training.get("exact", True) and used != (max_samples or DEFAULT_MAX_SAMPLES):
        raise EmsegError(
            f"{model_path} was fitted on a sample of {used} pixels, not "
            f"{max_samples or DEFAULT_MAX_SAMPLES}; {fix}"
        )
    return model


def _fit_shared(items, rows, model_path, options, jobs, scheduler, max_samples, progress):
    """Fit the batch's shared model on all usable inputs and save it at ``model_path``."""
    todo = [i for i, row in enumerate(rows) if row.status == "pending"]
    model = _fit(items, rows, todo, options, jobs, scheduler, max_samples, progress)
    if model is None:
        raise EmsegError("no input could be read to fit the shared model; see summary.csv")
    model.training["inputs"] = _inputs_record(items)  # to check a rerun against
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(model_path, overwrite=True)
    model.source = str(model_path)
    return model


def _inputs_record(items):
    """What a shared model records of the inputs it was fitted on: their number and a
    SHA-256 of each one's absolute path, size and modification time (ns), so that a
    rerun on other files, or on the same files since changed, does not reuse it."""
    import hashlib

    digest = hashlib.sha256()
    for item in sorted(items, key=lambda item: os.path.abspath(item.path)):
        where = os.path.abspath(item.path)
        try:
            st = os.stat(item.path)
            stamp = f"{st.st_size} {st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(os.fsencode(where) + b"\0" + stamp.encode() + b"\0")
    return {"n_images": len(items), "sha256": digest.hexdigest()}


def _plain_options(options):
    return json.loads(json.dumps(options.to_dict()))


# the options that change a shared fit (not, say, --posteriors)
_FIT_SETTINGS = ("classes", "k_max", "color_space", "spatial", "covariance", "seed", "max_iter",
                 "tol", "mask_path")


def _fit_settings(options):
    plain = _plain_options(options)
    return {key: plain[key] for key in _FIT_SETTINGS}


def _fit(items, rows, todo, options, jobs, scheduler, max_samples, progress):
    """Merge the pixel summaries of ``items[todo]`` and fit; mark unusable ones failed."""
    from ..image.model import DEFAULT_MAX_SAMPLES, fit_summary
    from .steps import fit_options

    tasks = [SummaryTask(_task_path(items[i].path, scheduler), options, i, len(todo),
                         max_samples) for i in todo]
    groups = {}  # (channels, ndim) -> merged PixelSummary
    group_of = {}  # input index -> its group
    done = 0
    for position, outcome in map_tasks(summary_task, tasks, jobs, scheduler):
        index = todo[position]
        row = rows[index]
        outcome = _record_outcome(row, outcome)
        if outcome.status == "ok":  # the row stays pending: the fit may still refuse it
            value = outcome.summary
            merged = groups.get(value.group)
            groups[value.group] = value if merged is None else merged.merge(value)
            group_of[index] = value.group
        done += 1
        if progress is not None:
            progress(Progress("fit", done, len(todo), row))
    if not groups:
        return None
    # the kind of image (grey / colour, 2-D / 3-D) of the first usable input decides
    first = min(groups.values(), key=lambda s: s.first_index)
    for index, group in group_of.items():
        if group != first.group:
            rows[index].status = "failed"
            rows[index].error = (
                f"is {_describe(group)} but the shared model is for {_describe(first.group)} "
                f"images (as {items[first.first_index].path.name}); segment it in a "
                "separate batch"
            )
    max_samples_used = (max_samples or DEFAULT_MAX_SAMPLES) if first.samples else None
    model = fit_summary(first, options.classes, max_samples=max_samples_used,
                        **fit_options(options))
    model.training["fit_settings"] = _fit_settings(options)  # to check a rerun against
    return model


def _describe(group):
    channels, ndim = group
    text = "colour" if channels == 3 else "grey"
    return text if ndim is None else f"{text} {ndim}-D"


def _segment_all(items, rows, out, options, model, overwrite, jobs, scheduler, progress):
    """Segment every input not already failed into its folder under ``out``; skip the
    complete ones."""
    model_dict = model_key = model_source = None
    if model is not None:
        model_dict = model.to_dict()
        model_key = model.fingerprint()
        model_source = model.source
    todo, tasks = [], []
    plain = _plain_options(options)
    total = sum(row.status == "pending" for row in rows)
    done = 0
    owners = {}
    temps = {}  # output folder -> the temporary files in it, listed once
    for index, (item, row) in enumerate(zip(items, rows)):
        if row.status != "pending":
            continue
        key = (os.path.normcase(os.path.abspath(item.out_dir)), file_stem(item.path))
        if key in owners:
            state, reason = "conflict", (
                f"its outputs would have the same names as {owners[key]}'s "
                f"(in {item.out_dir}); rename one of them"
            )
        else:
            owners[key] = item.path
            try:
                make_output_folder(item.out_dir, out)
            except EmsegError as exc:
                state, reason = "conflict", str(exc)
            else:
                state, report, reason = previous_outputs(item.path, item.out_dir, plain,
                                                         model_key, overwrite)
        if state == "done":
            _fill_from_report(row, report)
            row.status = "skipped"
        elif state == "conflict":
            row.status, row.error = "failed", reason
        else:
            remove_stale_temps(item.out_dir, item.path, temps)
            if not overwrite:
                remove_own_outputs(item.path, item.out_dir, report)
            todo.append(index)
            tasks.append(Task(
                _task_path(item.path, scheduler), _task_path(item.out_dir, scheduler),
                _task_path(out, scheduler), options, overwrite=overwrite,
                model_key=model_key, model_dict=model_dict, model_source=model_source,
            ))
            continue
        done += 1
        if progress is not None:
            progress(Progress("segment", done, total, row))
    for position, outcome in map_tasks(segment_task, tasks, jobs, scheduler):
        row = rows[todo[position]]
        outcome = _record_outcome(row, outcome)
        if outcome.status == "ok":
            row.status, row.error = "ok", ""
            row.k, row.iterations = outcome.k, outcome.iterations
            row.log_likelihood = outcome.log_likelihood
        done += 1
        if progress is not None:
            progress(Progress("segment", done, total, row))


def _record_outcome(row, outcome):
    """Copy into ``row`` what any task's ``outcome`` (an :class:`Outcome`, or the
    exception of a task that could not run) tells: its warnings, times and, when it
    failed, its reason. Returns the outcome."""
    if isinstance(outcome, BaseException):
        outcome = Outcome.from_exception(outcome)
    row.warnings = list(outcome.warnings)
    row.seconds, row.cpu_seconds = outcome.seconds, outcome.cpu_seconds
    if outcome.status != "ok":
        row.status, row.error, row.traceback = "failed", outcome.error, outcome.traceback
    return outcome


def _task_path(path, scheduler):
    """Paths as given for local workers (messages then name files as the user did);
    absolute for a Dask cluster, whose workers may run in another folder."""
    return os.path.abspath(path) if scheduler is not None else str(path)


def _fill_from_report(row, report):
    row.k = report.get("k")
    row.iterations = report.get("iterations")
    row.log_likelihood = report.get("log_likelihood")
    row.seconds = None
