"""The cleaning every format gets (docs/prepare.md lists the steps): text of HTML and whitespace, then
interactions: items without text dropped, chronological order, dedup, iterative k-core, history cap."""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from uqf_cli.data.prepare.compact import clean_compact
from uqf_cli.data.prepare.raw import UNTITLED_OK, CompactInteractions, Interaction, RawDataset, natural_key

_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>", re.S)


def clean_text(value: Any) -> str:
    """HTML tags and entities removed, whitespace collapsed; lists joined with spaces."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(t for t in (clean_text(v) for v in value) if t)
    text = str(value)
    text = _TAG.sub(" ", text)
    text = html.unescape(text)
    return " ".join(text.split())


def clean_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Clean every string or list field; keep numbers and booleans as they are."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if isinstance(v, (str, list, tuple)) or v is None:
            out[k] = clean_text(v)
        else:
            out[k] = v
    return out


def join_categories(value: Any) -> str:
    """Category lists (Amazon) as one ', '-joined string, as LC-Rec stores them."""
    if isinstance(value, list):
        flat: list[str] = []
        for v in value:
            flat.extend(v if isinstance(v, list) else [v])
        return ", ".join(dict.fromkeys(t for t in (clean_text(v) for v in flat) if t))
    return clean_text(value)



def chronological_sequences(interactions: Iterable[Interaction]) -> dict[str, list[Interaction]]:
    """Per user, interactions sorted by time; equal times keep file order (stable sort)."""
    by_user: dict[str, list[Interaction]] = {}
    for x in interactions:
        by_user.setdefault(x.user, []).append(x)
    return {u: sorted(xs, key=lambda x: (x.time, x.order)) for u, xs in by_user.items()}


def deduplicate(seqs: dict[str, list[Interaction]]) -> tuple[dict[str, list[Interaction]], int]:
    """Keep each (user, item) pair's first (earliest) interaction; return the number removed."""
    out, removed = {}, 0
    for u, xs in seqs.items():
        seen: set[str] = set()
        kept = []
        for x in xs:
            if x.item in seen:
                removed += 1
                continue
            seen.add(x.item)
            kept.append(x)
        out[u] = kept
    return out, removed


def kcore(seqs: dict[str, list[Interaction]], k: int) -> tuple[dict[str, list[Interaction]], int]:
    """Iterative k-core: repeat dropping users and items with < k interactions until stable.

    Returns the filtered sequences and the number of rounds taken. ``k <= 1`` only removes empty users.
    """
    current = {u: xs for u, xs in seqs.items() if xs}
    rounds = 0
    if k <= 1:
        return current, rounds
    while True:
        rounds += 1
        item_count = Counter(x.item for xs in current.values() for x in xs)
        weak_items = {i for i, c in item_count.items() if c < k}
        nxt = {}
        for u, xs in current.items():
            kept = [x for x in xs if x.item not in weak_items] if weak_items else xs
            if len(kept) >= k:
                nxt[u] = kept
        if len(nxt) == len(current) and not weak_items:
            return nxt, rounds
        current = nxt


def clean_interactions(raw: RawDataset, kcore_k: int, dedup: bool, max_history: int | None) -> tuple[
    dict[str, dict[str, Any]], dict[str, list[str]], dict[str, Any]
]:
    """Apply the documented cleaning steps; return (items, sequences, counts of each step)."""
    if isinstance(raw.interactions, CompactInteractions):
        return clean_compact(raw, kcore_k, dedup, max_history)
    counts: dict[str, Any] = {"interactions_read": len(raw.interactions), "items_read": len(raw.items)}
    titled = {i for i, f in raw.items.items() if raw.format in UNTITLED_OK or f.get("title")}
    counts["items_without_title"] = len(raw.items) - len(titled)
    kept = [x for x in raw.interactions if x.item in titled]
    counts["interactions_without_item_text"] = len(raw.interactions) - len(kept)
    seqs = chronological_sequences(kept)
    if dedup:
        seqs, counts["duplicates_removed"] = deduplicate(seqs)
    seqs, counts["kcore_rounds"] = kcore(seqs, kcore_k)
    if max_history:
        counts["interactions_cut_by_max_history"] = sum(max(0, len(xs) - max_history) for xs in seqs.values())
        seqs = {u: xs[-max_history:] for u, xs in seqs.items()}
        if kcore_k > 1:
            per_item = Counter(x.item for xs in seqs.values() for x in xs)
            counts["items_below_kcore_after_max_history"] = sum(1 for c in per_item.values() if c < kcore_k)
    sequences = {u: [x.item for x in seqs[u]] for u in sorted(seqs, key=natural_key)}
    used = {i for s in sequences.values() for i in s}
    items = {i: f for i, f in raw.items.items() if i in used}
    if raw.format != "lcrec":  # raw ids: a readable, deterministic order
        items = {i: items[i] for i in sorted(items, key=natural_key)}
    counts["items_without_interactions"] = len(titled) - len(items)
    return items, sequences, counts
