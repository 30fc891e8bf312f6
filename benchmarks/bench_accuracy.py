"""Accuracy of emseg.segment beside scikit-learn, multi-Otsu and DIPY, on phantoms and real images.

    python benchmarks/bench_accuracy.py                  # full run (7 min on 2 cores at load 5)
    python benchmarks/bench_accuracy.py --quick          # 2-D only, 2 noise levels, small (57 s)
    python benchmarks/bench_accuracy.py --out acc.md     # also write the markdown to acc.md

The accuracy bar of issue 11. Everything runs in one process, on the same arrays.

Data
- Phantoms: 3-class Potts label images from ``emseg.image.mrf.potts_sample`` (2-D 256 x 256,
  beta 1.1, 4 neighbours, 200 sweeps; 3-D 64^3, beta 0.7, 6 neighbours, 15 sweeps; one
  label image per dimension, seeded), class means 60 / 155 / 250 (spacing 95) plus
  Gaussian noise of sigma 10, 30, 66 and 95 (``--quick``: 128 x 128, sigma 30 and 66).
  The noisy values are rounded to integers and shifted up by the smallest whole number
  that makes them non-negative (none at sigma 10), so every storage below can hold them.
- Real images bundled in scikit-image's wheel (no network): camera and moon (K=3),
  coins (K=2), and the haematoxylin (nuclei) channel of immunohistochemistry, quantised
  to 0..235 like the 16-bit nuclei image of issue 11 (K=2). They have no ground truth:
  see the log-likelihood and the agreement between storages. (No nuclei image with
  masks is bundled: ``skimage.data.human_mitosis`` needs a download.)
- Storages of the same integer values q: uint8 (q itself when max(q) <= 255, otherwise
  q stretched to 0..255 and rounded, the factor shown: clipping would change the class
  shapes, not the storage), uint16 narrow (q as it is, e.g. 0..~900), uint16 wide (q
  stretched to 0..65535), int16, int32, float32 scaled by 1e-4, float64.

Methods (each given the storage array as a user would pass it)
- ``emseg``: ``emseg.segment(image, k)``; ``emseg beta=auto``: ``segment(image, k, beta="auto")``.
- ``scikit-learn``: ``sklearn.mixture.GaussianMixture(k, random_state=0)`` with its defaults
  (init_params="kmeans", n_init=1, tol=1e-3, reg_covar=1e-6) fitted and predicted on the
  pixel values as one float64 column, in the storage's own units.
- ``multi-Otsu``: ``skimage.filters.threshold_multiotsu(image, classes=k)`` and
  ``np.digitize``. For integer images skimage's histogram has one bin per integer in the
  image's range and the search a table of bins^2 entries (17 GB for 0..65535), so above
  4096 levels the 256-bin histogram skimage uses for floats is passed instead (marked).
- ``DIPY``: ``TissueClassifierHMRF().classify(image, k, beta=0.1, max_iter=20)``, its
  tutorial's beta, 2-D images as one-slice volumes. DIPY fits k + 1 classes, the darkest
  meant for the zero background around a skull-stripped brain; these images have none, so
  that class is merged into the next (unmerged, it takes the darkest real pixels and the
  error roughly quadruples at sigma 30). It rescales any image whose maximum is above 1 to
  0..1 by ``np.interp``. 20 iterations, not its default 100: on the 256 x 256 phantom 100
  were 5x slower and no better (sigma 30: 37% misclassified against 16%). It runs on
  float64, uint8, uint16 wide and float32 x 1e-4 only (cast to float64, which DIPY's
  compiled code requires), because uint16 narrow, int16 and int32 reach it as the same
  float64 numbers as the float64 copy.
- ``oracle`` (phantoms, float64 row only): each pixel's most probable class under the true
  means, sigma and class shares, without spatial smoothing (the pixelwise Bayes error).

Columns
- ``miscl. %``: pixels whose label differs from the truth after the best one-to-one
  matching of labels to classes (Hungarian, ``scipy.optimize.linear_sum_assignment`` on the
  confusion matrix), over the pixels a method labels (labels < 0 mean "outside"; a method
  with more labels than classes has the extra ones counted as errors).
- ``vs float64 %``: pixels whose label differs from the same method's labels on the
  float64 copy, after the same matching (issue 11's bar: below 0.1%).
- ``loglik/px``: mean log-likelihood per pixel of the fitted mixture (plain mixtures
  only), in the units of q (the phantom's intensities, or the real image's grey levels),
  so that every storage and library is on one scale. scikit-learn's model is evaluated on
  the storage values v = s q it was fitted to, plus log s (the Jacobian). emseg fits on
  its own features x = a v + b, an affine map of the pixel values for grey images that
  emseg may change at will; the script recovers a and b from the public result alone:
  ``seg.posteriors`` must equal ``seg.model.predict_proba`` of the features, so (a, b) is
  the least-squares solution of log predict_proba(a v + b) = log posteriors over the
  image's distinct values (residuals ~1e-7 from the float32 posteriors; "n/a" when they
  are not, or when the posteriors do not pin a and b down). Then the log-likelihood is
  mean(score_samples(a v + b)) + log a + log s. The oracle row gives the true model's.
- ``iter``: EM iterations (``n_iter_``), for ``beta=auto`` mixture + HMRF iterations and
  the beta chosen; for DIPY its ICM/EM iterations; ``!`` marks a fit that stopped at its
  iteration limit or warned that it did not converge.
- ``time s``: wall clock of the call (emseg is warmed up first, so numba's compilation or
  cache load is not timed).

Only emseg's public API is used (``emseg.segment``, ``emseg.image.mrf.potts_sample``, the
result's ``labels``, ``posteriors``, ``model`` and ``mrf``), so the script keeps working
while emseg's internals change.
"""

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the machine is shared: no spinning

import logging  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

MEANS = np.array([60.0, 155.0, 250.0])
SIGMAS = (10.0, 30.0, 66.0, 95.0)
QUICK_SIGMAS = (30.0, 66.0)
DIPY_BETA, DIPY_MAX_ITER = 0.1, 20
DIPY_STORAGES = ("float64", "uint8", "uint16 wide", "float32 x1e-4")
OTSU_MAX_LEVELS = 4096  # integer levels in the image's range


# --- data ------------------------------------------------------------------------------------


def phantom_truth(ndim, size, seed):
    from emseg.image.mrf import potts_sample

    if ndim == 2:
        return potts_sample((size, size), 3, 1.1, n_sweeps=200, random_state=seed)
    return potts_sample((size,) * 3, 3, 0.7, neighbourhood=6, n_sweeps=15, random_state=seed)


def noisy(truth, sigma, seed):
    """Integer-valued float64 intensities q >= 0 and the shift that made them non-negative."""
    rng = np.random.default_rng([seed, int(sigma)])
    q = np.rint(MEANS[truth] + rng.normal(0.0, sigma, truth.shape))
    shift = max(0.0, -q.min())
    return q + shift, shift


def storages(q):
    """``(name, array, scale)``: the values q stored seven ways; ``array`` ~ ``scale * q``."""
    top = float(q.max())
    s8 = 1.0 if top <= 255 else 255.0 / top
    wide = 65535.0 / top
    return [
        ("uint8" + ("" if s8 == 1 else f" (x{s8:.3g})"), np.rint(q * s8).astype(np.uint8), s8),
        ("uint16 narrow", q.astype(np.uint16), 1.0),
        (f"uint16 wide (x{wide:.3g})", np.rint(q * wide).astype(np.uint16), wide),
        ("int16", q.astype(np.int16), 1.0),
        ("int32", q.astype(np.int32), 1.0),
        ("float32 x1e-4", (q * 1e-4).astype(np.float32), 1e-4),
        ("float64", q.astype(np.float64), 1.0),
    ]


def real_images(quick):
    """``(name, k, q)`` for images bundled with scikit-image (integer-valued float64)."""
    from skimage import color, data

    out = []
    if not quick:
        out += [("camera", 3, data.camera()), ("moon", 3, data.moon())]
    out.append(("coins", 2, data.coins()))
    if not quick:
        h = color.rgb2hed(data.immunohistochemistry())[..., 0]
        out.append(("ihc haematoxylin 0..235", 2, np.rint((h - h.min()) / np.ptp(h) * 235)))
    return [(name, k, np.asarray(q, dtype=np.float64)) for name, k, q in out]


# --- scoring ---------------------------------------------------------------------------------


def matched_disagreement(reference, labels):
    """Fraction of pixels (those with ``labels`` >= 0) whose label differs from
    ``reference`` after the best one-to-one matching of labels (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    reference, labels = np.ravel(reference), np.ravel(labels)
    inside = labels >= 0
    if not inside.any():
        return float("nan")
    ref_values, ref = np.unique(reference[inside], return_inverse=True)
    lab_values, lab = np.unique(labels[inside], return_inverse=True)
    confusion = np.zeros((ref_values.size, lab_values.size), dtype=np.int64)
    np.add.at(confusion, (ref, lab), 1)
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    return 1.0 - confusion[rows, cols].sum() / inside.sum()


def emseg_loglik(seg, values, scale):
    """Mean log-likelihood per pixel of ``seg.model`` in the units of q (see the module
    docstring), or None where the feature map cannot be recovered from the result."""
    from scipy.optimize import least_squares

    model, k = seg.model, seg.posteriors.shape[-1]
    inside = np.ravel(seg.labels) >= 0
    v = np.ravel(values)[inside].astype(np.float64)
    post = seg.posteriors.reshape(-1, k)[inside].astype(np.float64)
    uniq, first, counts = np.unique(v, return_index=True, return_counts=True)
    P = post[first]
    if uniq.size > 5000:  # enough to pin down two numbers
        pick = np.linspace(0, uniq.size - 1, 5000).round().astype(int)
        fit_v, fit_P = uniq[pick], P[pick]
    else:
        fit_v, fit_P = uniq, P
    centre, spread = fit_v.mean(), fit_v.std() or 1.0
    u = (fit_v - centre) / spread
    # start: the components' means against their posterior-weighted value means
    shares = post.sum(0)
    used = shares > 1e-9 * v.size
    means = np.asarray(model.means_, dtype=np.float64)[:, 0]
    if used.sum() >= 2:
        value_means = (post[:, used].T @ v) / shares[used]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # poorly conditioned when the fit has collapsed
            a0, b0 = np.polyfit(value_means, means[used], 1)
    else:
        a0, b0 = 1.0, 0.0
    start = np.array([a0 * spread, a0 * centre + b0])
    informative = fit_P > 1e-5
    target = np.log(fit_P[informative])

    def residuals(theta):
        proba = model.predict_proba((theta[0] * u + theta[1])[:, None])
        return np.log(np.maximum(proba[informative], 1e-300)) - target

    try:
        with np.errstate(all="ignore"):
            result = least_squares(residuals, start, x_scale="jac", xtol=1e-15, ftol=1e-15,
                                   gtol=1e-15, max_nfev=200)
    except (ValueError, np.linalg.LinAlgError):
        return None
    jac_rank = np.linalg.matrix_rank(result.jac, tol=1e-8 * max(np.abs(result.jac).max(), 1e-300))
    if jac_rank < 2 or np.abs(result.fun).max() > 1e-4 or result.x[0] <= 0:
        return None
    a = result.x[0] / spread
    b = result.x[1] - a * centre
    scores = model.score_samples((a * uniq + b)[:, None])
    return float(np.average(scores, weights=counts) + np.log(a) + np.log(scale))


# --- methods ---------------------------------------------------------------------------------


def flag(converged):
    return "" if converged else "!"


def run_emseg(image, k, scale, beta):
    import emseg

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        seg = emseg.segment(image, k, beta=beta)
        seconds = time.perf_counter() - start
    warned = any("converge" in str(w.message).lower() for w in caught)
    model = seg.model
    iters = f"{getattr(model, 'n_iter_', '?')}{flag(getattr(model, 'converged_', True))}"
    loglik = None
    if beta == 0:
        loglik = emseg_loglik(seg, image, scale)
    else:
        mrf = seg.mrf or {}
        iters += f"+{mrf.get('iterations', '?')}{flag(mrf.get('converged', True))}"
        if mrf.get("beta") is not None:
            iters += f" (b {mrf['beta']:.2g})"
    if warned and "!" not in iters:
        iters += "!"
    return dict(labels=seg.labels, loglik=loglik, iters=iters, seconds=seconds)


def run_sklearn(image, k, scale):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    X = image.reshape(-1, 1).astype(np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        gm = GaussianMixture(k, random_state=0).fit(X)
        labels = gm.predict(X)
        seconds = time.perf_counter() - start
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    converged = gm.converged_ and not warned
    uniq, counts = np.unique(X[:, 0], return_counts=True)
    loglik = float(np.average(gm.score_samples(uniq[:, None]), weights=counts) + np.log(scale))
    return dict(labels=labels.reshape(image.shape), loglik=loglik,
                iters=f"{gm.n_iter_}{flag(converged)}", seconds=seconds)


def run_otsu(image, k):
    from skimage.filters import threshold_multiotsu

    start = time.perf_counter()
    note = ""
    levels = int(image.max()) - int(image.min()) + 1 if image.dtype.kind in "iu" else 0
    if levels > OTSU_MAX_LEVELS:
        counts, edges = np.histogram(image, bins=256)
        thresholds = threshold_multiotsu(classes=k, hist=(counts, (edges[:-1] + edges[1:]) / 2))
        note = "256 bins"
    else:
        thresholds = threshold_multiotsu(image, classes=k)
    labels = np.digitize(image, thresholds)
    return dict(labels=labels, loglik=None, iters=note, seconds=time.perf_counter() - start)


class _IterationCounter(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record):
        if "Iteration" in record.getMessage():
            self.count += 1


def run_dipy(image, k):
    from dipy.segment.tissue import TissueClassifierHMRF
    from dipy.utils.logging import logger

    volume = image if image.ndim == 3 else image[..., None]
    if volume.dtype == np.float32:  # DIPY's compiled code takes float64 only
        volume = volume.astype(np.float64)
    counter, saved = _IterationCounter(), logger.handlers[:]
    logger.handlers[:] = [counter]
    try:
        start = time.perf_counter()
        _, labels, _ = TissueClassifierHMRF(verbose=True).classify(
            volume, k, DIPY_BETA, max_iter=DIPY_MAX_ITER)
        seconds = time.perf_counter() - start
    finally:
        logger.handlers[:] = saved
    iters = f"{counter.count}{flag(counter.count < DIPY_MAX_ITER)}"
    labels = np.maximum(labels.reshape(image.shape).astype(np.int32), 1) - 1  # see the docstring
    return dict(labels=labels, loglik=None, iters=iters, seconds=seconds)


def oracle(q, truth, sigma, shift):
    """Pixelwise Bayes labels and the true mixture's mean log-likelihood, in q units."""
    shares = np.bincount(truth.ravel(), minlength=3) / truth.size
    x = q.ravel()[:, None]
    log_dens = (np.log(shares) - 0.5 * np.log(2 * np.pi * sigma**2)
                - 0.5 * ((x - (MEANS + shift)) / sigma) ** 2)
    top = log_dens.max(1)
    loglik = float(np.mean(top + np.log(np.exp(log_dens - top[:, None]).sum(1))))
    return dict(labels=log_dens.argmax(1).reshape(q.shape), loglik=loglik, iters="", seconds=None)


METHODS = ("emseg", "emseg beta=auto", "scikit-learn", "multi-Otsu", "DIPY", "oracle")


def evaluate(q, k, truth=None, sigma=None, shift=0.0, progress=None):
    """Rows (dicts) for every method and storage of the values ``q``."""
    try:
        import dipy  # noqa: F401

        have_dipy = True
    except ImportError:
        have_dipy = False
    results = {}  # (method, storage) -> result
    names = []
    for name, image, scale in storages(q):
        base = name.split(" (")[0]
        names.append((name, base))
        results["emseg", base] = run_emseg(image, k, scale, 0.0)
        results["emseg beta=auto", base] = run_emseg(image, k, scale, "auto")
        results["scikit-learn", base] = run_sklearn(image, k, scale)
        results["multi-Otsu", base] = run_otsu(image, k)
        if have_dipy and base in DIPY_STORAGES:
            results["DIPY", base] = run_dipy(image, k)
        if progress:
            progress(".")
    if truth is not None:
        results["oracle", "float64"] = oracle(q, truth, sigma, shift)
    rows = []
    for method in METHODS:
        for name, base in names:
            res = results.get((method, base))
            if res is None:
                continue
            reference = results.get((method, "float64"))
            rows.append(dict(
                method=method, storage=name,
                miscl=None if truth is None else matched_disagreement(truth, res["labels"]),
                vs_f64=None if base == "float64" else matched_disagreement(reference["labels"],
                                                                          res["labels"]),
                loglik=res["loglik"], iters=res["iters"], seconds=res["seconds"],
            ))
    return rows


# --- output ----------------------------------------------------------------------------------


def pct(x):
    return "" if x is None else f"{100 * x:.2f}"


def table(groups):
    """Markdown table; ``groups`` = [(data, noise, rows)]."""
    lines = ["| data | noise | method | storage | miscl. % | vs float64 % | loglik/px | iter "
             "| time s |", "|---|---|---|---|--:|--:|--:|---|--:|"]
    for data, noise, rows in groups:
        last_method = None
        for i, r in enumerate(rows):
            lines.append("| " + " | ".join([
                data if i == 0 else "", noise if i == 0 else "",
                r["method"] if r["method"] != last_method else "", r["storage"],
                pct(r["miscl"]), pct(r["vs_f64"]),
                "" if r["loglik"] is None else f"{r['loglik']:.5f}",
                r["iters"], "" if r["seconds"] is None else f"{r['seconds']:.2f}",
            ]) + " |")
            last_method = r["method"]
    return "\n".join(lines)


def storage_summary(groups, key, title):
    """One row per (data, noise, method), one column per storage: ``key`` in %."""
    storages_seen = []
    for _, _, rows in groups:
        for r in rows:
            base = r["storage"].split(" (")[0]
            if base not in storages_seen:
                storages_seen.append(base)
    lines = [f"**{title}**", "",
             "| data | noise | method | " + " | ".join(storages_seen) + " |",
             "|---|---|---|" + "--:|" * len(storages_seen)]
    for data, noise, rows in groups:
        for method in METHODS:
            cells = {r["storage"].split(" (")[0]: r[key] for r in rows if r["method"] == method}
            if not cells or all(v is None for v in cells.values()):
                continue
            lines.append(f"| {data} | {noise} | {method} | "
                         + " | ".join(pct(cells.get(s)) for s in storages_seen) + " |")
    return "\n".join(lines)


def headlines(groups):
    """Plain-language comparisons drawn from the rows."""
    out = []
    ll_rows = []
    for data, noise, rows in groups:
        by = {(r["method"], r["storage"].split(" (")[0]): r for r in rows}
        for storage in ("float64",):
            e, s = by.get(("emseg", storage)), by.get(("scikit-learn", storage))
            if e and s:
                ll_rows.append((data, noise, e, s))
    if ll_rows:
        worse = [(d, n, e["loglik"] - s["loglik"]) for d, n, e, s in ll_rows
                 if e["loglik"] is not None and e["loglik"] < s["loglik"] - 1e-4]
        unknown = sum(e["loglik"] is None for _, _, e, _ in ll_rows)
        out.append("- float64 copies (phantoms and real images): emseg's log-likelihood is "
                   f"more than 1e-4 per pixel below scikit-learn's in {len(worse)} of "
                   f"{len(ll_rows)} cases" + (f" (n/a in {unknown})" if unknown else "")
                   + "".join(": " * (i == 0) + ", " * (i > 0) + f"{d} {n} ({x:+.5f})"
                             for i, (d, n, x) in enumerate(worse)))
        errs = [(d, n, e["miscl"], s["miscl"]) for d, n, e, s in ll_rows if e["miscl"] is not None]
        lost = [(d, n, a, b) for d, n, a, b in errs if a > b + 0.001]
        if errs:
            out.append(f"- float64 copies: emseg misclassifies more than scikit-learn (by > 0.1 "
                       f"point) in {len(lost)} of {len(errs)} phantoms"
                       + ("" if not lost else ": " + ", ".join(
                           f"{d} {n} ({100 * a:.1f}% vs {100 * b:.1f}%)" for d, n, a, b in lost)))
    for method in ("emseg", "emseg beta=auto", "scikit-learn", "multi-Otsu", "DIPY"):
        broken = {}
        for data, noise, rows in groups:
            for r in rows:
                if r["method"] == method and r["vs_f64"] is not None and r["vs_f64"] > 0.001:
                    broken.setdefault(r["storage"].split(" (")[0], []).append(r["vs_f64"])
        total = sum(1 for _, _, rows in groups for r in rows
                    if r["method"] == method and r["vs_f64"] is not None)
        if total:
            desc = ", ".join(f"{s} {len(v)}x (up to {100 * max(v):.1f}%)"
                             for s, v in broken.items())
            out.append(f"- {method}: labels differ from its float64 labels on > 0.1% of pixels in "
                       f"{sum(len(v) for v in broken.values())} of {total} storage copies"
                       + (f": {desc}" if desc else ""))
    return "\n".join(out)


# --- main ------------------------------------------------------------------------------------


def warm_up():
    """Compile (or load from numba's cache) emseg's kernels for every storage, 2-D and 3-D."""
    from emseg.image.mrf import potts_sample

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # every storage on small images; large enough images for the compiled (not numpy)
        # paths, with K = 2 and 3
        for shape in ((24, 24), (8, 8, 8), (192, 192), (32, 32, 32)):
            truth = potts_sample(shape, 3, 1.0, n_sweeps=2)
            q, _ = noisy(truth, 30.0, 0)
            small = truth.size < 5000
            for _, image, scale in storages(q)[:: 1 if small else 6]:
                for k in (2, 3):
                    for beta in (0.0, "auto"):
                        run_emseg(image, k, scale, beta)
    return time.perf_counter() - start


def machine():
    import numba

    import emseg

    from _common import cpu_name

    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}",
                f"numba {numba.__version__} ({numba.get_num_threads()} threads)",
                f"emseg {emseg.__version__}"]
    for name in ("sklearn", "skimage", "dipy"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            versions.append(f"{name} not installed")
    return (f"{os.cpu_count()} CPUs ({cpu_name()}), load {os.getloadavg()[0]:.2f}; "
            + ", ".join(versions))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="2-D phantoms only (128 x 128), sigma 30 and 66, one real image")
    parser.add_argument("--out", metavar="FILE", help="also write the markdown to FILE")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    command = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    header = [f"# bench_accuracy: {time.strftime('%Y-%m-%d %H:%M %Z')}", "",
              f"`{command}`", "", f"machine: {machine()}", ""]
    print("\n".join(header), flush=True)
    print(f"emseg warm-up: {warm_up():.1f} s", flush=True)

    def progress(mark):
        print(mark, end="", file=sys.stderr, flush=True)

    sigmas = QUICK_SIGMAS if args.quick else SIGMAS
    dims = ((2, 128),) if args.quick else ((2, 256), (3, 64))
    groups = []
    for ndim, size in dims:
        truth = phantom_truth(ndim, size, args.seed)
        data = f"Potts {'x'.join([str(size)] * ndim)}"
        for sigma in sigmas:
            q, shift = noisy(truth, sigma, args.seed)
            progress(f"{data} sigma {sigma:g} ")
            rows = evaluate(q, 3, truth, sigma, shift, progress)
            progress("\n")
            groups.append((data, f"sigma {sigma:g}" + (f" (+{shift:g})" if shift else ""), rows))
    for name, k, q in real_images(args.quick):
        progress(f"{name} ")
        groups.append((f"{name}, K={k}", "real", evaluate(q, k, progress=progress)))
        progress("\n")

    body = "\n\n".join([
        table(groups),
        storage_summary([g for g in groups if g[1] != "real"], "miscl",
                        "Misclassification % by storage (phantoms)"),
        storage_summary(groups, "vs_f64", "Labels differing from the same method's float64 "
                        "labels, % of pixels"),
        "**Headlines**\n\n" + headlines(groups),
        f"Total run time {time.perf_counter() - started:.0f} s; load average now "
        f"{os.getloadavg()[0]:.2f}. `!`: stopped at the iteration limit or warned; `+N` in "
        "noise: the shift that made the values non-negative.",
    ])
    print(body)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(header) + "\n" + body + "\n")


if __name__ == "__main__":
    main()
