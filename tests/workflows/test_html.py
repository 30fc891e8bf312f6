"""The HTML reports: ``emseg run --html`` and a batch's ``index.html``, written by the
workflows and rendered in a real headless Chromium (console messages, a screenshot that
is not blank, the legend, histogram and likelihood plot in the DOM after scripts ran)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _helpers import save_png, three_bands
from click.testing import CliRunner

from emseg import EmsegError
from emseg.cli.main import main
from emseg.workflows.batch import run_batch
from emseg.workflows.run import RunOptions, segment_file

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not found (Debian: apt-get install chromium; .ci/run installs it)",
)

# run after the page's own scripts and its load event: how many pictures decoded
_PROBE = (
    "<script>window.addEventListener('load',function(){var n=0,ok=0;"
    "Array.prototype.forEach.call(document.images,function(i){if(!i.getAttribute('src'))return;"
    "n++;if(i.complete&&i.naturalWidth>0)ok++;});"
    "document.body.setAttribute('data-pictures',ok+'/'+n);});</script>"
)


def _chromium(tmp_path, page, *args):
    """Run headless Chromium on ``page``; return (stdout, console lines)."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}",
           "--enable-logging=stderr", "--v=0", "--hide-scrollbars", *args,
           Path(page).resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def _rendered_dom(tmp_path, page, extra_script=""):
    """The DOM after the page's scripts and load event, with the probe's count of
    decoded pictures; and Chromium's console lines."""
    probe = tmp_path / f"probe_{Path(page).name}"
    text = Path(page).read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", _PROBE + extra_script + "</body>"), encoding="utf-8")
    return _chromium(tmp_path, probe, "--virtual-time-budget=5000", "--dump-dom")


def _screenshot(tmp_path, page, size="1366,900"):
    import cv2

    shot = tmp_path / f"{Path(page).stem}.png"
    _, console = _chromium(tmp_path, page, f"--screenshot={shot}", f"--window-size={size}")
    pixels = cv2.imread(str(shot))
    assert pixels is not None, "no screenshot"
    return pixels, console


def _external_references(text):
    """Every src/href/url() of the page that would fetch from a network."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", text, re.I)
    refs += re.findall(r"url\(\s*['\"]?([^'\")]+)", text, re.I)
    return [r for r in refs if re.match(r"(?:[a-z][a-z0-9+.-]*:)?//", r, re.I)
            and not r.lower().startswith("file:")]


@pytest.fixture(scope="module")
def photo_report(tmp_path_factory):
    """A colour photo segmented with -k auto and --html (Lab features)."""
    from skimage import data

    folder = tmp_path_factory.mktemp("html")
    path = save_png(folder / "astronaut.png", data.astronaut()[::2, ::2])
    out = folder / "out"
    out.mkdir()
    report = segment_file(path, out, RunOptions(classes="auto", k_max=4, html=True,
                                                objects=True))
    return out / "astronaut_report.html", report


@pytest.fixture(scope="module")
def grey_report(tmp_path_factory):
    """A grey image with an MRF (--beta) and a mask, with --html."""
    folder = tmp_path_factory.mktemp("html_grey")
    path = save_png(folder / "bands.png", three_bands(shape=(90, 120)))
    mask = np.ones((90, 120), np.uint8) * 255
    mask[:10] = 0
    mask_path = save_png(folder / "mask.png", mask)
    out = folder / "out"
    out.mkdir()
    report = segment_file(path, out, RunOptions(classes=3, beta=0.5, html=True,
                                                mask_path=str(mask_path)))
    return out / "bands_report.html", report


def test_html_is_an_output_and_self_contained(photo_report):
    page, report = photo_report
    assert report["outputs"]["html"] == str(page)
    text = page.read_text(encoding="utf-8")
    on_disk = json.loads((page.parent / "astronaut_report.json").read_text())
    assert on_disk["outputs"]["html"] == str(page)
    assert "html" in on_disk["timings_seconds"]
    assert _external_references(text) == []
    assert "<link" not in text and "<script src" not in text and "@import" not in text
    # the three pictures are embedded, the plots inline
    assert len(re.findall(r'src="data:image/(?:png|jpeg);base64,', text)) == 3
    for element in ('id="legend"', 'id="histogram-0"', 'id="histogram-2"', 'id="likelihood"',
                    'id="bic"', 'id="classes"', 'id="options"', 'id="timings"'):
        assert element in text
    # -k auto: the BIC curve rings the chosen K; --objects: the counts are in the table
    assert 'class="chosen"' in text
    assert "objects (" in text


def test_external_reference_check_can_fail():
    bad = '<img src="https://example.org/a.png"><a href="//cdn.example/x.js">x</a>'
    assert _external_references(bad) == ["https://example.org/a.png", "//cdn.example/x.js"]
    assert _external_references('<a href="a_overlay.png">x</a><img src="data:image/png;base64,AA">') == []


def test_grey_report_with_mrf_and_mask(grey_report):
    page, report = grey_report
    text = page.read_text(encoding="utf-8")
    assert 'id="mrf-history"' in text and 'id="mrf-changed"' in text
    assert 'id="histogram-0"' in text and 'id="histogram-1"' not in text  # one grey panel
    assert "intensity" in text
    # the legend lists every class with its fraction, as the report has them
    for c in report["classes"]:
        assert f"{100 * c['fraction']:.1f}%" in text


def test_existing_html_refused_without_overwrite(tmp_path):
    path = save_png(tmp_path / "img.png", three_bands())
    (tmp_path / "img_report.html").write_text("mine")
    with pytest.raises(EmsegError, match="img_report.html"):
        segment_file(path, tmp_path, RunOptions(classes=3, html=True))
    assert (tmp_path / "img_report.html").read_text() == "mine"
    assert not (tmp_path / "img_labels.png").exists()
    segment_file(path, tmp_path, RunOptions(classes=3, html=True), overwrite=True)
    assert "emseg report" in (tmp_path / "img_report.html").read_text()


def test_cli_run_html(tmp_path):
    path = save_png(tmp_path / "in" / "img.png", three_bands())
    result = CliRunner().invoke(main, ["run", str(path), "-k", "3", "--html", "-o",
                                       str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "img_report.html").exists()
    result = CliRunner().invoke(main, ["run", str(path), "-k", "3", "-o", str(tmp_path / "o2"),
                                       "-q"])
    assert result.exit_code == 0 and not (tmp_path / "o2" / "img_report.html").exists()


def test_large_picture_is_shrunk_and_links_the_full_size(tmp_path):
    big = np.tile(three_bands(shape=(60, 80)), (10, 15))  # 600 x 1200
    path = save_png(tmp_path / "big.png", big)
    report = segment_file(path, tmp_path, RunOptions(classes=3, html=True))
    text = Path(report["outputs"]["html"]).read_text(encoding="utf-8")
    assert 'href="big_overlay.png"' in text and 'href="big_segments.png"' in text
    assert 'href="big.png"' in text  # the input, a PNG a browser shows
    import base64

    import cv2

    uri = re.search(r'id="img-overlay" src="data:image/jpeg;base64,([^"]+)"', text).group(1)
    thumb = cv2.imdecode(np.frombuffer(base64.b64decode(uri), np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape[1] == 800 and thumb.shape[0] == 400


def test_volume_report(tmp_path):
    """A stack: the input is shown as the montage of slices the overlay uses."""
    from emseg.io import write_tiff_stack

    rng = np.random.default_rng(0)
    vol = np.clip(rng.normal(100, 10, (7, 40, 50)), 0, 255).astype(np.uint8)
    vol[:, :, 25:] += 80
    path = tmp_path / "vol.tif"
    write_tiff_stack(path, vol)
    report = segment_file(path, tmp_path, RunOptions(classes=2, html=True))
    text = Path(report["outputs"]["html"]).read_text(encoding="utf-8")
    assert 'id="histogram-0"' in text and 'id="legend"' in text


def test_batch_index_lists_every_input(tmp_path):
    folder = tmp_path / "in"
    for i in range(3):
        save_png(folder / f"img{i}.png", three_bands(seed=i))
    (folder / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    result = run_batch([folder], out, RunOptions(classes=3, html=True), jobs=1)
    assert result.count("failed") == 1
    text = (out / "index.html").read_text(encoding="utf-8")
    assert text.count("<tr>") == 1 + 4  # header + one per input
    assert "not an image" not in text or "broken.png" in text
    assert text.count('class="failed"') == 1
    for i in range(3):
        assert f'href="img{i}_report.html"' in text
    assert text.count('src="data:image/jpeg;base64,') == 3
    assert _external_references(text) == []
    # a rerun skips the complete inputs and still shows them, thumbnails included
    run_batch([folder], out, RunOptions(classes=3, html=True), jobs=1)
    again = (out / "index.html").read_text(encoding="utf-8")
    assert again.count('class="skipped"') == 3
    assert again.count('src="data:image/jpeg;base64,') == 3


def test_batch_index_without_html_and_foreign_index_refused(tmp_path):
    folder = tmp_path / "in"
    save_png(folder / "a.png", three_bands())
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("<html>my own page</html>")
    with pytest.raises(EmsegError, match="index.html"):
        run_batch([folder], out, RunOptions(classes=3), jobs=1)
    assert (out / "index.html").read_text() == "<html>my own page</html>"
    run_batch([folder], out, RunOptions(classes=3), jobs=1, overwrite=True)
    text = (out / "index.html").read_text(encoding="utf-8")
    assert "a.png" in text and "report</a>" not in text  # no image pages without --html
    assert not (out / "a_report.html").exists()


@pytest.mark.slow
@needs_chromium
def test_image_report_renders_in_chromium(photo_report, grey_report, tmp_path):
    for page, _ in (photo_report, grey_report):
        dom, console = _rendered_dom(tmp_path, page)
        assert console == [], console
        assert 'data-pictures="3/3"' in dom  # input, overlay, segments decoded
        for element in ('id="legend"', 'id="histogram-0"', 'id="likelihood"'):
            assert element in dom
        assert re.search(r'<svg[^>]*id="histogram-0"[\s\S]*?class="bars"', dom)
        assert re.search(r'<svg[^>]*id="likelihood"[\s\S]*?class="curve"', dom)
        pixels, console = _screenshot(tmp_path, page)
        assert console == [], console
        assert pixels.shape[:2] == (900, 1366)
        assert pixels.std() > 20  # not blank
        assert (pixels.min(axis=2) < 200).mean() > 0.2  # pictures, not a white page


@pytest.mark.slow
@needs_chromium
def test_chromium_check_sees_a_broken_page(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA">'
                    "<script>nosuch();</script></body></html>")
    dom, console = _rendered_dom(tmp_path, page)
    assert any("nosuch" in line for line in console)
    assert 'data-pictures="0/1"' in dom
    pixels, _ = _screenshot(tmp_path, page)
    assert pixels.std() < 20  # blank but for the broken-picture icon: below the bar above


@pytest.mark.slow
@needs_chromium
def test_batch_index_renders_and_sorts_in_chromium(tmp_path):
    folder = tmp_path / "in"
    for i, mean in enumerate((200, 40, 120)):
        save_png(folder / f"img{i}.png", three_bands(seed=i, means=(mean - 30, mean, mean + 30)))
    (folder / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    run_batch([folder], out, RunOptions(classes=2, html=True), jobs=1)
    index = out / "index.html"
    # click the log-likelihood header twice (descending), as a user would
    click = ("<script>window.addEventListener('load',function(){var th=Array.prototype.find"
             ".call(document.querySelectorAll('th'),function(h){return h.textContent"
             ".indexOf('log-likelihood')===0;});th.click();th.click();});</script>")
    dom, console = _rendered_dom(tmp_path, index, click)
    assert console == [], console
    assert 'data-pictures="3/3"' in dom
    assert 'aria-sort="descending"' in dom
    body = dom[dom.index("<tbody>"):]
    values = [float(v) for v in re.findall(r'<td class="num" data-sort="([-0-9.e]+)">[-0-9.e]+'
                                          r'</td><td class="num" data-sort="[-0-9.e]+">[0-9.]+</td>'
                                          r"<td>", body)]
    assert len(values) == 3 and values == sorted(values, reverse=True)
    assert body.rstrip().count("broken.png") >= 1
    assert body.index("broken.png") > body.index("img2.png")  # no value: last
    pixels, console = _screenshot(tmp_path, index, "1366,700")
    assert console == [] and pixels.std() > 20


def test_file_name_that_is_not_utf8(tmp_path):
    import os

    name = os.fsdecode(b"caf\xe9.png")
    path = save_png(tmp_path / name, three_bands())
    report = segment_file(path, tmp_path, RunOptions(classes=3, html=True))
    text = Path(report["outputs"]["html"]).read_text(encoding="utf-8")  # valid UTF-8
    assert 'href="caf%E9_overlay.png"' in text  # the name's own bytes
    assert "caf\\udce9.png" in text  # shown escaped
