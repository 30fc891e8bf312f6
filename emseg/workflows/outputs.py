"""What a batch knows about its own outputs, for :mod:`emseg.workflows.batch`.

Every output of an input is written by :func:`emseg.workflows.run.segment_file` to a
temporary file and renamed, and its report is written last; while the outputs are being
written, a hidden journal (:func:`~emseg.workflows.run.journal_path`) lists them. From
these a batch tells, without guessing:

- which files of a listing are its own (:class:`OwnOutputs`), never taken as inputs;
- whether an input's outputs are complete, made with other options, or to be redone
  (:func:`previous_outputs`), and which of them a run may replace
  (:func:`remove_own_outputs`: only those its report or journal lists);
- which outputs this batch completed before it was stopped (:func:`written_since`);
- the temporary files a killed run left (:func:`remove_stale_temps`).

It also makes the output sub-folders, refusing a link that leads out of the output
folder (:func:`make_output_folder`), and holds the output folder for one batch at a time
(:func:`lock_output`).
"""

import contextlib
import os
import re
from pathlib import Path

from .._shared.errors import EmsegError
from .run import file_stem, input_stamp, journal_path

SUMMARY_NAME = "summary.csv"
INDEX_NAME = "index.html"
MODEL_NAME = "model.json"
LOCK_NAME = ".emseg-batch.lock"
# names emseg writes for an input <stem>; never taken as inputs from the output folder
_OUTPUT_SUFFIXES = (  # every name run.output_paths gives, but the report
    "_labels.png",
    "_labels.tif",
    "_labels.nii.gz",
    "_labels.txt",
    "_overlay.png",
    "_segments.png",
    "_posteriors.tif",
    "_posteriors.nii.gz",
    "_pve.tif",
    "_pve.nii.gz",
    "_objects.csv",
    "_bias.tif",
    "_bias.nii.gz",
    "_restored.tif",
    "_restored.nii.gz",
    "_report.html",
    "_model.json",  # a time series' shared model (run --shared-model)
    # with --ome
    "_labels.ome.tif",
    "_posteriors.ome.tif",
    "_pve.ome.tif",
    "_bias.ome.tif",
    "_restored.ome.tif",
)
_OWN_SUFFIXES = _OUTPUT_SUFFIXES + ("_report.json",)
_TEMP = re.compile(r"\.[0-9a-f]{8}\.tmp$")


def _real(path):
    return Path(os.path.realpath(path))


class OwnOutputs:
    """Tells the files emseg wrote into the output folder of a listing (``walker``),
    so they are not taken as inputs when the output folder is, or is inside, an input
    folder: ``summary.csv``, ``index.html`` and ``model.json`` at its top, and files named as the
    outputs of an input ``<stem>`` (``<stem>_labels.png``, ``<stem>_report.json``...)
    when that input is in the same folder, or when the folder's
    ``<stem>_report.json`` (or the journal of an interrupted run) lists them. A file
    merely named like an output, with neither, is the user's: it may be an input.

    ``out_real`` is the output folder with its links resolved (``os.path.realpath``).
    """

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
        """Whether emseg wrote ``path`` (an entry of the listing) as one of its outputs."""
        real = _real(path)
        if real.parent != self.out_real and self.out_real not in real.parents:
            return False
        name = path.name
        if real.parent == self.out_real and name in (SUMMARY_NAME, MODEL_NAME, INDEX_NAME):
            return True
        for suffix in _OWN_SUFFIXES:
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


def make_output_folder(folder, root):
    """Create ``folder``, a sub-folder of the output folder ``root``, one level at a
    time; refuse a level that is a link leading out of ``root`` (someone who can write
    in the output folder must not make the batch write, or delete, elsewhere).
    Raises :class:`~emseg.EmsegError`."""
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


# --------------------------------------------------------------------------- reruns


def previous_outputs(path, out_dir, options, model_key, overwrite):
    """What a previous run left for input ``path`` in ``out_dir``: ``(state, report,
    reason)``, state ``done`` (complete: skip), ``conflict`` (made with other
    ``options``, a plain dict, or another shared model than ``model_key``; ``reason``
    says which), ``redo`` (some outputs missing, or the input file changed since: its
    size or modification time differs from the report's; ``report`` lists the outputs
    emseg wrote) or ``new`` (no report emseg wrote)."""
    from ..io.jsonfile import load_json

    report_path = out_dir / f"{file_stem(path)}_report.json"
    if overwrite:
        return "redo", None, None
    if not report_path.exists():
        return "new", None, None
    try:
        report = load_json(report_path)
        outputs = list(report["outputs"].values())
        if os.path.exists(report["input"]):
            same_input = os.path.samefile(report["input"], path)
        else:  # a relative path written from another working folder
            same_input = Path(report["input"]).name == path.name
        same_options = report["options"] == options
        shared = report.get("shared_model", {}).get("fingerprint")
        recorded = report.get("input_file")  # older reports have none: trusted
        changed = recorded is not None and recorded != input_stamp(path)
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
            f"outputs in {out_dir} were made with other options ({changed}); "
            "pass --overwrite to redo them"
        )
    if shared != model_key:
        return "conflict", None, (
            f"outputs in {out_dir} were made "
            + ("with another model" if shared else "without a shared model")
            + "; pass --overwrite to redo them"
        )
    if changed or not all(os.path.exists(p) for p in outputs):
        return "redo", report, None
    return "done", report, None


def remove_own_outputs(path, out_dir, report):
    """Delete the outputs of input ``path`` in ``out_dir`` that emseg provably wrote:
    those named by its ``report`` (when emseg wrote it) or by the journal an interrupted
    run left. Any other file with an output's name stays, and segmenting the input
    refuses it."""
    from ..io.jsonfile import load_json

    stem = file_stem(path)
    journal = journal_path(path, out_dir)
    ours = {f"{stem}{suffix}" for suffix in _OWN_SUFFIXES}
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
            os.unlink(out_dir / name)


def written_since(path, out_dir, since):
    """The report of input ``path`` in ``out_dir`` if it was written after ``since``
    (``time.time()``) with all the outputs it lists, else None. The report is written
    last, so it marks them complete."""
    from ..io.jsonfile import load_json

    report_path = out_dir / f"{file_stem(path)}_report.json"
    try:
        if report_path.stat().st_mtime < since:
            return None
        report = load_json(report_path)
        if all(os.path.exists(p) for p in report["outputs"].values()):
            return report
    except (EmsegError, KeyError, TypeError, AttributeError, OSError):
        pass
    return None


def remove_stale_temps(folder, path, listed):
    """Delete the temporary files a killed run left for the outputs of input ``path``
    in ``folder``; ``listed`` (a dict, empty at first) caches each folder's temporary
    files (one listing per folder, however many inputs write there)."""
    key = os.path.abspath(folder)
    if key not in listed:
        try:
            with os.scandir(folder) as entries:
                listed[key] = [e.name for e in entries
                               if e.name.startswith(".") and _TEMP.search(e.name)]
        except OSError:  # not created yet: nothing left there
            listed[key] = []
    stem = file_stem(path)
    names = {f".{stem}{suffix}" for suffix in _OWN_SUFFIXES}
    names.add("." + journal_path(path, folder).name)
    for name in listed[key]:
        if _TEMP.sub("", name) in names:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


# --------------------------------------------------------------------------- the lock


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
