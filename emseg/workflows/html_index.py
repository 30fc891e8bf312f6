"""A batch's ``index.html``: one row per input, to look over a batch at a glance.

Each row: a thumbnail of the overlay (kept in the input's report as
``overlay_thumbnail``, so no full-size picture is decoded here), the input, its status
(a failed one with its reason), K, the class fractions as a bar in the overlay's
colours, iterations, log-likelihood and seconds, with links to the input's HTML report
(``--html``) and overlay. Clicking a column header sorts by it (a few lines of inline
script). Self-contained like the image reports: it fetches nothing.
"""

import html
from pathlib import Path

from .html import page
from .html_sections import relative_href

__all__ = ["batch_index_page", "check_index", "write_batch_index"]

_GENERATOR = '<meta name="generator" content="emseg'

_CSS = """
.fractions{display:flex;width:180px;height:14px;border:1px solid #999}
.fractions span{display:block;height:100%}
td.thumb img{width:120px;height:auto;display:block;border:1px solid #ccc}
th{white-space:nowrap}th.sortable{cursor:pointer;user-select:none}th.sortable:after{content:' \\2195';color:#aaa}
th[aria-sort=ascending]:after{content:' \\2191';color:#333}
th[aria-sort=descending]:after{content:' \\2193';color:#333}
.failed{color:#b00020;font-weight:600}.ok{color:#1b7f3b}.skipped{color:#555}
td.error{max-width:420px;color:#b00020;font-size:12px}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable th.sortable').forEach(function(th){
th.addEventListener('click',function(){
var table=th.closest('table'),body=table.tBodies[0],col=th.cellIndex;
var asc=th.getAttribute('aria-sort')!=='ascending';
table.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
th.setAttribute('aria-sort',asc?'ascending':'descending');
var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(a,b){
var x=a.cells[col].getAttribute('data-sort')||'',y=b.cells[col].getAttribute('data-sort')||'';
if(x===''||y==='')return (x==='')-(y==='');
var nx=Number(x),ny=Number(y);
var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c;});
rows.forEach(function(r){body.appendChild(r);});});});
"""

_COLUMNS = ("", "input", "status", "K", "class fractions", "iterations", "log-likelihood",
            "seconds", "report")


def _esc(value):
    return html.escape(str(value), quote=True)


def check_index(path, overwrite):
    """Refuse to replace a file at ``path`` that emseg did not write (its first 2 kB
    hold no emseg generator tag), unless ``overwrite``. Raises :class:`~emseg.EmsegError`."""
    from .._shared.errors import EmsegError

    path = Path(path)
    if overwrite or not path.exists():
        return
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            ours = _GENERATOR in f.read(2048)
    except OSError:
        ours = False
    if not ours:
        raise EmsegError(f"{path} exists and is not a batch index emseg wrote; move it, "
                         "pass --overwrite to replace it, or use another -o")


def write_batch_index(path, items, rows):
    """Write the batch index at ``path`` (atomically, replacing emseg's previous one):
    ``items`` are the batch's inputs (:class:`~emseg.workflows.inputs.Input`) and
    ``rows`` their outcomes (:class:`~emseg.workflows.batch.Row`), in the same order."""
    from ..io.atomic import open_temp, writing

    text = batch_index_page(items, rows, Path(path).parent)
    with writing(path, overwrite=True) as tmp:
        # a file name's bytes that are not UTF-8 show as \udcXX escapes
        with open_temp(tmp, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)


def _report_of(item):
    """The report an input's outputs hold (None: none, or unreadable)."""
    from .._shared.errors import EmsegError
    from ..io.jsonfile import load_json
    from .run import file_stem

    report_path = Path(item.out_dir) / f"{file_stem(item.path)}_report.json"
    try:
        report = load_json(report_path)
    except (EmsegError, OSError):
        return None
    return report if isinstance(report, dict) else None


def batch_index_page(items, rows, folder):
    """The HTML text of a batch index written into ``folder`` (links are relative to it)."""
    counts = {}
    body_rows = []
    for item, row in zip(items, rows):
        counts[row.status] = counts.get(row.status, 0) + 1
        report = _report_of(item) if row.status in ("ok", "skipped") else None
        body_rows.append(_row(item, row, report, folder))
    total = sum(r.seconds or 0.0 for r in rows)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    head = "".join(
        f'<th class="sortable">{_esc(c)}</th>' if c and c != "report" else f"<th>{_esc(c)}</th>"
        for c in _COLUMNS
    )
    body = (
        f"<header><h1>emseg batch: {len(rows)} input(s)</h1><p class=\"summary\">"
        f"{_esc(summary)}; {total:.1f} s of work in all. Click a column header to sort; "
        "<a href=\"summary.csv\">summary.csv</a> has the same rows.</p></header>"
        f'<table class="sortable" id="batch"><thead><tr>{head}</tr></thead><tbody>'
        + "".join(body_rows) + "</tbody></table>"
    )
    return page("emseg batch index", body, _SORT_JS, css=_CSS)


def _row(item, row, report, folder):
    from .run import file_stem

    outputs = (report or {}).get("outputs") or {}
    thumb = (report or {}).get("overlay_thumbnail")
    cells = []
    image = ""
    if isinstance(thumb, str) and thumb.startswith("data:image/"):
        image = f'<img src="{_esc(thumb)}" alt="overlay of {_esc(Path(row.path).name)}">'
        overlay = outputs.get("overlay")
        href = relative_href(overlay, folder) if overlay else None
        if href:
            image = f'<a href="{href}" target="_blank">{image}</a>'
    cells.append(f'<td class="thumb">{image}</td>')
    cells.append(f'<td data-sort="{_esc(row.path)}">{_esc(row.path)}</td>')
    status = f'<span class="{_esc(row.status)}">{_esc(row.status)}</span>'
    if row.error:
        status += f'<div class="error">{_esc(row.error)}</div>'
    cells.append(f'<td data-sort="{_esc(row.status)}">{status}</td>')
    k = row.k if row.k is not None else (report or {}).get("k")
    cells.append(_number(k, "{}"))
    classes = (report or {}).get("classes") or []
    bar = "".join(
        f'<span style="width:{100 * c["fraction"]:.2f}%;background:rgb('
        f'{",".join(str(int(v)) for v in c["overlay_color"])})" '
        f'title="class {c["label"]}: {100 * c["fraction"]:.1f}%"></span>'
        for c in classes
    )
    text = " ".join(f"{100 * c['fraction']:.1f}%" for c in classes)
    first = classes[0]["fraction"] if classes else ""
    cells.append(f'<td data-sort="{first}">' + (
        f'<div class="fractions">{bar}</div><div class="note">{_esc(text)}</div>'
        if classes else "") + "</td>")
    iterations = row.iterations if row.iterations is not None else (report or {}).get("iterations")
    ll = row.log_likelihood if row.log_likelihood is not None else (report or {}).get(
        "log_likelihood")
    seconds = row.seconds
    if seconds is None and report is not None:
        seconds = (report.get("timings_seconds") or {}).get("total")
    cells += [_number(iterations, "{}"), _number(ll, "{:.5g}"), _number(seconds, "{:.2f}")]
    page_path = outputs.get("html")
    if page_path is None and report is not None:
        candidate = Path(item.out_dir) / f"{file_stem(item.path)}_report.html"
        page_path = candidate if candidate.exists() else None
    link = ""
    if page_path is not None and Path(page_path).exists():
        href = relative_href(page_path, folder)
        link = f'<a href="{href}">report</a>' if href else ""
    cells.append(f"<td>{link}</td>")
    return "<tr>" + "".join(cells) + "</tr>"


def _number(value, fmt):
    if value is None:
        return '<td class="num" data-sort=""></td>'
    return f'<td class="num" data-sort="{value}">{_esc(fmt.format(value))}</td>'
