"""The memories the queries read: each item's own vector plus its nearest bank neighbours per modality."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from uqf_cli.fuse.ann import ANN_THRESHOLD, nearest
from uqf_cli.fuse.inputs import AlignedInputs
from uqf_cli.fuse.model import FuserConfig


@dataclass
class MemoryBank:
    """The reference catalogue neighbours are looked up in (saved with the fuser for ``--apply``)."""

    item_ids: list[str]
    text: torch.Tensor  # [Nb, dt] unit rows
    collab: torch.Tensor  # [Nw, dc] unit rows of the warm bank items
    collab_ids: list[str]


@dataclass
class MemoryInputs:
    """Per item, where its text and collab memories come from: row 0 is the item itself, rows 1..k its
    k nearest bank neighbours in that modality. Neighbour indices are kept and each batch gathers its
    rows (:meth:`batch`), so the stacked memories never exist in full.
    """

    text: torch.Tensor  # [N, dt] the items' own unit rows
    collab: torch.Tensor  # [N, dc] (zeros for cold items)
    has_collab: torch.Tensor  # [N] bool
    bank_text: torch.Tensor  # [Nb, dt]
    bank_collab: torch.Tensor  # [Nw, dc]
    text_neighbours: torch.Tensor  # [N, k] rows of bank_text (k = 0 with --memory tokens)
    collab_neighbours: torch.Tensor  # [N, k] rows of bank_collab
    # [N, k+1] rows of bank_collab: the warm bank items nearest by TEXT (self excluded); None unless
    # --cold-collab borrow
    borrow_neighbours: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.text.shape[0]

    def batch(self, rows: torch.Tensor | slice, borrow: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(text_seq [B, 1+k, dt], collab_seq [B, 1+k, dc])`` for ``rows``; cold items' collab memory is zero.

        ``borrow`` ([B] bool, with ``borrow_neighbours``): those rows get a borrowed collab memory instead,
        the normalised mean of their text neighbours' collab vectors, then the first k of those vectors."""
        text_seq = torch.cat([self.text[rows].unsqueeze(1), self.bank_text[self.text_neighbours[rows]]], dim=1)
        warm = self.has_collab[rows]
        nbr = self.bank_collab[self.collab_neighbours[rows]] * warm[:, None, None]
        collab_seq = torch.cat([self.collab[rows].unsqueeze(1), nbr], dim=1)
        if borrow is not None and self.borrow_neighbours is not None and bool(borrow.any()):
            lent = self.bank_collab[self.borrow_neighbours[rows]]  # [B, k+1, dc]
            own = F.normalize(lent.mean(dim=1), dim=-1).unsqueeze(1)
            borrowed_seq = torch.cat([own, lent[:, :collab_seq.shape[1] - 1]], dim=1)
            collab_seq = torch.where(borrow[:, None, None], borrowed_seq, collab_seq)
        return text_seq, collab_seq


def build_memory(data: AlignedInputs, bank: MemoryBank, cfg: FuserConfig,
                 text_neighbours: torch.Tensor | None = None, ann_threshold: int = ANN_THRESHOLD,
                 seed: int = 0) -> MemoryInputs:
    """Find each item's k nearest bank neighbours in each modality (its memory, see :class:`MemoryInputs`).

    ``text_neighbours``: an already computed top-k' text search against this bank (k' >= k, self
    excluded), of which the first k columns are used, so the largest search runs once. Banks of at
    least ``ann_threshold`` rows are searched approximately (:func:`uqf_cli.fuse.ann.nearest`).
    """
    k = cfg.k_memory if cfg.memory == "neighbours" else 0
    n = len(data.item_ids)
    tn = cn = torch.zeros(n, 0, dtype=torch.long)
    if k > 0:
        if text_neighbours is not None and text_neighbours.shape[1] >= min(k, bank.text.shape[0] - 1):
            tn = _pad_neighbours(text_neighbours[:, :k], k)
        else:
            bank_pos = {iid: j for j, iid in enumerate(bank.item_ids)}
            ex = torch.tensor([bank_pos.get(i, -1) for i in data.item_ids], dtype=torch.long)
            tn = _pad_neighbours(nearest(data.text, bank.text, k, ex, ann_threshold, seed), k)
        cpos = {iid: j for j, iid in enumerate(bank.collab_ids)}
        cex = torch.tensor([cpos.get(i, -1) for i in data.item_ids], dtype=torch.long)
        cn = _pad_neighbours(nearest(data.collab, bank.collab, k, cex, ann_threshold, seed), k)
    borrow = None
    if cfg.cold_collab == "borrow" and k > 0 and bank.collab_ids:
        borrow = _pad_neighbours(text_neighbours_among_warm(data, bank, k + 1, cex, ann_threshold, seed), k + 1)
    return MemoryInputs(data.text, data.collab, data.has_collab, bank.text, bank.collab, tn, cn, borrow)


def text_neighbours_among_warm(data: AlignedInputs, bank: MemoryBank, k: int, exclude: torch.Tensor,
                               ann_threshold: int, seed: int) -> torch.Tensor:
    """Rows of ``bank.collab``: each item's k nearest warm bank items by text (``exclude``: its own row)."""
    pos = {iid: j for j, iid in enumerate(bank.item_ids)}
    warm_text = bank.text[torch.tensor([pos[i] for i in bank.collab_ids], dtype=torch.long)]
    return nearest(data.text, warm_text, k, exclude, ann_threshold, seed)


def _pad_neighbours(nbrs: torch.Tensor, k: int) -> torch.Tensor:
    """When the bank is smaller than k, repeat the last neighbour (tiny catalogues only)."""
    if nbrs.shape[1] == k:
        return nbrs
    if nbrs.shape[1] == 0:
        return torch.zeros(nbrs.shape[0], k, dtype=torch.long)
    return torch.cat([nbrs, nbrs[:, -1:].expand(-1, k - nbrs.shape[1])], dim=1)


def bank_from(data: AlignedInputs) -> MemoryBank:
    warm = data.has_collab.nonzero().squeeze(1)
    # the bank shares the aligned text rows (read-only everywhere): a copy was 1.5 GB at 1M 384-d items
    return MemoryBank(list(data.item_ids), data.text, data.collab[warm],
                      [data.item_ids[i] for i in warm.tolist()])
