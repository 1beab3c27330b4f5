"""Ranking metrics per popularity group of the target item (``uqf evaluate --by-popularity``).

Groups come from the *train* split (the items each user saw before the valid and test items, as
:meth:`uqf_cli.dataset.Dataset.train_sequences`), never from the evaluated targets:

* items are sorted by train interaction count, most popular first (ties: dataset item order);
* an item's group is set by the share of all train interactions held by the items *before* it:
  **head** below 50%, **torso** from 50% to below 80%, **tail** from 80% on. So the head is the
  smallest set of top items holding at least half of the interactions, the torso the next items
  up to 80%, the tail the rest;
* **cold** items (no train interaction) fall in the tail (their cumulative share before is 100%);
  they are also counted on their own (``cold_items``, ``cold_users``) since the tail mixes rare
  and unseen items.

Each group's Recall@K and NDCG@K average over the users whose target is in that group, so the
three groups' metrics weighted by their user counts give the overall metrics back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from uqf_cli.dataset import Dataset
from uqf_cli.metrics import NDCG_KS, RECALL_KS, ranking_metrics

GROUPS = ("head", "torso", "tail")
CUTS = (0.5, 0.8)  # cumulative share of train interactions before an item: head < 0.5 <= torso < 0.8 <= tail
RULE = ("items sorted by train interactions; head: cumulative share before the item < 50%, torso: 50-80%, "
        "tail: >= 80% (cold items, with no train interaction, are in the tail)")


def train_counts(dataset: Dataset) -> Counter[str]:
    """Train interactions per item (the split the popularity baseline counts)."""
    return Counter(i for seq in dataset.train_sequences().values() for i in seq)


def popularity_groups(dataset: Dataset, cuts: tuple[float, float] = CUTS) -> dict[str, str]:
    """Item id -> ``head`` | ``torso`` | ``tail`` by the cumulative train share rule (see module doc)."""
    counts = train_counts(dataset)
    total = sum(counts.values())
    order = sorted(dataset.item_ids, key=lambda i: (-counts.get(i, 0), dataset.item_index[i]))
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
    counts = train_counts(dataset)
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
