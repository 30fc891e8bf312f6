"""Measure beta="auto" of emseg.image.mrf.hmrf_em against the plain mixture and fixed betas.

    python benchmarks/beta_auto.py                 # every case, the table of mrf.py's docstring
    python benchmarks/beta_auto.py --cases potts66 camera

Cases (seeded; nothing downloaded):

- ``potts<sigma>``: 3-class 256 x 256 Potts images (beta 1.1, 4 neighbours, 200 sweeps,
  as ``bench_mrf.py``), intensities 30 / 125 / 220 plus Gaussian noise of ``sigma``.
- ``imbalanced<sigma>``: 256 x 256, smoothed noise cut into classes of 10 / 45 / 45 %,
  intensities 30 / 125 / 220, noise ``sigma``: does the prior inflate the small class?
- ``brain``: a brain-like 3-D phantom, 96^3, 3 tissues in 8.5 / 45 / 46.5 % (CSF, grey,
  white matter) with T1-like intensities 40 / 110 / 160, partial volume (the intensity
  image blurred with a Gaussian of sigma 1 voxel before the noise) and noise sigma 9;
  the reference is the label map before blurring.
- ``camera<sigma>``: the geometry of a real photograph: the 3-class multi-Otsu labels of
  ``skimage.data.camera()`` (thin structures: the tripod, the grass) re-rendered with
  intensities 30 / 125 / 220 and noise ``sigma``.
- ``real:<name>``: real images without a reference (``skimage.data`` camera, coins, moon,
  and DIPY's bundled T1 coronal slice, inside its non-zero mask): beta, iterations,
  convergence and class fractions, and the share of pixels whose label differs from the
  plain mixture's.

Misclassification matches labels to classes by intensity order (both sorted by mean).
"""

import argparse
import os
import time
import warnings

import numpy as np

CASES = (
    "potts20", "potts47", "potts66", "potts95", "imbalanced30", "imbalanced66", "brain",
    "camera20", "camera66", "real:camera", "real:coins", "real:moon", "real:t1",
)
VARIANTS = (("beta auto", dict(beta="auto")), ("beta 0.5", dict(beta=0.5)),
            ("beta 1.0", dict(beta=1.0)))
MEANS = np.array([30.0, 125.0, 220.0])


def smooth_classes(shape, shares, seed, width=6.0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), width)
    return np.digitize(field, np.quantile(field, np.cumsum(shares)[:-1])).astype(np.int32)


def case(name, seed=0):
    """(values, truth or None, K, valid or None)."""
    from emseg.image.mrf import potts_sample

    rng = np.random.default_rng(seed + 1000)
    if name.startswith("potts"):
        truth = potts_sample((256, 256), 3, 1.1, n_sweeps=200, random_state=seed)
        return MEANS[truth] + rng.normal(0, float(name[5:]), truth.shape), truth, 3, None
    if name.startswith("imbalanced"):
        truth = smooth_classes((256, 256), [0.1, 0.45, 0.45], seed)
        return MEANS[truth] + rng.normal(0, float(name[10:]), truth.shape), truth, 3, None
    if name == "brain":
        from scipy import ndimage

        truth = smooth_classes((96, 96, 96), [0.085, 0.45, 0.465], seed, width=4.0)
        values = ndimage.gaussian_filter(np.array([40.0, 110.0, 160.0])[truth], 1.0)
        return values + rng.normal(0, 9.0, truth.shape), truth, 3, None
    if name.startswith("camera"):
        from skimage import data, filters

        image = data.camera()
        truth = np.digitize(image, filters.threshold_multiotsu(image, 3)).astype(np.int32)
        return MEANS[truth] + rng.normal(0, float(name[6:]), truth.shape), truth, 3, None
    source = name.split(":")[1]
    if source == "t1":
        import dipy.data

        path = os.path.join(os.path.dirname(dipy.data.__file__), "files", "t1_coronal_slice.npy")
        image = np.load(path)
        return image, None, 3, image > 0
    from skimage import data

    return getattr(data, source)().astype(np.float64), None, {"coins": 2}.get(source, 3), None


def plain_fit(X, K, weights=None):
    from emseg import GaussianMixture

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(K, random_state=0, tol=1e-6, max_iter=1000).fit(
            X, sample_weight=weights)


def measure(name, variants, seed=0):
    from emseg.image.features import distinct_values
    from emseg.image.mrf import hmrf_em

    values, truth, K, valid = case(name, seed)
    inside = np.ones(values.shape, bool) if valid is None else valid
    unique, counts, index = distinct_values(values[inside].reshape(-1, 1))
    X = unique.astype(np.float64)
    gm = plain_fit(X, K, counts)
    plain = gm.predict(X)[index]
    rows = []

    def row(label, labels, extra):
        fractions = np.bincount(labels, minlength=K) / labels.size
        error = np.mean(labels != truth[inside]) if truth is not None else np.nan
        differs = np.mean(labels != plain)
        rows.append(dict(case=name, variant=label, error=error, differs=differs,
                         fractions=fractions, **extra))

    if truth is not None:
        row("truth", truth[inside], dict(beta=np.nan, n_iter=0, converged=True, seconds=0.0))
    row("plain", plain, dict(beta=0.0, n_iter=0, converged=True, seconds=0.0))
    for label, options in variants:
        model = plain_fit(X, K, counts)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = hmrf_em(model, X, index, values.shape, valid, **options)
        row(label, res.labels[inside], dict(beta=res.beta, n_iter=res.n_iter,
                                            converged=res.converged,
                                            seconds=time.perf_counter() - start))
    return rows


def show(rows):
    print(f"{'case':14s} {'variant':12s} {'error':>6s} {'vs plain':>8s} {'beta':>6s} "
          f"{'iter':>4s} {'conv':>4s}  fractions")
    for r in rows:
        error = "" if np.isnan(r["error"]) else f"{100 * r['error']:6.2f}"
        beta = "" if np.isnan(r["beta"]) else f"{r['beta']:6.2f}"
        fractions = " ".join(f"{100 * f:5.1f}" for f in r["fractions"])
        print(f"{r['case']:14s} {r['variant']:12s} {error:>6s} {100 * r['differs']:8.2f} "
              f"{beta:>6s} {r['n_iter']:4d} {'yes' if r['converged'] else 'NO':>4s}  {fractions}",
              flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--auto-only", action="store_true", help="only beta='auto'")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="(experiments) set emseg.image.mrf's private constants, e.g. _CAP=None")
    args = parser.parse_args(argv)
    import emseg.image.mrf

    for item in args.set:
        name, value = item.split("=")
        setattr(emseg.image.mrf, name, eval(value))
        print(f"emseg.image.mrf.{name} = {value}")
    variants = VARIANTS[:1] if args.auto_only else VARIANTS
    print("error and 'vs plain' (labels that differ from the plain mixture's) in % of the "
          "pixels; fractions in %, darkest class first")
    for name in args.cases:
        show(measure(name, variants, args.seed))


if __name__ == "__main__":
    main()
