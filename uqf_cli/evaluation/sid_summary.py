"""The inspect-sids summary as plain (label, value) rows, shared by the terminal table and the HTML report.

A figure that is withheld (a lift whose random expectation is below its floor) reads ``n/a`` with a
footnote marker, and the footnote text comes with the rows.
"""

from __future__ import annotations

import math
from typing import Any

NA = "n/a"


def fmt(v: Any) -> str:
    """A number as the tables show it (``-`` for missing or NaN)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def summary_rows(m: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """(label, value) rows of one metrics dict in reading order, and the footnotes their markers refer to."""
    rows = [("items", fmt(m["items"])), ("depth", m.get("depth") or fmt(m["levels"])),
            ("codebook sizes", ",".join(map(str, m["codebook_sizes"])))]
    for lv in m["per_level"]:
        rows.append((f"level {lv['level']} utilisation / perplexity",
                     f"{lv['utilisation']:.1%} / {lv['perplexity']:.1f}"))
    rows.append(("collision rate", f"{m['collision_rate']:.2%}"))
    for d, s in m["items_per_prefix"].items():
        rows.append((f"items per depth-{d} prefix (max / mean / shared)",
                     f"{s['max']} / {s['mean']:.2f} / {s['shared']:.2%}"))
    for key, name in (("semantic_cosine", "text cosine"), ("collab_cosine", "collab cosine")):
        for d, s in m.get(key, {}).items():
            rows.append((f"{name} depth {d} (within / random / lift)",
                         f"{fmt(s['within'])} / {fmt(s['random'])} / {fmt(s['lift'])}"))
    for d, s in m.get("category_purity", {}).items():
        rows.append((f"category purity depth {d} (observed / random)", f"{fmt(s['purity'])} / {fmt(s['random'])}"))
    notes: list[str] = []
    for d, s in m.get("collab_adjacency", {}).items():
        lift = fmt(s["lift"])
        if s.get("lift_note"):
            notes.append(f"depth {d}: {s['lift_note']}")
            lift = f"{NA} [{len(notes)}]"
        rows.append((f"adjacent train pairs sharing depth-{d} prefix (share / random / lift)",
                     f"{fmt(s['share'])} / {fmt(s['random'])} / {lift}"))
    return rows, [f"[{k}] {n}" for k, n in enumerate(notes, 1)]


def side_by_side(m: dict[str, Any], other: dict[str, Any] | None) -> tuple[list[tuple[str, ...]], list[str]]:
    """Rows ``(label, value[, other value])`` matched by label, and the footnotes (the other's prefixed)."""
    mine, notes = summary_rows(m)
    if other is None:
        return list(mine), notes
    theirs, their_notes = summary_rows(other)
    if their_notes:  # markers in the second column point to the second file's notes
        theirs = [(label, value.replace("[", "[b")) for label, value in theirs]
        notes = notes + [n.replace("[", "[b", 1) for n in their_notes]
    mine_d, theirs_d = dict(mine), dict(theirs)
    labels = [label for label, _ in mine] + [label for label, _ in theirs if label not in mine_d]
    return [(label, mine_d.get(label, "-"), theirs_d.get(label, "-")) for label in labels], notes


# (figure, what it measures, what a good value looks like): shown under the terminal summary and in the HTML report.
METRIC_GUIDE: tuple[tuple[str, str, str], ...] = (
    ("utilisation", "share of a level's codebook that at least one item uses",
     "near 100%; a low share means wasted codes (codebook collapse)"),
    ("perplexity", "the number of codes in effective use at a level: exp of the entropy of code frequencies",
     "close to the codebook size (even use); far below it means a few codes hold most items"),
    ("collision rate", "share of items whose full SID is shared with another item",
     "0 with a dedup level; without one, low (a few %): colliding items cannot be told apart"),
    ("items per prefix", "max / mean items under one depth-d prefix, and the share of items sharing theirs",
     "max not far above the mean: a balanced tree that a decoder can search evenly"),
    ("cosine within / random / lift", "mean cosine of items sharing a prefix vs of all pairs; "
     "lift = (within - random) / (1 - random)",
     "above 0 (0 = a content-blind split, 1 = identical items within a prefix); higher is better, and it "
     "should grow with depth"),
    ("category purity", "share of items in their prefix's commonest category, vs the same codes shuffled",
     "well above the random column; 1.0 = every prefix holds one category"),
    ("adjacent pairs share / random / lift", "how often consecutive train items share a prefix, vs chance "
     "(popularity-matched); lift = share / random",
     "above 1: the codes follow what users buy together; 1 = no better than chance"),
)


def guide_lines() -> list[str]:
    """The metric guide as short lines (``figure: meaning; good: value``) for the terminal."""
    return [f"{name}: {meaning}; good: {good}" for name, meaning, good in METRIC_GUIDE]
