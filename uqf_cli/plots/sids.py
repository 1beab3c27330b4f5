"""Pictures of a tokenization: per-level code usage, items per prefix, and a 2-D map of the items.

The map is a PCA projection (exact SVD of the centred embeddings, each axis signed so that its
largest loading is positive: the same input always gives the same picture) of whichever embeddings
are given, with the largest level-1 codes in colour (a code that groups items that belong together
shows as a tight patch) and the title of one typical item of each; the other items are grey. With
a second tokenization the figure has one row per tokenization, both mapped with the same embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uqf_cli.core.errors import InputError
from uqf_cli.evaluation.inspect_sids import Inspection, prefix_groups
from uqf_cli.files import EmbeddingFile, SidTable, level_token

MAP_CODES = 10  # level-1 codes drawn in colour on the map (the largest), each with one title
TITLE_CHARS = 32
PALETTE = "tab10"


@dataclass
class ItemMap:
    """2-D positions of the items of a SIDs table that the embedding file holds."""

    xy: np.ndarray  # (n, 2)
    rows: np.ndarray  # the table rows they belong to
    source: str  # the embedding file's name


def projection_2d(embeddings: np.ndarray) -> np.ndarray:
    """First two principal components of the rows (deterministic signs); zeros for a missing axis."""
    x = np.asarray(embeddings, dtype=np.float64)
    x = x - x.mean(axis=0)
    out = np.zeros((len(x), 2))
    if len(x) < 2:
        return out
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    signs[signs == 0] = 1
    out[:, : len(comps)] = x @ (comps * signs[:, None]).T
    return out


def item_map(table: SidTable, emb: EmbeddingFile) -> ItemMap:
    """Project the embeddings of the table's items (matched by id) to 2-D."""
    index = emb.index()
    rows = np.asarray([k for k, iid in enumerate(table.item_ids) if iid in index], dtype=np.int64)
    if len(rows) == 0:
        raise InputError(emb.path, f"shares no item id with {table.path}")
    vectors = emb.embeddings[[index[table.item_ids[k]] for k in rows.tolist()]].double().numpy()
    name = emb.path.name if emb.path is not None else "embeddings"
    return ItemMap(projection_2d(vectors), rows, name)


def map_source(ins: Inspection, explicit: EmbeddingFile | None = None) -> EmbeddingFile | None:
    """The embeddings to map: the explicit file, else the text embeddings, else the collaborative ones."""
    return explicit or ins.text or ins.collab


# --------------------------------------------------------------------------------------------
# Panels
# --------------------------------------------------------------------------------------------


def draw_code_usage(ax: Any, table: SidTable) -> None:
    """Items per code at each level, codes sorted by frequency (a flat line is even use)."""
    for lv in range(table.levels):
        size = int(table.codebook_sizes[lv])
        counts = np.sort(np.bincount(table.codes[:, lv], minlength=size))[::-1]
        used = int((counts > 0).sum())
        p = counts[counts > 0] / counts.sum()
        perplexity = float(np.exp(-(p * np.log(p)).sum()))
        ax.plot(np.arange(1, used + 1), counts[:used], lw=1.5,
                label=f"level {lv + 1}: {used}/{size} used, perplexity {perplexity:.0f}")
    ax.set_yscale("log")
    _label(ax, "code rank (most used first)", "items with the code", "Per-level code usage")


def draw_prefix_sizes(ax: Any, table: SidTable) -> None:
    """At each depth, the share of items that sit in prefixes of each size (size 1 = a unique prefix)."""
    n = len(table.item_ids)
    for d in range(1, table.levels + 1):
        sizes = np.bincount(prefix_groups(table.codes, d))
        values, counts = np.unique(sizes, return_counts=True)
        ax.plot(values, values * counts / n, marker="o", ms=3, lw=1.2,
                label=f"depth {d}: {len(sizes):,} prefixes, max {int(sizes.max())}")
    ax.set_xscale("log")
    _label(ax, "items in the prefix", "share of items", "Items per prefix")


def _label(ax: Any, xlabel: str, ylabel: str, title: str) -> None:
    """Axis labels, title, legend and grid in the style the line panels share."""
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def draw_item_map(ax: Any, ins: Inspection, m: ItemMap) -> None:
    """The 2-D map: the largest level-1 codes in colour (one title each), every other item in grey."""
    from matplotlib import colormaps

    cmap = colormaps[PALETTE]
    size = float(np.clip(20_000 / len(m.rows), 6, 30))  # bigger dots when there are few
    ax.scatter(m.xy[:, 0], m.xy[:, 1], c="#d0d0d0", s=size * 0.6, linewidths=0)
    picks = representative_items(ins, m)
    codes = ins.table.codes[m.rows, 0]
    for k, (row, xy, code) in enumerate(picks):
        colour = cmap(k % cmap.N)
        members = codes == code
        ax.scatter(m.xy[members, 0], m.xy[members, 1], color=colour, s=size * 1.6, linewidths=0, alpha=0.9)
        iid = ins.table.item_ids[row]
        title = ins.dataset.title(iid) if ins.dataset is not None else iid
        label = f"{level_token(0, code)} {title[:TITLE_CHARS]}" + ("..." if len(title) > TITLE_CHARS else "")
        ax.annotate(label, xy, xytext=(4, 4), textcoords="offset points", fontsize=7, color="black",
                    bbox={"boxstyle": "round,pad=0.2", "fc": colour, "alpha": 0.35, "lw": 0})
    ax.set_title(f"{len(m.rows):,} items on the 2 principal axes of {m.source}: the {len(picks)} largest "
                 "level-1 codes in colour", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def representative_items(ins: Inspection, m: ItemMap, n: int = MAP_CODES) -> list[tuple[int, np.ndarray, int]]:
    """(row, position, code) of the item nearest the median position of each of the ``n`` largest level-1 codes."""
    codes = ins.table.codes[m.rows, 0]
    values, counts = np.unique(codes, return_counts=True)
    order = sorted(zip(values.tolist(), counts.tolist(), strict=True), key=lambda vc: (-vc[1], vc[0]))[:n]
    picks = []
    for code, _ in order:
        members = np.flatnonzero(codes == code)
        centre = np.median(m.xy[members], axis=0)
        best = members[int(np.argmin(((m.xy[members] - centre) ** 2).sum(axis=1)))]
        picks.append((int(m.rows[best]), m.xy[best], int(code)))
    return picks


# --------------------------------------------------------------------------------------------
# The figure
# --------------------------------------------------------------------------------------------


def sids_figure(inspections: list[Inspection], map_emb: EmbeddingFile | None = None) -> Any:
    """One row per tokenization: code usage, items per prefix and (with embeddings) the item map."""
    from uqf_cli.plots import new_figure

    emb = map_emb or map_source(inspections[0])
    cols = 3 if emb is not None else 2
    fig = new_figure(6.0 * cols if emb is not None else 12.0, 5.2 * len(inspections))
    widths = [1, 1, 1.6] if emb is not None else [1, 1]
    axes = fig.subplots(len(inspections), cols, squeeze=False, gridspec_kw={"width_ratios": widths})
    for row, ins in zip(axes, inspections, strict=True):
        draw_code_usage(row[0], ins.table)
        draw_prefix_sizes(row[1], ins.table)
        if emb is not None:
            draw_item_map(row[2], ins, item_map(ins.table, emb))
        if len(inspections) > 1:
            name = Path(ins.table.path).name if ins.table.path else "SIDs"
            row[0].set_title(f"{name}: per-level code usage")
    return fig


def write_sids_pictures(inspections: list[Inspection], figures: list[dict[str, Any]], provenance: dict[str, Any],
                        plot: str | Path | None = None, html_path: str | Path | None = None,
                        map_emb: EmbeddingFile | None = None, force: bool = False) -> list[Path]:
    """Draw the figure once and write it as ``plot`` and/or inside the HTML report ``html_path``."""
    from uqf_cli.plots import figure_bytes, save_figure
    from uqf_cli.plots.html import report_html, write_report

    fig = sids_figure(inspections, map_emb)
    written = []
    if plot is not None:
        written.append(save_figure(fig, plot, provenance, force))
    if html_path is not None:
        page = report_html(inspections, figures, figure_bytes(fig, "png"), provenance)
        written.append(write_report(html_path, page, force))
    return written
