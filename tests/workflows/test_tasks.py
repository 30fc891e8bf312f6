"""What a batch worker is given and gives back (emseg.workflows.tasks)."""

import json
import pickle

import pytest


from emseg import EmsegError
from emseg.workflows.pool import WorkerDied
from emseg.workflows.run import RunOptions
from emseg.workflows.tasks import Outcome, SummaryTask, Task, segment_task, summary_task
from _helpers import save_png, three_bands


def save(path, pixels):
    return str(save_png(path, pixels))


def _pickles():
    yield pickle
    try:
        import cloudpickle  # what dask.distributed sends tasks with
    except ImportError:
        return
    yield cloudpickle


@pytest.mark.parametrize("dumps", [p.dumps for p in _pickles()], ids=lambda f: f.__module__)
def test_tasks_and_outcomes_pickle(dumps):
    options = RunOptions(classes=3, posteriors=True)
    values = [
        Task("a.png", "out/sub", "out", options, overwrite=True, model_key="abc",
             model_dict={"k": 3}, model_source="out/model.json"),
        SummaryTask("a.png", options, 2, 5, max_samples=800),
        Outcome("ok", k=3, iterations=12, log_likelihood=-4.5, warnings=("w",), seconds=0.5,
                cpu_seconds=0.4),
        Outcome("failed", "a.png: not an image", traceback="Traceback ..."),
    ]
    for value in values:
        assert pickle.loads(dumps(value)) == value


def test_tasks_are_frozen():
    task = Task("a.png", "out", "out", RunOptions())
    with pytest.raises(AttributeError):
        task.path = "b.png"
    with pytest.raises(AttributeError):
        Outcome("ok").status = "failed"


def test_segment_task_reports_the_fit(tmp_path):
    image = save(tmp_path / "x.png", three_bands(1, (30, 40)))
    out = tmp_path / "out"
    out.mkdir()
    outcome = segment_task(Task(image, str(out / "sub"), str(out), RunOptions(classes=3)))
    assert outcome.status == "ok" and outcome.error == "" and outcome.traceback is None
    report = json.loads((out / "sub" / "x_report.json").read_text())
    assert outcome.k == report["k"] == 3
    assert (outcome.iterations, outcome.log_likelihood) == (report["iterations"],
                                                            report["log_likelihood"])
    assert outcome.seconds > 0 and outcome.cpu_seconds > 0
    assert (out / "sub" / "x_labels.png").is_file()


def test_a_bad_input_is_a_failed_outcome_not_an_exception(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    out.mkdir()
    segmented = segment_task(Task(str(bad), str(out), str(out), RunOptions(classes=3)))
    summarized = summary_task(SummaryTask(str(bad), RunOptions(classes=3), 0, 1))
    for outcome in (segmented, summarized):
        assert outcome.status == "failed" and "bad.png" in outcome.error
        assert outcome.traceback is None  # a bad input, not a bug
        assert outcome.k is None and outcome.summary is None
    assert not (out / "bad_labels.png").exists()


def test_summary_task_gives_the_pixel_summary(tmp_path):
    image = save(tmp_path / "x.png", three_bands(2, (30, 40)))
    outcome = summary_task(SummaryTask(image, RunOptions(classes=3), 1, 2))
    assert outcome.status == "ok"
    assert outcome.summary.first_index == 1 and outcome.summary.group == (1, None)


def test_outcome_of_a_task_that_could_not_run():
    died = Outcome.from_exception(WorkerDied("a worker process died"))
    assert (died.status, died.error) == ("failed", "a worker process died")
    assert Outcome.from_exception(EmsegError("x.png: gone")).error == "x.png: gone"
    odd = Outcome.from_exception(OSError("broken\n  pipe"))
    assert odd.error == "OSError: broken pipe" and odd.seconds is None
    assert Outcome.from_exception(ValueError()).error == "ValueError"
