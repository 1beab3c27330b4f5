"""Top-K ranking metrics for next-item prediction with one target per user.

With exactly one relevant item (the held-out target) per user:

* **Recall@K** (= HitRate@K) is 1 if the target is among the top K, else 0, averaged over users.
* **NDCG@K** is ``1 / log2(rank + 1)`` for a target at 1-based ``rank <= K`` (0 otherwise): the ideal
  DCG of a single relevant item is 1, so no normalisation is needed.

Both follow LC-Rec / TIGER / LETTER evaluation: full ranking over all items (no sampled negatives),
the user's history is *not* removed from the ranking (a user may buy an item again).

The popularity baseline ranks every user the same: items by their count in the train split, ties
broken by the dataset's item order, history not excluded (so it is comparable with the generative
models, which are not told to skip history items either). The variant that skips each user's history
items (:func:`popularity_lists` with ``exclude_history=True``) is what gives the Office test
Recall@10 of 0.0012 quoted in issue 6; with the history kept it is 0.0006 (3 vs 6 hits of 4,905).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from uqf_cli.dataset import Dataset

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


def popularity_ranking(dataset: Dataset, k: int) -> list[str]:
    """The ``k`` most frequent items of the train split (ties: dataset item order)."""
    counts = Counter(i for seq in dataset.train_sequences().values() for i in seq)
    order = sorted(dataset.item_ids, key=lambda i: (-counts.get(i, 0), dataset.item_index[i]))
    return order[:k]


def popularity_lists(dataset: Dataset, histories: Sequence[Sequence[str]], k: int,
                     exclude_history: bool = False) -> list[list[str]]:
    """Per user, the popularity top ``k`` (optionally without the user's history items)."""
    if not exclude_history:
        top = popularity_ranking(dataset, k)
        return [list(top) for _ in histories]
    order = popularity_ranking(dataset, len(dataset.item_ids))
    out = []
    for hist in histories:
        seen = set(hist)
        out.append([i for i in order[:k + len(seen)] if i not in seen][:k])
    return out
