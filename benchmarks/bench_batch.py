"""Batch throughput: ``--jobs 2`` against ``--jobs 1``, and the per-image overhead of the
batch engine beyond the per-image work itself.

Generates N seeded grey 8-bit PNG images (1000 x 1000 by default: three or four
materials in random smooth blobs plus noise), then, taking turns for ``--repeats``
rounds:

- ``direct``: :func:`emseg.workflows.run.segment_file` called on each image in a plain loop
  in this process (the per-image work: read, fit, label, render, write);
- ``batch -j 1``: the command ``python -m emseg batch IMAGES -k 3 -o OUT -j 1 -q``, in a
  fresh process, as a user runs it (in-process work, no worker);
- ``batch -j 2``: the same with ``-j 2`` (two worker processes, their start-up
  included).

Each run writes into a fresh folder. Reported: median wall time of each, the speed-up
``batch -j 1 / batch -j 2``, and the batch overhead per image,
``(batch -j 1 - direct) / N``: Python's start-up and imports, discovery, the rerun
check, warning capture, progress and ``summary.csv``. Since two runs on a busy machine
differ by more than that, it is also measured inside each batch run:
``(jobs x wall - sum of the images' own segment_file times, from their reports) / N``.
The ``direct`` loop's own split (read / features / fit / label / render / write, from
the reports) is printed too, with the 1-minute load average after each round.

    python benchmarks/bench_batch.py --repeats 5           # 200 images, 5 rounds
    python benchmarks/bench_batch.py --n 40 --repeats 1    # a quick look

Each batch also runs on the first ``--small`` images (default 40) in each round; from
the two folder sizes its wall time splits into a fixed start-up and a cost per image
(``(wall(N) - wall(small)) / (N - small)``), and the speed-up once the workers are
running is the ratio of the per-image costs.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_images(folder, n, size, seed):
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        k = 3 + i % 2
        field = cv2.GaussianBlur(rng.random((size // 8, size // 8)), (0, 0), 2.0)
        field = cv2.resize(field, (size, size), interpolation=cv2.INTER_LINEAR)
        edges = np.quantile(field, np.linspace(0, 1, k + 1)[1:-1])
        classes = np.digitize(field, edges)
        levels = np.linspace(40, 210, k) + rng.normal(0, 5, k)
        pixels = levels[classes] + rng.normal(0, 12, classes.shape)
        image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"img{i:04d}.png"), image)


def direct(inputs, out, options):
    from emseg.workflows.run import segment_file

    out.mkdir(parents=True)
    phases = {}
    start = time.perf_counter()
    for path in inputs:
        report = segment_file(path, out, options)
        for name, seconds in report["timings_seconds"].items():
            phases.setdefault(name, []).append(seconds)
    return time.perf_counter() - start, phases


def batch(folder, out, k, jobs):
    """Run ``emseg batch`` as a user would (a fresh process); return its wall time and
    the sum of its images' own segment_file times (from their reports)."""
    import json
    import subprocess

    command = [sys.executable, "-m", "emseg", "batch", str(folder), "-k", str(k), "-o", str(out),
               "-j", str(jobs), "-q"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {done.stderr.strip()}")
    totals = [
        json.loads(p.read_text())["timings_seconds"]["total"] for p in out.glob("*_report.json")
    ]
    return seconds, sum(totals)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of images")
    parser.add_argument("--size", type=int, default=1000, help="image side in pixels")
    parser.add_argument("-k", type=int, default=3, help="classes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="folder for images and outputs (default: a temp dir)")
    parser.add_argument("--small", type=int, default=40,
                        help="also run each batch on the first SMALL images, to split its "
                             "time into start-up and a per-image cost (0: skip)")
    args = parser.parse_args()

    from emseg.workflows.run import RunOptions

    work = Path(args.workdir or tempfile.mkdtemp(prefix="emseg-bench-batch-"))
    images = work / "images"
    t = time.perf_counter()
    if not images.exists():
        make_images(images, args.n, args.size, args.seed)
    inputs = sorted(images.glob("*.png"))
    print(f"{len(inputs)} images of {args.size}x{args.size} in {images} "
          f"(made in {time.perf_counter() - t:.1f} s); {os.cpu_count()} cores; "
          f"{args.repeats} round(s), medians")

    small = None
    if 0 < args.small < len(inputs):
        small = work / "images-small"
        small.mkdir(exist_ok=True)
        for path in inputs[: args.small]:
            if not (small / path.name).exists():
                shutil.copy(path, small / path.name)
    options = RunOptions(classes=args.k)
    # warm up: numba caches, imports
    direct(inputs[:2], work / "warm", options)
    shutil.rmtree(work / "warm")

    times = {"direct": [], "batch -j 1": [], "batch -j 2": []}
    own = {"batch -j 1": [], "batch -j 2": []}  # wall minus the images' own time, per image
    short = {"batch -j 1": [], "batch -j 2": []}  # wall on the SMALL images
    loads = [os.getloadavg()[0]]
    phases = {}
    for r in range(args.repeats):
        out = work / f"out-{r}"
        shutil.rmtree(out, ignore_errors=True)  # left by an interrupted run
        seconds, phase = direct(inputs, out / "direct", options)
        times["direct"].append(seconds)
        for name, values in phase.items():
            phases.setdefault(name, []).extend(values)
        for jobs in (1, 2):
            wall, work_seconds = batch(images, out / f"j{jobs}", args.k, jobs)
            times[f"batch -j {jobs}"].append(wall)
            own[f"batch -j {jobs}"].append((jobs * wall - work_seconds) / len(inputs))
            if small is not None:
                short[f"batch -j {jobs}"].append(batch(small, out / f"s{jobs}", args.k, jobs)[0])
        shutil.rmtree(out)
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items())
              + f"; load average {loads[-1]:.1f}", flush=True)

    med = {name: statistics.median(v) for name, v in times.items()}
    n = len(inputs)
    print()
    for name, value in med.items():
        runs = ", ".join(f"{v:.2f}" for v in times[name])
        print(f"{name:>11}: {value:7.2f} s  ({1000 * value / n:6.1f} ms/image)   runs: {runs}")
    print(f"speed-up batch -j 2 vs -j 1: {med['batch -j 1'] / med['batch -j 2']:.2f}x  (bar >= 1.7x)")
    overhead = (med["batch -j 1"] - med["direct"]) / n
    print(f"batch overhead beyond segment_file: {1000 * overhead:.1f} ms/image  (bar < 20 ms), "
          "from the medians of two runs")
    inside = {name: statistics.median(v) for name, v in own.items()}
    print(
        "  within each batch run, (jobs x wall - sum of the images' segment_file times) / N: "
        f"-j 1 {1000 * inside['batch -j 1']:.1f} ms/image, "
        f"-j 2 {1000 * inside['batch -j 2']:.1f} ms/image of worker time "
        "(includes the start-up of Python and of the workers, and idle cores at the end)"
    )
    if small is not None:
        # wall = start-up + images x marginal cost, from the two folder sizes
        extra = n - args.small
        marginal = {name: (med[name] - statistics.median(short[name])) / extra for name in short}
        startup = {name: statistics.median(short[name]) - args.small * marginal[name]
                   for name in short}
        print(
            f"  start-up and per-image cost, from {n} and {args.small} images: "
            + "; ".join(f"{name}: {startup[name]:.2f} s + {1000 * marginal[name]:.1f} ms/image"
                        for name in short)
            + f"; speed-up per image once running: "
            f"{marginal['batch -j 1'] / marginal['batch -j 2']:.2f}x"
        )
    print(f"1-minute load average during the runs: {min(loads):.1f} to {max(loads):.1f} "
          f"on {os.cpu_count()} cores (above 2, the workers wait for the CPU)")
    print("per-image work (direct loop), median ms: " + ", ".join(
        f"{name} {1000 * statistics.median(v):.1f}" for name, v in phases.items()
    ))
    if not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
