"""Time emseg.GaussianHMM against hmmlearn's GaussianHMM on the project's HMM case.

    python benchmarks/bench_hmm.py                   # 10 Baum-Welch iterations each, 5 Viterbi runs
    python benchmarks/bench_hmm.py --iters 20 --viterbi-repeats 9

The case (bars from the project issue, for a 2-core machine): 1,000,000 x 3
observations in 10 sequences of 100,000 drawn from a known 4-state Gaussian HMM with
full covariances; K=4, full. Bars: each Baum-Welch iteration >= 3x faster than
hmmlearn's, Viterbi at least as fast, with the same log-likelihood.

Both libraries run in this process, on the same array, from the same starting
parameters, for the same number of iterations (emseg ``tol=0``, hmmlearn
``tol=-inf``, so neither stops early), and hmmlearn with ``init_params=""`` (no
re-initialisation) and ``covars_prior=0`` (emseg's maximum-likelihood M-step; the
covariance floor is never reached here). hmmlearn is timed with both of its
forward-backward implementations, "log" (its default) and "scaling" (its faster one).

Timing: each estimator's E-step and M-step are wrapped on the instance to time stamp
them; one iteration is from the start of its E-step to the end of its M-step, and the
median over the iterations is reported (with the minimum and maximum), so a scheduling
stall on a shared machine shows as a maximum rather than moving the figure. Viterbi is
``decode(X, lengths)`` on the true parameters, emission densities included, median of
``--viterbi-repeats`` runs. emseg is run once on small data first so that numba's
compilation (cached in ``emseg/__pycache__``) is not timed.
"""

import argparse
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

K, D = 4, 3
N_SEQ, SEQ_LEN = 10, 100_000


def true_model():
    from emseg.hmm import GaussianHMM

    rng = np.random.default_rng(12345)
    model = GaussianHMM(K, covariance_type="full")
    model.startprob_ = np.array([0.4, 0.3, 0.2, 0.1])
    trans = np.full((K, K), 0.02)
    np.fill_diagonal(trans, 0.94)
    model.transmat_ = trans
    model.means_ = np.array(
        [[-3.0, 0.0, 1.0], [-1.0, 2.0, -1.0], [1.0, -1.0, 0.0], [3.0, 1.0, 2.0]]
    )
    covs = np.empty((K, D, D))
    for k in range(K):
        A = rng.normal(size=(D, D))
        covs[k] = A @ A.T / D + 0.5 * np.eye(D)
    model.covars_ = covs
    return model


def make_data(truth, seed):
    parts = [truth.sample(SEQ_LEN, random_state=seed + s)[0] for s in range(N_SEQ)]
    return np.ascontiguousarray(np.concatenate(parts)), np.full(N_SEQ, SEQ_LEN)


def initial_parameters(truth, seed):
    """A start both libraries share: the truth blurred (means moved, covariances inflated,
    transitions flattened)."""
    rng = np.random.default_rng(seed + 1)
    start = np.full(K, 1.0 / K)
    trans = np.full((K, K), 0.1)
    np.fill_diagonal(trans, 0.7)
    means = truth.means_ + rng.normal(0.0, 0.5, size=(K, D))
    covs = 1.5 * truth.covars_ + 0.2 * np.eye(D)
    return start, trans, means, covs


def stamp(obj, estep, mstep, log):
    """Wrap ``obj``'s E-step and M-step methods to record (E start, E end, M end) per
    iteration."""
    e_orig, m_orig = getattr(obj, estep), getattr(obj, mstep)

    def e_wrapped(*a, **k):
        log.append([time.perf_counter(), None, None])
        out = e_orig(*a, **k)
        log[-1][1] = time.perf_counter()
        return out

    def m_wrapped(*a, **k):
        out = m_orig(*a, **k)
        log[-1][2] = time.perf_counter()
        return out

    setattr(obj, estep, e_wrapped)
    setattr(obj, mstep, m_wrapped)


def summary(times):
    return statistics.median(times), min(times), max(times)


def fmt(seconds):
    return f"{seconds * 1e3:8.1f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=10, help="Baum-Welch iterations per library")
    parser.add_argument("--viterbi-repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip-log", action="store_true", help="skip hmmlearn's 'log' implementation"
    )
    args = parser.parse_args()

    import numba
    from hmmlearn import hmm as hmmlearn_hmm
    import hmmlearn

    import emseg
    from emseg.hmm import GaussianHMM

    print(f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
          f"hmmlearn {hmmlearn.__version__}, emseg {emseg.__version__}")
    print(f"cpus: {os.cpu_count()}, numba threads: {numba.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average at start: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    truth = true_model()
    t0 = time.perf_counter()
    X, lengths = make_data(truth, args.seed)
    print(f"data: {X.shape[0]:,} x {X.shape[1]} in {len(lengths)} sequences "
          f"(drawn in {time.perf_counter() - t0:.1f} s)")
    start, trans, means, covs = initial_parameters(truth, args.seed)
    N = X.shape[0]

    # warm-up: compile emseg's kernels on small data
    small = X[:2000]
    warnings.simplefilter("ignore", emseg.ConvergenceWarning)
    GaussianHMM(K, "full", n_iter=2, tol=0, random_state=0).fit(small, [1000, 1000]).decode(small)

    # --- Baum-Welch ------------------------------------------------------------------
    results = {}
    ours = GaussianHMM(
        K, covariance_type="full", n_iter=args.iters, tol=0, covars_prior=0.0,
        startprob_init=start, transmat_init=trans, means_init=means, covars_init=covs,
    )
    log = []
    stamp(ours, "_e_step", "_m_step", log)
    t0 = time.perf_counter()
    ours.fit(X, lengths)
    total = time.perf_counter() - t0
    results["emseg"] = (log, total, np.asarray(ours.history_) * N)

    refs = {}
    for impl in ("scaling", "log"):
        if impl == "log" and args.skip_log:
            continue
        ref = hmmlearn_hmm.GaussianHMM(
            K, covariance_type="full", n_iter=args.iters, tol=-np.inf,
            init_params="", params="stmc", covars_prior=0.0, implementation=impl,
        )
        ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = start, trans, means, covs
        log = []
        stamp(ref, "_do_estep", "_do_mstep", log)
        t0 = time.perf_counter()
        ref.fit(X, lengths)
        total = time.perf_counter() - t0
        results[f"hmmlearn ({impl})"] = (log, total, np.asarray(ref.monitor_.history))
        refs[impl] = ref

    print(f"\nBaum-Welch, K={K}, full covariances, {args.iters} iterations each, same start")
    print(f"{'':20s} {'median iter':>12s} {'min':>11s} {'max':>11s} {'E-step':>11s} "
          f"{'M-step':>11s} {'total fit':>10s}   final log-likelihood")
    medians = {}
    for name, (log, total, history) in results.items():
        med, lo, hi = summary([m - e for e, _, m in log])
        e_med = statistics.median([b - a for a, b, _ in log])
        m_med = statistics.median([c - b for _, b, c in log])
        medians[name] = med
        print(f"{name:20s} {fmt(med)}   {fmt(lo)} {fmt(hi)} {fmt(e_med)} {fmt(m_med)} "
              f"{total:9.2f} s   {history[-1]:.8f}")
    ours_med = medians["emseg"]
    for impl in refs:
        name = f"hmmlearn ({impl})"
        ratio = medians[name] / ours_med
        diff = np.max(np.abs(results["emseg"][2] - results[name][2]) / np.abs(results[name][2]))
        verdict = "met" if ratio >= 3 else "NOT met"
        print(f"ratio {name} / emseg per iteration: {ratio:.1f}x (bar 3x: {verdict}); "
              f"largest relative difference in log-likelihood over the iterations: {diff:.1e}")

    # --- Viterbi ---------------------------------------------------------------------
    ref = hmmlearn_hmm.GaussianHMM(K, covariance_type="full", init_params="")
    ref.startprob_, ref.transmat_ = truth.startprob_, truth.transmat_
    ref.means_, ref.covars_ = truth.means_, truth.covars_
    ours_times, ref_times = [], []
    for _ in range(args.viterbi_repeats):
        t0 = time.perf_counter()
        lp, path = truth.decode(X, lengths)
        ours_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref_lp, ref_path = ref.decode(X, lengths)
        ref_times.append(time.perf_counter() - t0)
    same = np.array_equal(path, ref_path)
    om, rm = statistics.median(ours_times), statistics.median(ref_times)
    print(f"\nViterbi on the true parameters, {args.viterbi_repeats} runs each (median, min-max)")
    rows = (("emseg", om, ours_times, lp), ("hmmlearn", rm, ref_times, ref_lp))
    for name, med, times, value in rows:
        print(f"{name:20s} {fmt(med)}   ({fmt(min(times))} - {fmt(max(times))})   "
              f"log p(X, path) {value:.6f}")
    print(f"ratio hmmlearn / emseg: {rm / om:.1f}x (bar 1x: {'met' if rm >= om else 'NOT met'}); "
          f"paths identical: {same}")
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
