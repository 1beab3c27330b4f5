"""Top-K ranking metrics for one target per user, and the one popularity ranking.

Recall@K is 1 when the target is among the top K; NDCG@K is ``1 / log2(rank + 1)`` for a target at
1-based ``rank <= K`` (one relevant item, so the ideal DCG is 1). Ranking is over all items.
The popularity ranking orders items by their train-split count, ties in dataset order; whether a
user's history items are skipped is always the caller's explicit choice (see docs/evaluate.md).
The helpers the backbones share too (rank, Recall/NDCG@K, counts, top-K from scores) live in
:mod:`uqf_cli.rec.ranking` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

from uqf_cli.data.dataset import Dataset
from uqf_cli.rec.ranking import (
    item_counts,
    ndcg_at_k,
    popularity_order,
    recall_at_k,
    target_rank,
    top_k_from_scores,
)

RECALL_KS = (1, 5, 10, 20)
NDCG_KS = (5, 10, 20)


def ranking_metrics(ranked_lists: Sequence[Sequence[str]], targets: Sequence[str],
                    recall_ks: Sequence[int] = RECALL_KS, ndcg_ks: Sequence[int] = NDCG_KS) -> dict[str, float]:
    """``{"recall@1": ..., "ndcg@5": ...}`` in the order Recall then NDCG, K ascending."""
    out = {f"recall@{k}": recall_at_k(ranked_lists, targets, k) for k in recall_ks}
    out.update({f"ndcg@{k}": ndcg_at_k(ranked_lists, targets, k) for k in ndcg_ks})
    return out


def top_popular(order: Sequence[str], histories: Sequence[Sequence[str]], k: int, *,
                exclude_history: bool) -> list[list[str]]:
    """Per user, the first ``k`` items of ``order``, skipping the user's history items if asked."""
    if not exclude_history:
        top = list(order[:k])
        return [list(top) for _ in histories]
    out = []
    for hist in histories:
        seen = set(hist)
        out.append([i for i in order[:k + len(seen)] if i not in seen][:k])
    return out


def popularity_lists(dataset: Dataset, histories: Sequence[Sequence[str]], k: int, *,
                     exclude_history: bool) -> list[list[str]]:
    """The popularity baseline's top ``k`` for each history."""
    return top_popular(popularity_order(dataset), histories, k, exclude_history=exclude_history)


__all__ = ["NDCG_KS", "RECALL_KS", "item_counts", "ndcg_at_k", "popularity_lists", "popularity_order",
           "ranking_metrics", "recall_at_k", "target_rank", "top_k_from_scores", "top_popular"]
