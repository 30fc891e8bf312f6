"""The HTML report's plots: emseg's hand-written SVG against matplotlib's SVG backend.

    python benchmarks/bench_html.py              # both, if matplotlib is importable
    python benchmarks/bench_html.py --repeats 20

Each library draws the same two plots the report draws most: a 256-bin histogram with
four weighted Gaussian components and their sum (one per grey level of an 8-bit image),
and a 40-point log-likelihood curve. Printed: the median time per plot over
``--repeats`` runs (after one warm-up), the size of the SVG text, and, for matplotlib,
the time a fresh process takes to import it and draw the first plot (what ``emseg run
--html`` would pay once per image). matplotlib is not a dependency of emseg: install it
yourself to compare (``pip install matplotlib``); without it only emseg is timed.
"""

import argparse
import io
import statistics
import subprocess
import sys
import time

import numpy as np


def data():
    rng = np.random.default_rng(0)
    means, sds, weights = np.array([40, 90, 150, 210.0]), np.array([12, 20, 15, 18.0]), \
        np.array([0.2, 0.3, 0.3, 0.2])
    counts = rng.multinomial(1_000_000, weights)
    values = np.concatenate([rng.normal(m, s, n) for m, s, n in zip(means, sds, counts)])
    density, edges = np.histogram(np.clip(values, 0, 255), bins=256, range=(-0.5, 255.5),
                                  density=True)
    x = np.linspace(edges[0], edges[-1], 240)
    comps = weights[:, None] * np.exp(-0.5 * ((x - means[:, None]) / sds[:, None]) ** 2) / (
        sds[:, None] * np.sqrt(2 * np.pi))
    history = 0.3 - 0.1 * np.exp(-np.arange(40) / 6.0)
    return edges, density, x, comps, history


def emseg_plots(edges, density, x, comps, history):
    from emseg.image.plots import histogram_chart, line_chart

    curves = [{"x": x, "y": c, "label": f"class {i + 1}", "color": "#1f77b4"}
              for i, c in enumerate(comps)]
    curves.append({"x": x, "y": comps.sum(0), "label": "mixture", "color": "#111", "dash": "6 3"})
    hist = histogram_chart(edges, density, curves, title="Histogram", x_label="pixel value",
                           element_id="h")
    line = line_chart([{"x": np.arange(1, 41), "y": history, "label": "EM", "color": "#1f77b4"}],
                      title="Log-likelihood", x_label="iteration", y_label="ll",
                      element_id="l", integer_x=True)
    return hist, line


def matplotlib_plots(edges, density, x, comps, history):
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    out = []
    fig, ax = plt.subplots(figsize=(4.4, 2.6))
    ax.stairs(density, edges, fill=True, color="#c9c9c9")
    for i, c in enumerate(comps):
        ax.plot(x, c, label=f"class {i + 1}")
    ax.plot(x, comps.sum(0), "k--", label="mixture")
    ax.set_title("Histogram")
    ax.set_xlabel("pixel value")
    ax.legend(fontsize=7)
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    out.append(buf.getvalue())
    fig, ax = plt.subplots(figsize=(4.4, 2.6))
    ax.plot(np.arange(1, 41), history)
    ax.set_title("Log-likelihood")
    ax.set_xlabel("iteration")
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    out.append(buf.getvalue())
    return out


def timed(fn, args, repeats):
    fn(*args)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / 2, result  # two plots per call


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    inputs = data()
    t, (hist, line) = timed(emseg_plots, inputs, args.repeats)
    print(f"emseg hand-written SVG: median {1000 * t:.2f} ms per plot; "
          f"histogram {len(hist) / 1024:.0f} kB, line {len(line) / 1024:.0f} kB")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib: not installed (pip install matplotlib to compare)")
        return
    t_mpl, (hist, line) = timed(matplotlib_plots, inputs, args.repeats)
    print(f"matplotlib SVG backend: median {1000 * t_mpl:.1f} ms per plot; "
          f"histogram {len(hist) / 1024:.0f} kB, line {len(line) / 1024:.0f} kB")
    code = ("import time; s=time.perf_counter(); import sys; sys.path[:0]=" + repr(sys.path)
            + "; from bench_html import data, matplotlib_plots; matplotlib_plots(*data()); "
            "print(time.perf_counter()-s)")
    firsts = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, cwd=__file__.rsplit("/", 1)[0])
        firsts.append(float(done.stdout.split()[-1]))
    print(f"matplotlib in a fresh process, import + data + first two plots: median "
          f"{statistics.median(firsts):.2f} s")
    print(f"ratio matplotlib / emseg per plot: {t_mpl / t:.0f}x")


if __name__ == "__main__":
    main()
