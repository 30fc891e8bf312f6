"""Many images at once: the engine behind ``emseg batch``, ``emseg fit`` and ``emseg apply``.

This module chains :mod:`emseg.workflows.run` over many files; it holds no algorithm and
prints nothing (progress goes to a ``progress`` callback).

Inputs
    :func:`find_inputs` lists the images in folders (``recursive``, ``pattern``); each
    output folder mirrors the input's sub-folders (under one sub-folder per input
    folder when several are given). Hidden files are never inputs, nor the files
    emseg wrote inside the output folder (``summary.csv``, ``model.json``, and the
    outputs of an input beside them or that its report lists; see :class:`_OwnOutputs`),
    whatever ``pattern``. Output sub-folders are made one level at a time; one that is
    a link leading out of the output folder fails its inputs.

Work
    Each input is one task, run by :func:`emseg.workflows.run.segment_file` in a worker
    process (``jobs`` of them; ``concurrent.futures.ProcessPoolExecutor`` with the
    ``forkserver`` start method where available, else ``spawn``). At most ``2 x jobs``
    tasks are queued at a time and a task carries a path, never pixels, so memory stays
    about ``jobs`` x one image. With ``scheduler`` the tasks run on a Dask cluster
    instead (:func:`emseg.workflows.cluster.map_unordered`); results are the same.

    One batch at a time writes to an output folder (:func:`lock_output`); a second one
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

``OUT/summary.csv`` has one row per input: path, status (ok / failed / skipped),
error, K, iterations, log_likelihood, seconds. A path or error that a spreadsheet would
take for a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or CR) gets a leading
``'``. It is written atomically at the end, and
also when the batch is interrupted (unfinished inputs then read ``failed``,
``interrupted``; an input whose outputs were complete when the batch stopped reads
``ok``, even if its worker's result had not come back yet).
"""

import contextlib
import csv
import fnmatch
import json
import os
import re
import time
import traceback
import warnings
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from .._shared.errors import EmsegError
from .processes import cores, worker_context
from .run import file_stem, input_stamp, journal_path

SUMMARY_NAME = "summary.csv"
MODEL_NAME = "model.json"
SUMMARY_COLUMNS = ("path", "status", "error", "K", "iterations", "log_likelihood", "seconds")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz")
# names emseg writes for an input <stem>; never taken as inputs from the output folder
_OUTPUT_SUFFIXES = (  # every name pipeline.output_paths gives, but the report
    "_labels.png",
    "_labels.tif",
    "_labels.nii.gz",
    "_overlay.png",
    "_segments.png",
    "_posteriors.tif",
    "_pve.nii.gz",
)
_TEMP = re.compile(r"\.[0-9a-f]{8}\.tmp$")


@dataclass
class Input:
    """One image of a batch and the folder its outputs go to."""

    path: Path
    out_dir: Path


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


# --------------------------------------------------------------------------- inputs


def find_inputs(inputs, out, *, recursive=False, pattern=None):
    """The images named by ``inputs`` (folders or files), with their output folders.

    A folder contributes its files whose name matches ``pattern`` (shell-style, e.g.
    ``"*.tif"``; by default any PNG, JPEG, BMP or TIFF name), in sorted order, and with
    ``recursive`` those of its sub-folders, whose outputs go to the same sub-folders of
    ``out``. With several folders each gets its own sub-folder of ``out``, named after
    it. A file is taken as it is, its outputs in ``out``. Raises
    :class:`~emseg.EmsegError` if an input does not exist or nothing is found.
    """
    out = Path(out)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise EmsegError("no inputs given; pass one or more folders or images")
    out_real = _real(out)
    folders = [p for p in inputs if p.is_dir()]
    found = []
    for root in inputs:
        if not root.exists():
            raise EmsegError(f"{root} does not exist; check the path")
        if not root.is_dir():
            found.append(Input(root, out))
            continue
        base = out / _real(root).name if len(folders) > 1 else out
        walker = sorted(root.rglob("*")) if recursive else sorted(root.iterdir())
        ours = _OwnOutputs(walker, out_real)
        for path in walker:
            if not _wanted(path, root, pattern) or ours.wrote(path):
                continue
            found.append(Input(path, base / path.parent.relative_to(root)))
    if not found:
        what = f"matching {pattern!r}" if pattern else "(PNG, JPEG, BMP or TIFF)"
        where = ", ".join(str(p) for p in inputs)
        hint = "" if recursive else "; add --recursive to look in sub-folders"
        raise EmsegError(f"no images {what} found in {where}{hint}")
    return found


def _real(path):
    return Path(os.path.realpath(path))


def _wanted(path, root, pattern):
    rel = path.relative_to(root)
    if any(part.startswith(".") for part in rel.parts) or not path.is_file():
        return False
    if pattern is not None:
        return fnmatch.fnmatch(path.name, pattern)
    return path.name.lower().endswith(IMAGE_SUFFIXES)


class _OwnOutputs:
    """Tells the files emseg wrote into the output folder of a listing (``walker``),
    so they are not taken as inputs when the output folder is, or is inside, an input
    folder: ``summary.csv`` and ``model.json`` at its top, and files named as the
    outputs of an input ``<stem>`` (``<stem>_labels.png``, ``<stem>_report.json``...)
    when that input is in the same folder, or when the folder's
    ``<stem>_report.json`` (or the journal of an interrupted run) lists them. A file
    merely named like an output, with neither, is the user's: it may be an input."""

    _SUFFIXES = _OUTPUT_SUFFIXES + ("_report.json",)

    def __init__(self, walker, out_real):
        self.out_real = out_real
        self.stems = {}  # folder -> the stems of the entries in it
        self.listed = {}  # (folder, stem) -> the output names its report/journal lists
        for path in walker:
            name = path.name
            stems = self.stems.setdefault(path.parent, set())
            stems.add(name)  # a folder of DICOM slices: its name is its stem
            stems.add(file_stem(name) if name.lower().endswith((".nii", ".nii.gz"))
                      else Path(name).stem)

    def wrote(self, path):
        real = _real(path)
        if real.parent != self.out_real and self.out_real not in real.parents:
            return False
        name = path.name
        if real.parent == self.out_real and name in (SUMMARY_NAME, MODEL_NAME):
            return True
        for suffix in self._SUFFIXES:
            if not name.endswith(suffix):
                continue
            stem = name[: -len(suffix)]
            if stem in self.stems.get(path.parent, ()) or name in self._listed(path, stem):
                return True
        return False

    def _listed(self, path, stem):
        """The output names that the report or the journal of input ``stem`` in the
        folder of ``path`` lists."""
        from ..io.jsonfile import load_json

        key = (path.parent, stem)
        if key not in self.listed:
            names = set()
            report = path.parent / f"{stem}_report.json"
            journal = path.parent / f".{stem}_outputs.json"
            for source in (report, journal):
                try:
                    listed = load_json(source)["outputs"]
                    listed = listed.values() if isinstance(listed, dict) else listed
                    names.update(os.path.basename(str(p)) for p in listed)
                except (EmsegError, KeyError, TypeError, AttributeError, OSError):
                    pass  # none, or not one emseg wrote: it proves nothing
            self.listed[key] = names
        return self.listed[key]


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
    rows = [Row(str(item.path)) for item in items]
    summary_path = out / SUMMARY_NAME
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
            report = _written_since(item, started)
            if report is not None:
                row.status = "ok"
                _fill_from_report(row, report)
                continue
            row.status, row.error = "failed", "interrupted: the batch stopped first"
            if scheduler is None:  # local workers are all stopped by now
                _remove_stale_temps(item.out_dir, item.path, temps)
        _write_summary_quietly(summary_path, rows)
        raise
    write_summary(summary_path, rows)
    return BatchResult(rows, summary_path, model_path)


LOCK_NAME = ".emseg-batch.lock"


@contextlib.contextmanager
def lock_output(out):
    """Hold the output folder ``out`` for one batch: a second batch writing there would
    remove the first one's temporary files and replace its outputs.

    An exclusive, non-blocking ``flock`` on ``out/.emseg-batch.lock``, created (never
    through a link) and removed by the batch that holds it. The OS releases the lock
    when this process ends, however it ends; a file a killed batch left is reused.
    A lock taken on a file that another batch removed meanwhile is taken again on the
    new one, so two batches never both hold one. Raises :class:`~emseg.EmsegError` at
    once if another process holds it. Where there is no ``flock`` (Windows), or the
    file system refuses locks, the folder is not locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(out) / LOCK_NAME
    for _ in range(100):
        fd = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EmsegError(
                f"another emseg batch is writing to {out}; wait for it or use another -o"
            ) from None
        except OSError:  # no locks on this file system: go on unlocked
            locked = False
        else:
            locked = True
        if not locked or _same_file(fd, path):
            break
        os.close(fd)  # the holder removed it as we opened it: lock the new one
    else:  # pragma: no cover - removed under us 100 times in a row
        raise EmsegError(f"cannot lock output folder {out}; use another -o")
    try:
        yield
    finally:
        if locked:
            with contextlib.suppress(OSError):
                os.unlink(path)  # while still holding it
        os.close(fd)


def _open_lock(path):
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags, 0o666)
    except OSError as exc:
        raise EmsegError(
            f"cannot lock output folder {path.parent}: {path}: {exc.strerror or exc}; "
            "remove it if it is not a file emseg made, or use another -o"
        ) from None


def _same_file(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except OSError:
        return False


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


def _write_summary_quietly(path, rows):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_summary(path, rows)
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
    from .run import fit_options

    tasks = [(_task_path(items[i].path, scheduler), options, i, len(todo), max_samples)
             for i in todo]
    groups = {}  # (channels, ndim) -> merged PixelSummary
    group_of = {}  # input index -> its group
    done = 0
    for position, outcome in _map(_summary_task, tasks, jobs, scheduler):
        index = todo[position]
        row = rows[index]
        if isinstance(outcome, BaseException):
            outcome = _failure(outcome)
        status, value, row.warnings, (row.seconds, row.cpu_seconds), trace = outcome
        if status == "ok":
            merged = groups.get(value.group)
            groups[value.group] = value if merged is None else merged.merge(value)
            group_of[index] = value.group
        else:
            row.status, row.error, row.traceback = "failed", value, trace
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
                _make_folder(item.out_dir, out)
            except EmsegError as exc:
                state, reason = "conflict", str(exc)
            else:
                state, report, reason = _previous_outputs(item, plain, model_key, overwrite)
        if state == "done":
            _fill_from_report(row, report)
            row.status = "skipped"
        elif state == "conflict":
            row.status, row.error = "failed", reason
        else:
            _remove_stale_temps(item.out_dir, item.path, temps)
            if not overwrite:
                _remove_own_outputs(item, report)
            todo.append(index)
            tasks.append((
                _task_path(item.path, scheduler), _task_path(item.out_dir, scheduler),
                _task_path(out, scheduler), options, overwrite, model_key, model_dict,
                model_source,
            ))
            continue
        done += 1
        if progress is not None:
            progress(Progress("segment", done, total, row))
    for position, outcome in _map(_segment_task, tasks, jobs, scheduler):
        row = rows[todo[position]]
        if isinstance(outcome, BaseException):
            outcome = _failure(outcome)
        status, value, row.warnings, (row.seconds, row.cpu_seconds), trace = outcome
        if status == "ok":
            row.status, row.error = "ok", ""
            row.k, row.iterations, row.log_likelihood = value
        else:
            row.status, row.error, row.traceback = "failed", value, trace
        done += 1
        if progress is not None:
            progress(Progress("segment", done, total, row))


def _task_path(path, scheduler):
    """Paths as given for local workers (messages then name files as the user did);
    absolute for a Dask cluster, whose workers may run in another folder."""
    return os.path.abspath(path) if scheduler is not None else str(path)


def _previous_outputs(item, options, model_key, overwrite):
    """``(state, report, reason)``: state ``done`` (complete: skip), ``conflict`` (made
    with other options), ``redo`` (some outputs missing, or the input file changed
    since: its size or modification time differs from the report's; ``report`` lists
    the outputs emseg wrote) or ``new`` (no report emseg wrote)."""
    from ..io.jsonfile import load_json

    report_path = item.out_dir / f"{file_stem(item.path)}_report.json"
    if overwrite:
        return "redo", None, None
    if not report_path.exists():
        return "new", None, None
    try:
        report = load_json(report_path)
        outputs = list(report["outputs"].values())
        if os.path.exists(report["input"]):
            same_input = os.path.samefile(report["input"], item.path)
        else:  # a relative path written from another working folder
            same_input = Path(report["input"]).name == item.path.name
        same_options = report["options"] == options
        shared = report.get("shared_model", {}).get("fingerprint")
        recorded = report.get("input_file")  # older reports have none: trusted
        changed = recorded is not None and recorded != input_stamp(item.path)
    except (EmsegError, KeyError, TypeError, AttributeError, OSError):
        return "new", None, None  # not a report emseg wrote: it proves nothing
    if not same_input:
        return "conflict", None, (
            f"{report_path} belongs to another input ({report['input']}); use another "
            "output folder, or --overwrite"
        )
    if not same_options:
        changed = ", ".join(
            f"{key} {report['options'].get(key)!r} -> {value!r}"
            for key, value in options.items()
            if report["options"].get(key) != value
        )
        return "conflict", None, (
            f"outputs in {item.out_dir} were made with other options ({changed}); "
            "pass --overwrite to redo them"
        )
    if shared != model_key:
        return "conflict", None, (
            f"outputs in {item.out_dir} were made "
            + ("with another model" if shared else "without a shared model")
            + "; pass --overwrite to redo them"
        )
    if changed or not all(os.path.exists(p) for p in outputs):
        return "redo", report, None
    return "done", report, None


def _remove_own_outputs(item, report):
    """Delete the outputs of ``item`` that emseg provably wrote: those named by its
    ``report`` (when emseg wrote it) or by the journal an interrupted run left. Any
    other file with an output's name stays, and segmenting the input refuses it."""
    from ..io.jsonfile import load_json

    stem = file_stem(item.path)
    journal = journal_path(item.path, item.out_dir)
    ours = {f"{stem}{suffix}" for suffix in _OUTPUT_SUFFIXES + ("_report.json",)}
    listed = list(report["outputs"].values()) if report is not None else []
    if journal.exists():
        try:
            listed += load_json(journal)["outputs"]
        except (EmsegError, KeyError, TypeError, OSError):
            pass  # not a journal emseg wrote: it proves nothing
    # only names of this input's outputs, in its output folder: whatever a report says
    names = {os.path.basename(str(name)) for name in listed} & ours
    for name in sorted(names) + [journal.name]:
        with contextlib.suppress(OSError):
            os.unlink(item.out_dir / name)


def _written_since(item, since):
    """The report of ``item`` if this batch wrote it (after ``since``) with all the
    outputs it lists, else None. The report is written last, so it marks them complete."""
    from ..io.jsonfile import load_json

    report_path = item.out_dir / f"{file_stem(item.path)}_report.json"
    try:
        if report_path.stat().st_mtime < since:
            return None
        report = load_json(report_path)
        if all(os.path.exists(p) for p in report["outputs"].values()):
            return report
    except (EmsegError, KeyError, TypeError, AttributeError, OSError):
        pass
    return None


def _fill_from_report(row, report):
    row.k = report.get("k")
    row.iterations = report.get("iterations")
    row.log_likelihood = report.get("log_likelihood")
    row.seconds = None


# --------------------------------------------------------------------------- workers

_MODELS = {}  # model key -> SegmentationModel, validated once per worker process


def _segment_task(task):
    """Segment one input (runs in a worker). Returns ``(status, value, warnings,
    (seconds, cpu_seconds), traceback)``; never raises for a bad input."""
    path, out_dir, root, options, overwrite, model_key, model_dict, model_source = task

    def work():
        from .run import segment_file

        _make_folder(out_dir, root)  # again: the folder may have changed since
        model = _cached_model(model_key, model_dict, model_source)
        report = segment_file(path, out_dir, options, overwrite=overwrite, model=model)
        return report["k"], report["iterations"], report["log_likelihood"]

    return _guarded(work)


def _make_folder(folder, root):
    """Create ``folder``, a sub-folder of the output folder ``root``, one level at a
    time; refuse a level that is a link leading out of ``root`` (someone who can write
    in the output folder must not make the batch write, or delete, elsewhere)."""
    root_real = _real(root)
    current = Path(root)
    for part in Path(folder).relative_to(root).parts:
        current = current / part
        try:
            current.mkdir()
        except FileExistsError:
            pass
        except OSError as exc:
            raise EmsegError(
                f"cannot create output folder {current}: {exc.strerror or exc}"
            ) from None
        real = _real(current)
        if real != root_real and root_real not in real.parents:
            raise EmsegError(
                f"output folder {current} is a link to {real}, outside {root}; remove "
                "the link or choose another output folder"
            )


def _summary_task(task):
    """The :class:`~emseg.image.model.PixelSummary` of one input (runs in a worker)."""
    path, options, index, n_images, max_samples = task

    def work():
        from .run import summarize_file

        return summarize_file(
            path, options, index=index, n_images=n_images, max_samples=max_samples
        )

    return _guarded(work)


def _guarded(work):
    """Run ``work()``; a bad input becomes ``("failed", reason, ...)``, never an exception."""
    start, cpu = time.perf_counter(), time.process_time()
    trace = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status, value = "ok", work()
        except EmsegError as exc:
            status, value = "failed", str(exc)
        except MemoryError:
            status, value = "failed", "out of memory; try fewer --jobs or a smaller image"
        except Exception as exc:  # a bug: say so, keep the traceback for --debug
            status = "failed"
            value = f"internal error ({type(exc).__name__}: {exc})"
            trace = traceback.format_exc()
    messages = [str(w.message) for w in caught]
    seconds = (time.perf_counter() - start, time.process_time() - cpu)
    return (status, value, messages, seconds, trace)


def _failure(exc):
    """The outcome of a task that raised outside :func:`_guarded` (a dead worker...)."""
    if isinstance(exc, (EmsegError, WorkerDied)):
        return ("failed", str(exc), [], (None, None), None)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return ("failed", f"{type(exc).__name__}: {text}" if str(exc) else text, [], (None, None),
            None)


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


def _remove_stale_temps(folder, path, listed):
    """Delete the temporary files a killed run left for the outputs of input ``path``
    in ``folder``; ``listed`` caches each folder's temporary files (one listing per folder,
    however many inputs write there)."""
    key = os.path.abspath(folder)
    if key not in listed:
        try:
            with os.scandir(folder) as entries:
                listed[key] = [e.name for e in entries
                               if e.name.startswith(".") and _TEMP.search(e.name)]
        except OSError:  # not created yet: nothing left there
            listed[key] = []
    stem = file_stem(path)
    names = {f".{stem}{suffix}" for suffix in _OUTPUT_SUFFIXES + ("_report.json",)}
    names.add("." + journal_path(path, folder).name)
    for name in listed[key]:
        if _TEMP.sub("", name) in names:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


def _init_worker(threads, lifeline):
    """End the worker with the batch's process (``lifeline``: see
    :func:`emseg.workflows.processes.watch_parent`); give it an equal share of the cores; let it
    reuse the memory of one image for the next."""
    from .._shared.compute import set_num_threads
    from .processes import keep_freed_memory, watch_parent

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


# --------------------------------------------------------------------------- mapping


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


class WorkerDied(RuntimeError):
    """A worker process died (killed, or out of memory) while running one task alone."""


def _map(fn, tasks, jobs, scheduler):
    """Yield ``(index, outcome)`` for each task as it finishes (an exception when the
    task itself could not run)."""
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


def _map_processes(fn, tasks, jobs):
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from .processes import start_worker_server

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
