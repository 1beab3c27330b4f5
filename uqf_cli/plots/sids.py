"""Pictures of a tokenization: per-level code usage, items per prefix, and a 2-D map of the items.

The map is a PCA projection (exact SVD of the centred embeddings, each axis signed so that its
largest loading is positive: the same input always gives the same picture) of whichever embeddings
are given, with the largest level-1 codes in colour (a code that groups items that belong together
shows as a tight patch), each labelled as the terminal tree labels it (its token and its commonest
category, or title words); the other items are grey. Labels are placed greedily so that none overlaps
another. With a second tokenization the figure has one block per tokenization, both mapped with the
same embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uqf_cli.core.errors import InputError
from uqf_cli.evaluation.inspect_sids import Inspection, group_label, prefix_groups
from uqf_cli.files import EmbeddingFile, SidTable, level_token

MAP_CODES = 10  # level-1 codes drawn in colour on the map (the largest), each with its label
LABEL_CHARS = 40
LABEL_RADII = (6, 18, 32, 48, 68, 92)  # points: the rings of candidate label offsets, nearest first
LABEL_PAD_PX = 2.0
PALETTE = "tab10"
HTML_MAP_DPI = 150  # the HTML map is drawn sharper than the page shows it, for its click-to-zoom


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
    """Items per code at each semantic level, codes sorted by frequency (a flat line is even use).

    The dedup code is left out: it only numbers the items that share a prefix (almost all of them get code
    0), so its line would dwarf the levels that carry meaning; the title says it is there.
    """
    for lv in range(table.semantic_levels):
        size = int(table.codebook_sizes[lv])
        counts = np.sort(np.bincount(table.codes[:, lv], minlength=size))[::-1]
        used = int((counts > 0).sum())
        p = counts[counts > 0] / counts.sum()
        perplexity = float(np.exp(-(p * np.log(p)).sum()))
        ax.plot(np.arange(1, used + 1), counts[:used], lw=1.5,
                label=f"level {lv + 1}: {used}/{size} used, perplexity {perplexity:.0f}")
    ax.set_yscale("log")
    note = f" ({table.depth}; dedup code not drawn)" if table.dedup_level else f" ({table.depth})"
    _label(ax, "code rank (most used first)", "items with the code", "Per-level code usage" + note)


def draw_prefix_sizes(ax: Any, table: SidTable) -> None:
    """At each depth, the share of items that sit in prefixes of each size (size 1 = a unique prefix)."""
    n = len(table.item_ids)
    for d in range(1, table.semantic_levels + 1):  # with the dedup code every prefix is one item
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


@dataclass
class PendingLabels:
    """Labels of a map waiting for placement (after the figure's layout is final)."""

    ax: Any
    anchors: list[np.ndarray]
    texts: list[str]
    colours: list[Any]


def code_label(ins: Inspection, code: int) -> str:
    """A level-1 code named as the terminal tree and the HTML name it: token and category (or title words)."""
    table = ins.table
    members = [table.item_ids[r] for r in np.flatnonzero(table.codes[:, 0] == code).tolist()]
    label = group_label(members, ins.dataset)
    if len(label) > LABEL_CHARS:
        label = label[: LABEL_CHARS - 3] + "..."
    return f"{level_token(0, code)} {label}".strip()


def draw_item_map(ax: Any, ins: Inspection, m: ItemMap) -> PendingLabels:
    """The 2-D map: the largest level-1 codes in colour, every other item in grey; returns the code labels
    for :func:`place_labels` (to be placed once the figure is laid out)."""
    from matplotlib import colormaps

    cmap = colormaps[PALETTE]
    size = float(np.clip(20_000 / len(m.rows), 6, 30))  # bigger dots when there are few
    ax.scatter(m.xy[:, 0], m.xy[:, 1], c="#d0d0d0", s=size * 0.6, linewidths=0)
    picks = representative_items(ins, m)
    codes = ins.table.codes[m.rows, 0]
    pending = PendingLabels(ax, [], [], [])
    for k, (_, xy, code) in enumerate(picks):
        colour = cmap(k % cmap.N)
        members = codes == code
        ax.scatter(m.xy[members, 0], m.xy[members, 1], color=colour, s=size * 1.6, linewidths=0, alpha=0.9)
        pending.anchors.append(xy)
        pending.texts.append(code_label(ins, code))
        pending.colours.append(colour)
    ax.set_title(f"{len(m.rows):,} items on the 2 principal axes of {m.source}: the {len(picks)} largest "
                 "level-1 codes in colour", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return pending


def _candidate_offsets() -> list[tuple[float, float]]:
    """Label offsets in points, nearest first; diagonals before the axis directions at each radius."""
    directions = [(1, 1), (-1, 1), (1, -1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
    return [(r * dx, r * dy) for r in LABEL_RADII for dx, dy in directions]


def _alignment(dx: float, dy: float) -> dict[str, str]:
    """Anchor the text on the side facing its point, so the offset is the gap between point and text."""
    return {"ha": "left" if dx > 0 else "right" if dx < 0 else "center",
            "va": "bottom" if dy > 0 else "top" if dy < 0 else "center"}


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


def label_box(text: Any, renderer: Any) -> Any:
    """The display-space box of a label's text (without its arrow), padded by the label's background box."""
    from matplotlib.text import Annotation, Text

    if isinstance(text, Annotation):
        text.update_positions(renderer)  # an annotation's text is moved to its offset only when drawn
    return Text.get_window_extent(text, renderer).padded(LABEL_PAD_PX)


def place_labels(pending: PendingLabels) -> list[Any]:
    """Greedy label placement: each label (largest code first) takes the nearest candidate offset where it stays
    inside the axes and overlaps no label placed before it; with no free spot, the one overlapping least.
    Labels away from their point get a thin leader line. Returns the annotation artists."""
    ax = pending.ax
    fig = ax.figure
    fig.canvas.draw()  # final layout: boxes are measured where they will be drawn
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    boxes: list[Any] = []
    for xy, text, colour in zip(pending.anchors, pending.texts, pending.colours, strict=True):
        best: tuple[float, Any, Any] | None = None
        for n, (dx, dy) in enumerate(_candidate_offsets()):
            far = n >= 8  # beyond the first ring: draw a leader line to the point
            ann = ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", fontsize=8, color="black",
                              bbox={"boxstyle": "round,pad=0.2", "fc": colour, "alpha": 0.45, "lw": 0},
                              arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "#555555"} if far else None,
                              **_alignment(dx, dy))
            ann.set_in_layout(False)  # the layout must not move when labels come and go
            box = label_box(ann, renderer)
            outside = (box.width * box.height) - _overlap(box, frame)
            cost = outside + sum(_overlap(box, b) for b in boxes)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, box)
            else:
                ann.remove()
            if cost == 0:
                break
        assert best is not None
        placed.append(best[1])
        boxes.append(best[2])
    return placed


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


def _stats_row(row: Any, ins: Inspection, named: bool) -> None:
    draw_code_usage(row[0], ins.table)
    draw_prefix_sizes(row[1], ins.table)
    if named:
        name = Path(ins.table.path).name if ins.table.path else "SIDs"
        row[0].set_title(f"{name}: per-level code usage")
        row[1].set_title(f"{name}: items per prefix")


def sids_figure(inspections: list[Inspection], map_emb: EmbeddingFile | None = None) -> Any:
    """Per tokenization: code usage and items per prefix side by side, and (with embeddings) the item map
    below them at the full width of the figure, its labels placed so that none overlaps another."""
    from uqf_cli.plots import new_figure

    emb = map_emb or map_source(inspections[0])
    rows_each = 2 if emb is not None else 1
    fig = new_figure(14.0, (13.0 if emb is not None else 5.0) * len(inspections))
    grid = fig.add_gridspec(rows_each * len(inspections), 2, height_ratios=[1, 1.9] * len(inspections)
                            if emb is not None else None)
    pending = []
    for n, ins in enumerate(inspections):
        top = n * rows_each
        _stats_row([fig.add_subplot(grid[top, 0]), fig.add_subplot(grid[top, 1])], ins, len(inspections) > 1)
        if emb is not None:
            pending.append(draw_item_map(fig.add_subplot(grid[top + 1, :]), ins, item_map(ins.table, emb)))
    for p in pending:  # after every panel exists: the layout no longer moves
        place_labels(p)
    return fig


def stats_figure(inspections: list[Inspection]) -> Any:
    """Code usage and items per prefix, one row per tokenization (the HTML report's first picture)."""
    from uqf_cli.plots import new_figure

    fig = new_figure(14.0, 5.0 * len(inspections))
    axes = fig.subplots(len(inspections), 2, squeeze=False)
    for row, ins in zip(axes, inspections, strict=True):
        _stats_row(row, ins, len(inspections) > 1)
    return fig


def map_figure(ins: Inspection, emb: EmbeddingFile) -> Any:
    """One tokenization's item map on its own figure (the HTML report shows it at full page width)."""
    from uqf_cli.plots import new_figure

    fig = new_figure(14.0, 9.0)
    pending = draw_item_map(fig.add_subplot(), ins, item_map(ins.table, emb))
    name = Path(ins.table.path).name if ins.table.path else "SIDs"
    pending.ax.set_title(f"{name}: " + pending.ax.get_title(), fontsize=10)
    place_labels(pending)
    return fig


def write_sids_pictures(inspections: list[Inspection], figures: list[dict[str, Any]], provenance: dict[str, Any],
                        plot: str | Path | None = None, html_path: str | Path | None = None,
                        map_emb: EmbeddingFile | None = None, force: bool = False) -> list[Path]:
    """Draw the figure once and write it as ``plot`` and/or inside the HTML report ``html_path``."""
    from uqf_cli.plots import figure_bytes, save_figure
    from uqf_cli.plots.html import report_html, write_report

    written = []
    if plot is not None:
        written.append(save_figure(sids_figure(inspections, map_emb), plot, provenance, force))
    if html_path is not None:
        emb = map_emb or map_source(inspections[0])
        stats = figure_bytes(stats_figure(inspections), "png")
        maps = [figure_bytes(map_figure(ins, emb), "png", HTML_MAP_DPI) for ins in inspections] if emb else []
        page = report_html(inspections, figures, stats, provenance, maps)
        written.append(write_report(html_path, page, force))
    return written
