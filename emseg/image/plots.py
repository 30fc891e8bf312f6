"""Small plots as SVG text: line charts and histograms with curves drawn over them.

Pure functions from arrays to strings (nothing is written, nothing imported beyond
numpy), for the HTML report (:mod:`emseg.workflows.html`). Hand-written SVG rather
than matplotlib's SVG backend: on this project's plots (a 256-bin histogram with four
component densities and their sum; a 40-point likelihood curve) matplotlib 3.11 took a
median 237 ms per plot once imported and 2.4 s in a fresh process (import and the first
two plots), with SVG files 2-10 times larger (every glyph a path); these functions took
2.6 ms per plot, and need no extra dependency (``benchmarks/bench_html.py``, on a
2-core machine under a load of about 10; ``--html`` must add less than 0.3 s).

Every plot is an inline ``<svg>`` (for an HTML page: no ``xmlns``) with a ``viewBox`` (it scales to its container), an ``id``
and the class ``plot``; curves carry the class ``curve``, histogram bars ``bars``.
Text is escaped; tick labels have 4 significant digits, more where ticks would
read alike.
"""

import html
import math

import numpy as np

__all__ = ["histogram_chart", "line_chart", "nice_ticks"]

_WIDTH, _HEIGHT = 440, 260
_MARGIN = dict(left=62, right=14, top=26, bottom=46)
_LEGEND_ROW = 15
_LEGEND_ENTRY = 92  # px per legend entry in a row
_FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif"


def nice_ticks(low, high, count=5):
    """About ``count`` round tick values (1, 2 or 5 times a power of ten apart) from
    ``low`` to ``high``, both included in the range they span."""
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value = first + len(ticks) * step
    return ticks


def _tick_labels(ticks):
    """Tick labels with as many significant digits as it takes to tell them apart."""
    for digits in range(4, 13):
        labels = [f"{t:.{digits}g}".replace("e+0", "e").replace("e-0", "e-") for t in ticks]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def _text(value):
    return html.escape(str(value), quote=True)


class _Frame:
    """The axes of one plot: data ranges mapped to SVG coordinates."""

    def __init__(self, x_range, y_range, width, height, n_legend, log_y=False, x_pad=0.0):
        self.width, self.height = width, height
        legend_rows = -(-n_legend // self.per_row(width)) if n_legend else 0
        self.bottom_pad = _MARGIN["bottom"] + legend_rows * _LEGEND_ROW
        self.x0, self.x1 = _MARGIN["left"], width - _MARGIN["right"]
        self.y0, self.y1 = height - self.bottom_pad, _MARGIN["top"]
        self.xlo, self.xhi = _padded(*x_range, pad=x_pad)
        self.ylo, self.yhi = _padded(*y_range, pad=0.04)
        self.log_y = log_y

    @staticmethod
    def per_row(width):
        return max(1, (width - _MARGIN["left"] - _MARGIN["right"]) // _LEGEND_ENTRY)

    def x(self, values):
        v = np.asarray(values, dtype=np.float64)
        return self.x0 + (v - self.xlo) * (self.x1 - self.x0) / (self.xhi - self.xlo)

    def y(self, values):
        v = np.asarray(values, dtype=np.float64)
        return self.y0 + (v - self.ylo) * (self.y1 - self.y0) / (self.yhi - self.ylo)

    def axes(self, title, x_label, y_label, x_ticks=None):
        """The frame, grid lines, tick labels, axis labels and title."""
        parts = [
            f'<text x="{self.width / 2:.0f}" y="16" text-anchor="middle" '
            f'font-size="13" font-weight="600">{_text(title)}</text>'
        ]
        y_ticks = nice_ticks(self.ylo, self.yhi, 4)
        for t, label in zip(y_ticks, _tick_labels(y_ticks)):
            y = float(self.y(t))
            parts.append(f'<line x1="{self.x0}" x2="{self.x1}" y1="{y:.1f}" y2="{y:.1f}" '
                         'stroke="#e3e3e3"/>')
            parts.append(f'<text x="{self.x0 - 5}" y="{y + 4:.1f}" text-anchor="end" '
                         f'font-size="11">{label}</text>')
        ticks = nice_ticks(self.xlo, self.xhi, 6) if x_ticks is None else x_ticks
        for t, label in zip(ticks, _tick_labels(ticks)):
            x = float(self.x(t))
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.y0}" y2="{self.y0 + 4}" '
                         'stroke="#555"/>')
            parts.append(f'<text x="{x:.1f}" y="{self.y0 + 16}" text-anchor="middle" '
                         f'font-size="11">{label}</text>')
        parts.append(f'<rect x="{self.x0}" y="{self.y1}" width="{self.x1 - self.x0}" '
                     f'height="{self.y0 - self.y1}" fill="none" stroke="#555"/>')
        parts.append(f'<text x="{(self.x0 + self.x1) / 2:.0f}" y="{self.y0 + 32}" '
                     f'text-anchor="middle" font-size="12">{_text(x_label)}</text>')
        cy = (self.y0 + self.y1) / 2
        parts.append(f'<text transform="translate(14 {cy:.0f}) rotate(-90)" '
                     f'text-anchor="middle" font-size="12">{_text(y_label)}</text>')
        return parts

    def legend(self, entries):
        """``(label, colour, dash, dots)`` entries in rows under the x-axis label."""
        parts = ['<g class="legend">']
        per_row = self.per_row(self.width)
        for i, (label, colour, dash, dots) in enumerate(entries):
            row, col = divmod(i, per_row)
            x = self.x0 + col * _LEGEND_ENTRY
            y = self.y0 + 50 + row * _LEGEND_ROW
            dashed = f' stroke-dasharray="{dash}"' if dash else ""
            if dots:
                parts.append(f'<circle cx="{x + 9}" cy="{y - 4}" r="3.2" fill="{colour}"/>')
            else:
                parts.append(f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" '
                             f'stroke="{colour}" stroke-width="2.5"{dashed}/>')
            parts.append(f'<text x="{x + 22}" y="{y}" font-size="11">{_text(label)}</text>')
        parts.append("</g>")
        return parts


def _padded(low, high, pad):
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return 0.0, 1.0
    if high <= low:
        half = abs(low) * 0.05 or 0.5
        return low - half, high + half
    span = high - low
    return low - pad * span, high + pad * span


def _points(frame, xs, ys):
    x, y = frame.x(xs), frame.y(ys)
    keep = np.isfinite(x) & np.isfinite(y)
    return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x[keep], y[keep]))


def _svg(element_id, width, height, body, label):
    return (
        f'<svg class="plot" id="{_text(element_id)}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_text(label)}" '
        f'style="{_FONT}">' + "".join(body) + "</svg>"
    )


def line_chart(series, *, title, x_label, y_label, element_id, width=_WIDTH,
               height=_HEIGHT, integer_x=False):
    """A line chart as SVG text.

    ``series``: dicts with ``x``, ``y`` (equal-length sequences), ``label``,
    ``color`` (any CSS colour) and optionally ``markers`` (True: a dot at each point,
    no line), ``dash`` (an SVG dash array) and ``mark`` (the index of one point to ring,
    e.g. the chosen K). ``integer_x``: ticks on whole numbers only (iterations, K).
    """
    xs = [np.asarray(s["x"], dtype=np.float64) for s in series]
    ys = [np.asarray(s["y"], dtype=np.float64) for s in series]
    finite_x = np.concatenate([x[np.isfinite(x)] for x in xs] or [np.zeros(0)])
    finite_y = np.concatenate([y[np.isfinite(y)] for y in ys] or [np.zeros(0)])
    x_range = (finite_x.min(), finite_x.max()) if finite_x.size else (0, 1)
    y_range = (finite_y.min(), finite_y.max()) if finite_y.size else (0, 1)
    dots = any(s.get("markers") or s.get("mark") is not None for s in series)
    frame = _Frame(x_range, y_range, width, height, len(series) if len(series) > 1 else 0,
                   x_pad=0.04 if dots else 0.0)  # room for the dots at the ends
    x_ticks = None
    if integer_x:
        x_ticks = [t for t in nice_ticks(frame.xlo, frame.xhi, 6) if float(t).is_integer()]
    body = frame.axes(title, x_label, y_label, x_ticks)
    for s, x, y in zip(series, xs, ys):
        colour = _text(s["color"])
        if s.get("markers"):
            px, py = frame.x(x), frame.y(y)
            dots = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3.2"/>'
                           for a, b in zip(px, py) if math.isfinite(a) and math.isfinite(b))
            body.append(f'<g class="curve" fill="{colour}">{dots}</g>')
        else:
            dash = f' stroke-dasharray="{_text(s["dash"])}"' if s.get("dash") else ""
            body.append(f'<polyline class="curve" fill="none" stroke="{colour}" '
                        f'stroke-width="2" stroke-linejoin="round"{dash} '
                        f'points="{_points(frame, x, y)}"/>')
        mark = s.get("mark")
        if mark is not None and 0 <= mark < len(x) and np.isfinite(y[mark]):
            body.append(f'<circle class="chosen" cx="{float(frame.x(x[mark])):.1f}" '
                        f'cy="{float(frame.y(y[mark])):.1f}" r="7" fill="none" '
                        f'stroke="{colour}" stroke-width="2"/>')
    if len(series) > 1:
        body += frame.legend([(s["label"], s["color"], s.get("dash"), s.get("markers"))
                              for s in series])
    return _svg(element_id, width, height, body, title)


def histogram_chart(edges, density, curves, *, title, x_label, element_id,
                    y_label="density", width=_WIDTH, height=_HEIGHT):
    """A histogram (as a density: bar areas sum to 1) with curves over it, as SVG text.

    ``edges``: the ``n + 1`` bin edges; ``density``: the ``n`` bar heights. ``curves``:
    dicts with ``x``, ``y``, ``label``, ``color`` and optionally ``width`` (stroke) and
    ``dash``. The y-axis spans the bars and the curves, so a component that the data
    do not support shows as a curve above the bars.
    """
    edges = np.asarray(edges, dtype=np.float64)
    density = np.nan_to_num(np.asarray(density, dtype=np.float64))
    top = _histogram_top(density, curves)
    frame = _Frame((edges[0], edges[-1]), (0.0, top), width, height, len(curves))
    frame.ylo = 0.0  # bars stand on zero
    body = frame.axes(title, x_label, y_label)
    clipped = density > frame.yhi
    if clipped.any():  # a few spikes (e.g. saturated pixels) would flatten the rest
        body.append(f'<text class="clipped" x="{frame.x1 - 4}" y="{frame.y1 + 12}" '
                    f'text-anchor="end" font-size="10" fill="#777">{int(clipped.sum())} '
                    "bar(s) clipped</text>")
    # the bars as one step outline, filled
    x = frame.x(edges)
    y = frame.y(np.minimum(density, frame.yhi))
    path = [f"M{x[0]:.1f},{frame.y0:.1f}"]
    for i in range(density.size):
        path.append(f"V{y[i]:.1f}H{x[i + 1]:.1f}")
    path.append(f"V{frame.y0:.1f}Z")
    body.append(f'<path class="bars" d="{"".join(path)}" fill="#c9c9c9" stroke="#a8a8a8" '
                'stroke-width="0.5"/>')
    for c in curves:
        dash = f' stroke-dasharray="{_text(c["dash"])}"' if c.get("dash") else ""
        body.append(f'<polyline class="curve" fill="none" stroke="{_text(c["color"])}" '
                    f'stroke-width="{c.get("width", 1.8)}" stroke-linejoin="round"{dash} '
                    f'points="{_points(frame, c["x"], c["y"])}"/>')
    body += frame.legend([(c["label"], c["color"], c.get("dash"), False) for c in curves])
    return _svg(element_id, width, height, body, title)


def _histogram_top(density, curves):
    """The y-axis top: the bars and curves, but not a few spikes far above them (bars
    over 1.5 times the tallest curve and the 98th percentile of the bars are clipped)."""
    peaks = [float(np.nanmax(c["y"])) for c in curves if np.size(c["y"])]
    curve_top = max([p for p in peaks if np.isfinite(p)] or [0.0])
    bar_top = float(density.max()) if density.size else 0.0
    if density.size:
        bar_top = min(bar_top, max(1.5 * curve_top, float(np.quantile(density, 0.98))))
    top = max(bar_top, curve_top)
    return top if top > 0 else 1.0
