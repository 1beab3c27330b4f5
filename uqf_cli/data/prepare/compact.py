"""The documented cleaning done on compact interactions (arrays over interned ids).

Large review dumps (Amazon) are streamed line by line into
:class:`~uqf_cli.data.prepare.raw.CompactInteractions`: each user and item id is stored once and each
line costs 16 bytes (user and item index, time), so memory follows the numbers of users and items
rather than the size of the dump. :func:`clean_compact` applies exactly the
steps of :func:`uqf_cli.data.prepare.cleaning.clean_interactions` (same items, sequences and counts).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from uqf_cli.data.prepare.raw import UNTITLED_OK, CompactInteractions, RawDataset, natural_key


def clean_compact(raw: RawDataset, kcore_k: int, dedup: bool, max_history: int | None) -> tuple[
    dict[str, dict[str, Any]], dict[str, list[str]], dict[str, Any]
]:
    """The cleaning of ``clean_interactions`` on compact interactions: (items, sequences, counts)."""
    x = raw.interactions
    assert isinstance(x, CompactInteractions)
    counts: dict[str, Any] = {"interactions_read": len(x), "items_read": len(raw.items)}
    titled = {i for i, f in raw.items.items() if raw.format in UNTITLED_OK or f.get("title")}
    counts["items_without_title"] = len(raw.items) - len(titled)
    item_ok = np.array([iid in titled for iid in x.items], dtype=bool)
    rows = np.nonzero(item_ok[x.item])[0] if len(x) else np.zeros(0, dtype=np.int64)
    counts["interactions_without_item_text"] = len(x) - len(rows)
    first_row = np.full(len(x.users), len(x), dtype=np.int64)  # users are listed in order of first titled row
    np.minimum.at(first_row, x.user[rows], rows)
    rows = rows[np.lexsort((rows, x.time[rows], x.user[rows]))]  # per user, by time, equal times in file order
    if dedup:
        rows, counts["duplicates_removed"] = _first_of_each_pair(rows, x)
    rows, counts["kcore_rounds"] = _kcore(rows, x, kcore_k)
    if max_history:
        rows, counts["interactions_cut_by_max_history"] = _last_per_user(rows, x, max_history)
        if kcore_k > 1:
            per_item = np.bincount(x.item[rows], minlength=len(x.items))
            counts["items_below_kcore_after_max_history"] = int(((per_item > 0) & (per_item < kcore_k)).sum())
    sequences = _sequences(rows, x, first_row)
    used = {x.items[i] for i in np.unique(x.item[rows]).tolist()}
    items = {i: f for i, f in raw.items.items() if i in used}
    if raw.format != "lcrec":
        items = {i: items[i] for i in sorted(items, key=natural_key)}
    counts["items_without_interactions"] = len(titled) - len(items)
    return items, sequences, counts


def _first_of_each_pair(rows: np.ndarray, x: CompactInteractions) -> tuple[np.ndarray, int]:
    """Keep each (user, item) pair's first row in the current (chronological) order."""
    key = x.user[rows].astype(np.int64) * max(1, len(x.items)) + x.item[rows]
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(len(rows), dtype=bool)
    keep[first] = True
    return rows[keep], int(len(rows) - len(first))


def _kcore(rows: np.ndarray, x: CompactInteractions, k: int) -> tuple[np.ndarray, int]:
    """Iterative k-core as in ``cleaning.kcore``, with the same round count."""
    if k <= 1:
        return rows, 0
    n_users, n_items = len(x.users), len(x.items)
    rounds = 0
    while True:
        rounds += 1
        users_before = np.count_nonzero(np.bincount(x.user[rows], minlength=n_users))
        per_item = np.bincount(x.item[rows], minlength=n_items)
        weak = (per_item > 0) & (per_item < k)
        kept = rows[~weak[x.item[rows]]]
        per_user = np.bincount(x.user[kept], minlength=n_users)
        nxt = kept[per_user[x.user[kept]] >= k]
        if np.count_nonzero(per_user >= k) == users_before and not weak.any():
            return nxt, rounds
        rows = nxt


def _user_groups(rows: np.ndarray, x: CompactInteractions) -> tuple[np.ndarray, np.ndarray]:
    """Start and end positions of each user's run of rows (rows are grouped by user)."""
    u = x.user[rows]
    starts = np.concatenate([[0], np.nonzero(np.diff(u))[0] + 1]) if len(u) else np.zeros(0, dtype=np.int64)
    ends = np.concatenate([starts[1:], [len(u)]]) if len(u) else starts
    return starts.astype(np.int64), ends.astype(np.int64)


def _last_per_user(rows: np.ndarray, x: CompactInteractions, max_history: int) -> tuple[np.ndarray, int]:
    starts, ends = _user_groups(rows, x)
    sizes = ends - starts
    cut = int(np.maximum(0, sizes - max_history).sum())
    from_end = np.repeat(ends, sizes) - np.arange(len(rows))
    return rows[from_end <= max_history], cut


def _sequences(rows: np.ndarray, x: CompactInteractions, first_row: np.ndarray) -> dict[str, list[str]]:
    """Item ids per user, users in natural order (ties by first titled row, as the list-based path)."""
    starts, ends = _user_groups(rows, x)
    users = x.user[rows[starts]].tolist() if len(starts) else []
    groups = sorted(zip(users, starts.tolist(), ends.tolist(), strict=True),
                    key=lambda g: (natural_key(x.users[g[0]]), int(first_row[g[0]])))
    items = x.items
    return {x.users[u]: [items[i] for i in x.item[rows[s:e]].tolist()] for u, s, e in groups}
