"""The hybrid's dense head: a query from the T5's states, item vectors from the item embeddings, the losses.

* **query**: ``W_q h`` with ``h`` the decoder's first hidden state (the state that emits the first SID
  token, as in LIGER) or the mean of the encoder's states over the history tokens; ``W_q`` maps
  ``d_model`` to the item embedding's dimension ``d_e``;
* **item vector**: ``normalize(e_i + A e_i [+ b_i])`` with ``e_i`` the item's fixed embedding (UQF unified,
  or text) and ``A`` a learnable ``d_e x d_e`` map initialised at zero. With the cosine loss ``A`` stays at
  zero (a learnable target could collapse onto the query); the softmax losses train it. ``b_i`` (only with
  ``--dense-item-ids``) is a free learnable row per item, initialised at zero: what SASRec's ID embedding
  learns, which a linear map of the content cannot (two items with similar text get similar ``e + A e``).
  **Invariant**: a cold item's ``b_i`` stays exactly zero, so it is ranked by its content alone. No loss
  reads its row (it is never a target, and never a negative: in-batch negatives are the batch's targets,
  the softmax runs over the warm items), so its gradient is zero; AdamW then leaves it at zero (zero
  moments give a zero update, and decoupled weight decay scales zero to zero);
* **score**: the cosine of query and item vector.

Losses (``--dense-loss``): ``cosine`` = ``1 - cos(query, target)`` (LIGER's alignment objective);
``inbatch`` = cross-entropy of the target among the batch's targets (cos / temperature, duplicates of
the target masked); ``softmax`` = cross-entropy over every item with a train interaction. No loss ever
uses a cold item (no train interaction) as a negative: its vector is known only from its embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseHead(nn.Module):
    """Query projection and item adapter over a fixed item embedding table, and optionally a per-item residual.

    ``item_ids``: add ``b = nn.Embedding(N, d_e)`` at zero (state key ``id_residual.weight``); without it the
    module, its parameters and its state are exactly those of a head made before the option existed.
    """

    def __init__(self, d_model: int, item_vectors: torch.Tensor, train_adapter: bool, item_ids: bool = False) -> None:
        super().__init__()
        n, d_e = (int(x) for x in item_vectors.shape)
        self.register_buffer("item_embeddings", item_vectors.float().clone(), persistent=False)
        self.query = nn.Linear(d_model, d_e)
        self.adapter = nn.Linear(d_e, d_e, bias=False)
        nn.init.zeros_(self.adapter.weight)
        self.adapter.weight.requires_grad_(train_adapter)
        # from zeros, not a random init: draws nothing from the RNG, and an item starts at its content vector
        self.id_residual = nn.Embedding.from_pretrained(torch.zeros(n, d_e), freeze=False) if item_ids else None

    def item_vectors(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Unit item vectors ``[N or len(rows), d_e]``: ``normalize(e + A e [+ b])``."""
        e = self.item_embeddings if rows is None else self.item_embeddings[rows]
        v = e + self.adapter(e)
        if self.id_residual is not None:
            v = v + (self.id_residual.weight if rows is None else self.id_residual(rows))
        return F.normalize(v, dim=-1)

    def queries(self, hidden: torch.Tensor) -> torch.Tensor:
        """Unit query vectors ``[B, d_e]`` from pooled states ``[B, d_model]``."""
        return F.normalize(self.query(hidden.float()), dim=-1)


def encoder_pool(enc: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the encoder states over the real (unpadded) tokens: ``[B, d_model]``."""
    m = mask.to(enc.dtype).unsqueeze(-1)
    return (enc * m).sum(1) / m.sum(1).clamp(min=1.0)


def dense_loss(head: DenseHead, query: torch.Tensor, target_rows: torch.Tensor, kind: str, temperature: float,
               warm_rows: torch.Tensor | None = None) -> torch.Tensor:
    """The dense objective for unit ``query`` [B, d_e] and the targets' item rows [B]."""
    if kind == "cosine":
        return (1.0 - (query * head.item_vectors(target_rows)).sum(-1)).mean()
    if kind == "inbatch":
        logits = query @ head.item_vectors(target_rows).T / temperature
        same = target_rows[:, None] == target_rows[None, :]
        eye = torch.eye(len(target_rows), dtype=torch.bool, device=query.device)
        logits = logits.masked_fill(same & ~eye, float("-inf"))  # a duplicate target is not a negative
        return F.cross_entropy(logits, torch.arange(len(target_rows), device=query.device))
    if warm_rows is None:
        raise ValueError("the softmax loss needs the warm item rows")
    logits = query @ head.item_vectors(warm_rows).T / temperature
    position = torch.full((head.item_embeddings.shape[0],), -1, dtype=torch.long, device=query.device)
    position[warm_rows] = torch.arange(len(warm_rows), device=query.device)
    return F.cross_entropy(logits, position[target_rows])
