"""Constrained beam search over semantic IDs: one trie, one search, any step-wise decoder.

A generative recommender must only emit SIDs of real items. The trie of the item SIDs is compiled
once into per-level dense transition tables (``tables[l][node, code]`` -> node at depth ``l + 1``,
``-1`` where no item continues that way), so one search step for all beams of all users is a few
tensor operations: a log-softmax over the full vocabulary (as Hugging Face ``generate`` scores
beams), a gather of the level's SID-token columns, a mask from the table, one top-k over
``beams x codes``. No Python runs per beam or per trie node. The ranking equals HF's constrained
beam search for fixed-length SIDs (docs/train-rec.md explains why).

Colliding SIDs (several items with one code tuple) are explicit: :meth:`SidTrie.build` refuses them
unless asked to group them; a grouped leaf is named by its first item row and
:meth:`SidTrie.rows_of` lists every item on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

COLLISIONS = ("refuse", "group")


@dataclass
class SidTrie:
    """Dense per-level transition tables of the prefix trie over item SIDs.

    ``tables[l][node, code]`` is the node at depth ``l + 1``; at the last level it is the leaf, named by
    the first item row with that SID. ``token_ids[l][code]`` is the vocabulary id of ``code`` at level
    ``l``. ``groups`` maps a leaf shared by several items (colliding SIDs) to all their rows.
    """

    tables: list[torch.Tensor]
    token_ids: list[torch.Tensor]
    num_items: int
    groups: dict[int, list[int]] = field(default_factory=dict)
    first_ids: list[int | None] = field(default_factory=list)  # level -> first id when the ids are contiguous

    @classmethod
    def build(cls, codes: np.ndarray, codebook_sizes: Sequence[int], offsets: Sequence[int],
              collisions: str = "refuse") -> SidTrie:
        """The trie of ``codes`` ([N, L], one row per item) whose level-``l`` tokens are the contiguous
        vocabulary ids ``offsets[l] .. offsets[l] + codebook_sizes[l] - 1``."""
        ids = [range(int(o), int(o) + int(k)) for o, k in zip(offsets, codebook_sizes, strict=True)]
        return cls.from_token_ids(codes, ids, collisions)

    @classmethod
    def from_token_ids(cls, codes: np.ndarray, token_ids: Sequence[Sequence[int]],
                       collisions: str = "refuse") -> SidTrie:
        """The trie of ``codes`` with any vocabulary id per code (``token_ids[l][c]``).

        ``collisions="refuse"`` raises on two items with one SID; ``"group"`` puts them on one leaf.
        """
        if collisions not in COLLISIONS:
            raise ValueError(f"collisions must be one of {COLLISIONS}, got {collisions!r}")
        codes = np.asarray(codes, dtype=np.int64)
        n, levels = codes.shape
        tables: list[torch.Tensor] = []
        node_of_row = np.zeros(n, dtype=np.int64)  # every item starts at the root (node 0 of depth 0)
        num_nodes = 1
        groups: dict[int, list[int]] = {}
        for lv in range(levels):
            k = len(token_ids[lv])
            if codes[:, lv].min() < 0 or codes[:, lv].max() >= k:
                raise ValueError(f"level {lv} codes outside [0, {k})")
            keys = node_of_row * k + codes[:, lv]
            uniq, child = np.unique(keys, return_inverse=True)
            child = child.reshape(-1)
            if lv == levels - 1:
                child, groups = _leaves(child, len(uniq), collisions)
            table = np.full((num_nodes, k), -1, dtype=np.int64)
            table[node_of_row, codes[:, lv]] = child
            tables.append(torch.from_numpy(table))
            node_of_row, num_nodes = child, len(uniq)
        ids = [[int(i) for i in level] for level in token_ids]
        first_ids = [lv[0] if lv == list(range(lv[0], lv[0] + len(lv))) else None for lv in ids]
        return cls(tables, [torch.tensor(lv, dtype=torch.long) for lv in ids], n, groups, first_ids)

    @property
    def levels(self) -> int:
        return len(self.tables)

    def rows_of(self, leaf: int) -> list[int]:
        """Item rows on a leaf (one, unless SIDs collide)."""
        return self.groups.get(leaf, [leaf])

    def to(self, device: torch.device | str) -> SidTrie:
        return SidTrie([t.to(device) for t in self.tables], [t.to(device) for t in self.token_ids],
                       self.num_items, self.groups, self.first_ids)


def _leaves(group_of_row: np.ndarray, num_groups: int, collisions: str) -> tuple[np.ndarray, dict[int, list[int]]]:
    """Name each distinct full SID by its first item row; the rows sharing one, where they collide."""
    n = len(group_of_row)
    if num_groups == n:
        return np.arange(n, dtype=np.int64), {}
    if collisions == "refuse":
        raise ValueError("SIDs must be unique to build a trie (deduplicate them first)")
    first = np.full(num_groups, n, dtype=np.int64)
    np.minimum.at(first, group_of_row, np.arange(n, dtype=np.int64))
    leaf = first[group_of_row]
    groups: dict[int, list[int]] = {}
    for row, lf in enumerate(leaf.tolist()):
        groups.setdefault(lf, []).append(row)
    return leaf, {lf: rows for lf, rows in groups.items() if len(rows) > 1}


@dataclass
class BeamResult:
    """Per user, the ``beam`` best leaves (item rows; ``-1`` = empty beam) and their summed log-probs."""

    items: torch.Tensor  # long [B, beam]
    scores: torch.Tensor  # float [B, beam], best first


class StepDecoder(Protocol):
    """What the beam search needs from a model: next-token logits, one row per live beam."""

    def first(self) -> torch.Tensor:
        """Logits ``[B, V]`` for the first SID token (one row per user)."""
        ...

    def next(self, last_tokens: torch.Tensor, parent_rows: torch.Tensor) -> torch.Tensor:
        """Logits ``[R, V]`` after appending ``last_tokens[r]`` to the prefix of row ``parent_rows[r]``
        of the previous call (user-major: each user's rows are contiguous)."""
        ...


def _level_columns(log_probs: torch.Tensor, trie: SidTrie, level: int) -> torch.Tensor:
    """The level's SID-token columns of ``log_probs`` (a slice when the ids are contiguous)."""
    first = trie.first_ids[level]
    if first is None:
        return log_probs[:, trie.token_ids[level]]
    return log_probs[:, first:first + len(trie.token_ids[level])]


def full_log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """The log-softmax over the whole vocabulary, in float32 (the scores HF ``generate`` ranks beams by)."""
    return torch.log_softmax(logits.float(), dim=-1)


@torch.inference_mode()
def constrained_beam_search(decoder: StepDecoder, trie: SidTrie, bsz: int, beam_size: int,
                            log_softmax: Callable[[torch.Tensor], torch.Tensor] = full_log_softmax) -> BeamResult:
    """Beam search over the trie (``levels`` decoder calls); beams that cannot be filled come back as
    leaf ``-1`` with score ``-inf``. Each level keeps the ``min(beam_size, live candidates)`` best.

    ``log_softmax`` turns a step's logits into float32 log-probabilities over the whole vocabulary; a
    decoder may pass one that writes into a buffer it reuses (read here before its next call)."""
    device = trie.tables[0].device
    logits = decoder.first()
    nodes = torch.zeros((bsz, 1), dtype=torch.long, device=device)  # the root
    scores = torch.zeros((bsz, 1), device=device)
    for level in range(trie.levels):
        width, k = nodes.shape[1], len(trie.token_ids[level])
        lp = _level_columns(log_softmax(logits), trie, level)
        children = trie.tables[level][nodes.reshape(-1).clamp(min=0)]  # [B * width, k]
        allowed = (children >= 0) & (nodes.reshape(-1) >= 0)[:, None]
        lp = lp.masked_fill(~allowed, float("-inf"))
        cand = (lp if level == 0 else scores.reshape(-1, 1) + lp).reshape(bsz, width * k)
        scores, idx = torch.topk(cand, min(beam_size, width * k), dim=1)
        nodes = torch.gather(children.reshape(bsz, width * k), 1, idx).masked_fill(torch.isinf(scores), -1)
        if level == trie.levels - 1:
            break
        parent_rows = (idx // k + (torch.arange(bsz, device=device) * width)[:, None]).reshape(-1)
        logits = decoder.next(trie.token_ids[level][idx % k].reshape(-1), parent_rows)
    if nodes.shape[1] < beam_size:  # fewer real SIDs than beams: pad with empty beams
        pad = beam_size - nodes.shape[1]
        nodes = torch.cat([nodes, nodes.new_full((bsz, pad), -1)], 1)
        scores = torch.cat([scores, scores.new_full((bsz, pad), float("-inf"))], 1)
    return BeamResult(items=nodes, scores=scores)


__all__ = ["COLLISIONS", "BeamResult", "SidTrie", "StepDecoder", "constrained_beam_search", "full_log_softmax"]
