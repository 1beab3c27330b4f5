"""Top-K ranking metrics for one target per user, and the one popularity ranking.

Recall@K is 1 when the target is among the top K; NDCG@K is ``1 / log2(rank + 1)`` for a target at
1-based ``rank <= K`` (one relevant item, so the ideal DCG is 1). Ranking is over all items.
The popularity ranking orders items by their train-split count, ties in dataset order; whether a
user's history items are skipped is always the caller's explicit choice (see docs/evaluate.md).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from uqf_cli.data.dataset import Dataset

RECALL_KS = (1, 5, 10, 20)
NDCG_KS = (5, 10, 20)


def target_rank(ranked: Sequence[str], target: str) -> int | None:
    """1-based rank of ``target`` in ``ranked``, ``None`` when absent."""
    for r, item in enumerate(ranked, 1):
        if item == target:
            return r
    return None


def recall_at_k(ranked_lists: Sequence[Sequence[str]], targets: Sequence[str], k: int) -> float:
    """Share of users whose target is in their top ``k``."""
    if not targets:
        return 0.0
    hits = sum(1 for ranked, t in zip(ranked_lists, targets, strict=True) if t in list(ranked)[:k])
    return hits / len(targets)


def ndcg_at_k(ranked_lists: Sequence[Sequence[str]], targets: Sequence[str], k: int) -> float:
    """Mean of ``1/log2(rank+1)`` over users whose target ranks within ``k`` (0 for the others)."""
    if not targets:
        return 0.0
    total = 0.0
    for ranked, t in zip(ranked_lists, targets, strict=True):
        r = target_rank(list(ranked)[:k], t)
        if r is not None:
            total += 1.0 / math.log2(r + 1)
    return total / len(targets)


def ranking_metrics(ranked_lists: Sequence[Sequence[str]], targets: Sequence[str],
                    recall_ks: Sequence[int] = RECALL_KS, ndcg_ks: Sequence[int] = NDCG_KS) -> dict[str, float]:
    """``{"recall@1": ..., "ndcg@5": ...}`` in the order Recall then NDCG, K ascending."""
    out = {f"recall@{k}": recall_at_k(ranked_lists, targets, k) for k in recall_ks}
    out.update({f"ndcg@{k}": ndcg_at_k(ranked_lists, targets, k) for k in ndcg_ks})
    return out


def item_counts(dataset: Dataset) -> Counter[str]:
    """How often each item occurs in the train split (valid and test items never count)."""
    return Counter(i for seq in dataset.train_sequences().values() for i in seq)


def popularity_order(dataset: Dataset) -> list[str]:
    """Every item, most frequent in train first; ties (and never-seen items) in dataset order."""
    counts = item_counts(dataset)
    return sorted(dataset.item_ids, key=lambda i: (-counts.get(i, 0), dataset.item_index[i]))


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


def top_k_from_scores(scores: torch.Tensor, k: int, histories: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
    """Top-``k`` column indices per row of ``scores`` [B, N], best first.

    Columns in ``histories`` (item rows per user) are set to ``-inf`` first; ``k`` is capped at the
    number of columns; ties go to the lower column (stable sort), i.e. the dataset's item order.
    """
    scores = scores.clone()
    if histories is not None:
        for r, hist in enumerate(histories):
            if hist:
                scores[r, torch.as_tensor(list(hist), dtype=torch.long)] = float("-inf")
    k = min(int(k), scores.shape[1])
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
