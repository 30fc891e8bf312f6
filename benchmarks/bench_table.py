"""Tables through standard readers (issue 15): start-up of a small fit, and a 1M x 10 read
against pandas.

    python benchmarks/bench_table.py                       # all three parts
    python benchmarks/bench_table.py --part startup --repeats 21
    python benchmarks/bench_table.py --part large --rows 200000
    python benchmarks/bench_table.py --part threshold

Parts (each prints medians and every run; fresh processes are run alternately, so a
change in the machine's load falls on both sides):

- ``startup``: ``emseg gmm fit small.csv -k 2 -q`` (150 rows, 2 columns) and
  ``python -c "import numpy"``, each in a fresh process, ``--repeats`` times; prints
  the ratio of the medians (the bar: under 4) and whether numba was loaded on that path
  (it must not be).
- ``large``: a ``--rows`` x 10 CSV (Python's shortest round-trip text, ``repr``, as
  pandas writes) read by ``emseg.io.tables.read_table`` and by ``pandas.read_csv(...)
  .to_numpy(float64)``: in this process (after one warm-up read each, medians of
  ``--repeats``, alternating) and from fresh processes (interpreter start, imports and
  read); prints both ratios (the bar: within 1.2x of pandas), the csv-module path of
  ``read_table`` (``LARGE_BYTES`` raised, once) and whether all give the same bits.
- ``threshold``: fresh-process ``read_table`` through the csv module and through
  pandas on tables of growing size, to place ``LARGE_BYTES``.
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_data(rows, seed, d=10):
    """Rows of a seeded 4-component, ``d``-feature full-covariance mixture."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    means = rng.normal(0.0, 3.0, size=(4, d))
    counts = rng.multinomial(rows, weights)
    parts = []
    for k in range(4):
        A = rng.normal(size=(d, d))
        parts.append(rng.multivariate_normal(means[k], A @ A.T / d + 0.5 * np.eye(d),
                                             size=counts[k]))
    X = np.concatenate(parts)
    return np.ascontiguousarray(X[rng.permutation(rows)])


def write_csv(path, X):
    header = ",".join(f"x{i}" for i in range(X.shape[1]))
    with open(path, "w", newline="\n") as f:
        f.write(header + "\n")
        for start in range(0, X.shape[0], 100_000):
            block = X[start : start + 100_000].tolist()
            f.write("\n".join(",".join(map(repr, row)) for row in block) + "\n")


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "") if e.get("PYTHONPATH") else ROOT
    return e


def fresh(args):
    """Wall time of one fresh process (seconds); raises if it fails."""
    start = time.perf_counter()
    subprocess.run(args, check=True, env=env(), stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def alternate(commands, repeats):
    """Run each command of ``commands`` (name -> argv) once per round, ``repeats``
    rounds; {name: [seconds...]}."""
    times = {name: [] for name in commands}
    for _ in range(repeats):
        for name, argv in commands.items():
            times[name].append(fresh(argv))
    return times


def runs(ts):
    return ", ".join(f"{t:.2f}" for t in ts)


def describe_machine():
    print(f"machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
          f"python {platform.python_version()}, numpy {np.__version__}")
    try:
        import pandas

        print(f"pandas {pandas.__version__}")
    except ImportError as exc:
        print(f"({exc})")
    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def startup(folder, repeats):
    print("\n=== start-up: emseg gmm fit on a 150-row CSV, fresh processes")
    path = os.path.join(folder, "small.csv")
    write_csv(path, make_data(150, 0, d=2))
    py = sys.executable
    commands = {
        "import numpy": [py, "-c", "import numpy"],
        "emseg gmm fit": [py, "-m", "emseg", "gmm", "fit", path, "-k", "2", "-q"],
    }
    fresh(commands["emseg gmm fit"])  # warm the file cache
    times = alternate(commands, repeats)
    for name, ts in times.items():
        print(f"{name:16s} median {statistics.median(ts):.3f} s   runs {runs(ts)}")
    ratio = statistics.median(times["emseg gmm fit"]) / statistics.median(times["import numpy"])
    print(f"ratio gmm fit / import numpy: {ratio:.2f} (bar: under 4)")
    probe = (
        "import sys\nfrom emseg.cli.main import main\n"
        f"sys.argv = ['emseg', 'gmm', 'fit', {path!r}, '-k', '2', '-q', '--labels', "
        f"{os.path.join(folder, 'labels.csv')!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('numba', 'scipy', 'pyarrow', 'pandas') if m in sys.modules))\n"
    )
    loaded = subprocess.run([py, "-c", probe], env=env(), capture_output=True, text=True,
                            check=True).stdout.strip()
    print(f"loaded by 'gmm fit --labels' among numba, scipy, pyarrow, pandas: {loaded}")
    return ratio


def large(folder, rows, repeats, fresh_repeats):
    import pandas as pd

    import emseg.io.tables as tables

    print(f"\n=== large: {rows:,} x 10 CSV (repr text)")
    path = os.path.join(folder, "large.csv")
    start = time.perf_counter()
    write_csv(path, make_data(rows, 0))
    print(f"{os.path.getsize(path) / 1e6:.0f} MB, written in {time.perf_counter() - start:.1f} s")

    def emseg_read():
        return tables.read_table(path).X

    def pandas_read():
        return pd.read_csv(path).to_numpy(dtype=np.float64)

    ours, theirs = emseg_read(), pandas_read()  # warm-up (file cache, imports)
    times = {"read_table": [], "pandas": []}
    cpu = {"read_table": [], "pandas": []}
    for _ in range(repeats):
        for name, func in (("read_table", emseg_read), ("pandas", pandas_read)):
            start, start_cpu = time.perf_counter(), time.process_time()
            func()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    for name, ts in times.items():
        print(f"in process  {name:11s} median {statistics.median(ts):.2f} s (CPU "
              f"{statistics.median(cpu[name]):.2f} s)   runs {runs(ts)}")
    in_ratio = statistics.median(times["read_table"]) / statistics.median(times["pandas"])
    cpu_ratio = statistics.median(cpu["read_table"]) / statistics.median(cpu["pandas"])
    print(f"in process  ratio read_table / pandas: {in_ratio:.2f} (bar: 1.2 or less); "
          f"of CPU times {cpu_ratio:.2f}")

    py = sys.executable
    commands = {
        "read_table": [py, "-c", f"from emseg.io.tables import read_table; read_table({path!r})"],
        "pandas": [py, "-c", f"import numpy, pandas; pandas.read_csv({path!r})"
                   ".to_numpy(dtype=numpy.float64)"],
    }
    ftimes = alternate(commands, fresh_repeats)
    for name, ts in ftimes.items():
        print(f"fresh       {name:11s} median {statistics.median(ts):.2f} s   runs {runs(ts)}")
    fresh_ratio = statistics.median(ftimes["read_table"]) / statistics.median(ftimes["pandas"])
    print(f"fresh       ratio read_table / pandas: {fresh_ratio:.2f} (bar: 1.2 or less)")

    saved = tables.LARGE_BYTES
    tables.LARGE_BYTES = 1 << 62
    try:
        start = time.perf_counter()
        reference = tables.read_table(path).X
        print(f"csv-module path of read_table (no pandas): {time.perf_counter() - start:.2f} s")
    finally:
        tables.LARGE_BYTES = saved
    same = np.array_equal(ours.view(np.uint64), reference.view(np.uint64))
    same_pandas = np.array_equal(ours.view(np.uint64), theirs.view(np.uint64))
    print(f"pandas path == csv-module path, bit for bit: {same}; == pandas: {same_pandas}")
    return in_ratio, fresh_ratio


def threshold(folder, repeats):
    print("\n=== threshold: fresh-process read_table, csv module against pandas")
    py = sys.executable
    for rows in (2_000, 10_000, 25_000, 50_000, 100_000):
        path = os.path.join(folder, f"t{rows}.csv")
        write_csv(path, make_data(rows, 1))
        code = ("import emseg.io.tables as t; t.LARGE_BYTES = {}; t.read_table({!r})")
        ts = alternate({
            "csv module": [py, "-c", code.format(1 << 62, path)],
            "pandas": [py, "-c", code.format(0, path)],
        }, repeats)
        print(f"{rows:7d} rows, {os.path.getsize(path) / 1e6:5.1f} MB: csv module "
              f"{statistics.median(ts['csv module']):.2f} s, pandas "
              f"{statistics.median(ts['pandas']):.2f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "startup", "large", "threshold"],
                        default="all")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5, help="in-process reads; "
                        "start-up runs are 3x this")
    parser.add_argument("--fresh-repeats", type=int, default=5)
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    print("command: python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]))
    describe_machine()
    folder = tempfile.mkdtemp(prefix="emseg_bench_table_")
    try:
        if args.part in ("all", "startup"):
            startup(folder, 3 * args.repeats)
        if args.part in ("all", "large"):
            large(folder, args.rows, args.repeats, args.fresh_repeats)
        if args.part in ("all", "threshold"):
            threshold(folder, args.repeats)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
