"""TIGER's token layout: SID codes -> vocabulary ids, the collision level, encoder inputs.

Layout (as the reference decoding script's, so its trie applies unchanged): 0 = pad (also the
decoder start token), 1 = eos, ``2 + sum(K_<l) + c`` = code ``c`` of level ``l``, then optionally
``user_tokens`` hashed user tokens. Items whose SID tuples collide get an extra level: their rank
among the items sharing the tuple (TIGER's deduplication), so every decoded SID is one item.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from uqf_cli.files import SidTable
from uqf_cli.rec.decoding import SidTrie

PAD, EOS, FIRST_CODE_TOKEN = 0, 1, 2


@dataclass
class TigerVocab:
    """Token layout: item rows -> SID token ids, trie, user-token range."""

    item_ids: list[str]
    codes: np.ndarray  # [N, L'] (L' = L, or L + 1 with the collision level)
    codebook_sizes: list[int]
    offsets: list[int]
    user_tokens: int
    dedup_level: bool

    @classmethod
    def build(cls, sids: SidTable, item_ids: Sequence[str], user_tokens: int) -> TigerVocab:
        table = sids.as_dict()
        codes = np.asarray([table[i] for i in item_ids], dtype=np.int64)
        sizes = [int(k) for k in sids.codebook_sizes]
        rank = _collision_rank(codes)
        dedup = bool(rank.max() > 0)
        if dedup:
            codes = np.concatenate([codes, rank[:, None]], axis=1)
            sizes.append(int(rank.max()) + 1)
        offsets = list(FIRST_CODE_TOKEN + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int))
        return cls(list(item_ids), codes, sizes, [int(o) for o in offsets], user_tokens, dedup)

    @property
    def levels(self) -> int:
        return int(self.codes.shape[1])

    @property
    def user_offset(self) -> int:
        return FIRST_CODE_TOKEN + sum(self.codebook_sizes)

    @property
    def size(self) -> int:
        return self.user_offset + self.user_tokens

    def token_matrix(self) -> torch.Tensor:
        """``[N, L']`` token ids of every item's SID."""
        return torch.from_numpy(self.codes + np.asarray(self.offsets)[None, :])

    def user_token(self, user_id: str | None) -> int:
        digest = hashlib.sha1((user_id or "").encode()).digest()
        return self.user_offset + int.from_bytes(digest[:8], "big") % self.user_tokens

    def trie(self) -> SidTrie:
        return SidTrie.build(self.codes, self.codebook_sizes, self.offsets)

    def layout(self) -> dict[str, object]:
        """What a model directory records of the layout (``uqf_model.json``'s ``vocab``; loading checks it)."""
        return {"offsets": self.offsets, "codebook_sizes": self.codebook_sizes, "user_tokens": self.user_tokens,
                "dedup_level": self.dedup_level, "size": self.size}


def _collision_rank(codes: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows have the same SID tuple."""
    seen: dict[tuple[int, ...], int] = {}
    rank = np.zeros(len(codes), dtype=np.int64)
    for r, row in enumerate(map(tuple, codes.tolist())):
        rank[r] = seen.get(row, 0)
        seen[row] = rank[r] + 1
    return rank


def encode_histories(vocab: TigerVocab, histories: Sequence[Sequence[int]], max_history: int,
                     user_ids: Sequence[str | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder inputs: [user token] + SID tokens of the last ``max_history`` items; right-padded."""
    tok = vocab.token_matrix()
    seqs = []
    for n, hist in enumerate(histories):
        rows = list(hist)[-max_history:]
        ids = tok[rows].reshape(-1) if rows else torch.zeros(0, dtype=torch.long)
        if vocab.user_tokens:
            uid = user_ids[n] if user_ids is not None else None
            ids = torch.cat([torch.tensor([vocab.user_token(uid)]), ids])
        seqs.append(ids)
    width = max(1, max(len(s) for s in seqs))
    input_ids = torch.full((len(seqs), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for n, s in enumerate(seqs):
        input_ids[n, :len(s)] = s
        mask[n, :len(s)] = 1
    return input_ids, mask
