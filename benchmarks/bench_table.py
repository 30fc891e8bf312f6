"""Time emseg.io.tables.read_table on a 1,000,000 x 10 CSV, against np.loadtxt and the csv module,
and against the GaussianMixture fit it feeds.

    python benchmarks/bench_table.py                    # both number formats, 5 repeats
    python benchmarks/bench_table.py --format repr --repeats 7 --rows 200000

The table is drawn from a seeded 4-component, 10-feature full-covariance mixture and
written to a temporary folder (deleted afterwards) in one or both formats:

- ``repr``: Python's shortest round-trip text, 16-17 significant digits
  (``0.3771906632801799``): what pandas and ``repr`` write; about 190 MB.
- ``fixed6``: six decimals (``0.377191``), like ``np.savetxt(fmt="%.6f")``; about 95 MB.

For each format the script times (median of ``--repeats``, runs listed):

- ``read_table`` (emseg), after one warm-up read, reported on its own: for the first
  format it includes numba's one-off start-up in the process and loading the compiled
  parser from numba's cache (a cost the first compiled kernel of any emseg command
  pays);
- ``np.loadtxt(path, delimiter=",", skiprows=1)`` (numpy's C parser);
- the csv module: ``csv.reader`` rows and ``float`` per cell (``--baseline-repeats``).

It checks that all three give bit-identical arrays, then times
``GaussianMixture(4, random_state=0).fit`` on the array (``--fit-repeats``), so the
load time can be set against the fit time: the bar is that reading must not dominate.
"""

import argparse
import csv
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np


def make_data(rows, seed):
    rng = np.random.default_rng(seed)
    K, D = 4, 10
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    means = rng.normal(0.0, 3.0, size=(K, D))
    counts = rng.multinomial(rows, weights)
    parts = []
    for k in range(K):
        A = rng.normal(size=(D, D))
        cov = A @ A.T / D + 0.5 * np.eye(D)
        parts.append(rng.multivariate_normal(means[k], cov, size=counts[k]))
    X = np.concatenate(parts)
    return np.ascontiguousarray(X[rng.permutation(rows)])


def write_csv(path, X, fmt):
    header = ",".join(f"x{i}" for i in range(X.shape[1]))
    with open(path, "w", newline="\n") as f:
        f.write(header + "\n")
        for start in range(0, X.shape[0], 100_000):
            block = X[start : start + 100_000]
            if fmt == "repr":
                lines = (",".join(map(repr, row)) for row in block.tolist())
            else:
                lines = (",".join(f"{v:.6f}" for v in row) for row in block.tolist())
            f.write("\n".join(lines) + "\n")


def csv_module(path):
    def number(text):
        text = text.strip()
        return float(text) if text not in ("", "NA", "N/A", "NaN", "nan", "NAN") else np.nan

    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        return np.array([[number(c) for c in row] for row in reader], dtype=np.float64)


def timed(func, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def fmt_runs(times):
    return ", ".join(f"{t:.2f}" for t in times)


def describe_machine():
    import numba

    import emseg

    from _common import cpu_name

    cpu = cpu_name()
    print(f"machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__} "
          f"({numba.get_num_threads()} threads), emseg {emseg.__version__}")
    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=["repr", "fixed6", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=5, help="read_table and np.loadtxt runs")
    parser.add_argument("--baseline-repeats", type=int, default=1, help="csv-module runs")
    parser.add_argument("--fit-repeats", type=int, default=1, help="GaussianMixture fits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.rows, args.repeats, args.baseline_repeats, args.fit_repeats) < 1:
        parser.error("--rows and the repeat counts must be >= 1")

    from emseg.mixture.gaussian_mixture import GaussianMixture
    from emseg.io.tables import read_table

    print("command: python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]))
    describe_machine()
    X = make_data(args.rows, args.seed)
    formats = ["repr", "fixed6"] if args.format == "both" else [args.format]
    folder = tempfile.mkdtemp(prefix="emseg_bench_table_")
    fit_array = None
    summary = []
    try:
        for fmt in formats:
            path = os.path.join(folder, f"table_{fmt}.csv")
            start = time.perf_counter()
            write_csv(path, X, fmt)
            size = os.path.getsize(path) / 1e6
            print(f"\n=== {fmt}: {args.rows:,} x {X.shape[1]} CSV, {size:.0f} MB "
                  f"(written in {time.perf_counter() - start:.1f} s)")
            start = time.perf_counter()
            first = read_table(path)
            note = ("numba's start-up and loading the compiled parser included" if fmt == formats[0]
                    else "parser already loaded")
            print(f"read_table, first read of this file: {time.perf_counter() - start:.2f} s ({note})")
            rt, rt_runs, table = timed(lambda: read_table(path), args.repeats)
            print(f"read_table (emseg)      median {rt:6.2f} s   runs {fmt_runs(rt_runs)}")
            lt, lt_runs, loaded = timed(
                lambda: np.loadtxt(path, delimiter=",", skiprows=1), args.repeats
            )
            print(f"np.loadtxt              median {lt:6.2f} s   runs {fmt_runs(lt_runs)}")
            ct, ct_runs, parsed = timed(lambda: csv_module(path), args.baseline_repeats)
            print(f"csv module + float      median {ct:6.2f} s   runs {fmt_runs(ct_runs)}")
            same = all(
                np.array_equal(a.view(np.uint64), table.X.view(np.uint64))
                for a in (loaded, parsed, first.X)
            )
            print(f"identical arrays (bit for bit): {same}")
            print(f"speed-up: {lt / rt:.1f}x over np.loadtxt, {ct / rt:.1f}x over the csv module")
            summary.append((fmt, size, rt, lt, ct))
            fit_array = table.X
            del first, loaded, parsed
        print(f"\n=== GaussianMixture(4, random_state=0).fit on the table ({args.rows:,} x 10)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            GaussianMixture(2, random_state=0, max_iter=2).fit(fit_array[:2000])  # warm-up
        fits = []
        for _ in range(args.fit_repeats):
            gm = GaussianMixture(4, random_state=0)
            start = time.perf_counter()
            gm.fit(fit_array)
            fits.append(time.perf_counter() - start)
        fit = statistics.median(fits)
        print(f"fit median {fit:.2f} s ({gm.n_iter_} iterations, converged {gm.converged_}, "
              f"{fit / max(gm.n_iter_, 1):.2f} s per iteration incl. set-up), runs {fmt_runs(fits)}")
        print("\n=== Summary (medians)")
        print(f"{'format':8s}{'MB':>6s}{'read_table':>12s}{'np.loadtxt':>12s}{'csv module':>12s}"
              f"{'fit':>8s}{'read / (read+fit)':>19s}")
        for fmt, size, rt, lt, ct in summary:
            print(f"{fmt:8s}{size:6.0f}{rt:11.2f}s{lt:11.2f}s{ct:11.2f}s{fit:7.2f}s"
                  f"{100 * rt / (rt + fit):18.0f}%")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
