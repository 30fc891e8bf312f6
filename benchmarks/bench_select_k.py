"""How ``k="auto"`` chooses K: phantoms with a known number of classes, natural images.

For each image the features are the distinct grey values scaled to [0, 1] by the
data's own min-max range, weighted by their counts (the histogram fit ``segment``
does), fitted for K = 2..8 with k-means initialisation, 5 restarts and a relative
covariance floor (1e-6 x the data's variance). From the one set of fits the table
shows the K each criterion chooses:

- bic: BIC with the pixel count as n (emseg's rule before this change);
- bic+q: BIC with the covariance floor raised to step**2 / 12 (step: the quantisation
  step of the values), refitted;
- icl: BIC + 2 x entropy of the responsibilities (Biernacki, Celeux & Govaert 2000);
- neff: BIC with the log-likelihood rescaled to Kish's effective sample size of the
  weights, (sum w)^2 / sum w^2, and that size as n;
- knee: the first K whose log-likelihood gain over K-1 is under 10% of the gain from
  K=1 to K (no K=1 fit here: gains are measured from K=2);
- sep: emseg's choice, :func:`emseg.mixture.selection.choose_k` with criterion "separation".

Phantoms: K classes on a grid of random blocks, means at the centres of K equal bins
of 0..255, Gaussian noise sigma = spacing x ``frac``, stored as uint8 (clipped to
0..255), uint16 in a narrow range (rint(3v) in 0..765) and float32 (clipped,
x 1e-4, not rounded). ``D(K)``/``D(K+1)`` are the smallest separations (Ashman's D)
of the K- and (K+1)-component fits: a threshold between them recovers K.

Run: ``python benchmarks/bench_select_k.py`` (``--quick``: one seed, one noise level;
``--wide``: noise 1/6, 1/4, 1/3 and 0.36 of the spacing, 4 seeds, float32 for 2 of
them: the 200 phantoms that set the separation threshold).
"""

import argparse
import time
import warnings

import numpy as np

from emseg.mixture.selection import choose_k

K_MAX = 8


def phantom(k, frac, shape=(128, 128), block=16, seed=0):
    rng = np.random.default_rng(seed)
    spacing = 255.0 / k
    means = (np.arange(k) + 0.5) * spacing
    coarse = rng.integers(0, k, (shape[0] // block, shape[1] // block))
    truth = np.kron(coarse, np.ones((block, block), dtype=int))
    return means[truth] + rng.normal(0, frac * spacing, shape)


def storages(v):
    return {
        "uint8": np.clip(np.rint(v), 0, 255).astype(np.uint8),
        "uint16n": np.clip(np.rint(3 * v), 0, 765).astype(np.uint16),
        "float32": (np.clip(v, 0, 255) * 1e-4).astype(np.float32),
    }


def histogram_rows(image):
    """Distinct values scaled by min-max to [0, 1], their counts, and the quantisation
    step (median gap between distinct scaled values)."""
    values, counts = np.unique(np.asarray(image, dtype=np.float64).ravel(), return_counts=True)
    X = ((values - values[0]) / (values[-1] - values[0]))[:, None]
    step = float(np.median(np.diff(X[:, 0])))
    return X, counts.astype(np.float64), step


def options_for(X, w, floor=0.0):
    mean = np.average(X, axis=0, weights=w)
    var = float(np.average((X - mean) ** 2, axis=0, weights=w).mean())
    return dict(covariance_type="full", init_params="kmeans", n_init=5, random_state=0,
                reg_covar=max(1e-6 * var, floor))


def choices(X, w, step):
    """K chosen by each criterion, the table, and the seconds the fits took."""
    n = w.sum()
    clock = time.perf_counter()
    result = choose_k(X, w, n, K_MAX, options_for(X, w))
    seconds = time.perf_counter() - clock
    table = result.table
    out = {"bic": _argmin(table, "bic"), "icl": _argmin(table, "icl")}
    q = choose_k(X, w, n, K_MAX, options_for(X, w, step**2 / 12), criterion="bic")
    out["bic+q"] = q.k
    n_eff = n**2 / (w @ w)
    neff = [-2 * r["log_likelihood"] * n_eff / n + r["n_parameters"] * np.log(n_eff) for r in table]
    out["neff"] = table[int(np.argmin(neff))]["k"]
    ll = [r["log_likelihood"] / n for r in table]
    knee = table[-1]["k"]
    for i in range(1, len(ll)):
        if ll[i] - ll[i - 1] < 0.1 * (ll[i] - ll[0]):
            knee = table[i - 1]["k"]
            break
    out["knee"] = knee
    out["sep"] = result.k
    return out, table, seconds


def _argmin(table, key):
    return min(table, key=lambda r: r[key])["k"]


def _d(table, k):
    rows = [r for r in table if r["k"] == k]
    return rows[0]["min_separation"] if rows else float("nan")


NAMES = ("bic", "bic+q", "icl", "neff", "knee", "sep")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--wide", action="store_true")
    args = parser.parse_args()
    seeds = [0] if args.quick else [0, 1, 2, 3] if args.wide else [0, 1, 2]
    fracs = [1 / 3] if args.quick else [1 / 3, 1 / 4, 1 / 6, 0.36] if args.wide else [1 / 3, 1 / 4]
    warnings.simplefilter("ignore")
    header = f"{'image':<26}{'K':>3} " + "".join(f"{c:>6}" for c in NAMES) + \
        f"{'D(K)':>7}{'D(K+1)':>7}{'time s':>8}"
    print(header)
    print("-" * len(header))
    right = dict.fromkeys(NAMES, 0)
    cases = 0
    d_true, d_extra = [], []
    for frac in fracs:
        for k in range(2, 7):
            for seed in seeds:
                for name, image in storages(phantom(k, frac, seed=seed)).items():
                    if args.wide and name == "float32" and seed > 1:
                        continue
                    X, w, step = histogram_rows(image)
                    chosen, table, seconds = choices(X, w, step)
                    cases += 1
                    for c in NAMES:
                        right[c] += chosen[c] == k
                    d_true.append(_d(table, k))
                    d_extra.append(_d(table, k + 1))
                    label = f"K{k} s=sp/{1 / frac:.0f} #{seed} {name}"
                    print(f"{label:<26}{k:>3} " + "".join(f"{chosen[c]:>6}" for c in NAMES)
                          + f"{d_true[-1]:>7.2f}{d_extra[-1]:>7.2f}{seconds:>8.2f}", flush=True)
    print(f"{'phantoms: exact K':<30}" + "".join(f"{right[c]:>6}" for c in NAMES) + f"  of {cases}")
    print(f"smallest D at the true K: {np.nanmin(d_true):.2f}; largest D at K+1: "
          f"{np.nanmax(d_extra):.2f}")
    import skimage.data

    for name in ("camera", "moon", "coins", "page", "text", "brick", "cell", "grass"):
        image = getattr(skimage.data, name)()
        X, w, step = histogram_rows(image)
        chosen, table, seconds = choices(X, w, step)
        print(f"{name:<26}{'?':>3} " + "".join(f"{chosen[c]:>6}" for c in NAMES)
              + f"{'':>14}{seconds:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
