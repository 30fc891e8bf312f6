import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from emseg import EmsegError

from emseg import io
from emseg.workflows.batch import find_inputs, run_batch
from emseg.workflows.pool import _map_processes
from emseg.cli.main import main
from emseg.workflows.run import RunOptions, segment_file
from _helpers import save_png

OUTPUT_NAMES = ("_labels.png", "_overlay.png", "_segments.png", "_report.json")


def scene(seed=0, shape=(40, 60), shift=0):
    """Three vertical bands (dark, middle, bright) plus noise, uint8; and the truth."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, int)
    truth[:, shape[1] // 3 :] = 1
    truth[:, 2 * shape[1] // 3 :] = 2
    values = np.array([50, 120, 190])[truth] + rng.normal(0, 10, shape) + shift
    return np.clip(np.rint(values), 0, 255).astype(np.uint8), truth




@pytest.fixture
def folder(tmp_path):
    """Good images (one in a sub-folder), a corrupt PNG, a text file named .png, an
    empty file and a file that is not an image by name."""
    root = tmp_path / "in"
    save_png(root / "a.png", scene(1)[0])
    save_png(root / "b.png", scene(2)[0])
    save_png(root / "sub" / "c.png", scene(3)[0])
    whole = (root / "a.png").read_bytes()
    (root / "corrupt.png").write_bytes(whole[: len(whole) // 2])
    (root / "notes.png").write_text("not an image\n")
    (root / "empty.tif").write_bytes(b"")
    (root / "readme.txt").write_text("ignored: not an image name\n")
    return root


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def read_summary(out):
    with open(out / "summary.csv", newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def temp_files(root):
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- the batch


def test_batch_with_bad_files_in_worker_processes(folder, tmp_path):
    out = tmp_path / "out"
    result = invoke("batch", folder, "-r", "-k", 3, "-o", out, "-j", 2)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for rel in ("a", "b", "sub/c"):
        for suffix in OUTPUT_NAMES:
            assert (out / f"{rel}{suffix}").is_file(), rel + suffix
    rows = read_summary(out)
    assert set(rows) == {
        str(folder / name)
        for name in ("a.png", "b.png", "sub/c.png", "corrupt.png", "notes.png", "empty.tif")
    }
    status = {os.path.basename(p): r["status"] for p, r in rows.items()}
    assert status == {
        "a.png": "ok", "b.png": "ok", "c.png": "ok",
        "corrupt.png": "failed", "notes.png": "failed", "empty.tif": "failed",
    }
    assert "truncated" in rows[str(folder / "corrupt.png")]["error"]
    assert "not an image" in rows[str(folder / "notes.png")]["error"]
    assert "empty" in rows[str(folder / "empty.tif")]["error"]
    good = rows[str(folder / "a.png")]
    assert good["K"] == "3" and int(good["iterations"]) >= 1
    assert np.isfinite(float(good["log_likelihood"])) and float(good["seconds"]) > 0
    for name in ("corrupt.png", "notes.png", "empty.tif"):  # failures printed, one line each
        assert sum(name in line for line in result.output.splitlines()) == 1
    assert "3 segmented" in result.output and "3 failed" in result.output
    assert not temp_files(out)

    # a rerun skips the finished images and leaves them untouched
    stamp = (out / "a_labels.png").stat().st_mtime_ns
    again = invoke("batch", folder, "-r", "-k", 3, "-o", out, "-j", 2)
    assert again.exit_code == 1
    rows = read_summary(out)
    assert rows[str(folder / "a.png")]["status"] == "skipped"
    assert rows[str(folder / "a.png")]["K"] == "3"
    assert rows[str(folder / "notes.png")]["status"] == "failed"
    assert (out / "a_labels.png").stat().st_mtime_ns == stamp
    assert "3 skipped" in again.output


def test_all_good_exits_0_and_labels_match_emseg_run(tmp_path):
    root = tmp_path / "in"
    save_png(root / "x.png", scene(4)[0])
    out, single = tmp_path / "out", tmp_path / "single"
    result = invoke("batch", root, "-k", 3, "-o", out, "-j", 1, "-v")
    assert result.exit_code == 0 and f"{root / 'x.png'}: K=3, " in result.output
    assert "1 segmented, 0 failed" in result.output
    assert invoke("run", root / "x.png", "-k", 3, "-o", single, "-q").exit_code == 0
    for suffix in ("_labels.png", "_overlay.png", "_segments.png"):
        assert (out / f"x{suffix}").read_bytes() == (single / f"x{suffix}").read_bytes()


def test_quiet_prints_errors_only(folder, tmp_path):
    result = invoke("batch", folder, "-k", 3, "-o", tmp_path / "out", "-j", 1, "-q")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 3 and all(line.startswith("emseg: error:") for line in lines)


def test_rerun_with_other_options_is_refused_until_overwrite(tmp_path):
    root = tmp_path / "in"
    save_png(root / "x.png", scene(5)[0])
    out = tmp_path / "out"
    assert run_batch([root], out, RunOptions(classes=3), jobs=1).count("ok") == 1
    result = run_batch([root], out, RunOptions(classes=2), jobs=1)
    assert result.rows[0].status == "failed"
    assert "classes 3 -> 2" in result.rows[0].error and "--overwrite" in result.rows[0].error
    result = run_batch([root], out, RunOptions(classes=2), jobs=1, overwrite=True)
    assert result.rows[0].status == "ok" and result.rows[0].k == 2


def test_interrupted_write_leaves_no_partial_file_and_rerun_finishes(tmp_path, monkeypatch):
    root = tmp_path / "in"
    for i in range(3):
        save_png(root / f"img{i}.png", scene(10 + i)[0])
    out = tmp_path / "out"
    real_write_png = io.write_png
    calls = []

    def write_png_then_die(path, array, *, overwrite=False, **kwargs):
        calls.append(path)
        if str(path).endswith("img1_overlay.png"):  # half its bytes written, then Ctrl-C
            with io.atomic_output(path, overwrite) as tmp:
                with open(tmp, "wb") as f:
                    f.write(b"\x89PNG\r\n\x1a\n half")
                raise KeyboardInterrupt
        real_write_png(path, array, overwrite=overwrite, **kwargs)

    monkeypatch.setattr(io, "write_png", write_png_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_batch([root], out, RunOptions(classes=3), jobs=1)
    monkeypatch.setattr(io, "write_png", real_write_png)

    assert not temp_files(out)
    assert not (out / "img1_overlay.png").exists() and not (out / "img1_report.json").exists()
    for png in out.glob("*.png"):  # every file there is whole
        assert np.asarray(Image.open(png)).size > 0
    rows = read_summary(out)
    assert rows[str(root / "img0.png")]["status"] == "ok"
    assert rows[str(root / "img1.png")]["error"].startswith("interrupted")

    result = run_batch([root], out, RunOptions(classes=3), jobs=1)
    assert [r.status for r in result.rows] == ["skipped", "ok", "ok"]
    for i in range(3):
        assert all((out / f"img{i}{suffix}").is_file() for suffix in OUTPUT_NAMES)


def test_killed_batch_resumes_with_complete_outputs(tmp_path):
    """Kill every process of a running batch (as a power cut or the OOM killer would):
    no visible output is half written, and a rerun completes the rest."""
    root = tmp_path / "in"
    for i in range(8):
        save_png(root / f"img{i}.png", scene(20 + i, shape=(300, 400))[0])
    out = tmp_path / "out"
    command = [sys.executable, "-m", "emseg", "batch", str(root), "-k", "3", "-o", str(out),
               "-j", "2", "-q"]
    proc = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(out.glob("*_report.json")) and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for png in out.glob("*.png"):  # every visible file decodes completely
        with Image.open(png) as im:
            im.load()
    for report in out.glob("*_report.json"):
        assert json.loads(report.read_text())["k"] == 3

    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = read_summary(out)
    assert {r["status"] for r in rows.values()} <= {"ok", "skipped"} and len(rows) == 8
    assert not temp_files(out)
    for i in range(8):
        assert all((out / f"img{i}{suffix}").is_file() for suffix in OUTPUT_NAMES)


@pytest.mark.slow
def test_ctrl_c_stops_workers_and_writes_the_summary(tmp_path):
    # compile numba's kernels into its cache first: a Ctrl-C that lands inside numba's
    # compiler makes the interpreter itself print "Exception ignored ... Traceback"
    from emseg import segment

    segment(scene(0, shape=(30, 40))[0], 3)
    save_png(tmp_path / "warm.png", scene(0, shape=(30, 40))[0])  # and a whole image
    segment_file(tmp_path / "warm.png", tmp_path)
    root = tmp_path / "in"
    for i in range(40):  # enough that the batch is still running when the first is done
        save_png(root / f"img{i}.png", scene(40 + i, shape=(600, 800))[0])
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "emseg", "batch", str(root), "-k", "3", "-o", str(out), "-j", "2",
         "-q"],
        start_new_session=True, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not list(out.glob("*_report.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    _, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the batch finished before the interrupt arrived")
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    # emseg prints no traceback; the interpreter itself may report an interrupt that
    # landed inside a C callback (numba's compiler) as "Exception ignored ... Traceback"
    assert "Traceback" not in stderr or "Exception ignored" in stderr
    assert not temp_files(out)
    rows = read_summary(out)
    assert len(rows) == 40 and "ok" in {r["status"] for r in rows.values()}


def test_interrupt_after_an_image_was_written_records_it_ok(tmp_path, monkeypatch):
    """Ctrl-C between a worker finishing an image's outputs and its result coming back:
    the summary says ok for it (its outputs are complete), and a rerun skips it."""
    import emseg.workflows.run

    root = tmp_path / "in"
    for i in range(3):
        save_png(root / f"img{i}.png", scene(60 + i)[0])
    out = tmp_path / "out"
    real = emseg.workflows.run.segment_file

    def interrupted_after_second(path, *args, **kwargs):
        report = real(path, *args, **kwargs)
        if Path(path).name == "img1.png":
            raise KeyboardInterrupt
        return report

    monkeypatch.setattr(emseg.workflows.run, "segment_file", interrupted_after_second)
    with pytest.raises(KeyboardInterrupt):
        run_batch([root], out, RunOptions(classes=3), jobs=1)
    rows = {Path(k).name: v for k, v in read_summary(out).items()}
    assert [rows[f"img{i}.png"]["status"] for i in range(3)] == ["ok", "ok", "failed"]
    assert rows["img1.png"]["K"] == "3"
    assert "interrupted" in rows["img2.png"]["error"]
    monkeypatch.setattr(emseg.workflows.run, "segment_file", real)
    result = run_batch([root], out, RunOptions(classes=3), jobs=1)
    assert [r.status for r in result.rows] == ["skipped", "skipped", "ok"]


def test_rerun_removes_temporary_files_of_an_input_with_no_output_yet(tmp_path):
    root = tmp_path / "in"
    save_png(root / "img0.png", scene(1)[0])
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".img0_overlay.png.0123abcd.tmp"  # a killed run's, before any rename
    stale.write_bytes(b"half")
    run_batch([root], out, RunOptions(classes=3), jobs=1)
    assert not stale.exists() and (out / "img0_overlay.png").is_file()


# --------------------------------------------------------------------------- inputs


def test_find_inputs_pattern_recursion_and_mirrored_folders(tmp_path):
    root = tmp_path / "data"
    for rel in ("a.tif", "b.png", "deep/c.tif", "deep/deeper/d.TIF", ".hidden/e.tif", ".f.tif"):
        save_png(root / rel, scene(0, (4, 4))[0])
    out = tmp_path / "out"
    flat = find_inputs([root], out)
    assert [p.path.name for p in flat] == ["a.tif", "b.png"]
    tifs = find_inputs([root], out, recursive=True, pattern="*.tif")
    assert [(p.path.name, p.out_dir) for p in tifs] == [
        ("a.tif", out),
        ("c.tif", out / "deep"),
    ]
    # several folders: one output sub-folder each; a file goes straight to out
    other = tmp_path / "more"
    save_png(other / "x.png", scene(0, (4, 4))[0])
    several = find_inputs([root, other, root / "b.png"], out)
    assert [(p.path.name, p.out_dir) for p in several] == [
        ("a.tif", out / "data"),
        ("b.png", out / "data"),
        ("x.png", out / "more"),
        ("b.png", out),
    ]
    with pytest.raises(EmsegError, match="no images matching '\\*.jpg' found"):
        find_inputs([root], out, pattern="*.jpg")
    with pytest.raises(EmsegError, match="does not exist"):
        find_inputs([tmp_path / "nope"], out)


def test_outputs_inside_the_input_folder_are_not_inputs(tmp_path):
    root = tmp_path / "data"
    save_png(root / "x.png", scene(6)[0])
    out = root / "results"
    assert run_batch([root], out, RunOptions(classes=3), jobs=1, recursive=True).count("ok") == 1
    again = run_batch([root], out, RunOptions(classes=3), jobs=1, recursive=True)
    assert [r.path for r in again.rows] == [str(root / "x.png")]
    same = run_batch([root], root, RunOptions(classes=3), jobs=1)  # outputs beside inputs
    assert [r.path for r in same.rows] == [str(root / "x.png")]
    assert [r.path for r in run_batch([root], root, RunOptions(classes=3), jobs=1).rows] == [
        str(root / "x.png")
    ]


def test_inputs_whose_outputs_would_collide_fail_with_a_reason(tmp_path):
    root = tmp_path / "in"
    save_png(root / "x.png", scene(7)[0])
    save_png(root / "x.tif", scene(8)[0])
    result = run_batch([root], tmp_path / "out", RunOptions(classes=3), jobs=1)
    assert [r.status for r in result.rows] == ["ok", "failed"]
    assert "same names as" in result.rows[1].error


def test_missing_folder_and_bad_jobs(tmp_path):
    result = invoke("batch", tmp_path / "nope", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"emseg: error: {tmp_path / 'nope'} does not exist; check the path"
    ]
    assert invoke("batch", tmp_path, "-j", 0).exit_code == 2
    assert invoke("batch", tmp_path, "--covariance", "round").exit_code == 2


# --------------------------------------------------------------------------- shared model


def test_shared_model_gives_one_meaning_per_label(tmp_path):
    root = tmp_path / "in"
    dark, truth = scene(30)
    bright, _ = scene(31, shift=8)  # the same scene, brighter by 8 levels
    save_png(root / "dark.png", dark)
    save_png(root / "bright.png", bright)
    (root / "broken.png").write_text("no")
    out = tmp_path / "out"
    result = invoke("batch", root, "-k", 3, "-o", out, "-j", 1, "--shared-model")
    assert result.exit_code == 1
    assert "broken.png" in result.output and "shared model: " in result.output
    labels = {n: np.asarray(Image.open(out / f"{n}_labels.png")) for n in ("dark", "bright")}
    assert (labels["dark"] == truth + 1).mean() > 0.97
    assert (labels["bright"] == truth + 1).mean() > 0.97
    model = json.loads((out / "model.json").read_text())
    assert model["training"]["n_images"] == 2 and model["training"]["exact"]
    report = json.loads((out / "dark_report.json").read_text())
    assert report["shared_model"]["source"] == str(out / "model.json")
    rows = read_summary(out)
    assert rows[str(root / "broken.png")]["status"] == "failed"

    # a rerun reuses model.json; another -k is refused before any work
    assert invoke("batch", root, "-k", 3, "-o", out, "-j", 1, "--shared-model").exit_code == 1
    assert read_summary(out)[str(root / "dark.png")]["status"] == "skipped"
    other = invoke("batch", root, "-k", 2, "-o", out, "-j", 1, "--shared-model")
    assert other.exit_code == 1 and "model.json was fitted with other options" in other.output


def test_shared_model_rerun_notices_another_pixel_sample(tmp_path):
    """Float images are fitted on a sample of pixels: a rerun with another
    --max-samples must not reuse the model.json fitted on the old sample."""
    import tifffile

    root = tmp_path / "in"
    root.mkdir()
    for i in range(2):
        tifffile.imwrite(root / f"f{i}.tif", scene(70 + i)[0].astype(np.float32) / 255)
    out = tmp_path / "out"
    first = invoke("batch", root, "-k", 3, "-o", out, "-j", 1, "--shared-model",
                   "--max-samples", 500)
    assert first.exit_code == 0, first.output
    model = json.loads((out / "model.json").read_text())
    assert not model["training"]["exact"] and model["training"]["max_samples"] == 500
    again = invoke("batch", root, "-k", 3, "-o", out, "-j", 1, "--shared-model",
                   "--max-samples", 500)
    assert again.exit_code == 0, again.output
    other = invoke("batch", root, "-k", 3, "-o", out, "-j", 1, "--shared-model",
                   "--max-samples", 800)
    assert other.exit_code == 1 and "sample of 500 pixels, not 800" in other.output


def test_shared_model_refuses_images_of_another_kind(tmp_path):
    root = tmp_path / "in"
    grey, _ = scene(32)
    save_png(root / "a_grey.png", grey)
    save_png(root / "b_colour.png", np.stack([grey, grey // 2, 255 - grey], -1))
    result = run_batch([root], tmp_path / "out", RunOptions(classes=3), jobs=1, shared_model=True)
    assert [r.status for r in result.rows] == ["ok", "failed"]
    assert "is colour but the shared model is for grey images" in result.rows[1].error


# --------------------------------------------------------------------------- workers


def _die_on_two(x):
    if x == 2:
        os._exit(3)  # a worker killed mid-task
    return x * 10


def test_dead_worker_fails_only_its_own_task():
    outcomes = dict(_map_processes(_die_on_two, [0, 1, 2, 3, 4], 2))
    assert {i: outcomes[i] for i in (0, 1, 3, 4)} == {0: 0, 1: 10, 3: 30, 4: 40}
    assert "worker process died" in str(outcomes[2])




def test_dask_scheduler_gives_the_same_outputs(tmp_path):
    pytest.importorskip("distributed")
    root = tmp_path / "in"
    save_png(root / "x.png", scene(50)[0])
    save_png(root / "y.png", scene(51)[0])
    (root / "bad.png").write_text("no")
    local = run_batch([root], tmp_path / "local", RunOptions(classes=3), jobs=1)
    dask = run_batch([root], tmp_path / "dask", RunOptions(classes=3), jobs=2, scheduler="local")
    assert [r.status for r in dask.rows] == [r.status for r in local.rows] == ["failed", "ok", "ok"]
    assert "not an image" in dask.rows[0].error
    for name in ("x_labels.png", "y_labels.png", "x_overlay.png"):
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_nifti_batch_rerun_skips_done_volumes(tmp_path):
    nib = pytest.importorskip("nibabel")
    root = tmp_path / "nii"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        data = np.where(np.arange(12)[:, None, None] < 6, 50.0, 150.0) + rng.normal(0, 10, (12, 10, 6))
        nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), root / f"{name}.nii.gz")
    out = tmp_path / "out"
    first = run_batch([root], out, RunOptions(classes=2), jobs=1)
    assert [r.status for r in first.rows] == ["ok", "ok"]
    assert (out / "a_labels.nii.gz").exists()
    again = run_batch([root], out, RunOptions(classes=2), jobs=1)
    assert [r.status for r in again.rows] == ["skipped", "skipped"]


# --------------------------------------------------------------------------- process faults


def _session(sid):
    """The processes still alive (not zombies) in session ``sid`` (Linux /proc)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # state, ppid, pgrp, session
            alive.append(int(entry))
    return alive


def _start_batch(root, out, *extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen(
        [sys.executable, "-m", "emseg", "batch", str(root), "-k", "3", "-o", str(out),
         "-j", "2", "-q", *extra],
        start_new_session=True, stderr=subprocess.PIPE, text=True, env=env,
    )


def _wait_for(condition, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def _busy_batch(tmp_path, n=12, shape=(400, 600)):
    root = tmp_path / "in"
    for i in range(n):
        save_png(root / f"img{i}.png", scene(80 + i, shape=shape)[0])
    return root, tmp_path / "out"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.slow
def test_killed_batch_takes_its_workers_with_it(tmp_path):
    """kill -9 (or the OOM killer) on the batch's process alone: its fork server and
    workers end too, instead of writing outputs for minutes."""
    root, out = _busy_batch(tmp_path)
    proc = _start_batch(root, out)
    try:
        assert _wait_for(lambda: list(out.glob("*_report.json")) or proc.poll() is not None)
        if proc.poll() is not None:
            pytest.skip("the batch finished before it could be killed")
        assert len(_session(proc.pid)) >= 3  # the batch, the fork server, workers
        proc.kill()  # the main process only
        proc.wait(timeout=10)
        assert _wait_for(lambda: not _session(proc.pid), 10), _session(proc.pid)
    finally:
        for pid in _session(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.stderr.close()
    # nothing is written after the processes are gone
    before = sorted(p.name for p in out.iterdir())
    time.sleep(0.5)
    assert sorted(p.name for p in out.iterdir()) == before
    result = run_batch([root], out, RunOptions(classes=3), jobs=1)  # a rerun completes
    assert {r.status for r in result.rows} <= {"ok", "skipped"}
    assert not temp_files(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_ends_a_batch_like_ctrl_c(tmp_path):
    """SIGTERM to the batch's process alone (kill, a job scheduler): workers stopped,
    no temporary file left, the summary written, exit 143."""
    root, out = _busy_batch(tmp_path)
    proc = _start_batch(root, out)
    try:
        assert _wait_for(lambda: list(out.glob("*_report.json")) or proc.poll() is not None)
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
        assert _wait_for(lambda: not _session(proc.pid), 10), _session(proc.pid)
    finally:
        for pid in _session(proc.pid):
            os.kill(pid, signal.SIGKILL)
    if proc.returncode == 0:
        pytest.skip("the batch finished before the signal arrived")
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines() == [
        "emseg: error: terminated; finished outputs are complete and a rerun resumes from them"
    ]
    assert not temp_files(out)
    rows = read_summary(out)
    assert len(rows) == 12 and "ok" in {r["status"] for r in rows.values()}
    assert "interrupted" in " ".join(r["error"] for r in rows.values())


def test_a_second_batch_on_the_same_output_folder_is_refused(tmp_path):
    from emseg.workflows.batch import lock_output

    root = tmp_path / "in"
    save_png(root / "a.png", scene(1)[0])
    out = tmp_path / "out"
    out.mkdir()
    theirs = out / ".a_overlay.png.0123abcd.tmp"  # the first batch is writing it
    theirs.write_bytes(b"half")
    with lock_output(out):
        with pytest.raises(EmsegError, match="another emseg batch is writing to"):
            run_batch([root], out, RunOptions(classes=3), jobs=1)
        result = invoke("batch", root, "-k", 3, "-o", out, "-j", 1)
        assert result.exit_code == 1
        assert result.output.splitlines() == [
            f"emseg: error: another emseg batch is writing to {out}; wait for it or use "
            "another -o"
        ]
        assert theirs.read_bytes() == b"half"
        assert not (out / "a_labels.png").exists() and not (out / "summary.csv").exists()
    theirs.unlink()
    assert run_batch([root], out, RunOptions(classes=3), jobs=1).count("ok") == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(  # the lock file is removed
        ["summary.csv", "index.html"] + [f"a{suffix}" for suffix in OUTPUT_NAMES])


def test_lock_is_taken_again_when_its_holder_removed_the_file(tmp_path, monkeypatch):
    """A batch that opened the lock file just as its holder removed it must not hold a
    lock on the removed file beside a third batch holding the new one."""
    import emseg.workflows.outputs as outputs

    real_open = outputs._open_lock
    opened = []

    def open_then_holder_finishes(path):
        fd = real_open(path)
        if not opened:
            opened.append(fd)
            os.unlink(path)  # the holder removes it and lets go
        return fd

    monkeypatch.setattr(outputs, "_open_lock", open_then_holder_finishes)
    with outputs.lock_output(tmp_path):
        assert (tmp_path / outputs.LOCK_NAME).exists()
        monkeypatch.setattr(outputs, "_open_lock", real_open)
        with pytest.raises(EmsegError, match="another emseg batch"):
            with outputs.lock_output(tmp_path):
                pass


def test_disk_full_while_writing_the_summary_is_one_line(tmp_path, monkeypatch):
    import errno

    root = tmp_path / "in"
    save_png(root / "a.png", scene(1)[0])
    out = tmp_path / "out"
    assert invoke("batch", root, "-k", 3, "-o", out, "-j", 1).exit_code == 0
    previous = (out / "summary.csv").read_bytes()
    from emseg.io import atomic

    real_open = atomic.open_temp

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, text):
            self.f.write(text[:5])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def disk_full(tmp, *args, **kwargs):
        f = real_open(tmp, *args, **kwargs)
        return Full(f) if "summary.csv" in os.path.basename(tmp) else f

    monkeypatch.setattr(atomic, "open_temp", disk_full)
    result = invoke("batch", root, "-k", 3, "-o", out, "-j", 1, "--overwrite")
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1] == (
        f"emseg: error: could not write {out / 'summary.csv'}: [Errno 28] No space left on "
        "device"
    )
    assert "Traceback" not in result.output and result.exception.code == 1
    assert (out / "summary.csv").read_bytes() == previous  # the old one, whole
    assert not temp_files(out)


@pytest.fixture
def tmpfs(tmp_path):
    """A 64 KiB file system, where this process may mount one (root on Linux)."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_disk_leaves_no_half_summary(tmp_path, tmpfs):
    root = tmp_path / "in"
    root.mkdir()
    for i in range(300):  # fail at once, but need a long summary
        (root / f"{'not_an_image_' * 12}{i}.png").write_text("x\n")
    result = invoke("batch", root, "-o", tmpfs / "out", "-j", 1, "-q")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[-1].startswith("emseg: error: could not write ")
    assert lines[-1].endswith("summary.csv: [Errno 28] No space left on device")
    assert "Traceback" not in result.output
    assert not (tmpfs / "out" / "summary.csv").exists() and not temp_files(tmpfs)


@pytest.mark.parametrize("inside", [False, True])
def test_pattern_star_with_outputs_beside_inputs_takes_only_the_inputs(tmp_path, inside):
    """-o the input folder, or a folder in it (then the reports tell emseg's files)."""
    root = tmp_path / "data"
    save_png(root / "a.png", scene(1)[0])
    save_png(root / "b.tif", scene(2)[0])
    save_png(root / "sub" / "c.png", scene(3)[0])
    save_png(root / "x_labels.png", scene(4)[0])  # a user's image: no input x, no report
    inputs = [str(root / name) for name in ("a.png", "b.tif", "sub/c.png", "x_labels.png")]
    out = root / "results" if inside else root
    for _ in range(3):
        result = run_batch([root], out, RunOptions(classes=3), jobs=1, pattern="*",
                           recursive=True)
        assert sorted(r.path for r in result.rows) == sorted(inputs), [
            r.path for r in result.rows]
        assert not result.failed


def test_rerun_redoes_an_image_whose_input_changed(tmp_path):
    root = tmp_path / "in"
    save_png(root / "a.png", scene(1)[0])
    save_png(root / "b.png", scene(2)[0])
    out = tmp_path / "out"
    run_batch([root], out, RunOptions(classes=3), jobs=1)
    first = np.asarray(Image.open(out / "a_labels.png"))
    changed = scene(5)[0][:, ::-1].copy()  # the bands the other way round
    save_png(root / "a.png", changed)
    st = os.stat(root / "a.png")  # even within the file system's time resolution
    os.utime(root / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    result = run_batch([root], out, RunOptions(classes=3), jobs=1)
    assert [r.status for r in result.rows] == ["ok", "skipped"]
    again = np.asarray(Image.open(out / "a_labels.png"))
    assert (again[:, ::-1] == first).mean() > 0.9 and (again != first).mean() > 0.5
    assert [r.status for r in run_batch([root], out, RunOptions(classes=3), jobs=1).rows] == [
        "skipped", "skipped"]


def test_shared_model_is_not_reused_for_other_inputs(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for i in range(2):
        save_png(first / f"img{i}.png", scene(90 + i)[0])
        save_png(second / f"img{i}.png", scene(92 + i, shift=40)[0])
    out = tmp_path / "out"
    assert run_batch([first], out, RunOptions(classes=3), jobs=1, shared_model=True).count(
        "ok") == 2
    assert run_batch([first], out, RunOptions(classes=3), jobs=1, shared_model=True).count(
        "skipped") == 2
    with pytest.raises(EmsegError, match="model.json was fitted on other inputs"):
        run_batch([second], out, RunOptions(classes=3), jobs=1, shared_model=True)
    save_png(first / "img1.png", scene(94)[0])  # one of its own inputs changed
    st = os.stat(first / "img1.png")
    os.utime(first / "img1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    result = invoke("batch", first, "-k", 3, "-o", out, "-j", 1, "--shared-model")
    assert result.exit_code == 1 and "fitted on other inputs" in result.output
    assert len(result.output.splitlines()) == 1
    redo = run_batch([first], out, RunOptions(classes=3), jobs=1, shared_model=True,
                     overwrite=True)
    assert redo.count("ok") == 2


@pytest.mark.parametrize("fault", ["error", "interrupt"])
def test_failed_run_removes_what_it_wrote(tmp_path, monkeypatch, fault):
    image = save_png(tmp_path / "cell.png", scene(1)[0])
    out = tmp_path / "out"
    real = io.write_png

    def fails_at_the_labels(path, array, **kwargs):
        if str(path).endswith("_labels.png"):
            with io.atomic_output(path) as tmp:
                with open(tmp, "wb") as f:
                    f.write(b"\x89PNG half")
                if fault == "error":
                    raise EmsegError(f"could not write {path}: No space left on device")
                raise KeyboardInterrupt
        return real(path, array, **kwargs)

    out.mkdir()
    (out / "notes.txt").write_text("the user's\n")
    monkeypatch.setattr(io, "write_png", fails_at_the_labels)
    result = invoke("run", image, "-k", 3, "-o", out)
    assert result.exit_code == (1 if fault == "error" else 130), result.output
    assert len(result.output.splitlines()) == 1 and "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # nothing else
    monkeypatch.setattr(io, "write_png", real)
    assert invoke("run", image, "-k", 3, "-o", out, "-q").exit_code == 0
    assert all((out / f"cell{suffix}").is_file() for suffix in OUTPUT_NAMES)
