"""SVG plots as text: valid XML, the right elements, ranges that show the data."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from emseg.image.plots import histogram_chart, line_chart, nice_ticks


@pytest.mark.parametrize("low, high", [(0, 1), (-3.7, 12.2), (0.25, 0.2712), (-2e6, -1e6),
                                       (1, 18)])
def test_nice_ticks_cover_the_range_with_round_steps(low, high):
    ticks = nice_ticks(low, high, 5)
    assert 3 <= len(ticks) <= 11
    assert low - 1e-12 <= ticks[0] and ticks[-1] <= high + 1e-12
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert any(np.isclose(mantissa, m) for m in (1, 2, 2.5, 5))


def test_nice_ticks_degenerate():
    assert nice_ticks(3, 3) == [3.0]
    assert nice_ticks(np.nan, 1) == []


def _parse(svg):
    return ET.fromstring(svg)


def test_line_chart_is_valid_svg_with_escaped_text():
    svg = line_chart([{"x": [1, 2, 3], "y": [0.1, 0.3, 0.35], "label": "a<b", "color": "#123"},
                      {"x": [1, 2, 3], "y": [0.2, np.nan, 0.1], "label": "c&d", "color": "red",
                       "markers": True, "mark": 2}],
                     title='L "per" <iteration>', x_label="iteration", y_label="ll",
                     element_id="likelihood", integer_x=True)
    root = _parse(svg)
    assert root.get("id") == "likelihood" and "plot" in root.get("class")
    texts = "".join(root.itertext())
    assert 'L "per" <iteration>' in texts and "a<b" in texts and "c&d" in texts
    curves = [e for e in root.iter() if e.get("class") == "curve"]
    assert len(curves) == 2
    assert len(curves[0].get("points").split()) == 3
    assert len(list(curves[1])) == 2  # the NaN point is left out
    assert any(e.get("class") == "chosen" for e in root.iter())


def test_histogram_chart_bars_and_curves_inside_the_frame():
    edges = np.linspace(0, 10, 11)
    density = np.full(10, 0.1)
    x = np.linspace(0, 10, 50)
    svg = histogram_chart(edges, density, [{"x": x, "y": 0.1 + 0 * x, "label": "m",
                                            "color": "black"}],
                          title="h", x_label="v", element_id="histogram-0")
    root = _parse(svg)
    bars = [e for e in root.iter() if e.get("class") == "bars"]
    assert len(bars) == 1
    assert not any(e.get("class") == "clipped" for e in root.iter())
    frame = [e for e in root.iter() if e.tag.endswith("rect")][0]
    top, bottom = float(frame.get("y")), float(frame.get("y")) + float(frame.get("height"))
    (curve,) = [e for e in root.iter() if e.get("class") == "curve"]
    ys = [float(p.split(",")[1]) for p in curve.get("points").split()]
    assert all(top <= y <= bottom for y in ys)


def test_histogram_spike_is_clipped_not_flattening_the_rest():
    edges = np.linspace(0, 100, 101)
    density = np.full(100, 0.01)
    density[0] = 0.5  # saturated pixels
    x = np.linspace(0, 100, 50)
    svg = histogram_chart(edges, density, [{"x": x, "y": np.full(50, 0.01), "label": "m",
                                            "color": "black"}],
                          title="h", x_label="v", element_id="h")
    root = _parse(svg)
    clipped = [e for e in root.iter() if e.get("class") == "clipped"]
    assert len(clipped) == 1 and clipped[0].text.startswith("1 ")
    frame = [e for e in root.iter() if e.tag.endswith("rect")][0]
    height = float(frame.get("height"))
    (curve,) = [e for e in root.iter() if e.get("class") == "curve"]
    y = float(curve.get("points").split()[0].split(",")[1])
    bottom = float(frame.get("y")) + height
    assert bottom - y > 0.3 * height  # the curve stands well up in the plot


def test_tick_labels_tell_close_values_apart():
    svg = line_chart([{"x": [1, 2, 3], "y": [6.88862, 6.88871, 6.88874], "label": "a",
                       "color": "red"}], title="t", x_label="x", y_label="y", element_id="l")
    labels = [e.text for e in _parse(svg).iter() if e.tag.endswith("text")
              and e.get("text-anchor") == "end"]
    assert len(labels) >= 2 and len(set(labels)) == len(labels)
