"""Time emseg's image segmentation against scikit-learn on a 12-megapixel photo.

    python benchmarks/bench_image.py                    # all parts, 3 repeats, medians
    python benchmarks/bench_image.py --sklearn-iters 5  # sklearn timed on 5 iterations
    python benchmarks/bench_image.py --part run         # only `emseg run` end to end

The photo is scikit-image's bundled ``astronaut()`` (512 x 512 RGB) upscaled to
4000 x 3000 with OpenCV's bicubic interpolation. Parts:

colour  ``emseg.segment(photo, 4)`` (Lab features, full covariance) against
        scikit-learn's ``GaussianMixture(4)`` fitted to every pixel's Lab features
        (the same features emseg computes). Bar: emseg >= 50x faster, at an equal or
        better mean log-likelihood per pixel, peak memory < 1.5 GB (measured in a
        fresh process that only reads the photo and segments it).
grey    the photo in grey, ``emseg.segment(grey, 3)``. Bar: < 0.5 s.
run     ``emseg run photo.png -k 4`` in a fresh process, start to finish (Python
        start-up, imports, reading, fitting, rendering, writing every output).
        Bar: < 3 s. Then the same with and without ``--html``, taking turns: the
        time --html adds (the report's ``html`` timing). Bar: < 0.3 s.

scikit-learn is slow here (minutes per fit): with ``--sklearn-iters N`` it runs N EM
iterations only, and its full time is estimated as its set-up plus its per-iteration
cost times the iterations a full fit takes (``--sklearn-full-iters``, default 43, the
count the project measured; pass the count you observe). The output says which.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np


def make_photo():
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut(), (4000, 3000), interpolation=cv2.INTER_CUBIC)


def lab_features(photo):
    """Every pixel's features exactly as emseg computes them (color_space='lab')."""
    from emseg.image.features import FeatureSpec, value_features

    pixels = photo.reshape(-1, 3)
    return value_features(pixels, FeatureSpec("lab").with_range(pixels))


def timed(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def peak_rss_of(code):
    """Peak resident memory (GB) of a fresh Python process running ``code``."""
    wrapper = (
        "import resource\n" + code + "\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024**2


def part_colour(args, photo):
    import emseg

    print("== colour: 4000 x 3000 RGB, K=4, full covariance, Lab features ==")
    emseg.segment(photo[:64, :64], 4)  # compile / load numba's cache outside the timing
    median, times, seg = timed(lambda: emseg.segment(photo, 4, random_state=0), args.repeats)
    X = lab_features(photo)
    emseg_ll = float(seg.model.score(X))
    print(f"emseg.segment: median {median:.2f} s over {len(times)} runs "
          f"({', '.join(f'{t:.2f}' for t in times)})")
    print(f"  phases of the last run: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in seg.timings.items()))
    print(f"  full-data EM iterations {seg.model.n_iter_}, distinct colours "
          f"{len(np.unique(photo.reshape(-1, 3) @ np.array([65536, 256, 1])))}")
    print(f"  mean log-likelihood per pixel {emseg_ll:.6f}")
    peak = peak_rss_of(
        "import sys; sys.path.insert(0, %r)\n"
        "from bench_image import make_photo\nimport emseg\n"
        "emseg.segment(make_photo(), 4)" % os.path.dirname(os.path.abspath(__file__))
    )
    print(f"  peak memory of a process that makes the photo and segments it: {peak:.2f} GB "
          f"(bar < 1.5 GB: {'met' if peak < 1.5 else 'NOT met'})")

    from sklearn.mixture import GaussianMixture

    iters = args.sklearn_iters
    gm = GaussianMixture(4, covariance_type="full", random_state=0,
                         max_iter=iters or 100, tol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        gm.fit(X)
        total = time.perf_counter() - start
    sk_ll = float(gm.score(X))
    if iters:
        # set-up: KMeans init and the final E-step, measured apart from the iterations
        start = time.perf_counter()
        gm_setup = GaussianMixture(4, covariance_type="full", random_state=0, max_iter=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm_setup.fit(X)
        one = time.perf_counter() - start
        per_iter = max(total - one, 1e-9) / max(iters - 1, 1)
        setup = max(one - per_iter, 0.0)
        estimate = setup + per_iter * args.sklearn_full_iters
        print(f"scikit-learn: {iters} iterations in {total:.1f} s (set-up ~{setup:.1f} s, "
              f"{per_iter:.2f} s per iteration); a full fit of {args.sklearn_full_iters} "
              f"iterations is estimated at {estimate:.0f} s")
        print(f"  its log-likelihood after only {iters} iterations: {sk_ll:.6f}")
        sk_time = estimate
    else:
        print(f"scikit-learn: full fit {total:.1f} s, {gm.n_iter_} iterations, "
              f"converged {gm.converged_}, mean log-likelihood {sk_ll:.6f}")
        sk_time = total
    ratio = sk_time / median
    print(f"ratio scikit-learn / emseg: {ratio:.0f}x (bar >= 50x: {'met' if ratio >= 50 else 'NOT met'})"
          f"{' [scikit-learn time estimated]' if iters else ''}")
    if not iters:
        print(f"log-likelihood emseg - scikit-learn: {emseg_ll - sk_ll:+.6f} "
              f"({'equal or better' if emseg_ll >= sk_ll - 1e-6 else 'WORSE'})")


def part_grey(args, photo):
    import cv2

    import emseg

    print("== grey: 4000 x 3000 uint8, K=3, full covariance ==")
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    emseg.segment(grey[:64, :64], 3)
    median, times, seg = timed(lambda: emseg.segment(grey, 3, random_state=0), args.repeats)
    print(f"emseg.segment: median {median:.3f} s over {len(times)} runs "
          f"({', '.join(f'{t:.3f}' for t in times)}); bar < 0.5 s: "
          f"{'met' if median < 0.5 else 'NOT met'}")
    print("  phases of the last run: "
          + ", ".join(f"{k} {v:.3f} s" for k, v in seg.timings.items()))


def part_run(args, photo):
    import cv2

    print("== emseg run photo.png -k 4, a fresh process, all outputs written ==")
    with tempfile.TemporaryDirectory() as tmp:
        for name, ext in (("PNG", ".png"), ("JPEG", ".jpg")):
            path = os.path.join(tmp, "photo" + ext)
            cv2.imwrite(path, photo[..., ::-1])
            times = []
            for i in range(args.repeats + 1):  # the first run may compile numba's cache
                out = os.path.join(tmp, f"out{ext}{i}")
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "emseg", "run", path, "-k", "4",
                                "-o", out, "-q"], check=True)
                times.append(time.perf_counter() - start)
            report = json.load(open(os.path.join(out, "photo_report.json")))
            runs = times[1:]
            median = statistics.median(runs)
            print(f"{name}: median {median:.2f} s over {len(runs)} runs "
                  f"({', '.join(f'{t:.2f}' for t in runs)}; first run {times[0]:.2f} s); "
                  f"bar < 3 s: {'met' if median < 3 else 'NOT met'}")
            print("  inside the process (last run): " + ", ".join(
                f"{k} {v:.2f} s" for k, v in report["timings_seconds"].items()))
        html_adds(args, os.path.join(tmp, "photo.png"), tmp)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import emseg.workflows.run, emseg.image.segmentation, "
                    "emseg.image.render, emseg.io.images, emseg._shared.kernels"], check=True)
    print(f"  Python start-up and emseg's imports alone: {time.perf_counter() - start:.2f} s")


def html_adds(args, path, tmp):
    """``emseg run photo.png -k 4`` with and without ``--html``, taking turns: the
    difference of the medians, and the report's own time for writing the page."""
    walls = {False: [], True: []}
    inside = []
    for i in range(args.repeats + 1):
        for html in (False, True):
            out = os.path.join(tmp, f"html{html}{i}")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "emseg", "run", path, "-k", "4", "-o", out,
                            "-q"] + (["--html"] if html else []), check=True)
            if i:  # the first pair warms the caches
                walls[html].append(time.perf_counter() - start)
            if html and i:
                report = json.load(open(os.path.join(out, "photo_report.json")))
                inside.append(report["timings_seconds"]["html"])
    plain, with_html = statistics.median(walls[False]), statistics.median(walls[True])
    page = statistics.median(inside)
    print(f"time --html adds: {page:.3f} s writing the page (median of {len(inside)}, in the "
          f"process; bar < 0.3 s: {'met' if page < 0.3 else 'NOT met'}); whole runs "
          f"{plain:.2f} s without, {with_html:.2f} s with (medians, difference "
          f"{with_html - plain:+.2f} s: on a busy machine, noisier than the page's time)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["colour", "grey", "run", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sklearn-iters", type=int, default=0,
                        help="time scikit-learn on this many iterations (0: a full fit)")
    parser.add_argument("--sklearn-full-iters", type=int, default=43)
    args = parser.parse_args()
    print(f"{platform.platform()}, Python {platform.python_version()}, "
          f"{os.cpu_count()} cores")
    photo = make_photo()
    for part, fn in (("grey", part_grey), ("colour", part_colour), ("run", part_run)):
        if args.part in (part, "all"):
            fn(args, photo)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak memory of this benchmark process: {peak:.2f} GB")


if __name__ == "__main__":
    main()
