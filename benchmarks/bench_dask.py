"""Time emseg.GaussianMixture on a dask array against the same fit in memory.

    python benchmarks/bench_dask.py                     # 4,000,000 x 3, 3 repeats, medians
    python benchmarks/bench_dask.py --repeats 5 --chunk-rows 250000
    python benchmarks/bench_dask.py --no-cluster        # skip the distributed LocalCluster

Data: 4,000,000 x 3 float64 rows drawn from a seeded 3-component full-covariance
mixture. Model: K=3, full covariances, ``tol=0`` and ``--max-iter`` iterations (default
20), every fit started from the same ``weights_init``/``means_init``/``precisions_init``
(the true parameters, perturbed), so all fits run the same iterations and their results
can be compared value by value.

Three ways to fit the same rows:

- **in memory**: ``fit(X)`` on the numpy array;
- **dask, threads**: ``fit(da.from_array(X, chunks=(chunk_rows, 3)))`` on dask's default
  local scheduler (a thread pool, one thread per core);
- **dask, LocalCluster**: the same array persisted on a ``distributed.LocalCluster`` of
  2 single-threaded worker processes on 127.0.0.1, fitted with a Client active. The
  workers are warmed up (numba kernels loaded) by a small fit before timing.

A second, small case (the first 8 x 1,000 rows, in 8 chunks, 50 iterations) has almost
no arithmetic, so its per-iteration time is dask's fixed cost: building the graph,
scheduling, moving the statistics.

Per iteration is the median interval between consecutive ``callback`` calls (one E-step
over all chunks, the sum of their statistics and one M-step); "first iteration done
after" is the time from calling ``fit`` to the first callback (the dask fit's first
pass, which validates the chunks, is in it). The script checks that every dask fit equals the
in-memory fit to 1e-6 (relative) and exits 1 if one does not.
"""

import argparse
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np


def make_data(seed, n_rows=4_000_000):
    """Rows from a seeded 3-component full-covariance mixture in 3-D, and a start."""
    rng = np.random.default_rng(seed)
    K, D = 3, 3
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[-4.0, 0.0, 1.0], [0.0, 3.0, -1.0], [4.0, -1.0, 0.5]])
    covs = np.empty((K, D, D))
    for k in range(K):
        A = rng.normal(size=(D, D))
        covs[k] = A @ A.T / D + 0.5 * np.eye(D)
    counts = rng.multinomial(n_rows, weights)
    X = np.concatenate(
        [rng.multivariate_normal(means[k], covs[k], size=counts[k]) for k in range(K)]
    )
    X = np.ascontiguousarray(X[rng.permutation(n_rows)])
    start = dict(
        weights_init=np.full(K, 1.0 / K),
        means_init=means + rng.normal(0, 0.5, size=means.shape),
        precisions_init=np.linalg.inv(covs * 1.5),
    )
    return X, start


def timed_fit(X, start, max_iter):
    """Fit, recording when each iteration ends; returns (model, timings)."""
    from emseg import ConvergenceWarning, GaussianMixture

    stamps = []
    gm = GaussianMixture(
        3, tol=0, max_iter=max_iter, callback=lambda i, b: stamps.append(time.perf_counter()),
        **start,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    total = time.perf_counter() - t0
    steps = np.diff(stamps)
    per_iter = float(np.median(steps))
    return gm, dict(
        per_iter=per_iter,
        total=total,
        first=stamps[0] - t0,
        n_iter=gm.n_iter_,
    )


def max_rel_diff(a, b):
    worst = 0.0
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "history_"):
        x, y = getattr(a, name), getattr(b, name)
        worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-300))))
    return worst


def fingerprint():
    import hashlib
    from pathlib import Path

    import emseg

    digest = hashlib.sha256()
    for path in sorted(Path(emseg.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return f"emseg {emseg.__version__} (source sha256 {digest.hexdigest()[:12]})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument("--chunk-rows", type=int, default=500_000)
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--small-chunk-rows", type=int, default=1000,
        help="rows per chunk of the small case (8 chunks), which measures the fixed cost",
    )
    parser.add_argument("--no-cluster", action="store_true")
    parser.add_argument(
        "--worker-numba-threads", type=int, default=None,
        help="NUMBA_NUM_THREADS for the LocalCluster's workers (default: numba's, one per core)",
    )
    args = parser.parse_args(argv)

    import dask
    import dask.array as da
    import distributed
    import numba

    print(fingerprint())
    print(
        f"{platform.processor() or platform.machine()}, nproc {os.cpu_count()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}, numba {numba.__version__} "
        f"({numba.config.NUMBA_NUM_THREADS} threads), dask {dask.__version__}, "
        f"distributed {distributed.__version__}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    X, start = make_data(args.seed, args.rows)
    Xd = da.from_array(X, chunks=(args.chunk_rows, X.shape[1]))
    print(
        f"data: {X.shape[0]:,} x {X.shape[1]} float64 ({X.nbytes / 2**20:.0f} MiB), "
        f"{Xd.numblocks[0]} chunks of {args.chunk_rows:,} rows; K=3 full, "
        f"{args.max_iter} iterations, {args.repeats} repeats"
    )
    timed_fit(X[:20_000], start, 2)  # compile / load the kernels before timing
    timed_fit(Xd[:20_000], start, 2)

    small = X[: 8 * args.small_chunk_rows]
    small_d = da.from_array(small, chunks=(args.small_chunk_rows, X.shape[1]))
    cases = {
        "large": dict(ways={"in memory": X, "dask, threads": Xd}, max_iter=args.max_iter),
        "small": dict(ways={"in memory": small, "dask, threads": small_d}, max_iter=50),
    }
    cluster = client = None
    if not args.no_cluster:
        import logging

        env = {}
        if args.worker_numba_threads:
            env["NUMBA_NUM_THREADS"] = str(args.worker_numba_threads)
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR, env=env,
        )
        client = distributed.Client(cluster)
        print(f"LocalCluster: 2 worker processes x 1 thread, worker environment {env}")
        for case in cases.values():
            with warnings.catch_warnings():  # from_array puts X in the graph: sent once, here
                warnings.filterwarnings("ignore", "Sending large graph")
                persisted = case["ways"]["dask, threads"].persist(scheduler=client.get)
                distributed.wait(persisted)
            case["ways"]["dask, LocalCluster"] = persisted
        with dask.config.set(scheduler=client.get):  # load the kernels in the workers
            timed_fit(persisted[:20_000], start, 2)

    ok = True
    for label, case in cases.items():
        runs, models = run_ways(case["ways"], args.repeats, client, start, case["max_iter"])
        rows, chunks = case["ways"]["in memory"].shape[0], case["ways"]["dask, threads"].numblocks[0]
        print(f"\n{label}: {rows:,} rows in {chunks} chunks, {case['max_iter']} iterations\n")
        ok &= report(runs, models)
    if client is not None:
        client.close()
        cluster.close()
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    print("every dask fit equals the in-memory fit to 1e-6" if ok else "MISMATCH above 1e-6")
    return 0 if ok else 1


def run_ways(ways, repeats, client, start, max_iter):
    import dask

    runs = {name: [] for name in ways}
    models = {}
    for _ in range(repeats):
        for name, data in ways.items():  # take turns, so changes in load hit every way
            scheduler = client.get if name == "dask, LocalCluster" else "threads"
            with dask.config.set(scheduler=scheduler):
                gm, t = timed_fit(data, start, max_iter)
            runs[name].append(t)
            models[name] = gm
    return runs, models


def report(runs, models):
    base = statistics.median(r["per_iter"] for r in runs["in memory"])
    print(
        "| way | per iteration (median) | extra per iteration | vs in memory | first "
        "iteration done after | total fit | max relative difference from in memory |"
    )
    print("|---|---|---|---|---|---|---|")
    ok = True
    for name, rs in runs.items():
        per = statistics.median(r["per_iter"] for r in rs)
        first = statistics.median(r["first"] for r in rs)
        total = statistics.median(r["total"] for r in rs)
        diff = max_rel_diff(models["in memory"], models[name])
        ok &= diff <= 1e-6
        print(
            f"| {name} | {fmt_ms(per)} | {fmt_ms(per - base)} | {per / base:.2f}x | "
            f"{fmt_ms(first)} | {total:.2f} s | {diff:.1e} |"
        )
    for name, rs in runs.items():
        print(f"  {name}: per iteration " + ", ".join(fmt_ms(r["per_iter"]) for r in rs)
              + "; totals " + ", ".join(f"{r['total']:.2f} s" for r in rs))
    return ok


def fmt_ms(seconds):
    ms = seconds * 1e3
    return f"{ms:.1f} ms" if abs(ms) >= 10 else f"{ms:.2f} ms"


if __name__ == "__main__":
    sys.exit(main())
