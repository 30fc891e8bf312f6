"""The parts of an image's HTML report (:mod:`emseg.workflows.html`) made from its
report dict: the summary line, the histograms with the mixture, the fit's plots, the
class table and the run's tables. Each returns HTML text; every value from the report
is escaped. The report may come straight from
:func:`~emseg.workflows.run.segment_file` (numpy arrays) or from its JSON file (lists).
"""

import html
import os
import urllib.parse
from pathlib import Path

import numpy as np

__all__ = ["class_table", "fit_plots", "histogram_panels", "relative_href", "run_tables",
           "summary_line"]

_MIXTURE_COLOUR = "#111"
_LINE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c")


def _esc(value):
    return html.escape(str(value), quote=True)


def _array(value):
    return np.asarray([] if value is None else value, dtype=np.float64)


def _rgb(colour):
    r, g, b = (int(c) for c in colour)
    return f"rgb({r},{g},{b})"


def relative_href(target, folder):
    """A link from a page in ``folder`` to the file ``target`` (percent-encoded), or
    None when there is no relative path (another drive)."""
    try:
        rel = os.path.relpath(os.path.abspath(target), os.path.abspath(folder))
    except ValueError:
        return None
    # the name's own bytes, percent-encoded (a name that is not UTF-8 too)
    return urllib.parse.quote(os.fsencode(Path(rel).as_posix()))


def summary_line(report):
    """One line: K, the image's shape and type, features, iterations, likelihood, time."""
    shape = " \u00d7 ".join(str(n) for n in report.get("shape", []))
    features = report.get("features") or {}
    parts = [f"K = {report.get('k')}", f"{shape} {report.get('dtype', '')}",
             f"features: {features.get('color_space', '?')}"]
    if features.get("spatial"):
        parts[-1] += f" + position (weight {features['spatial']:g})"
    if report.get("shared_model"):
        parts.append("labelled with a shared model")
    else:
        state = "converged" if report.get("converged") else "did NOT converge"
        parts.append(f"{report.get('iterations')} EM iterations, {state}")
    ll = report.get("log_likelihood")
    if ll is not None:
        parts.append(f"mean log-likelihood {ll:.5g} per pixel")
    mrf = report.get("mrf")
    if mrf:
        parts.append(f"MRF beta {mrf['beta']:.3g} ({mrf['method']})")
    total = (report.get("timings_seconds") or {}).get("total")
    if total is not None:
        parts.append(f"{total:.2f} s")
    parts.append(f"emseg {report.get('emseg_version', '?')}")
    return _esc(" \u00b7 ".join(parts))


def histogram_panels(report, values, labels):
    """``(panels, svgs)``: the :class:`~emseg.image.histograms.Panel` of each feature
    and its plot (ids ``histogram-0``, ``histogram-1``...)."""
    from ..image.histograms import mixture_histograms
    from ..image.plots import histogram_chart

    model = report["model"]
    panels = mixture_histograms(values, labels, report["features"], model["weights"],
                                model["means"], model["covariances"], model["covariance_type"])
    colours = [_rgb(c["overlay_color"]) for c in report["classes"]]
    svgs = []
    for i, panel in enumerate(panels):
        curves = [
            {"x": panel.x, "y": comp, "label": f"class {j + 1}",
             "color": colours[j] if j < len(colours) else "#888"}
            for j, comp in enumerate(panel.components)
        ]
        curves.append({"x": panel.x, "y": panel.total, "label": "mixture",
                       "color": _MIXTURE_COLOUR, "width": 2.2, "dash": "6 3"})
        svgs.append(histogram_chart(panel.edges, panel.density, curves,
                                    title=f"Histogram of {panel.name}", x_label=panel.unit,
                                    element_id=f"histogram-{i}"))
    return panels, svgs


def fit_plots(report):
    """The fit's plots, as SVG texts: log-likelihood per iteration (``likelihood``),
    each restart's value after its short run (``restarts``), BIC and ICL against K
    (``bic``; dots: the fits whose classes stand apart, which ``-k auto`` chooses among), the
    MRF's log-likelihood and changed labels per iteration (``mrf-history``,
    ``mrf-changed``)."""
    from ..image.plots import line_chart
    from ..mixture.selection import MIN_SEPARATION

    svgs = []
    history = _array(report.get("log_likelihood_history"))
    if history.size:
        svgs.append(line_chart(
            [{"x": np.arange(1, history.size + 1), "y": history, "label": "EM",
              "color": _LINE_COLOURS[0], "markers": history.size == 1}],
            title="Log-likelihood per iteration (best restart)", x_label="iteration",
            y_label="mean log-likelihood", element_id="likelihood", integer_x=True))
    else:
        svgs.append('<p id="likelihood" class="note">Labelled with a given model: no fit, '
                    "so no likelihood history. The model's training is in the report.</p>")
    restarts = _array(report.get("restart_log_likelihoods"))
    if restarts.size > 1:
        svgs.append(line_chart(
            [{"x": np.arange(1, restarts.size + 1), "y": restarts, "label": "restart",
              "color": _LINE_COLOURS[1], "markers": True, "mark": int(np.nanargmax(restarts))}],
            title="Each restart after its short run (ringed: run on)", x_label="restart",
            y_label="mean log-likelihood", element_id="restarts", integer_x=True))
    table = report.get("bic_table") or []
    if table:
        ks = [row["k"] for row in table]
        chosen = ks.index(report["k"]) if report.get("k") in ks else None
        series = [{"x": ks, "y": [row["bic"] for row in table], "label": "BIC",
                   "color": _LINE_COLOURS[0], "mark": chosen}]
        apart = [row for row in table
                 if (row.get("min_separation") or 0) >= MIN_SEPARATION]
        if apart:  # the fits -k auto may choose (classes stand apart)
            series.append({"x": [row["k"] for row in apart], "y": [row["bic"] for row in apart],
                           "label": "apart", "color": _LINE_COLOURS[0], "markers": True})
        if all("icl" in row for row in table):
            series.append({"x": ks, "y": [row["icl"] for row in table], "label": "ICL",
                           "color": _LINE_COLOURS[2], "dash": "5 3"})
        svgs.append(line_chart(series, title="-k auto: BIC and ICL (ringed: chosen K)",
                               x_label="K", y_label="criterion (lower is better)",
                               element_id="bic", integer_x=True))
    mrf = report.get("mrf")
    if mrf:
        mrf_history = _array(mrf.get("history"))
        if mrf_history.size:
            svgs.append(line_chart(
                [{"x": np.arange(1, mrf_history.size + 1), "y": mrf_history, "label": "MRF",
                  "color": _LINE_COLOURS[2], "markers": mrf_history.size == 1}],
                title=f"MRF (beta {mrf['beta']:.3g}): log-likelihood per iteration",
                x_label="iteration", y_label="mean-field log-likelihood",
                element_id="mrf-history", integer_x=True))
        changed = _array(mrf.get("changed"))
        if changed.size:
            svgs.append(line_chart(
                [{"x": np.arange(1, changed.size + 1), "y": 100 * changed, "label": "changed",
                  "color": _LINE_COLOURS[1], "markers": changed.size == 1}],
                title="MRF: labels changed per iteration", x_label="iteration",
                y_label="% of pixels", element_id="mrf-changed", integer_x=True))
    return svgs


def class_table(report, panels):
    """Colour, label, fraction, mean value, the fitted component (weight, mean and
    variance in the histograms' units) and, after ``--objects``, the object count."""
    classes = report.get("classes", [])
    weights = _array((report.get("model") or {}).get("weights"))
    objects = report.get("objects") or {}
    counts = objects.get("per_class")
    names = [p.name for p in panels]
    head = ["colour", "label", "fraction", "pixels", "mean pixel value", "model weight",
            f"model mean ({', '.join(names)})", "model variance"]
    if counts is not None:
        head.append(f"objects (\u2265 {objects.get('min_size', 1)} px)")
    rows = []
    n_pixels = report.get("pixels_segmented")
    for i, c in enumerate(classes):
        swatches = (f'<span class="swatch" style="background:{_rgb(c["overlay_color"])}" '
                    'title="overlay colour"></span> '
                    f'<span class="swatch" style="background:{_rgb(c["display_color"])}" '
                    'title="segments colour"></span>')
        mean = ", ".join(f"{v:.4g}" for v in c.get("mean_value", []))
        model_mean = ", ".join(f"{p.means[i]:.4g}" for p in panels if i < p.means.size)
        model_var = ", ".join(f"{p.variances[i]:.4g}" for p in panels if i < p.variances.size)
        pixels = "" if n_pixels is None else f"{round(c['fraction'] * n_pixels):,}"
        cells = [swatches, f'<td class="num">{c["label"]}</td>',
                 f'<td class="num">{100 * c["fraction"]:.2f}%</td>',
                 f'<td class="num">{pixels}</td>', f'<td class="num">{_esc(mean)}</td>',
                 f'<td class="num">{weights[i]:.4f}</td>' if i < weights.size else "<td></td>",
                 f'<td class="num">{_esc(model_mean)}</td>',
                 f'<td class="num">{_esc(model_var)}</td>']
        cells[0] = f"<td>{cells[0]}</td>"
        if counts is not None:
            cells.append(f'<td class="num">{counts[i] if i < len(counts) else ""}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ('<table id="classes"><thead><tr>' + "".join(f"<th>{_esc(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            '<p class="note">Labels: 0 outside the mask, 1..K the classes, darkest first. '
            "Mean pixel value: of the class's pixels, per channel, in the image's units.</p>")


def _value(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, np.ndarray):
        return ", ".join(f"{v:.6g}" for v in value.ravel())
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value)
    return "" if value is None else str(value)


def _kv_table(title, pairs, element_id):
    rows = "".join(f"<tr><td>{_esc(k)}</td><td>{v}</td></tr>" for k, v in pairs)
    return (f'<div><table class="kv" id="{element_id}"><thead><tr><th colspan="2">'
            f"{_esc(title)}</th></tr></thead><tbody>{rows}</tbody></table></div>")


def run_tables(report):
    """The input, options, fit settings, timings and outputs, as tables side by side."""
    outputs = report.get("outputs") or {}
    here = Path(outputs["report"]).parent if "report" in outputs else None
    image = [("input", _esc(report.get("input"))), ("shape", _esc(_value(report.get("shape")))),
             ("dtype", _esc(report.get("dtype"))),
             ("pixels segmented", f"{report.get('pixels_segmented', 0):,}")]
    if report.get("spacing"):
        unit = report.get("spacing_unit")
        image.append(("spacing", _esc(_value(report["spacing"]) + (f" {unit}" if unit else ""))))
    if report.get("axes"):
        image.append(("axes", _esc(report["axes"])))
    image.append(("emseg version", _esc(report.get("emseg_version"))))
    shared = report.get("shared_model")
    if shared:
        image.append(("shared model", _esc(shared.get("source"))))
    options = [(k, _esc(_value(v))) for k, v in (report.get("options") or {}).items()]
    settings = [(k, _esc(_value(v))) for k, v in (report.get("fit_settings") or {}).items()]
    timings = [(k, f"{v:.3f} s") for k, v in (report.get("timings_seconds") or {}).items()
               if isinstance(v, (int, float))]
    files = []
    for name, target in outputs.items():
        label = _esc(Path(str(target)).name)
        if here is not None:
            href = relative_href(target, here)
            files.append((name, f'<a href="{href}">{label}</a>' if href else label))
        else:
            files.append((name, label))
    tables = [_kv_table("Image", image, "run-image"), _kv_table("Options", options, "options")]
    if settings:
        tables.append(_kv_table("Fit settings", settings, "fit-settings"))
    tables += [_kv_table("Timings", timings, "timings"), _kv_table("Outputs", files, "outputs")]
    return '<section class="grid" id="run">' + "".join(tables) + "</section>"
