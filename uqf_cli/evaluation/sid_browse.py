"""The SID hierarchy as a browser needs it: a prefix's child codes, its items, title search, an item's path.

Pure data (no terminal code), shared by the ``inspect-sids --tui`` explorer and its tests. A *prefix* is a
tuple of codes from level 1 down; ``()`` is the root (every item).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uqf_cli.evaluation.inspect_sids import Inspection, group_label
from uqf_cli.evaluation.recommend import match_titles
from uqf_cli.files import level_token


@dataclass(frozen=True)
class Child:
    """One code under a prefix: its full prefix, item count and label (category or title words)."""

    prefix: tuple[int, ...]
    items: int
    label: str

    @property
    def token(self) -> str:
        return level_token(len(self.prefix) - 1, self.prefix[-1])


@dataclass(frozen=True)
class ItemRow:
    """An item as the explorer lists it."""

    item_id: str
    title: str
    sid: str
    prefix: tuple[int, ...]


class SidBrowser:
    """Children, items and search over one tokenization (with titles when a dataset is given)."""

    def __init__(self, ins: Inspection) -> None:
        self.ins = ins
        self.table = ins.table
        self.levels = self.table.levels
        self.row_of = {iid: r for r, iid in enumerate(self.table.item_ids)}
        self.name = ins.table.path.name if ins.table.path is not None else "SIDs"

    def title(self, item_id: str) -> str:
        return self.ins.dataset.title(item_id) if self.ins.dataset is not None else item_id

    def rows(self, prefix: tuple[int, ...]) -> np.ndarray:
        """Table rows of the items under ``prefix`` (in file order)."""
        if not prefix:
            return np.arange(len(self.table.item_ids))
        return np.flatnonzero((self.table.codes[:, : len(prefix)] == np.asarray(prefix)).all(1))

    def children(self, prefix: tuple[int, ...]) -> list[Child]:
        """The codes one level below ``prefix``, largest first (ties: lower code first)."""
        if len(prefix) >= self.levels:
            return []
        rows = self.rows(prefix)
        codes, counts = np.unique(self.table.codes[rows, len(prefix)], return_counts=True)
        order = sorted(zip(codes.tolist(), counts.tolist(), strict=True), key=lambda cc: (-cc[1], cc[0]))
        column = self.table.codes[rows, len(prefix)]
        out = []
        for code, count in order:
            members = [self.table.item_ids[r] for r in rows[column == code].tolist()]
            out.append(Child((*prefix, int(code)), int(count), group_label(members, self.ins.dataset)))
        return out

    def item(self, row: int) -> ItemRow:
        iid = self.table.item_ids[row]
        codes = tuple(int(c) for c in self.table.codes[row])
        return ItemRow(iid, self.title(iid), "".join(self.table.tokens(row)), codes)

    def items(self, prefix: tuple[int, ...], limit: int | None = None) -> list[ItemRow]:
        """The items under ``prefix`` (at most ``limit``), in file order."""
        rows = self.rows(prefix)
        return [self.item(r) for r in rows[:limit].tolist()]

    def search(self, text: str, limit: int | None = None) -> list[ItemRow]:
        """Items whose title (or id, without a dataset) matches ``text``: substring first, then every word."""
        found = match_titles([(iid, self.title(iid)) for iid in self.table.item_ids], text)
        return [self.item(self.row_of[i]) for i in found[:limit]]

    def path_of(self, item_id: str) -> tuple[int, ...] | None:
        """The item's full code tuple (its deepest prefix), or ``None`` when this file does not hold it."""
        row = self.row_of.get(item_id)
        return None if row is None else tuple(int(c) for c in self.table.codes[row])

    def sibling_prefix(self, item_id: str) -> tuple[int, ...]:
        """The item's deepest prefix that holds another item too (depth 1 at least): its closest siblings."""
        path = self.path_of(item_id)
        if path is None:
            raise KeyError(item_id)
        for depth in range(len(path), 1, -1):
            if len(self.rows(path[:depth])) > 1:
                return path[:depth]
        return path[:1]

    def prefix_text(self, prefix: tuple[int, ...]) -> str:
        return "".join(level_token(lv, c) for lv, c in enumerate(prefix)) or "all items"
