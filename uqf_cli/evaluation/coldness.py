"""Metrics for cold and warm targets apart (``uqf evaluate --by-coldness``, automatic on cold-start datasets).

A target is **cold** when it is one of the dataset's cold items: the ``cold_start`` record of a dataset
made with ``uqf prepare --cold-share`` (:mod:`uqf_cli.data.cold`), else every item without a train
interaction. Every model is scored on the same users; a model that cannot rank a cold item (SASRec:
its item embedding never received a positive gradient) is not excused, it scores what it scores. The
share of cold items in the users' top-K lists shows whether a model recommends them at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from uqf_cli.data.cold import cold_items_of
from uqf_cli.data.dataset import Dataset
from uqf_cli.evaluation.metrics import item_counts, ranking_metrics


def cold_items(dataset: Dataset) -> tuple[set[str], str]:
    """The dataset's cold items and the rule that made them."""
    marked = cold_items_of(dataset)
    if marked is not None:
        return marked
    counts = item_counts(dataset)
    return {i for i in dataset.item_ids if counts.get(i, 0) == 0}, "items without a train interaction"


def metrics_by_coldness(dataset: Dataset, ranked: Sequence[Sequence[str]], targets: Sequence[str],
                        recall_ks: Sequence[int], ndcg_ks: Sequence[int], k_share: int = 10) -> dict[str, Any]:
    """``{"rule", "cold_items", "groups": {"cold": {...}, "warm": {...}}}``, each group with its users and
    metrics, and ``cold_in_top{k}``: the mean share of cold items among each user's top ``k_share``."""
    cold, rule = cold_items(dataset)
    groups: dict[str, Any] = {}
    for name, wanted in (("cold", True), ("warm", False)):
        pick = [n for n, t in enumerate(targets) if (t in cold) == wanted]
        groups[name] = {"users": len(pick),
                        "metrics": ranking_metrics([ranked[n] for n in pick], [targets[n] for n in pick],
                                                   recall_ks, ndcg_ks)}
    tops = [list(r)[:k_share] for r in ranked]
    share = sum(sum(1 for i in top if i in cold) / max(1, len(top)) for top in tops) / max(1, len(tops))
    return {"rule": rule, "cold_items": len(cold), "groups": groups, f"cold_in_top{k_share}": share}
