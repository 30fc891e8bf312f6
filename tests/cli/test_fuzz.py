"""Seeded fuzzing of the inputs emseg reads (issue 17's bar): mutated PNG, JPEG, TIFF,
NIfTI, CSV and model files through ``emseg run``, ``batch``, ``apply`` and ``gmm fit``.

Every outcome must be a success or a one-line error with exit 1 or 2: never a
traceback, never an "internal error" (an exception emseg did not anticipate), never a
hang, and never a file left under an output's final name for an input that failed.
The whole module is bounded to about a minute on two cores.
"""

import gzip
import os
import io as pyio
import signal
from contextlib import contextmanager

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from emseg.cli.main import main

pytestmark = pytest.mark.slow

# CI runs one seed; a longer hunt: EMSEG_FUZZ_SEED=7 EMSEG_FUZZ_MUTANTS=400 pytest tests/cli/test_fuzz.py
SEED = int(os.environ.get("EMSEG_FUZZ_SEED", 20261206))
MUTANTS_PER_FORMAT = int(os.environ.get("EMSEG_FUZZ_MUTANTS", 80))
SECONDS_PER_CASE = 20


def _image(seed=0, shape=(24, 32)):
    rng = np.random.default_rng(seed)
    truth = (np.arange(shape[1]) >= shape[1] // 2)[None].repeat(shape[0], 0)
    return np.clip(np.array([60, 180])[truth.astype(int)] + rng.normal(0, 12, shape), 0, 255)


def _seeds():
    """Valid files of every format, as bytes, keyed by file name."""
    grey = _image().astype(np.uint8)
    rgb = np.stack([grey, 255 - grey, grey // 2], -1)
    files = {}
    for name, array, fmt in (("g.png", grey, "PNG"), ("c.png", rgb, "PNG"), ("j.jpg", rgb, "JPEG")):
        buf = pyio.BytesIO()
        Image.fromarray(array).save(buf, format=fmt)
        files[name] = buf.getvalue()
    buf = pyio.BytesIO()
    Image.fromarray((grey.astype(np.uint16) * 200)).save(buf, format="PNG")
    files["w.png"] = buf.getvalue()
    buf = pyio.BytesIO()
    tifffile.imwrite(buf, np.stack([grey, grey]).astype(np.uint16))
    files["s.tif"] = buf.getvalue()
    buf = pyio.BytesIO()
    tifffile.imwrite(buf, _image(1).astype(np.float32))
    files["f.tif"] = buf.getvalue()
    nib = pytest.importorskip("nibabel")
    volume = np.stack([_image(s) for s in range(4)]).astype(np.int16)
    files["v.nii.gz"] = gzip.compress(nib.Nifti1Image(volume, np.eye(4)).to_bytes(), mtime=0)
    rng = np.random.default_rng(0)
    rows = ["a,b"] + [f"{x!r},{y!r}" for x, y in rng.normal(0, 1, (60, 2)).tolist()]
    files["t.csv"] = ("\n".join(rows) + "\n").encode()
    return files


def _mutate(data, rng):
    """One of: flipped bytes, a truncation, inserted junk, a duplicated block, or a
    header field overwritten with an extreme value."""
    data = bytearray(data)
    kind = rng.integers(5)
    if kind == 0:
        for _ in range(rng.integers(1, 8)):
            data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        data = data[: rng.integers(1, len(data))]
    elif kind == 2:
        at = rng.integers(len(data))
        data[at:at] = rng.integers(0, 256, rng.integers(1, 64)).astype(np.uint8).tobytes()
    elif kind == 3:
        start = rng.integers(len(data))
        block = data[start : start + rng.integers(1, 256)]
        at = rng.integers(len(data))
        data[at:at] = block
    else:  # early bytes hold sizes and types in every format here
        at = rng.integers(min(len(data), 64))
        data[at : at + 4] = bytes([0xFF, 0xFF, 0x7F, 0xFF])[: len(data) - at]
    return bytes(data)


@contextmanager
def _deadline(seconds):
    def hang(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _invoke(args):
    with _deadline(SECONDS_PER_CASE):
        return CliRunner().invoke(main, [str(a) for a in args])


def _check_outcome(result, what):
    assert not isinstance(result.exception, TimeoutError), f"{what}: hang"
    if result.exit_code == 0:
        return
    assert result.exit_code in (1, 2), f"{what}: exit {result.exit_code}\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{what}: uncaught {result.exception!r}"
    )
    text = result.stderr if result.stderr else result.output
    assert "Traceback" not in text, f"{what}: traceback\n{text}"
    assert "internal error" not in text, f"{what}: {text}"
    errors = [line for line in text.splitlines() if "error" in line.lower()]
    assert errors, f"{what}: exit {result.exit_code} without an error line\n{text}"


def _left_behind(out, stem):
    """Files under the final names of input ``stem``'s outputs, and hidden temporaries."""
    if not out.exists():
        return []
    return sorted(
        p.name for p in out.iterdir()
        if p.name.startswith(f"{stem}_") or (p.name.startswith(".") and stem in p.name)
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(SEED)
    seeds = _seeds()
    # The valid files once, with no deadline: numba compiles what the commands need
    # here (tens of seconds on an empty cache), not inside a timed case.
    for name, data in seeds.items():
        path = tmp / "valid" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        if name.endswith(".csv"):
            args = ["gmm", "fit", path, "-k", 2, "--model", tmp / "valid" / "t.json", "-q"]
        else:
            args = ["run", path, "-k", 2, "-o", tmp / "valid" / "out", "-q"]
        CliRunner().invoke(main, [str(a) for a in args])
    mutants = []
    for name, data in seeds.items():
        for i in range(MUTANTS_PER_FORMAT):
            stem, _, ext = name.partition(".")
            path = tmp / "inputs" / f"{stem}{i:02d}.{ext}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(_mutate(data, rng))
            mutants.append(path)
    return tmp, mutants


def test_run_on_mutated_images(corpus):
    tmp, mutants = corpus
    failures = []  # every bad outcome, not only the first
    for path in (p for p in mutants if not p.name.endswith(".csv")):
        out = tmp / "run" / path.name
        result = _invoke(["run", path, "-k", 2, "-o", out, "-q"])
        try:
            _check_outcome(result, f"emseg run {path.name}")
            if result.exit_code != 0:
                stem = path.name.split(".")[0]
                assert _left_behind(out, stem) == [], f"emseg run {path.name} left files"
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)


def test_batch_and_apply_on_mutated_images(corpus):
    tmp, mutants = corpus
    folder = tmp / "inputs"
    out = tmp / "batch"
    result = _invoke(["batch", folder, "-k", 2, "-o", out, "-j", 1, "-q", "--pattern", "*.*"])
    _check_outcome(result, "emseg batch")
    with open(out / "summary.csv", newline="") as f:
        assert sum(1 for _ in f) > 1  # every input has its row

    model = tmp / "model.json"
    good = tmp / "good.png"
    Image.fromarray(_image().astype(np.uint8)).save(good)
    assert _invoke(["fit", good, "-k", 2, "--model", model]).exit_code == 0
    pngs = [p for p in mutants if p.name.endswith(".png")][:8]
    result = _invoke(["apply", model, *pngs, "-o", tmp / "apply", "-j", 1, "-q"])
    _check_outcome(result, "emseg apply")


def test_mutated_model_files(corpus):
    tmp, _ = corpus
    rng = np.random.default_rng(SEED + 1)
    good = tmp / "good_model.png"
    Image.fromarray(_image().astype(np.uint8)).save(good)
    model = tmp / "m.json"
    assert _invoke(["fit", good, "-k", 2, "--model", model]).exit_code == 0
    text = model.read_bytes()
    for i in range(MUTANTS_PER_FORMAT * 2):
        bad = tmp / f"m{i:02d}.json"
        bad.write_bytes(_mutate(text, rng))
        out = tmp / "applied" / str(i)
        result = _invoke(["apply", bad, good, "-o", out, "-j", 1, "-q"])
        _check_outcome(result, f"emseg apply {bad.name}")


def test_gmm_fit_on_mutated_tables(corpus):
    tmp, mutants = corpus
    for path in (p for p in mutants if p.name.endswith(".csv")):
        result = _invoke(["gmm", "fit", path, "-k", 2, "--model", tmp / f"{path.stem}.json", "-q"])
        _check_outcome(result, f"emseg gmm fit {path.name}")
        if result.exit_code != 0:
            assert not (tmp / f"{path.stem}.json").exists()


def test_mutations_are_seeded():
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    data = bytes(range(200))
    assert _mutate(data, rng_a) == _mutate(data, rng_b)
