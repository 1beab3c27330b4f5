"""``inspect-sids --html``: one self-contained HTML file (no server, no script, no external file).

It holds the summary table (side by side with ``--compare``) with its footnotes and a legend saying
what each figure means and what a good value is; the usage pictures and, per tokenization, the item
map as its own full-width picture (click it to see it at full size: a CSS toggle, no script); the
largest level-1 codes with their labels and a few titles, each opening onto its level-2 codes (counts,
labels, example titles); and every figure as JSON in an inert ``application/json`` block (for scripts
that read the report back), plus the provenance.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from uqf_cli.evaluation.inspect_sids import Inspection, group_label
from uqf_cli.evaluation.sid_summary import METRIC_GUIDE, side_by_side
from uqf_cli.files import atomic_path, level_token, to_json

TOP_CODES = 12
TOP_SUBCODES = 10
TITLES_PER_CODE = 3

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #ddd; }
.zoom { display: none; }
.zoom + label img { cursor: zoom-in; }
.zoom:checked + label img { max-width: none; cursor: zoom-out; }
.mapbox { overflow: auto; }
details { margin: 2px 0; }
summary { cursor: pointer; }
table.drill { margin: 4px 0 10px 2em; font-size: 13px; }
.notes { font-size: 13px; color: #555; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def summary_html(figures: dict[str, Any], other: dict[str, Any] | None) -> str:
    """The summary rows as an HTML table, with their footnotes below it."""
    rows, notes = side_by_side(figures, other)
    names = [Path(m["sids"]).name if m.get("sids") else "SIDs" for m in (figures, other) if m is not None]
    head = "<tr><th>metric</th>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr>"
    body = "".join("<tr><td>" + _e(r[0]) + "</td>" + "".join(f'<td class="num">{_e(v)}</td>' for v in r[1:])
                   + "</tr>" for r in rows)
    foot = "".join(f"<p>{_e(n)}</p>" for n in notes)
    return f'<table id="summary">{head}{body}</table><div class="notes">{foot}</div>'


def legend_html() -> str:
    """What each summary figure measures and what a good value looks like."""
    rows = "".join(f"<tr><td>{_e(name)}</td><td>{_e(meaning)}</td><td>{_e(good)}</td></tr>"
                   for name, meaning, good in METRIC_GUIDE)
    return ('<table id="legend"><tr><th>figure</th><th>what it measures</th><th>good value</th></tr>'
            f"{rows}</table>")


def _members_by_code(codes: Any, rows: list[int], level: int) -> list[tuple[int, list[int]]]:
    """(code, rows) at ``level`` among ``rows``, largest first (ties: lower code first)."""
    groups: dict[int, list[int]] = {}
    for r in rows:
        groups.setdefault(int(codes[r, level]), []).append(r)
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))


def _titles(ins: Inspection, ids: list[str]) -> str:
    shown = [ins.dataset.title(i) for i in ids[:TITLES_PER_CODE]] if ins.dataset is not None else ids[:3]
    return " | ".join(shown)


def drill_down_html(ins: Inspection, rows: list[int], code: int, top: int = TOP_SUBCODES) -> str:
    """The level-2 codes under one level-1 code: items, label and example titles."""
    table = ins.table
    if table.levels < 2:
        return ""
    subs = _members_by_code(table.codes, rows, 1)
    body = []
    for sub, members in subs[:top]:
        ids = [table.item_ids[r] for r in members]
        token = level_token(0, code) + level_token(1, sub)
        body.append(f'<tr><td><code>{_e(token)}</code></td><td class="num">{len(members):,}</td>'
                    f"<td>{_e(group_label(ids, ins.dataset))}</td><td>{_e(_titles(ins, ids))}</td></tr>")
    more = (f'<p class="notes">... {len(subs) - top} more level-2 codes, '
            f"{sum(len(m) for _, m in subs[top:]):,} items</p>" if len(subs) > top else "")
    return ('<table class="drill"><tr><th>level-2 code</th><th>items</th><th>label</th><th>titles</th></tr>'
            + "".join(body) + "</table>" + more)


def top_codes_html(ins: Inspection, top: int = TOP_CODES) -> str:
    """The largest level-1 codes (items, label, a few titles), each opening onto its level-2 codes."""
    table = ins.table
    by_code = _members_by_code(table.codes, list(range(len(table.item_ids))), 0)
    blocks = []
    for n, (code, members) in enumerate(by_code[:top]):
        ids = [table.item_ids[r] for r in members]
        opened = " open" if n == 0 else ""  # the largest code shows its drill-down at once
        blocks.append(f"<details{opened}><summary><code>{_e(level_token(0, code))}</code> {len(members):,} items: "
                      f"<b>{_e(group_label(ids, ins.dataset))}</b> <span class=\"notes\">{_e(_titles(ins, ids))}"
                      f"</span></summary>{drill_down_html(ins, members, code)}</details>")
    name = Path(table.path).name if table.path else "SIDs"
    return (f'<h3>{_e(name)}: the {min(top, len(by_code))} largest of {len(by_code):,} level-1 codes '
            '<span class="notes">(click a code for its level-2 codes)</span></h3>'
            f'<div class="codes">{"".join(blocks)}</div>')


def maps_html(inspections: list[Inspection], maps: list[bytes]) -> str:
    """Each item map at the page's width; a click shows it at full size (scroll to move around)."""
    out = []
    for n, (ins, png) in enumerate(zip(inspections, maps, strict=True)):
        name = Path(ins.table.path).name if ins.table.path else "SIDs"
        image = base64.b64encode(png).decode("ascii")
        out.append(f'<div class="mapbox"><input type="checkbox" class="zoom" id="zoom-map-{n}">'
                   f'<label for="zoom-map-{n}"><img class="map" alt="item map of {_e(name)}" '
                   f'src="data:image/png;base64,{image}"></label></div>')
    return ('<h2>Item map</h2><p class="notes">Click a map to see it at full size (scroll to move around); '
            "click again to fit it to the page.</p>" + "".join(out)) if out else ""


def report_html(inspections: list[Inspection], figures: list[dict[str, Any]], png: bytes,
                provenance: dict[str, Any], maps: list[bytes] | None = None) -> str:
    """The whole page as a string (``png``: the usage pictures; ``maps``: one item map per tokenization)."""
    other = figures[1] if len(figures) > 1 else None
    title = " vs ".join(Path(i.table.path).name if i.table.path else "SIDs" for i in inspections)
    data = to_json({"metrics": figures, "provenance": provenance}).replace("</", "<\\/")
    image = base64.b64encode(png).decode("ascii")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>uqf inspect-sids: {_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>SIDs: {_e(title)}</h1>"
        f"<p class=\"notes\">{_e(provenance.get('command', ''))} (uqf {_e(provenance.get('uqf_version', ''))})</p>"
        "<h2>Summary</h2>" + summary_html(figures[0], other)
        + "<h3>How to read the summary</h3>" + legend_html()
        + "<h2>Level-1 codes</h2>" + "".join(top_codes_html(i) for i in inspections)
        + maps_html(inspections, maps or [])
        + f"<h2>Code usage</h2><img alt=\"per-level code usage and items per prefix\" "
        f"src=\"data:image/png;base64,{image}\">"
        + f"<script type=\"application/json\" id=\"uqf-data\">{data}</script></body></html>\n"
    )


def write_report(path: str | Path, html_text: str, force: bool = False) -> Path:
    """Write the page atomically."""
    with atomic_path(path, force) as tmp:
        Path(tmp).write_text(html_text, encoding="utf-8")
    return Path(path)
