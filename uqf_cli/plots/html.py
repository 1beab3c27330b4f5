"""``inspect-sids --html``: one self-contained HTML file (no server, no script, no external file).

It holds the summary table (side by side with ``--compare``) and its footnotes, the picture of
:func:`uqf_cli.plots.sids.sids_figure` inlined as a base64 PNG, the largest level-1 codes with their
labels and a few titles, and every figure as JSON in an inert ``application/json`` block (for scripts
that read the report back), plus the provenance.
"""

from __future__ import annotations

import base64
import html
from collections import Counter
from pathlib import Path
from typing import Any

from uqf_cli.evaluation.inspect_sids import Inspection, group_label
from uqf_cli.evaluation.sid_summary import side_by_side
from uqf_cli.files import atomic_path, level_token, to_json

TOP_CODES = 12
TITLES_PER_CODE = 3

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #ddd; }
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


def top_codes_html(ins: Inspection, top: int = TOP_CODES) -> str:
    """The largest level-1 codes: items, label (category or title words) and a few titles."""
    table = ins.table
    counts = Counter(int(c) for c in table.codes[:, 0])
    rows = []
    for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
        members = [table.item_ids[k] for k in range(len(table.item_ids)) if int(table.codes[k, 0]) == code]
        titles = [ins.dataset.title(i) for i in members[:TITLES_PER_CODE]] if ins.dataset is not None else members[:3]
        rows.append(f"<tr><td><code>{_e(level_token(0, code))}</code></td><td class=\"num\">{n:,}</td>"
                    f"<td>{_e(group_label(members, ins.dataset))}</td><td>{_e(' | '.join(titles))}</td></tr>")
    name = Path(table.path).name if table.path else "SIDs"
    return (f"<h3>{_e(name)}: the {min(top, len(counts))} largest of {len(counts):,} level-1 codes</h3>"
            "<table class=\"codes\"><tr><th>code</th><th>items</th><th>label</th><th>titles</th></tr>"
            + "".join(rows) + "</table>")


def report_html(inspections: list[Inspection], figures: list[dict[str, Any]], png: bytes,
                provenance: dict[str, Any]) -> str:
    """The whole page as a string."""
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
        + f"<h2>Pictures</h2><img alt=\"code usage, items per prefix and item map\" src=\"data:image/png;base64,"
        f"{image}\">"
        + "<h2>Level-1 codes</h2>" + "".join(top_codes_html(i) for i in inspections)
        + f"<script type=\"application/json\" id=\"uqf-data\">{data}</script></body></html>\n"
    )


def write_report(path: str | Path, html_text: str, force: bool = False) -> Path:
    """Write the page atomically."""
    with atomic_path(path, force) as tmp:
        Path(tmp).write_text(html_text, encoding="utf-8")
    return Path(path)
