"""Hostile input and file-system faults (issue 17): nothing lost, nothing overwritten,
nothing written outside the output folder, nothing a spreadsheet would run."""

import csv
import json
import os

import numpy as np
import pytest


from emseg import EmsegError

from emseg import io
from emseg.io import atomic
from emseg.workflows.batch import Row, run_batch, write_summary
from emseg.workflows.run import RunOptions, segment_file
from _helpers import save_png, three_bands


def scene(seed=0, shape=(30, 40)):
    return three_bands(seed, shape, means=(50, 120, 190), sigma=10, round_first=True)




def read_summary(out):
    with open(out / "summary.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- data loss


def test_batch_never_replaces_a_users_file_named_like_an_output(tmp_path):
    """-o is the data folder, which holds a hand-made annotation named as emseg's labels
    output and no report: the image fails with a reason, the annotation is untouched."""
    data = tmp_path / "data"
    save_png(data / "cell.png", scene(1))
    save_png(data / "other.png", scene(2))
    annotation = b"hand-made annotation, hours of work"
    (data / "cell_labels.png").write_bytes(annotation)
    result = run_batch([data], data, RunOptions(classes=3), jobs=1)
    assert [r.status for r in result.rows] == ["failed", "ok"]
    assert "cell_labels.png exists" in result.rows[0].error
    assert (data / "cell_labels.png").read_bytes() == annotation
    assert not (data / "cell_report.json").exists()
    # a rerun refuses it again; only --overwrite replaces it
    again = run_batch([data], data, RunOptions(classes=3), jobs=1)
    assert [r.status for r in again.rows] == ["failed", "skipped"]
    assert (data / "cell_labels.png").read_bytes() == annotation


def test_batch_replaces_only_what_a_report_emseg_wrote_lists(tmp_path):
    """An incomplete input is redone when its report proves the outputs are emseg's; a
    report that is not emseg's proves nothing, and every output-named file stays."""
    data = tmp_path / "data"
    save_png(data / "cell.png", scene(1))
    out = tmp_path / "out"
    run_batch([data], out, RunOptions(classes=3), jobs=1)
    (out / "cell_overlay.png").unlink()
    assert run_batch([data], out, RunOptions(classes=3), jobs=1).rows[0].status == "ok"
    (out / "cell_overlay.png").unlink()
    (out / "cell_report.json").write_text("{ not json")
    labels = (out / "cell_labels.png").read_bytes()
    result = run_batch([data], out, RunOptions(classes=3), jobs=1)
    assert result.rows[0].status == "failed"
    assert "exists; pass --overwrite" in result.rows[0].error
    assert (out / "cell_report.json").read_text() == "{ not json"
    assert (out / "cell_labels.png").read_bytes() == labels


def test_batch_redoes_outputs_emseg_wrote_before_it_was_killed(tmp_path, monkeypatch):
    """Killed after some outputs and before the report: the rerun replaces them. (An
    exception or Ctrl-C removes them at once; a kill leaves them, and the journal.)"""
    from emseg.workflows.run import journal_path

    data = tmp_path / "data"
    save_png(data / "cell.png", scene(1))
    out = tmp_path / "out"
    run_batch([data], out, RunOptions(classes=3), jobs=1)
    # what a kill between the last picture and the report leaves
    report = json.loads((out / "cell_report.json").read_text())
    names = [os.path.basename(p) for p in report["outputs"].values()]
    io.write_json(journal_path(data / "cell.png", out), {"outputs": names})
    (out / "cell_report.json").unlink()
    (out / "summary.csv").unlink()
    assert (out / "cell_labels.png").exists() and not (out / "cell_report.json").exists()
    result = run_batch([data], out, RunOptions(classes=3), jobs=1)
    assert result.rows[0].status == "ok", result.rows[0].error
    assert (out / "cell_report.json").exists()
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no bookkeeping left


# --------------------------------------------------------------------------- symlinks


def test_batch_never_writes_through_a_folder_link_leading_out_of_the_output_folder(tmp_path):
    data = tmp_path / "data"
    save_png(data / "sub" / "x.png", scene(1))
    save_png(data / "deep" / "er" / "y.png", scene(2))
    save_png(data / "z.png", scene(3))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(elsewhere)  # planted by someone who can write in out
    (out / "deep").symlink_to(elsewhere)
    (out / "inside").mkdir()
    result = run_batch([data], out, RunOptions(classes=3), jobs=1, recursive=True)
    rows = {os.path.basename(r.path): r for r in result.rows}
    assert rows["z.png"].status == "ok"
    for name in ("x.png", "y.png"):
        assert rows[name].status == "failed"
        assert "outside" in rows[name].error and "link" in rows[name].error
    assert list(elsewhere.iterdir()) == []


def test_batch_follows_a_folder_link_that_stays_in_the_output_folder(tmp_path):
    data = tmp_path / "data"
    save_png(data / "sub" / "x.png", scene(1))
    out = tmp_path / "out"
    (out / "real").mkdir(parents=True)
    (out / "sub").symlink_to(out / "real")
    assert run_batch([data], out, RunOptions(classes=3), jobs=1, recursive=True).count("ok") == 1
    assert (out / "real" / "x_labels.png").is_file()


def test_batch_worker_checks_its_folder_again(tmp_path):
    """A link planted after the batch checked the folder, before the worker writes."""
    from emseg.workflows.tasks import Task, segment_task

    image = save_png(tmp_path / "x.png", scene(1))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(elsewhere)
    task = Task(str(image), str(out / "sub"), str(out), RunOptions(classes=3))
    outcome = segment_task(task)
    assert outcome.status == "failed" and "outside" in outcome.error
    assert list(elsewhere.iterdir()) == []


# --------------------------------------------------------------------------- summary.csv


def test_summary_cells_from_names_and_errors_cannot_be_formulas(tmp_path, monkeypatch):
    """OWASP CSV injection: a cell starting with = + - @ tab or CR is quoted; the
    numbers emseg writes itself (a negative log-likelihood) stay numbers."""
    data = tmp_path / "data"
    for name in ("=HYPERLINK(1).png", "+1.png", "-1.png", "@SUM(1).png", "\tx.png", "\rx.png"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text("not an image")  # its error message starts with its name
    save_png(data / "good.png", scene(1))
    monkeypatch.chdir(data)
    names = sorted(p.name for p in data.iterdir())
    result = run_batch(names, tmp_path / "out", RunOptions(classes=3), jobs=1)
    assert result.count("failed") == 6 and result.count("ok") == 1
    rows = read_summary(tmp_path / "out")
    for row in rows:
        for column in ("path", "error"):
            assert not row[column].startswith(("=", "+", "-", "@", "\t", "\r")), row
    by_path = {row["path"]: row for row in rows}
    assert len(by_path) == 7  # a CR in a name does not break a row in two
    assert by_path["'=HYPERLINK(1).png"]["error"].startswith("'=HYPERLINK(1).png")
    assert by_path["'\tx.png"]["status"] == "failed"
    assert by_path["\\rx.png"]["status"] == "failed"

    write_summary(tmp_path / "summary.csv", [Row("x.png", "ok", k=3, log_likelihood=-12.5)])
    (row,) = read_summary(tmp_path)
    assert row["log_likelihood"] == "-12.5" and row["K"] == "3"  # numbers stay numbers


# --------------------------------------------------------------------------- file names


def test_file_names_that_are_not_utf8_are_carried_into_reports_and_summary(tmp_path):
    data = tmp_path / "data"
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes, as on old archives
    try:
        save_png(data / name, scene(1))
    except (UnicodeError, OSError):
        pytest.skip("this file system refuses names that are not UTF-8")
    save_png(data / "ok.png", scene(2))
    out = tmp_path / "out"
    result = run_batch([data], out, RunOptions(classes=3), jobs=1)
    assert result.count("ok") == 2, [r.error for r in result.rows]
    paths = [row["path"] for row in read_summary(out)]
    assert paths == [str(data / "caf\\xe9.png"), str(data / "ok.png")]
    report = json.loads((out / os.fsdecode(b"caf\xe9_report.json")).read_text("utf-8"))
    assert report["input"] == str(data / name)  # losslessly: the same path again
    assert os.path.exists(report["outputs"]["labels"])
    assert run_batch([data], out, RunOptions(classes=3), jobs=1).count("skipped") == 2
    (tmp_path / "run").mkdir()
    segment_file(data / name, tmp_path / "run")  # emseg run's work
    assert len(list((tmp_path / "run").iterdir())) == 4


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("option", [
    ("--tol", "nan"), ("--tol", "inf"), ("--seed", "-1"), ("--spatial", "1e300"),
    ("--spatial", "nan"),
])
@pytest.mark.parametrize("command", ["run", "batch"])
def test_bad_numeric_options_are_usage_errors(tmp_path, option, command):
    from click.testing import CliRunner

    from emseg.cli.main import main

    image = save_png(tmp_path / "x.png", scene(1))
    target = image if command == "run" else tmp_path
    result = CliRunner().invoke(main, [command, str(target), "-o", str(tmp_path / "out"),
                                       *option])
    assert result.exit_code == 2, result.output
    assert option[0] in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", [("--tol", "nan"), ("--seed", "-1")])
def test_bad_numeric_options_of_gmm_fit_are_usage_errors(tmp_path, option):
    from click.testing import CliRunner

    from emseg.cli.main import main

    table = tmp_path / "t.csv"
    table.write_text("a,b\n1,2\n3,4\n5,7\n")
    result = CliRunner().invoke(main, ["gmm", "fit", str(table), "-k", "1", *option])
    assert result.exit_code == 2, result.output


# the writers that write through io.atomic_output's temporary file
WRITERS = {
    "png": lambda path: io.write_png(path, np.zeros((4, 5), np.uint8)),
    "tiff": lambda path: io.write_tiff_stack(path, np.zeros((2, 4, 5), np.float32)),
    "json": lambda path: io.write_json(path, {"a": 1}),
    "summary": lambda path: write_summary(path, [Row("x.png", "ok")]),
    "nifti": lambda path: pytest.importorskip("emseg.io.medical").write_nifti(
        path, np.zeros((2, 4, 5), np.uint8), None),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_writers_never_follow_a_link_planted_at_their_temporary_name(
        tmp_path, monkeypatch, writer):
    """Someone who can write in the output folder deletes emseg's temporary file right
    after it is created and plants a link to another file at its name (a race won)."""
    pytest.importorskip("nibabel")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    create = atomic._create_temp

    def raced(path, folder):
        tmp = create(path, folder)
        os.unlink(tmp)
        os.symlink(victim, tmp)
        return tmp

    monkeypatch.setattr(atomic, "_create_temp", raced)
    with pytest.raises(EmsegError, match="could not write"):
        WRITERS[writer](out_dir / "result")
    assert victim.read_bytes() == b"precious"
    assert list(out_dir.iterdir()) == []


def test_rerun_removes_a_journal_left_half_written(tmp_path):
    data = tmp_path / "data"
    save_png(data / "cell.v2.png", scene(1))
    out = tmp_path / "out"
    out.mkdir()
    stale = out / "..cell.v2_outputs.json.0123abcd.tmp"  # killed while writing the journal
    stale.write_text('{"outp')
    assert run_batch([data], out, RunOptions(classes=3), jobs=1).count("ok") == 1
    assert not stale.exists()
