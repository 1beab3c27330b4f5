"""Ranking helpers the backbones share: rank of a target, Recall/NDCG@K, train counts, top-K from scores.

They sit in rec/ (not evaluation/) because backbones use them while training (validation NDCG, the
popularity baseline, top-K of dense scores) and evaluation/ sits above rec/ (docs/architecture.md,
"Layers"); :mod:`uqf_cli.evaluation.metrics` builds the metric table on them and re-exports them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from uqf_cli.data.dataset import Dataset


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


def item_counts(dataset: Dataset) -> Counter[str]:
    """How often each item occurs in the train split (valid and test items never count)."""
    return Counter(i for seq in dataset.train_sequences().values() for i in seq)


def popularity_order(dataset: Dataset) -> list[str]:
    """Every item, most frequent in train first; ties (and never-seen items) in dataset order."""
    counts = item_counts(dataset)
    return sorted(dataset.item_ids, key=lambda i: (-counts.get(i, 0), dataset.item_index[i]))


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


__all__ = ["item_counts", "ndcg_at_k", "popularity_order", "recall_at_k", "target_rank", "top_k_from_scores"]
