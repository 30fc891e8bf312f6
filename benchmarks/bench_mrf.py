"""Benchmark HMRF-EM (emseg.image.mrf.hmrf_em) against the plain mixture and against DIPY.

    python benchmarks/bench_mrf.py                  # all four parts, 3 repeats, medians
    python benchmarks/bench_mrf.py --part 1 --repeats 5
    python benchmarks/bench_mrf.py --part 3
    python benchmarks/bench_mrf.py --part 4          # float vs uint8 volumes

Parts (bars from the project issue, for a 2-core machine):

1. 3-class 256 x 256 images Gibbs-sampled from a Potts field (beta 1.1, 4 neighbours,
   200 sweeps; one image per repeat), intensities 30 / 125 / 220 plus Gaussian noise of
   sigma 47, 66 and 95 (Zhang, Brady & Smith 2001). Misclassification of HMRF-EM against
   the plain mixture it starts from. Bar: less than half at sigma 66 and 95, lower at 47.
2. A 128^3 "head": a ball holding a 3-class 3-D Potts sample (beta 0.7, 6 neighbours,
   15 sweeps), intensities 80 / 140 / 200 plus noise of sigma 25, zero outside (DIPY
   takes zero as background). emseg (plain mixture + HMRF-EM inside the ball) against
   DIPY's TissueClassifierHMRF (beta 0.1, 10 iterations). Bar: misclassification no
   higher than DIPY's, at least 10x faster.
3. A 256^3 uint8 volume (smoothed noise cut into 3 classes, intensities 30 / 125 / 220,
   noise sigma 47), K=3, the whole pipeline (distinct values, mixture fit as ``segment``
   makes it, with the histogram's saturation spikes at 0 and 255 flattened, HMRF-EM) in
   a fresh subprocess. Bar: under 30 s and under 2 GB peak RSS.
4. Float volumes against their uint8 copies: 96^3 and 160^3 (4.1 million voxels), three
   smooth classes (terciles of Gaussian-smoothed noise), intensities 60 / 128 / 196 plus
   noise of sigma 25, float32, and the same values rounded to uint8. Rows as
   ``segment`` makes them (distinct values, mixture fit on them), then HMRF-EM (mean
   field, 6 neighbours, beta 0.5 and "auto") for a fixed number of iterations; time per
   iteration and voxel (wall and CPU, medians over the iterations after the first),
   float against uint8 alternating. Bar (issue 12): float within 2x of uint8.

Misclassification counts every voxel whose label differs from the truth, labels being
matched to the classes by intensity order (both libraries sort classes by mean).
emseg is warmed up first so numba's compilation (or cache load) is not timed.
"""

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the machine is shared: no spinning

import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

MEANS_2D = np.array([30.0, 125.0, 220.0])
SIGMAS_2D = (47.0, 66.0, 95.0)
VARIANTS = (  # (label, keywords for hmrf_em)
    ("mean field, beta auto", dict(beta="auto")),
    ("mean field, beta 0.5 (default)", dict(beta=0.5)),
    ("mean field, beta 1.0", dict(beta=1.0)),
    ("ICM, beta auto", dict(beta="auto", method="icm")),
)


def plain_fit(X, K, weights=None, **options):
    """emseg's plain mixture, fitted to convergence (the start HMRF-EM refines)."""
    from emseg import GaussianMixture

    options = dict(dict(random_state=0, tol=1e-6, max_iter=1000), **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(K, **options).fit(X, sample_weight=weights)


def warm_up():
    """Compile (or load from cache) the kernels of both fits for K = 3, 2-D and 3-D."""
    from emseg.image.mrf import hmrf_em, potts_sample

    start = time.perf_counter()
    for shape in ((16, 16), (6, 8, 8)):
        truth = potts_sample(shape, 3, 1.0, n_sweeps=2)
        X = (truth + np.random.default_rng(0).normal(0, 0.3, shape)).reshape(-1, 1)
        for method in ("meanfield", "icm"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hmrf_em(plain_fit(X, 3), X, None, shape, beta="auto", method=method, max_iter=2)
    return time.perf_counter() - start


# --- part 1 ----------------------------------------------------------------------------------


def part1(args):
    from emseg.image.mrf import hmrf_em, potts_sample
    from scipy.stats import norm

    print("\n=== Part 1: 3-class 256 x 256 Potts images, plain mixture vs HMRF-EM")
    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.repeats} images (medians)")
    rows = {}
    for rep in range(args.repeats):
        seed = args.seed + rep
        truth = potts_sample((256, 256), 3, 1.1, n_sweeps=200, random_state=seed)
        rng = np.random.default_rng(seed)
        for sigma in SIGMAS_2D:
            image = MEANS_2D[truth] + rng.normal(0.0, sigma, truth.shape)
            X = image.reshape(-1, 1)
            gm = plain_fit(X, 3)
            plain = np.mean(gm.predict(X).reshape(truth.shape) != truth)
            shares = np.bincount(truth.ravel(), minlength=3) / truth.size
            density = [s * norm.pdf(image, m, sigma) for s, m in zip(shares, MEANS_2D)]
            bayes_label = np.argmax(density, 0)
            record = dict(plain=plain, bayes=np.mean(bayes_label != truth))
            for name, options in VARIANTS:
                model = plain_fit(X, 3)
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = hmrf_em(model, X, None, truth.shape, **options)
                record[name] = dict(
                    error=np.mean(result.labels != truth),
                    seconds=time.perf_counter() - start,
                    beta=result.beta,
                    n_iter=result.n_iter,
                    converged=result.converged,
                )
            rows.setdefault(sigma, []).append(record)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"\n{'sigma':>6s}  {'plain':>7s}  {'Bayes pixelwise':>15s}  method")
    verdicts = []
    for sigma, records in rows.items():
        plain = statistics.median(r["plain"] for r in records)
        bayes = statistics.median(r["bayes"] for r in records)
        print(f"{sigma:6.0f}  {plain:7.3f}  {bayes:15.3f}")
        for name, _ in VARIANTS:
            runs = [r[name] for r in records]
            error = statistics.median(r["error"] for r in runs)
            ratio = statistics.median(r[name]["error"] / r["plain"] for r in records)
            each = ", ".join(f"{r[name]['error'] / r['plain']:.2f}" for r in records)
            beta = statistics.median(r["beta"] for r in runs)
            print(
                f"{'':6s}  {'':7s}  {'':15s}  {name:32s} error {error:.3f}  ratio to plain "
                f"{ratio:.2f} (each: {each})  beta {beta:.2f}  "
                f"iterations {statistics.median(r['n_iter'] for r in runs):.0f}  "
                f"{statistics.median(r['seconds'] for r in runs):.2f} s"
                + ("" if all(r["converged"] for r in runs) else "  (some hit max_iter)")
            )
        ratio = statistics.median(r["mean field, beta auto"]["error"] / r["plain"] for r in records)
        bar = 1.0 if sigma == 47 else 0.5
        verdicts.append(
            f"sigma {sigma:.0f}: ratio {ratio:.2f} (mean field, beta auto), bar < {bar:g}: "
            + ("met" if ratio < bar else "NOT met")
        )
    print("\n" + "\n".join(verdicts))


# --- part 2 ----------------------------------------------------------------------------------


def head_volume(seed, n=128):
    from emseg.image.mrf import potts_sample

    truth = potts_sample((n, n, n), 3, 0.7, neighbourhood=6, n_sweeps=15, random_state=seed)
    z, y, x = np.indices((n, n, n)) - (n - 1) / 2
    head = z**2 + y**2 + x**2 < (0.47 * n) ** 2
    rng = np.random.default_rng(seed)
    values = np.array([80.0, 140.0, 200.0])[truth] + rng.normal(0.0, 25.0, truth.shape)
    image = np.where(head, np.maximum(values, 1.0), 0.0)  # DIPY takes 0 as background
    return image, truth, head


def emseg_head(image, head):
    """What ``emseg.segment(image, 3, mask=..., beta=0.5)`` will do: plain fit, then MRF."""
    from emseg import GaussianMixture
    from emseg.image.mrf import hmrf_em

    X = image[head][:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(3, random_state=0).fit(X)  # segment's defaults
        return hmrf_em(gm, X, None, image.shape, head, beta=0.5).labels


def part2(args):
    import numba
    from dipy.segment.tissue import TissueClassifierHMRF

    print("\n=== Part 2: 128^3 head, emseg vs DIPY TissueClassifierHMRF (beta 0.1, 10 iterations)")
    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.repeats} volumes (medians)")
    records = []
    for rep in range(args.repeats):
        image, truth, head = head_volume(args.seed + rep)
        start = time.perf_counter()
        labels = emseg_head(image, head)
        emseg_seconds = time.perf_counter() - start
        threads = numba.get_num_threads()
        numba.set_num_threads(1)  # DIPY runs on one core: emseg on one thread too
        start = time.perf_counter()
        emseg_head(image, head)
        one_thread = time.perf_counter() - start
        numba.set_num_threads(threads)
        start = time.perf_counter()
        _, dipy_labels, _ = TissueClassifierHMRF(verbose=False).classify(image, 3, 0.1, max_iter=10)
        dipy_seconds = time.perf_counter() - start
        records.append(
            dict(
                emseg_error=np.mean(labels[head] != truth[head]),
                dipy_error=np.mean(dipy_labels[head] - 1 != truth[head]),
                emseg_seconds=emseg_seconds,
                one_thread=one_thread,
                dipy_seconds=dipy_seconds,
            )
        )
        print(f"  volume {rep}: emseg {records[-1]['emseg_error']:.4f} in {emseg_seconds:.2f} s "
              f"({one_thread:.2f} s on one thread); DIPY {records[-1]['dipy_error']:.4f} in "
              f"{dipy_seconds:.2f} s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    med = {key: statistics.median(r[key] for r in records) for key in records[0]}
    speedup = statistics.median(r["dipy_seconds"] / r["emseg_seconds"] for r in records)
    single = statistics.median(r["dipy_seconds"] / r["one_thread"] for r in records)
    print(f"\nmedians: emseg error {med['emseg_error']:.4f}, {med['emseg_seconds']:.2f} s "
          f"({med['one_thread']:.2f} s on one thread); DIPY error {med['dipy_error']:.4f}, "
          f"{med['dipy_seconds']:.2f} s; DIPY time / emseg time {speedup:.1f}x "
          f"({single:.1f}x with emseg on one thread)")
    no_higher = med["emseg_error"] <= med["dipy_error"]
    print(f"error no higher than DIPY's: {'met' if no_higher else 'NOT met'}; "
          f">= 10x faster: {'met' if speedup >= 10 else 'NOT met'}")


# --- part 3 ----------------------------------------------------------------------------------


CHILD = r"""
import json, os, sys, time, warnings
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np
sys.path.insert(0, sys.argv[2])
import bench_mrf
bench_mrf.warm_up()
volume = np.load(sys.argv[1])
rss_before = bench_mrf.peak_rss()
from emseg.image.features import distinct_values
from emseg.image.mrf import hmrf_em
from emseg.image.pixels import fit_mixture
start = time.perf_counter()
unique, counts, index = distinct_values(volume.reshape(-1, 1))
X = unique.astype(np.float64)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the mixture as segment() fits it: saturation flattened
    gm, _ = fit_mixture(X, counts, volume.size, X.shape[0], 3, 8,
                        dict(covariance_type="full", random_state=0))
fitted = time.perf_counter()
plain = gm.predict(X).astype(np.int8)[index].reshape(volume.shape)  # (untimed) for the error
start_mrf = time.perf_counter()
result = hmrf_em(gm, X, index, volume.shape)  # defaults: mean field, beta 0.5, 6 neighbours
done = time.perf_counter()
print(json.dumps(dict(
    fit=fitted - start, mrf=done - start_mrf, total=(fitted - start) + (done - start_mrf),
    n_iter=result.n_iter,
    converged=result.converged, rss_before=rss_before,
    peak=bench_mrf.peak_rss(),
)))
np.save(sys.argv[1] + ".labels.npy", result.labels.astype(np.int8))
np.save(sys.argv[1] + ".plain.npy", plain)
"""


def peak_rss():
    """This process's peak resident memory in MiB since it started (VmHWM; unlike
    ``getrusage``'s ``ru_maxrss``, not inherited from the parent across fork and exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def big_volume(seed, n=256):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((n, n, n), dtype=np.float32), 4)
    truth = np.digitize(field, np.quantile(field[::4, ::4, ::4], [1 / 3, 2 / 3])).astype(np.int8)
    del field
    noise = rng.normal(0.0, 47.0, truth.shape).astype(np.float32)
    values = np.array([30, 125, 220], np.float32)[truth] + noise
    return np.clip(np.rint(values), 0, 255).astype(np.uint8), truth


def part3(args):
    print("\n=== Part 3: 256^3 uint8 volume, K=3, HMRF-EM (defaults) in a fresh subprocess")
    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.repeats} runs (medians)")
    here = os.path.dirname(os.path.abspath(__file__))
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "volume.npy")
        volume, truth = big_volume(args.seed)
        np.save(path, volume)
        del volume
        for rep in range(args.repeats):
            out = subprocess.run([sys.executable, "-c", CHILD, path, here], capture_output=True,
                                 text=True, check=True)
            record = json.loads(out.stdout.strip().splitlines()[-1])
            labels = np.load(path + ".labels.npy")
            record["error"] = float(np.mean(labels != truth))
            record["plain"] = float(np.mean(np.load(path + ".plain.npy") != truth))
            records.append(record)
            print(f"  run {rep}: fit {record['fit']:.2f} s + HMRF-EM {record['mrf']:.2f} s "
                  f"({record['n_iter']} iterations) = {record['total']:.2f} s; peak RSS "
                  f"{record['peak']:,.0f} MiB (after loading the volume: "
                  f"{record['rss_before']:,.0f} MiB); misclassification {record['error']:.4f} "
                  f"(plain mixture {record['plain']:.4f})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    total = statistics.median(r["total"] for r in records)
    peak = statistics.median(r["peak"] for r in records)
    print(f"\nmedians: {total:.2f} s, peak RSS {peak:,.0f} MiB; under 30 s: "
          f"{'met' if total < 30 else 'NOT met'}; under 2 GB: "
          f"{'met' if peak < 2048 else 'NOT met'}")


# --- part 4 ----------------------------------------------------------------------------------


def smooth_phantom(n, seed, sigma=25.0):
    """``(float32 volume, truth)``: three smooth classes of an n^3 volume, intensities
    60 / 128 / 196 plus Gaussian noise (inside 0..255 but for a few voxels)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((n, n, n), dtype=np.float32), 3)
    truth = np.digitize(field, np.quantile(field[::2, ::2, ::2], [1 / 3, 2 / 3])).astype(np.int8)
    del field
    noise = rng.normal(0.0, sigma, truth.shape).astype(np.float32)
    return np.array([60, 128, 196], np.float32)[truth] + noise, truth


def timed_hmrf(volume, beta, n_iter):
    """HMRF-EM on ``volume``'s rows as ``segment`` makes them, ``n_iter`` iterations;
    returns (labels, wall and CPU seconds of each iteration after the first)."""
    from emseg.image.features import distinct_values
    from emseg.image.mrf import hmrf_em

    unique, counts, index = distinct_values(volume.reshape(-1, 1))
    X = unique.astype(np.float64)
    gm = plain_fit(X, 3, counts, tol=1e-3, max_iter=100)
    stamps = [(time.perf_counter(), time.process_time())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = hmrf_em(gm, X, index, volume.shape, beta=beta, max_iter=n_iter, tol=0,
                         callback=lambda i, b: stamps.append((time.perf_counter(),
                                                              time.process_time())))
    steps = np.diff(np.array(stamps), axis=0)[1:]
    return result.labels, steps[:, 0], steps[:, 1]


def part4(args, n_iter=6):
    sizes = [int(n) for n in args.sizes.split(",")]
    print("\n=== Part 4: float volumes against their uint8 copies, HMRF-EM time per iteration")
    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.repeats} volumes per size, "
          f"{n_iter} iterations each (the first untimed); ns per voxel and iteration, medians")
    print(f"\n{'size':>5s}  {'beta':>5s}  {'float wall':>10s}  {'uint8 wall':>10s}  {'ratio':>5s}  "
          f"{'float CPU':>9s}  {'uint8 CPU':>9s}  {'ratio':>5s}  {'error float / uint8':>19s}  "
          f"{'labels agree':>12s}")
    verdicts = []
    for n in sizes:
        for beta in (0.5, "auto"):
            records = []
            for rep in range(args.repeats):
                volume, truth = smooth_phantom(n, args.seed + rep)
                rounded = np.clip(np.rint(volume), 0, 255).astype(np.uint8)
                copies = {"float": volume, "uint8": rounded}
                del volume
                order = ("float", "uint8") if rep % 2 == 0 else ("uint8", "float")
                record = {}
                for name in order:
                    labels, wall, cpu = timed_hmrf(copies[name], beta, n_iter)
                    record[name] = dict(wall=np.median(wall) / truth.size * 1e9,
                                        cpu=np.median(cpu) / truth.size * 1e9,
                                        error=np.mean(labels != truth), labels=labels)
                record["agree"] = np.mean(record["float"]["labels"] == record["uint8"]["labels"])
                records.append(record)
            med = {(name, key): statistics.median(r[name][key] for r in records)
                   for name in ("float", "uint8") for key in ("wall", "cpu", "error")}
            wall_ratio = statistics.median(r["float"]["wall"] / r["uint8"]["wall"] for r in records)
            cpu_ratio = statistics.median(r["float"]["cpu"] / r["uint8"]["cpu"] for r in records)
            agree = statistics.median(r["agree"] for r in records)
            print(f"{n:4d}^3  {str(beta):>5s}  {med['float', 'wall']:10.0f}  "
                  f"{med['uint8', 'wall']:10.0f}  {wall_ratio:5.2f}  {med['float', 'cpu']:9.0f}  "
                  f"{med['uint8', 'cpu']:9.0f}  {cpu_ratio:5.2f}  "
                  f"{med['float', 'error']:9.4f} / {med['uint8', 'error']:.4f}  {agree:12.4f}")
            verdicts.append(f"{n}^3 beta {beta}: float / uint8 {wall_ratio:.2f} (wall), "
                            f"{cpu_ratio:.2f} (CPU); within 2x: "
                            + ("met" if max(wall_ratio, cpu_ratio) <= 2 else "NOT met"))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("\n" + "\n".join(verdicts))


# --- main ------------------------------------------------------------------------------------


def describe_machine():
    import numba

    import emseg

    from _common import cpu_name

    cpu = cpu_name()
    print(f"machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__} "
          f"({numba.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})")
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256()
    package = Path(emseg.__file__).parent
    for path in sorted(package.rglob("*.py")):  # every subpackage's modules too
        digest.update(str(path.relative_to(package)).encode() + path.read_bytes())
    print(f"emseg {emseg.__version__} (source sha256 {digest.hexdigest()[:12]}); "
          f"started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["1", "2", "3", "4", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=3, help="images / volumes / runs per part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", default="96,160", help="part 4: volume edges, comma-separated")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    print("command: python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]))
    describe_machine()
    print(f"emseg warm-up (numba compile or cache load): {warm_up():.1f} s")
    parts = ["1", "2", "3", "4"] if args.part == "all" else [args.part]
    for part in parts:
        {"1": part1, "2": part2, "3": part3, "4": part4}[part](args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nthis process's peak RSS: {peak:,.0f} MiB (parts 1, 2 and 4; part 3 ran in "
          "subprocesses)")


if __name__ == "__main__":
    main()
