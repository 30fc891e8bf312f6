"""The HTML report of one segmented image: ``emseg run ... --html``.

Built from the report :func:`emseg.workflows.run.segment_file` writes (its dict) and
the pictures it has rendered, and written next to them as ``<stem>_report.html``. The
page is self-contained: pictures are embedded as data URIs, plots are inline SVG
(:mod:`emseg.image.plots`), style and the few lines of script are inline; it fetches
nothing. Large pictures are embedded as thumbnails at most ``THUMB_WIDTH`` pixels wide
(a click opens the full-size file written beside the page); small ones whole (a click
shows them magnified by the largest whole factor that fits the window, pixels sharp).

Sections: the input, the overlay with its legend (colour, label, mean value, fraction)
and the segments picture; per feature, the histogram with each fitted component's
weighted density and their sum (:mod:`emseg.image.histograms`); the log-likelihood per
iteration and each restart's final value, the BIC/ICL curve (``-k auto``), the MRF's
history (``--beta``), the bias field (``--bias``, see :func:`image_report_page`); the
class table (with object counts after ``--objects``); options, timings and version.
"""

import base64
import html
from pathlib import Path

import numpy as np

from .html_sections import relative_href

__all__ = ["THUMB_WIDTH", "image_report_page", "overlay_thumbnail", "page", "picture_uri",
           "write_image_report"]

THUMB_WIDTH = 800
_BROWSER_IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")

_CSS = """
*{box-sizing:border-box}
body{margin:0 auto;max-width:1320px;padding:12px 18px 40px;color:#1d1d1f;background:#fff;
font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}
h1{font-size:20px;margin:4px 0 2px;word-break:break-all}h2{font-size:16px;margin:22px 0 8px;
border-bottom:1px solid #ddd;padding-bottom:3px}
.summary{color:#555;margin:0 0 10px}
.grid{display:grid;gap:14px 18px;grid-template-columns:repeat(auto-fill,minmax(380px,1fr))}
.pictures{display:grid;gap:14px;grid-template-columns:repeat(3,minmax(0,1fr))}
figure{margin:0}figure img{width:100%;height:auto;display:block;border:1px solid #ccc;
image-rendering:auto;cursor:zoom-in;background:#eee}
figcaption{font-size:13px;color:#444;margin-top:4px}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;text-align:left;
border-bottom:1px solid #e5e5e5;vertical-align:top}th{background:#f5f5f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.swatch{display:inline-block;width:14px;height:14px;border:1px solid #777;
vertical-align:middle;border-radius:2px}
.plot{width:100%;height:auto;display:block}
.note{color:#666;font-size:12px}
.kv td:first-child{color:#555}
#lightbox{display:none;position:fixed;inset:0;background:rgba(0,0,0,.85);overflow:auto;
z-index:9;cursor:zoom-out}#lightbox img{display:block;margin:auto;max-width:none;
image-rendering:pixelated}
@media (max-width:900px){.pictures{grid-template-columns:1fr}}
"""

_ZOOM_JS = """
(function(){var box=document.getElementById('lightbox');if(!box)return;
var big=box.querySelector('img');
document.querySelectorAll('img.zoom').forEach(function(img){
img.addEventListener('click',function(){big.src=img.src;
var k=Math.max(1,Math.floor(0.95*window.innerWidth/img.naturalWidth));
big.style.width=(k*img.naturalWidth)+'px';box.style.display='block';});});
box.addEventListener('click',function(){box.style.display='none';big.removeAttribute('src');});
})();
"""


def _esc(value):
    return html.escape(str(value), quote=True)


def page(title, body, script="", css=""):
    """A complete HTML document: ``body`` (HTML text) under ``title``, emseg's style
    (and ``css``) inline, and ``script`` (JavaScript text) run at the end of the body."""
    from .._shared.version import __version__

    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<meta name=\"generator\" content=\"emseg {_esc(__version__)}\">"
        f"<title>{_esc(title)}</title><style>{_CSS}{css}</style></head><body>\n"
        + body + (f"\n<script>{script}</script>" if script else "") + "\n</body></html>\n"
    )


def overlay_thumbnail(overlay, width=160):
    """A small JPEG data URI of the overlay, kept in the report for a batch's
    ``index.html`` (which then needs to decode no full-size picture)."""
    import cv2

    h, w = overlay.shape[:2]
    step = max(1, w // (2 * width))
    small = np.ascontiguousarray(overlay[::step, ::step])
    size = (min(width, small.shape[1]), max(1, round(h * min(width, small.shape[1]) / w)))
    small = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def picture_uri(picture, max_width=THUMB_WIDTH, *, sharp=False):
    """``(data URI, resized)`` for an ``(H, W, 3)`` uint8 RGB picture, shrunk to at most
    ``max_width`` pixels wide (``resized`` says whether it was). ``sharp``: flat
    colours (segments): shrunk by nearest neighbour and embedded as PNG; otherwise by
    area averaging, as JPEG (quality 90)."""
    import cv2

    picture = np.asarray(picture)
    resized = picture.shape[1] > max_width
    pic = _halfway(picture, max_width * (1 if sharp else 2), cv2, nearest=sharp)
    if pic.shape[1] > max_width:
        size = (max_width, max(1, round(pic.shape[0] * max_width / pic.shape[1])))
        pic = cv2.resize(pic, size, interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(pic, cv2.COLOR_RGB2BGR)
    if sharp:
        ok, data = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        kind = "png"
    else:
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
        kind = "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(data.tobytes()).decode("ascii"), resized


def input_picture(image, labels, max_width=THUMB_WIDTH):
    """What the input looks like, at most about ``max_width`` pixels wide: an ``(H, W,
    3)`` uint8 picture of an image (its first channel for co-registered channels), or
    the montage of nine slices of a volume (as the overlay shows)."""
    import cv2

    from ..image import render

    pixels = image.pixels
    if image.channels:
        pixels = pixels[..., 0]
    if not image.is_stack:
        return render.to_display(_shrunk(pixels, max_width, cv2))
    slices = render.representative_slices(pixels.shape[0])
    shown = []
    for s in slices:
        v = labels[s] > 0
        shown.append(render.to_display(pixels[s], valid=v if v.any() else None))
    return render.montage(shown)


def _halfway(picture, width, cv2, nearest=False):
    """``picture`` brought down to about ``width`` pixels wide cheaply: by nearest
    neighbour, or bilinearly, whose cost follows the output's size (area averaging a
    12-megapixel picture to 800 pixels takes 40-90 ms; to twice the target's width
    bilinearly, then by area, a few)."""
    h, w = picture.shape[:2]
    if w <= width:
        return np.ascontiguousarray(picture)
    pic = picture if picture.flags.c_contiguous else np.ascontiguousarray(picture)
    size = (width, max(1, round(h * width / w)))
    return cv2.resize(pic, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def _shrunk(pixels, max_width, cv2):
    """``pixels`` (H, W) or (H, W, 3) resized by area averaging to ``max_width`` wide
    (float64 computed in float32, which is what a display needs)."""
    if pixels.shape[1] <= max_width:
        return pixels
    p = pixels
    if p.dtype not in (np.uint8, np.uint16, np.float32):
        p = p.astype(np.float32)
    p = _halfway(p, 2 * max_width, cv2)
    h, w = p.shape[:2]
    size = (max_width, max(1, round(h * max_width / w)))
    return cv2.resize(np.ascontiguousarray(p), size, interpolation=cv2.INTER_AREA)


def write_image_report(path, report, image, labels, overlay, segments, *, overwrite=False,
                       bias_field=None):
    """Write the HTML report of one segmented image at ``path`` (atomically; an
    existing file only with ``overwrite``).

    ``report``: the dict :func:`~emseg.workflows.run.segment_file` writes;
    ``image``: the :class:`~emseg.io.images.Image` it read; ``labels``: the
    segmentation's labels (0 outside the mask); ``overlay`` and ``segments``: the
    pictures written beside it. ``bias_field``: see :func:`image_report_page`.
    """
    from ..image.features import split_channels
    from ..io.atomic import open_temp, writing

    folder = Path(path).parent
    full = {}
    for name in ("overlay", "segments"):
        target = report.get("outputs", {}).get(name)
        full[name] = None if target is None else relative_href(target, folder)
    source = report.get("input")
    if source and Path(source).suffix.lower() in _BROWSER_IMAGES and not image.is_stack:
        full["input"] = relative_href(source, folder)
    shown = input_picture(image, labels)
    uri, _ = picture_uri(shown)
    pictures = {  # the input picture is shrunk as it is made: compare with the image
        "input": (uri, shown.shape[1] < image.spatial_shape[-1]),
        "overlay": picture_uri(overlay),
        "segments": picture_uri(segments, sharp=True),
    }
    values, _, _ = split_channels(image.pixels, -1 if image.has_channel_axis else None,
                                  image.channels)
    if image.is_color and values.shape[-1] > 3:
        values = values[..., :3]
    text = image_report_page(report, pictures, full, values, labels, bias_field=bias_field)
    with writing(path, overwrite=overwrite) as tmp:
        # a file name's bytes that are not UTF-8 show as \udcXX escapes
        with open_temp(tmp, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)


def image_report_page(report, pictures, full_size, values, labels, *, bias_field=None):
    """The HTML text of one image's report.

    ``pictures``: ``name -> (data URI, resized)`` for ``input``, ``overlay`` and
    ``segments`` (:func:`picture_uri`); ``full_size``: ``name -> href`` of the
    full-size file to open when a shrunk picture is clicked. ``values`` and ``labels``:
    the pixel values and the labels (0: not segmented), for the histograms
    (:func:`emseg.image.histograms.mixture_histograms`).

    ``bias_field``: an (H, W) array of the intensity bias estimated by ``--bias``
    (multiplicative, around 1), or None. When the report's options say ``bias`` was
    used, the page shows this field as a picture if given, else links to the
    report's ``bias`` output if it lists one.
    """
    from .html_sections import class_table, fit_plots, histogram_panels, run_tables, summary_line

    name = Path(str(report.get("input", "image"))).name
    panels, hist_svgs = histogram_panels(report, values, labels)
    body = [
        '<div id="lightbox"><img alt="full size"></div>',
        f"<header><h1>{_esc(name)}</h1><p class=\"summary\">{summary_line(report)}</p></header>",
        '<section class="pictures" id="pictures">',
        _figure("input", "Input", pictures, full_size),
        _figure("overlay", "Overlay: class colours over the image", pictures, full_size,
                extra=_legend(report)),
        _figure("segments", "Segments: each class in its mean colour", pictures, full_size),
        "</section>",
        "<h2>Does the mixture fit? The histogram with the fitted components, and the fit</h2>",
        f'<section class="grid" id="plots">{"".join(hist_svgs + fit_plots(report))}</section>',
        '<p class="note">Histograms: grey bars are the segmented pixels (a density: bar areas '
        "sum to 1); coloured curves each class's Gaussian times its weight, in the overlay's "
        "colours; black dashed their sum, the fitted mixture.</p>",
        _bias_section(report, bias_field),
        "<h2>Classes</h2>",
        class_table(report, panels),
        "<h2>Run</h2>",
        run_tables(report),
    ]
    return page(f"emseg report: {name}", "\n".join(b for b in body if b), _ZOOM_JS)


def _figure(key, caption, pictures, full_size, extra=""):
    uri, resized = pictures[key]
    href = full_size.get(key)
    linked = resized and href
    zoom = "" if linked else ' class="zoom"'  # linked: the full-size file opens instead
    img = f'<img{zoom} id="img-{key}" src="{uri}" alt="{_esc(caption)}">'
    if linked:
        img = f'<a href="{href}" target="_blank" title="open the full-size picture">{img}</a>'
    note = " (shrunk; click for full size)" if resized and href else (
        " (shrunk)" if resized else "")
    return f"<figure>{img}<figcaption>{_esc(caption)}{note}{extra}</figcaption></figure>"


def _swatch(rgb):
    r, g, b = (int(c) for c in rgb)
    return f'<span class="swatch" style="background:rgb({r},{g},{b})"></span>'


def _legend(report):
    """The overlay's legend: colour, label, mean value and fraction of each class."""
    rows = []
    for c in report.get("classes", []):
        mean = ", ".join(f"{v:.4g}" for v in c.get("mean_value", []))
        rows.append(
            f"<tr><td>{_swatch(c['overlay_color'])}</td><td class=\"num\">{c['label']}</td>"
            f"<td class=\"num\">{mean}</td><td class=\"num\">{100 * c['fraction']:.1f}%</td></tr>"
        )
    return ('<table class="legend" id="legend"><thead><tr><th></th><th>label</th>'
            "<th>mean value</th><th>fraction</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _bias_section(report, bias_field):
    """The bias field when ``--bias`` was used: its picture when the array is given,
    else a link to the report's ``bias`` output."""
    options = report.get("options") or {}
    if not options.get("bias"):
        return ""
    parts = ["<h2>Bias field</h2>", '<section id="bias">']
    if bias_field is not None:
        from ..image import render

        field = np.asarray(bias_field, dtype=np.float64)
        if field.ndim == 3:
            field = field[field.shape[0] // 2]
        finite = field[np.isfinite(field)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (1.0, 1.0)
        uri, _ = picture_uri(render.to_display(field))
        parts.append(f'<figure style="max-width:420px"><img class="zoom" id="img-bias" '
                     f'src="{uri}" alt="bias field"><figcaption>Estimated bias field '
                     f"(dark {low:.3g} to bright {high:.3g})</figcaption></figure>")
    else:
        target = (report.get("outputs") or {}).get("bias")
        if target:
            parts.append(f'<p>The estimated field is in <a href="'
                         f'{relative_href(target, Path(report["outputs"]["report"]).parent)}">'
                         f"{_esc(Path(target).name)}</a>.</p>")
        else:
            parts.append('<p class="note">The bias field was estimated but is not shown here.</p>')
    parts.append("</section>")
    return "".join(parts)
