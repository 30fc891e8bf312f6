"""Time emseg.GaussianMixture against scikit-learn's GaussianMixture on the project's cases.

    python benchmarks/bench_gmm.py                      # all cases, 3 repeats, medians
    python benchmarks/bench_gmm.py --case 1 --repeats 5
    python benchmarks/bench_gmm.py --case 2 --sklearn-iters 5   # sklearn timed on 5 iterations

Both estimators run in this process, on the same array, from the same starting
parameters (``weights_init``, ``means_init``, ``precisions_init``), with ``tol=0`` so
both run exactly ``max_iter`` iterations and their ``lower_bound_`` can be compared.

Cases (bars from the project issue, for a 2-core machine):

1. 1,000,000 x 10 drawn from a seeded 4-component full-covariance mixture; K=4, full,
   started from the true parameters. Bar: emseg >= 4x faster per iteration.
2. 12,000,000 x 1: ``skimage.data.camera()`` upscaled bicubically to 4000 x 3000, kept
   uint8, as float64; K=3, full. Bar: emseg >= 15x faster per iteration. emseg merges
   repeated rows first (a one-off cost, counted in its total time).
3. Case 2 plus N(0, 0.5^2) noise, so no row repeats and emseg fits every row. No bar.

Timing: each estimator's ``_e_step``/``_m_step`` (and set-up methods) are wrapped on the
instance to time stamp them, so a fit splits into set-up (validation, emseg's row
merge, initialisation), the EM loop, and what follows it (scikit-learn's ``fit`` runs
one more E-step for labels). "per iteration (loop)" is the EM loop's wall time over the
iterations; "per iteration (total)" is the whole ``fit`` over the iterations.
"""

import argparse
import gc
import os
import platform
import resource
import statistics
import sys
import time
import warnings

import numpy as np

CASES = {
    "1": dict(title="1,000,000 x 10, 4-component mixture, K=4, full", bar=4.0),
    "2": dict(title="12,000,000 x 1, camera() grey levels (uint8 -> float64), K=3, full", bar=15.0),
    "3": dict(title="12,000,000 x 1, grey levels + N(0, 0.5^2) noise (no repeats), K=3, full", bar=None),
}


# --- data ------------------------------------------------------------------------------


def make_case1(seed):
    """1e6 x 10 from a seeded 4-component full-covariance mixture, and its true parameters."""
    rng = np.random.default_rng(seed)
    K, D, N = 4, 10, 1_000_000
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    means = rng.normal(0.0, 3.0, size=(K, D))
    covs = np.empty((K, D, D))
    for k in range(K):
        A = rng.normal(size=(D, D))
        covs[k] = A @ A.T / D + 0.5 * np.eye(D)
    counts = rng.multinomial(N, weights)
    X = np.concatenate(
        [rng.multivariate_normal(means[k], covs[k], size=counts[k]) for k in range(K)]
    )
    X = X[rng.permutation(N)]
    init = (weights, means, np.linalg.inv(covs))
    return np.ascontiguousarray(X), init


def camera_grey_levels():
    """camera() (512 x 512 uint8) upscaled bicubically to 4000 x 3000 (width x height), uint8."""
    from skimage import data

    img = data.camera()
    try:
        import cv2

        big = cv2.resize(img, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    except ImportError:
        from PIL import Image

        big = np.asarray(Image.fromarray(img).resize((4000, 3000), Image.BICUBIC))
    assert big.shape == (3000, 4000) and big.dtype == np.uint8
    return big


def make_case2(seed):
    X = camera_grey_levels().astype(np.float64).reshape(-1, 1)
    return X, subsample_init(X, 3, seed)


def make_case3(seed):
    X = camera_grey_levels().astype(np.float64).reshape(-1, 1)
    X += np.random.default_rng(seed).normal(0.0, 0.5, size=X.shape)
    return X, subsample_init(X, 3, seed)


def subsample_init(X, K, seed):
    """Starting parameters from a short scikit-learn fit on a seeded 200,000-row subsample."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    sub = X[rng.choice(X.shape[0], 200_000, replace=False)]
    gm = GaussianMixture(K, covariance_type="full", max_iter=10, random_state=seed).fit(sub)
    return gm.weights_.copy(), gm.means_.copy(), gm.precisions_.copy()


# --- timing ----------------------------------------------------------------------------


class PhaseClock:
    """Time stamps every call of the named methods of one estimator instance."""

    def __init__(self, estimator, names):
        self.events = []
        for name in names:
            setattr(estimator, name, self._wrap(name, getattr(estimator, name)))

    def _wrap(self, name, method):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.events.append((name, start, time.perf_counter()))

        return timed

    def spans(self, name):
        return [(s, e) for n, s, e in self.events if n == name]

    def total(self, name):
        return sum(e - s for s, e in self.spans(name))


def timed_fit(make, X, setup_names):
    """Fit a fresh estimator; return it and its phase timings (seconds)."""
    est = make()
    clock = PhaseClock(est, setup_names + ["_e_step", "_m_step"])
    gc.collect()
    start = time.perf_counter()
    est.fit(X)
    end = time.perf_counter()
    e, m = clock.spans("_e_step"), clock.spans("_m_step")
    n = len(m)
    first, last = e[0][0], m[-1][1]
    setup = {name: clock.total(name) for name in setup_names}
    return est, dict(
        total=end - start,
        n_iter=n,
        validate=first - start - sum(setup.values()),
        **setup,
        loop=last - first,
        e_step=sum(b - a for a, b in e[:n]),
        m_step=sum(b - a for a, b in m),
        # the typical iteration, apart from stalls (a descheduled thread) that the mean keeps
        median_iter=statistics.median(m[i][1] - e[i][0] for i in range(n)),
        after=end - last,
        extra_e=sum(b - a for a, b in e[n:]),
    )


def sklearn_fit(X, init, max_iter):
    from sklearn.mixture import GaussianMixture

    weights, means, precisions = init

    def make():
        # init_params="random_from_data": with all three *_init given, scikit-learn still
        # computes an initial responsibility matrix before overriding it; the default
        # "kmeans" would run KMeans on all rows, this is its cheapest choice.
        return GaussianMixture(
            len(weights), covariance_type="full", tol=0.0, max_iter=max_iter,
            init_params="random_from_data", weights_init=weights, means_init=means,
            precisions_init=precisions, random_state=0,
        )

    est, t = timed_fit(make, X, ["_initialize_parameters"])
    t["prepare"], t["init"] = 0.0, t.pop("_initialize_parameters")
    t["lower_bound"] = float(est.lower_bound_)
    t["history"] = list(getattr(est, "lower_bounds_", []))
    return t


def emseg_fit(X, init, max_iter):
    from emseg import GaussianMixture

    weights, means, precisions = init

    def make():
        return GaussianMixture(
            len(weights), covariance_type="full", tol=0.0, max_iter=max_iter,
            weights_init=weights, means_init=means, precisions_init=precisions,
            random_state=0,
        )

    est, t = timed_fit(make, X, ["_prepare", "_initialize"])
    t["prepare"], t["init"] = t.pop("_prepare"), t.pop("_initialize")
    t["lower_bound"] = float(est.lower_bound_)
    t["history"] = list(est.history_)
    t["rows_fitted"] = est_rows(est, X)
    return t


def est_rows(est, X):
    """How many rows emseg's E-step walks after merging (re-derived, outside the timing)."""
    data = est._prepare(np.ascontiguousarray(X), None)
    return data.X.shape[0]


def warm_up():
    """Compile (or load from numba's cache) emseg's kernels on small inputs."""
    from emseg import GaussianMixture

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for X in (rng.normal(size=(5000, 10)), np.round(rng.normal(size=(5000, 1)) * 20)):
            GaussianMixture(3, max_iter=3, random_state=0).fit(X)
    return time.perf_counter() - start


# --- reporting -------------------------------------------------------------------------


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def fmt_s(seconds):
    if seconds >= 1:
        return f"{seconds:9.2f} s "
    if seconds >= 1e-3:
        return f"{seconds * 1e3:9.1f} ms"
    return f"{seconds * 1e6:9.0f} us"


def run_case(case, args):
    spec = CASES[case]
    print(f"\n=== Case {case}: {spec['title']}")
    t0 = time.perf_counter()
    X, init = {"1": make_case1, "2": make_case2, "3": make_case3}[case](args.seed)
    print(f"data: {X.shape[0]:,} x {X.shape[1]} float64, made in {time.perf_counter() - t0:.1f} s; "
          f"start: {'true parameters' if case == '1' else 'short sklearn fit on a 200k subsample'}")
    max_iter = args.max_iter
    sk_iter = min(args.sklearn_iters or max_iter, max_iter)
    if sk_iter < max_iter:
        print(f"sklearn timed on {sk_iter} iterations (--sklearn-iters), emseg on {max_iter}; "
              f"tol=0, so both run exactly that many")
    else:
        print(f"both run max_iter={max_iter} with tol=0 (exactly {max_iter} iterations)")
    print(f"load average before: {os.getloadavg()[0]:.2f}; repeats: {args.repeats} (medians)")

    sk_runs, em_runs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: tol=0 never converges
        for _ in range(args.repeats):
            sk_runs.append(sklearn_fit(X, init, sk_iter))
            em_runs.append(emseg_fit(X, init, max_iter))

    for runs in (sk_runs, em_runs):
        for r in runs:
            r["per_iter"] = r["loop"] / r["n_iter"]
            r["total_per_iter"] = r["total"] / r["n_iter"]
    sk = {k: median(sk_runs, k) for k in sk_runs[0] if k != "history"}
    em = {k: median(em_runs, k) for k in em_runs[0] if k != "history"}
    if sk_iter < max_iter:
        # scikit-learn's fixed costs once, plus its measured per-iteration cost max_iter times
        sk["total_est"] = sk["total"] - sk["loop"] + max_iter * sk["per_iter"]
    else:
        sk["total_est"] = sk["total"]

    rows = [
        ("iterations", f"{sk['n_iter']:>12.0f}", f"{em['n_iter']:>12.0f}"),
        ("rows walked per E-step", f"{X.shape[0]:>12,}", f"{em['rows_fitted']:>12,.0f}"),
        ("total fit time", fmt_s(sk["total"]), fmt_s(em["total"])),
        ("  validate input", fmt_s(sk["validate"]), fmt_s(em["validate"])),
        ("  merge repeated rows (_prepare)", "        -   ", fmt_s(em["prepare"])),
        ("  initialise", fmt_s(sk["init"]), fmt_s(em["init"])),
        ("  EM loop", fmt_s(sk["loop"]), fmt_s(em["loop"])),
        ("  after loop", fmt_s(sk["after"]), fmt_s(em["after"])),
        ("    of which extra E-step", fmt_s(sk["extra_e"]), fmt_s(em["extra_e"])),
        ("per iteration (loop)", fmt_s(sk["per_iter"]), fmt_s(em["per_iter"])),
        ("  E-step", fmt_s(sk["e_step"] / sk["n_iter"]), fmt_s(em["e_step"] / em["n_iter"])),
        ("  M-step", fmt_s(sk["m_step"] / sk["n_iter"]), fmt_s(em["m_step"] / em["n_iter"])),
        ("  median single iteration", fmt_s(sk["median_iter"]), fmt_s(em["median_iter"])),
        ("per iteration (total / iterations)", fmt_s(sk["total_per_iter"]), fmt_s(em["total_per_iter"])),
        ("lower_bound_ (own last iteration)", f"{sk_runs[-1]['lower_bound']:>12.8f}", f"{em_runs[-1]['lower_bound']:>12.8f}"),
    ]
    print(f"{'':36s}{'scikit-learn':>12s}  {'emseg':>12s}")
    for name, a, b in rows:
        print(f"{name:36s}{a:>12s}  {b:>12s}")
    print(f"runs, per iteration (loop): sklearn "
          + ", ".join(fmt_s(r["per_iter"]).strip() for r in sk_runs)
          + "; emseg " + ", ".join(fmt_s(r["per_iter"]).strip() for r in em_runs))
    print(f"runs, total fit time:       sklearn "
          + ", ".join(fmt_s(r["total"]).strip() for r in sk_runs)
          + "; emseg " + ", ".join(fmt_s(r["total"]).strip() for r in em_runs))

    # Same starting parameters, same iterations: the bound histories should agree.
    sk_hist, em_hist = np.array(sk_runs[-1]["history"]), np.array(em_runs[-1]["history"])
    n = min(len(sk_hist), len(em_hist))
    lb_sk, lb_em = sk_hist[n - 1], em_hist[n - 1]
    gap = np.abs(sk_hist[:n] - em_hist[:n]).max() if n else float("nan")
    print(f"lower bound after {n} iterations: sklearn {lb_sk:.10f}, emseg {lb_em:.10f}, "
          f"|diff| {abs(lb_sk - lb_em):.2e}; max |diff| over iterations 1..{n}: {gap:.2e}")
    spread = max(r["lower_bound"] for r in em_runs) - min(r["lower_bound"] for r in em_runs)
    if spread:
        print(f"note: emseg's lower_bound_ varied by {spread:.2e} across repeats")

    ratio_loop = sk["per_iter"] / em["per_iter"]
    ratio_total = (sk["total_est"] / max_iter) / em["total_per_iter"]
    how = " (sklearn total extrapolated to max_iter)" if sk_iter < max_iter else ""
    bar = spec["bar"]

    def verdict(r):
        if bar is None:
            return "(no bar)"
        return f"bar >= {bar:g}x: {'MET' if r >= bar else f'MISSED ({r / bar:.0%} of the bar)'}"

    print(f"ratio sklearn/emseg, per iteration (loop):  {ratio_loop:8.1f}x  {verdict(ratio_loop)}")
    print(f"ratio sklearn/emseg, total / iterations:    {ratio_total:8.1f}x  {verdict(ratio_total)}{how}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS so far: {peak:,.0f} MiB; load average after: {os.getloadavg()[0]:.2f}")
    del X
    gc.collect()
    return dict(case=case, ratio_loop=ratio_loop, ratio_total=ratio_total, sk=sk, em=em)


def emseg_fingerprint():
    """A short hash of emseg's source files, to tie the figures to the code measured."""
    import hashlib
    from pathlib import Path

    import emseg

    digest = hashlib.sha256()
    for path in sorted(Path(emseg.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return f"emseg {emseg.__version__} (source sha256 {digest.hexdigest()[:12]})"


def describe_machine():
    import numba
    import sklearn

    from _common import cpu_name

    cpu = cpu_name()
    try:
        from threadpoolctl import threadpool_info

        pools = {f"{p['internal_api']} {p['num_threads']} threads" for p in threadpool_info()}
        blas = ", ".join(sorted(pools))
    except ImportError:
        blas = "?"
    print(f"machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn "
          f"{sklearn.__version__}, numba {numba.__version__} ({numba.get_num_threads()} threads), "
          f"BLAS: {blas}")
    print(f"{emseg_fingerprint()}; started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=["1", "2", "3", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=3, help="fits per estimator; medians reported")
    parser.add_argument("--max-iter", type=int, default=50, help="EM iterations (tol=0)")
    parser.add_argument("--sklearn-iters", type=int, default=None,
                        help="time scikit-learn on this many iterations only (tol=0) and "
                             "compare per-iteration cost")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.max_iter < 1 or (args.sklearn_iters is not None and args.sklearn_iters < 1):
        parser.error("--repeats, --max-iter and --sklearn-iters must be >= 1")

    print("command: python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]))
    describe_machine()
    print(f"emseg warm-up (numba compile or cache load): {warm_up():.1f} s")
    cases = ["1", "2", "3"] if args.case == "all" else [args.case]
    results = [run_case(c, args) for c in cases]
    print("\n=== Summary (medians)")
    print(f"{'case':6s}{'sklearn/iter':>14s}{'emseg/iter':>14s}{'emseg total/iter':>18s}"
          f"{'ratio loop':>12s}{'ratio total':>13s}{'bar':>6s}")
    for r in results:
        bar = CASES[r["case"]]["bar"]
        print(f"{r['case']:6s}{fmt_s(r['sk']['per_iter']):>14s}{fmt_s(r['em']['per_iter']):>14s}"
              f"{fmt_s(r['em']['total_per_iter']):>18s}{r['ratio_loop']:>11.1f}x"
              f"{r['ratio_total']:>12.1f}x{(f'{bar:g}x' if bar else '-'):>6s}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS: {peak:,.0f} MiB (whole run, both libraries)")


if __name__ == "__main__":
    main()
