"""``uqf inspect-sids``: a tokenization's hierarchy, statistics and consistency.

Every figure is an importable function (the benchmarks call them); their definitions are in
docs/inspect-sids.md. A "prefix of depth ``d``" is an item's first ``d`` codes.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.tree import Tree

from uqf_cli.core.config_field import check_ranges, opt
from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.core.runtime import warn
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import EmbeddingFile, SidTable, level_token, load_embeddings, parse_token, read_sids
from uqf_cli.quantize import collision_rate, level_stats

PURITY_PERMUTATIONS = 5
MIN_EXPECTED_PAIRS = 1.0  # adjacency lift floor: expected shared pairs in the sample under the random model
LIFT_NOTE = ("n/a: the random expectation is {expected:.2g} shared pairs out of {pairs:,}, below the floor of "
             "1 expected pair, so the ratio would mean nothing")
STOPWORDS = frozenset({
    "a", "an", "and", "the", "of", "for", "with", "in", "on", "to", "by", "from", "at", "or", "pack", "pk",
    "count", "ct", "inch", "inches", "oz", "lb", "lbs", "set", "box", "black", "white", "blue", "red", "per", "each",
})

# --------------------------------------------------------------------------------------------
# Grouping helpers
# --------------------------------------------------------------------------------------------


def prefix_groups(codes: np.ndarray, depth: int) -> np.ndarray:
    """Group index per item for the depth-``depth`` prefix (0..G-1, in order of first appearance)."""
    if depth < 1 or depth > codes.shape[1]:
        raise ValueError(f"depth must be in 1..{codes.shape[1]}, got {depth}")
    _, inverse = np.unique(codes[:, :depth], axis=0, return_inverse=True)
    return np.asarray(inverse).reshape(-1)


def items_per_prefix(codes: np.ndarray, depth: int) -> dict[str, float]:
    """Max and mean items over the non-empty depth-``depth`` prefixes, how many there are, and the
    share of items in a prefix with others (the collision rate of the codes cut to ``depth`` levels)."""
    counts = np.bincount(prefix_groups(codes, depth))
    shared = float(counts[counts > 1].sum() / counts.sum())
    return {"prefixes": len(counts), "max": int(counts.max()), "mean": float(counts.mean()), "shared": shared}


def code_summary(table: SidTable) -> dict[str, Any]:
    """Items, levels, codebook sizes, per-level usage, collisions, items per prefix at every depth."""
    return {
        "items": len(table.item_ids),
        "levels": table.semantic_levels,
        "dedup_level": table.dedup_level,
        "depth": table.depth,
        "codebook_sizes": list(table.codebook_sizes),
        "per_level": level_stats(table.codes, table.codebook_sizes),
        "collision_rate": collision_rate(table.codes),
        "items_per_prefix": {str(d): items_per_prefix(table.codes, d) for d in range(1, table.levels + 1)},
    }


# --------------------------------------------------------------------------------------------
# Consistency metrics
# --------------------------------------------------------------------------------------------


def cosine_consistency(codes: np.ndarray, embeddings: torch.Tensor | np.ndarray, depth: int) -> dict[str, float]:
    """Mean cosine of item pairs sharing a depth-``depth`` prefix vs over all pairs (exact), and the lift."""
    u = torch.as_tensor(np.asarray(embeddings), dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n = u.shape[0]
    groups = torch.as_tensor(prefix_groups(codes, depth))
    sums = torch.zeros(int(groups.max()) + 1, u.shape[1], dtype=torch.float64).index_add_(0, groups, u)
    sizes = torch.bincount(groups).double()
    self_sim = u.pow(2).sum(1)  # 1 for non-zero rows
    self_by_group = torch.zeros_like(sizes).index_add_(0, groups, self_sim)
    within_pairs = float((sizes * (sizes - 1) / 2).sum())
    within_sum = float((sums.pow(2).sum(1) - self_by_group).sum() / 2)
    all_pairs = n * (n - 1) / 2
    all_sum = float((u.sum(0).pow(2).sum() - self_sim.sum()) / 2)
    within = within_sum / within_pairs if within_pairs else float("nan")
    rand = all_sum / all_pairs if all_pairs else float("nan")
    lift = (within - rand) / (1 - rand) if within_pairs and rand < 1 else float("nan")
    return {"within": within, "random": rand, "lift": lift, "pairs": int(within_pairs)}


def category_purity(codes: np.ndarray, categories: list[str | None], depth: int, seed: int = 0) -> dict[str, float]:
    """Item-weighted share of items matching their prefix's most common category (groups of >= 2
    items with a category), and the same for codes shuffled across items."""
    keep = np.asarray([c is not None and c != "" for c in categories])
    if keep.sum() < 2:
        return {"purity": float("nan"), "random": float("nan"), "items": int(keep.sum())}
    cats = np.asarray([c for c, k in zip(categories, keep, strict=True) if k], dtype=object)
    groups = prefix_groups(codes[keep], depth)
    observed = _purity(groups, cats)
    rng = np.random.default_rng(seed)
    shuffled = [_purity(groups[rng.permutation(len(groups))], cats) for _ in range(PURITY_PERMUTATIONS)]
    return {"purity": observed, "random": float(np.mean(shuffled)), "items": int(keep.sum())}


def _purity(groups: np.ndarray, cats: np.ndarray) -> float:
    members: dict[int, list[str]] = defaultdict(list)
    for g, c in zip(groups.tolist(), cats.tolist(), strict=True):
        members[g].append(c)
    hit = total = 0
    for cs in members.values():
        if len(cs) < 2:
            continue
        hit += Counter(cs).most_common(1)[0][1]
        total += len(cs)
    return hit / total if total else float("nan")


def adjacent_pairs(sequences: dict[str, list[str]], index: dict[str, int]) -> np.ndarray:
    """Rows ``(i, j)`` of consecutive distinct items in the sequences, for items present in ``index``."""
    pairs = []
    for seq in sequences.values():
        for a, b in itertools.pairwise(seq):
            if a != b and a in index and b in index:
                pairs.append((index[a], index[b]))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def collaborative_consistency(codes: np.ndarray, pairs: np.ndarray, depth: int) -> dict[str, float]:
    """Share of adjacent train pairs sharing a depth-``depth`` prefix vs its popularity-matched expectation."""
    if len(pairs) == 0:
        return {"share": float("nan"), "random": float("nan"), "lift": float("nan"), "pairs": 0}
    groups = prefix_groups(codes, depth)
    share = float((groups[pairs[:, 0]] == groups[pairs[:, 1]]).mean())
    n = len(codes)
    p_left = np.bincount(pairs[:, 0], minlength=n) / len(pairs)
    p_right = np.bincount(pairs[:, 1], minlength=n) / len(pairs)
    g = int(groups.max()) + 1
    same_group = float((np.bincount(groups, p_left, g) * np.bincount(groups, p_right, g)).sum())
    same_item = float((p_left * p_right).sum())
    rand = (same_group - same_item) / (1 - same_item) if same_item < 1 else float("nan")
    out: dict[str, Any] = {"share": share, "random": rand, "lift": share / rand if rand > 0 else float("nan"),
                           "pairs": len(pairs), "expected_shared_pairs": rand * len(pairs)}
    if not rand * len(pairs) >= MIN_EXPECTED_PAIRS:  # a ratio over a near-zero expectation means nothing
        out["lift"] = None
        out["lift_note"] = LIFT_NOTE.format(expected=rand * len(pairs), pairs=len(pairs))
    return out


# --------------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------------


@dataclass
class Inspection:
    """A loaded tokenization with whatever side information was given."""

    table: SidTable
    dataset: Dataset | None = None
    text: EmbeddingFile | None = None
    collab: EmbeddingFile | None = None


def load_inspection(sids: str | Path, dataset: str | Path | None = None, text: str | Path | None = None,
                    collab: str | Path | None = None) -> Inspection:
    """Read the SIDs file and the optional dataset and embedding files (warns on fingerprint mismatch)."""
    table = read_sids(sids)
    ds = Dataset.load(dataset) if dataset else None
    if ds is not None and table.dataset_fingerprint and ds.fingerprint and table.dataset_fingerprint != ds.fingerprint:
        have = set(table.item_ids)
        missing = sum(1 for i in ds.items if i not in have)
        if missing:  # another catalogue: the statistics would silently mix two datasets
            raise InputError(sids, f"made from dataset {table.dataset_fingerprint}, {dataset} is {ds.fingerprint} "
                                   f"and {missing} of its items have no SID")
        warn(f"{sids} was made from dataset {table.dataset_fingerprint}, {dataset} is {ds.fingerprint}")
    if ds is not None and not set(table.item_ids) & set(ds.items):
        raise InputError(dataset, f"shares no item id with {sids}")
    text_file = load_embeddings(text) if text else None
    collab_file = load_embeddings(collab) if collab else None
    for path, f in ((text, text_file), (collab, collab_file)):
        if f is not None and not set(table.item_ids) & set(f.item_ids):
            raise InputError(path, f"shares no item id with {sids}")
    return Inspection(table, ds, text_file, collab_file)


def _aligned(table: SidTable, emb: EmbeddingFile) -> tuple[np.ndarray, torch.Tensor]:
    present = set(emb.item_ids)
    rows = [k for k, iid in enumerate(table.item_ids) if iid in present]
    return table.codes[rows], emb.rows_for([table.item_ids[k] for k in rows])


def metrics(ins: Inspection, seed: int = 0) -> dict[str, Any]:
    """Every figure: the code summary plus whichever consistency metrics the inputs allow."""
    table = ins.table
    out: dict[str, Any] = {"sids": str(table.path) if table.path else None, **code_summary(table)}
    depths = list(range(1, table.levels))  or [1]  # the full-SID depth is the collision rate
    if ins.text is not None:
        codes, emb = _aligned(table, ins.text)
        out["semantic_cosine"] = {str(d): cosine_consistency(codes, emb, d) for d in depths}
    if ins.collab is not None:
        codes, emb = _aligned(table, ins.collab)
        out["collab_cosine"] = {str(d): cosine_consistency(codes, emb, d) for d in depths}
    if ins.dataset is not None:
        ds = ins.dataset
        cats = [_category(ds.items.get(iid, {})) for iid in table.item_ids]
        if any(cats):
            out["category_purity"] = {str(d): category_purity(table.codes, cats, d, seed) for d in depths}
        pairs = adjacent_pairs(ds.train_sequences(), {iid: k for k, iid in enumerate(table.item_ids)})
        out["collab_adjacency"] = {str(d): collaborative_consistency(table.codes, pairs, d) for d in depths}
    return out


def _category(fields: dict[str, Any]) -> str | None:
    c = fields.get("categories")
    if isinstance(c, list):
        c = ", ".join(str(x) for x in c)
    return str(c).strip() or None if c else None


# --------------------------------------------------------------------------------------------
# Navigation: prefixes, items, labels, the tree
# --------------------------------------------------------------------------------------------


PREFIX_HINT = "expected codes like 12,3 or tokens like <a_12><b_3>"


def prefix_codes(value: str) -> tuple[int, ...]:
    """``"12,3"``, ``"12 3"`` or the tree's own form ``"<a_12><b_3>"`` -> ``(12, 3)`` (tokens must start at
    level a and go in level order; a malformed value is an :class:`OptionError` naming ``--prefix``)."""
    text = value.strip()
    if "<" in text or ">" in text:
        tokens = re.findall(r"<([^<>]*)>", text)
        if not tokens or re.sub(r"<[^<>]*>", "", text).strip(" ,"):
            raise OptionError("--prefix", f"{PREFIX_HINT}, got {value!r}")
        codes = []
        for level, token in enumerate(tokens):
            try:
                got_level, code = parse_token(f"<{token}>")
            except ValueError:
                raise OptionError("--prefix", f"{PREFIX_HINT}, got {value!r}") from None
            if got_level != level:
                raise OptionError("--prefix", f"token <{token}> is at position {level + 1}, but a prefix starts "
                                              f"at level a and goes in order ({level_token(level, code)} here)")
            codes.append(code)
        return tuple(codes)
    try:
        return tuple(int(v) for v in re.split(r"[,\s]+", text) if v)
    except ValueError as e:
        raise OptionError("--prefix", f"{PREFIX_HINT}, got {value!r}") from e


def parse_prefix(value: str | None, table: SidTable) -> tuple[int, ...]:
    """``"12,3"`` or ``"<a_12><b_3>"`` -> ``(12, 3)``, checked against the table (unknown prefix -> error)."""
    if not value:
        return ()
    prefix = prefix_codes(value)
    if len(prefix) > table.levels:
        raise OptionError("--prefix", f"{len(prefix)} codes given, the SIDs have {table.levels} levels")
    if not (table.codes[:, : len(prefix)] == np.asarray(prefix)).all(1).any():
        raise OptionError("--prefix", f"no item has the prefix {','.join(map(str, prefix))}")
    return prefix


def item_row(table: SidTable, item_id: str) -> int:
    try:
        return table.item_ids.index(item_id)
    except ValueError:
        raise OptionError("--item", f"unknown item {item_id!r}") from None


def group_label(item_ids: list[str], ds: Dataset | None) -> str:
    """The most common category leaf (with its share) or, without categories, the commonest title words."""
    if ds is None:
        return ""
    cats = [c for c in (_category(ds.items.get(i, {})) for i in item_ids) if c]
    if cats:
        cat, n = Counter(cats).most_common(1)[0]
        leaf = " > ".join(p.strip() for p in cat.split(",")[-2:])
        return f"{leaf} ({n / len(item_ids):.0%})"
    words = Counter(w for i in item_ids for w in set(re.findall(r"[a-z][a-z0-9'-]+", ds.title(i).lower()))
                    if w not in STOPWORDS)
    return " ".join(w for w, _ in words.most_common(3))


@dataclass
class TreeView:
    """What ``uqf inspect-sids`` prints of the code tree; each ``opt`` field is also one of its options."""

    prefix: str | None = opt(None, "Descend into a prefix: 12 or 12,3.")
    item: str | None = opt(None, "Show this item's SID and its siblings.")
    depth: int = opt(2, "Levels of the tree to show below the prefix.", ge=1)
    top: int = opt(8, "Children (codes or items) shown per node.", ge=1)
    tree: bool = opt(True, "Only the summary table.", flag="--no-tree")

    def validate(self) -> None:
        """Refuse a depth or width outside its range (one line naming the option)."""
        check_ranges(self)


def tree_view(ins: Inspection, view: TreeView) -> tuple[Tree | None, dict[str, Any] | None]:
    """The tree ``view`` asks for (``None`` with ``--no-tree``) and, for ``--item``, that item's SID and siblings."""
    view.validate()
    prefix = parse_prefix(view.prefix, ins.table)
    if view.item is not None:
        return item_view(ins, view.item, view.top)
    return (build_tree(ins, prefix, view.depth, view.top) if view.tree else None), None


def build_tree(ins: Inspection, prefix: tuple[int, ...] = (), depth: int = TreeView.depth,
               top: int = TreeView.top) -> Tree:
    """A rich Tree under ``prefix``: ``depth`` levels of codes (largest first, ``top`` each), items at the leaves."""
    table = ins.table
    mask = (table.codes[:, : len(prefix)] == np.asarray(prefix, dtype=np.int64)).all(1) if prefix else None
    rows = np.flatnonzero(mask) if mask is not None else np.arange(len(table.item_ids))
    title = "".join(level_token(lv, c) for lv, c in enumerate(prefix)) or "all items"
    root = Tree(f"[bold]{title}[/bold]  {len(rows):,} items")
    _grow(root, ins, rows, len(prefix), depth, top, show_items=bool(prefix))
    return root


def _grow(node: Tree, ins: Inspection, rows: np.ndarray, level: int, depth: int, top: int,
          show_items: bool = False) -> None:
    """Add code children down ``depth`` levels; items appear at full SIDs, or (``show_items``, under a
    ``--prefix``) at the depth limit when few enough remain to list."""
    table = ins.table
    if level >= table.levels or depth <= 0:
        if level >= table.levels or (show_items and len(rows) <= top):
            _add_items(node, ins, rows, top)
        return
    by_code: dict[int, list[int]] = defaultdict(list)
    for r in rows.tolist():
        by_code[int(table.codes[r, level])].append(r)
    ordered = sorted(by_code.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    for code, members in ordered[:top]:
        label = group_label([table.item_ids[r] for r in members], ins.dataset)
        child = node.add(f"[cyan]{level_token(level, code)}[/cyan] {len(members):,}" + (f"  {label}" if label
                                                                                          else ""))
        _grow(child, ins, np.asarray(members), level + 1, depth - 1, top, show_items)
    if len(ordered) > top:
        rest = sum(len(m) for _, m in ordered[top:])
        node.add(f"[dim]... {len(ordered) - top} more codes, {rest:,} items[/dim]")


def _add_items(node: Tree, ins: Inspection, rows: np.ndarray, top: int) -> None:
    table = ins.table
    for r in rows[:top].tolist():
        iid = table.item_ids[r]
        title = ins.dataset.title(iid) if ins.dataset is not None else ""
        sid = "".join(table.tokens(r))
        node.add(f"{sid} [bold]{iid}[/bold]" + (f"  {title}" if title and title != iid else ""))
    if len(rows) > top:
        node.add(f"[dim]... {len(rows) - top} more items[/dim]")


def item_view(ins: Inspection, item_id: str, top: int = TreeView.top) -> tuple[Tree, dict[str, Any]]:
    """An item's SID and its siblings at every depth (items sharing its prefix)."""
    table = ins.table
    r = item_row(table, item_id)
    sid = table.codes[r]
    title = ins.dataset.title(item_id) if ins.dataset is not None else ""
    root = Tree(f"[bold]{item_id}[/bold] {''.join(table.tokens(r))}" + (f"  {title}" if title != item_id else ""))
    info: dict[str, Any] = {"item_id": item_id, "codes": sid.tolist(), "tokens": table.tokens(r), "siblings": {}}
    for d in range(table.levels, 0, -1):
        same = np.flatnonzero((table.codes[:, :d] == sid[:d]).all(1))
        others = [int(x) for x in same if x != r]
        info["siblings"][str(d)] = [table.item_ids[x] for x in others]
        if not others:  # a unique full SID has no siblings at that depth
            continue
        prefix = "".join(level_token(lv, int(c)) for lv, c in enumerate(sid[:d]))
        node = root.add(f"[cyan]{prefix}[/cyan] {len(others):,} other items")
        _add_items(node, ins, np.asarray(others, dtype=np.int64), top)
        if len(others) >= top:  # deeper prefixes already list enough names
            break
    return root, info
