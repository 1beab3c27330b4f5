"""Non-SID baselines beside the SID recommenders: popularity and LightGCN as a recommender.

Every generative-recommendation paper (TIGER, LC-Rec, LETTER) shows them, because they answer two
plain questions: does a model beat "recommend the best sellers" (popularity), and does it beat the
collaborative signal it was partly built from (LightGCN)? Both are backbones of ``uqf train-rec``
(``--backbone pop`` / ``--backbone lightgcn``, :mod:`uqf_cli.rec.pop`, :mod:`uqf_cli.rec.lightgcn`) and
are scored by ``uqf evaluate`` with the same full ranking and the same one-target-per-user protocol as
TIGER, LC-Rec and SASRec. This module holds what they share:

* :func:`item_counts` / :func:`popularity_order`: item frequencies in the train split (every
  interaction counts, re-purchases included) and the catalogue sorted by them, ties broken by the
  dataset's item order (deterministic);
* :func:`top_k_from_scores`: top-``k`` item rows from a ``[users, items]`` score matrix, optionally
  with each user's history items masked out.

Masking the history (``exclude_history``)
-----------------------------------------
``uqf evaluate`` never removes history items from anybody's ranking: the SID models may recommend an
item the user already bought, and Amazon users do re-buy. For the two baselines we **do mask the
history by default**, and record it in the model directory (option ``exclude_history``), because:

* LightGCN is trained to reconstruct the train graph: a user's own train items get the highest scores
  by construction, so unmasked it "recommends" the past (the standard LightGCN evaluation masks train
  items for this reason);
* popularity's top items are mostly already in long histories; the Office figure quoted in issue 6
  (test Recall@10 = 0.0012) is the masked variant.

A re-purchase target (the held-out item also occurs in the history) can then never be hit by these
two baselines; on Office no valid or test target is a re-purchase (LC-Rec's Office has no repeated
user-item pair), so masking only removes sure misses there. ``exclude_history=False`` gives the
unmasked variant (library option; ``docs/demo.md`` reports both on Office).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from uqf_cli.dataset import Dataset


def item_counts(dataset: Dataset) -> Counter[str]:
    """How often each item occurs in the train split (valid and test items never count)."""
    return Counter(i for seq in dataset.train_sequences().values() for i in seq)


def popularity_order(dataset: Dataset) -> list[str]:
    """Every item, most frequent in train first; ties (and never-seen items) in dataset order."""
    counts = item_counts(dataset)
    return sorted(dataset.item_ids, key=lambda i: (-counts.get(i, 0), dataset.item_index[i]))


def top_k_from_scores(scores: torch.Tensor, k: int, histories: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
    """Top-``k`` column indices per row of ``scores`` [B, N] (best first).

    With ``histories`` (item rows per user) those columns are set to ``-inf`` first, so they rank
    last; ``k`` is capped at the number of columns. Ties go to the lower column index (a stable sort),
    so equal scores rank in the dataset's item order, deterministically.
    """
    scores = scores.clone()
    if histories is not None:
        for r, hist in enumerate(histories):
            if hist:
                scores[r, torch.as_tensor(list(hist), dtype=torch.long)] = float("-inf")
    k = min(int(k), scores.shape[1])
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
