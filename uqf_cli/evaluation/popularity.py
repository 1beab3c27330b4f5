"""Ranking metrics per train-popularity group of the target item (``uqf evaluate --by-popularity``).

Items sorted by train count; an item's group is set by the share of train interactions held by the
items before it: head below 50%, torso to 80%, tail the rest (cold items included, also counted on
their own). Each group averages over the users whose target is in it (rule: docs/evaluate.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from uqf_cli.data.dataset import Dataset
from uqf_cli.evaluation.metrics import NDCG_KS, RECALL_KS, item_counts, popularity_order, ranking_metrics

GROUPS = ("head", "torso", "tail")
CUTS = (0.5, 0.8)  # cumulative share of train interactions before an item: head < 0.5 <= torso < 0.8 <= tail
RULE = ("items sorted by train interactions; head: cumulative share before the item < 50%, torso: 50-80%, "
        "tail: >= 80% (cold items, with no train interaction, are in the tail)")


def popularity_groups(dataset: Dataset, cuts: tuple[float, float] = CUTS) -> dict[str, str]:
    """Item id -> ``head`` | ``torso`` | ``tail`` by the cumulative train share rule (see module doc)."""
    counts = item_counts(dataset)
    total = sum(counts.values())
    order = popularity_order(dataset)
    groups: dict[str, str] = {}
    before = 0
    for item in order:
        share = before / total if total else 1.0
        groups[item] = "head" if share < cuts[0] else "torso" if share < cuts[1] else "tail"
        before += counts.get(item, 0)
    return groups


def metrics_by_popularity(dataset: Dataset, ranked_lists: Sequence[Sequence[str]], targets: Sequence[str],
                          recall_ks: Sequence[int] = RECALL_KS, ndcg_ks: Sequence[int] = NDCG_KS) -> dict[str, Any]:
    """Per group: items, evaluated users (targets in the group) and their metrics; plus the rule and cold counts."""
    groups = popularity_groups(dataset)
    counts = item_counts(dataset)
    out: dict[str, Any] = {"rule": RULE, "groups": {}}
    for name in GROUPS:
        rows = [k for k, t in enumerate(targets) if groups.get(t) == name]
        out["groups"][name] = {
            "items": sum(1 for g in groups.values() if g == name), "users": len(rows),
            "train_interactions": sum(counts.get(i, 0) for i, g in groups.items() if g == name),
            "metrics": ranking_metrics([ranked_lists[k] for k in rows], [targets[k] for k in rows],
                                       recall_ks, ndcg_ks)}
    out["cold_items"] = sum(1 for i in dataset.item_ids if counts.get(i, 0) == 0)
    out["cold_users"] = sum(1 for t in targets if counts.get(t, 0) == 0)
    return out
