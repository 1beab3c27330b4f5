"""Constrained beam search over semantic IDs, as tensor operations.

A generative recommender must only emit SIDs of real items. The usual way (LETTER, TIGER
re-implementations) is Hugging Face ``generate(prefix_allowed_tokens_fn=...)``: a Python function
walks a dict trie for *every beam at every step* and a mask is built row by row. On a CPU that
Python work, plus running the decoder's cross-attention projections for every beam, dominates.

Here the trie is compiled once into **per-level dense transition tables**: level ``l`` has a table
``T_l`` of shape ``[nodes at depth l, K_l]`` (``K_l`` = codebook size of level ``l``) whose entry is
the child node reached by code ``c`` (or ``-1`` when no item continues that way). The last level's
"child" is the item's row. Then one decoding step for all beams of all users is

1. one decoder call with a KV cache (the encoder ran once per user, before the search);
2. ``log_softmax`` over the **full** vocabulary (as HF does: the constraint masks log-probs after
   normalisation, it does not renormalise over the allowed tokens);
3. slice the level's ``K_l`` code columns, set ``-inf`` where ``T_l[node] < 0`` (gather, no Python per
   beam), add the running beam score;
4. ``topk`` over the ``beam * K_l`` candidates of each user; parent beam = index // K_l, code =
   index % K_l, next node = ``T_l[parent node, code]``; reorder the self-attention cache.

Why this matches HF's beam search ranking exactly (for fixed-length SIDs): HF keeps, at every step,
the ``num_beams`` best running sequences by summed log-prob (tokens outside the level's slice are
disallowed, i.e. ``-inf``, so restricting the top-k to the slice changes nothing), and at the final
length divides every finished score by the same ``length ** length_penalty``, so the order of the
returned sequences is the order of summed log-probs. Two savings keep the numbers identical: step
0 runs the decoder on one row per user (HF's other initial beams start at ``-1e9`` and never win),
then the cache is repeated ``beam`` times; and the cross-attention cache is never reordered, since a
beam only ever moves within its own user's rows, which hold identical cross-attention keys/values.

Beams that cannot be filled (fewer valid continuations than the beam size) carry ``-inf`` and come
back as item ``-1``; callers drop them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch


@dataclass
class SidTrie:
    """Dense per-level transition tables of a prefix trie over item SIDs.

    ``tables[l][node, code]`` is the node at depth ``l + 1`` (or, at the last level, the item row),
    ``-1`` where no item has that prefix. ``offsets[l]`` is the vocabulary id of code 0 of level ``l``.
    """

    tables: list[torch.Tensor]
    offsets: list[int]
    codebook_sizes: list[int]
    num_items: int

    @classmethod
    def build(cls, codes: np.ndarray, codebook_sizes: Sequence[int], offsets: Sequence[int]) -> SidTrie:
        """Compile the trie of ``codes`` ([N, L] ints, one row per item, rows must be unique)."""
        codes = np.asarray(codes, dtype=np.int64)
        n, levels = codes.shape
        if len({tuple(r) for r in codes.tolist()}) != n:
            raise ValueError("SIDs must be unique to build a trie (deduplicate them first)")
        tables: list[torch.Tensor] = []
        node_of_row = np.zeros(n, dtype=np.int64)  # every item starts at the root (node 0 of depth 0)
        num_nodes = 1
        for lv in range(levels):
            k = int(codebook_sizes[lv])
            if codes[:, lv].min() < 0 or codes[:, lv].max() >= k:
                raise ValueError(f"level {lv} codes outside [0, {k})")
            table = torch.full((num_nodes, k), -1, dtype=torch.long)
            if lv == levels - 1:
                child = np.arange(n, dtype=np.int64)
                next_nodes = n
            else:
                keys = node_of_row * k + codes[:, lv]
                uniq, child = np.unique(keys, return_inverse=True)
                next_nodes = len(uniq)
            table[torch.from_numpy(node_of_row), torch.from_numpy(codes[:, lv])] = torch.from_numpy(child)
            tables.append(table)
            node_of_row = child
            num_nodes = next_nodes
        return cls(tables, [int(o) for o in offsets], [int(k) for k in codebook_sizes], n)

    @property
    def levels(self) -> int:
        return len(self.tables)

    def to(self, device: torch.device | str) -> SidTrie:
        return SidTrie([t.to(device) for t in self.tables], self.offsets, self.codebook_sizes, self.num_items)


@dataclass
class BeamResult:
    """Per user, the ``beam`` best item rows (``-1`` = empty beam) and their summed log-probs."""

    items: torch.Tensor  # long [B, beam]
    scores: torch.Tensor  # float [B, beam], best first


def _level_log_probs(logits: torch.Tensor, trie: SidTrie, level: int, nodes: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary log-softmax, sliced to the level's codes, ``-inf`` where the trie forbids."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    off, k = trie.offsets[level], trie.codebook_sizes[level]
    sliced = log_probs[:, off:off + k]
    children = trie.tables[level][nodes.clamp(min=0)]
    allowed = (children >= 0) & (nodes >= 0)[:, None]
    return sliced.masked_fill(~allowed, float("-inf")), children


class StepDecoder(Protocol):
    """What the beam search needs from a model: next-token logits, one row per live beam."""

    def first(self) -> torch.Tensor:
        """Logits ``[B, V]`` for the first SID token (one row per user)."""
        ...

    def expand(self, beam_size: int) -> None:
        """Switch from one row per user to ``beam_size`` rows per user (user-major)."""
        ...

    def next(self, last_tokens: torch.Tensor, parent_rows: torch.Tensor) -> torch.Tensor:
        """Logits ``[B * beam, V]`` after appending ``last_tokens`` to the prefixes of ``parent_rows``."""
        ...


class T5StepDecoder:
    """Incremental decoding of an HF ``T5ForConditionalGeneration`` with per-user cross-attention.

    The encoder runs once per user, and the cross-attention keys/values are projected once per user
    and layer (``[B, H, S, d]``); every beam of a user attends to them through a batched matmul with
    the beams as the query axis, so nothing of size ``beam x source length`` is ever copied. The
    self-attention cache (at most ``levels`` positions) is reordered with ``index_select`` after each
    step. The arithmetic is T5's: RMS layer norms, unscaled dot products, the decoder's relative
    position bias from its first layer, ``d_model ** -0.5`` output scaling when embeddings are tied.
    """

    def __init__(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 decoder_start_token_id: int = 0) -> None:
        self.model = model
        self.cfg = model.config
        self.blocks = list(model.decoder.block)
        self.heads, self.d_kv = self.cfg.num_heads, self.cfg.d_kv
        self.bsz = input_ids.shape[0]
        self.rows_per_user = 1
        self.start_token = decoder_start_token_id
        enc = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        hidden = enc.last_hidden_state
        self.cross_kv = []
        for block in self.blocks:
            att = block.layer[1].EncDecAttention
            self.cross_kv.append((self._heads(att.k(hidden)), self._heads(att.v(hidden))))
        neg = torch.finfo(hidden.dtype).min
        self.cross_bias = ((1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * neg)  # [B, 1, 1, S]
        self.self_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.position = 0

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, S, H*d]`` -> ``[B, H, S, d]``."""
        return x.view(x.shape[0], x.shape[1], self.heads, self.d_kv).transpose(1, 2)

    def first(self) -> torch.Tensor:
        tokens = torch.full((self.bsz,), self.start_token, dtype=torch.long, device=self.cross_bias.device)
        return self._forward(tokens)

    def expand(self, beam_size: int) -> None:
        self.self_kv = [(k.repeat_interleave(beam_size, 0), v.repeat_interleave(beam_size, 0))
                        for k, v in self.self_kv]
        self.rows_per_user = beam_size

    def next(self, last_tokens: torch.Tensor, parent_rows: torch.Tensor) -> torch.Tensor:
        self.self_kv = [(k.index_select(0, parent_rows), v.index_select(0, parent_rows)) for k, v in self.self_kv]
        return self._forward(last_tokens)

    def _forward(self, tokens: torch.Tensor) -> torch.Tensor:
        rows, r, t = tokens.shape[0], self.rows_per_user, self.position
        x = self.model.decoder.embed_tokens(tokens)[:, None, :]  # [rows, 1, D]
        first_att = self.blocks[0].layer[0].SelfAttention
        pos_bias = first_att.compute_bias(1, t + 1, device=x.device, past_seen_tokens=t)  # [1, H, 1, t+1]
        new_kv = []
        for i, block in enumerate(self.blocks):
            sa_layer, ca_layer, ff_layer = block.layer[0], block.layer[1], block.layer[2]
            att = sa_layer.SelfAttention
            h = sa_layer.layer_norm(x)
            q = self._heads(att.q(h))
            k, v = self._heads(att.k(h)), self._heads(att.v(h))
            if self.self_kv:
                k = torch.cat([self.self_kv[i][0], k], dim=2)
                v = torch.cat([self.self_kv[i][1], v], dim=2)
            new_kv.append((k, v))
            w = torch.softmax(q @ k.transpose(2, 3) + pos_bias, dim=-1)
            x = x + att.o((w @ v).transpose(1, 2).reshape(rows, 1, -1))
            # Cross-attention: the beams of one user form its query axis.
            catt = ca_layer.EncDecAttention
            h = ca_layer.layer_norm(x)
            q = catt.q(h).view(self.bsz, r, self.heads, self.d_kv).transpose(1, 2)  # [B, H, r, d]
            ck, cv = self.cross_kv[i]
            w = torch.softmax(q @ ck.transpose(2, 3) + self.cross_bias, dim=-1)
            ctx = (w @ cv).transpose(1, 2).reshape(rows, 1, -1)  # [B, r, H*d] -> rows
            x = x + catt.o(ctx)
            x = ff_layer(x)
        self.self_kv = new_kv
        self.position += 1
        out = self.model.decoder.final_layer_norm(x)[:, 0, :]
        if getattr(self.cfg, "scale_decoder_outputs", self.cfg.tie_word_embeddings):
            out = out * (self.cfg.d_model ** -0.5)
        return self.model.lm_head(out)


@torch.no_grad()
def constrained_beam_search(decoder: StepDecoder, trie: SidTrie, bsz: int, beam_size: int,
                            device: torch.device | str = "cpu") -> BeamResult:
    """Beam search over the trie with any :class:`StepDecoder` (``levels`` decoder calls)."""
    lp, children = _level_log_probs(decoder.first(), trie, 0, torch.zeros(bsz, dtype=torch.long, device=device))
    width = min(beam_size, lp.shape[1])
    scores, codes = torch.topk(lp, width, dim=1)  # [B, width]
    nodes = torch.gather(children, 1, codes).masked_fill(torch.isinf(scores), -1)
    if width < beam_size:  # a codebook smaller than the beam: pad with empty beams
        pad = beam_size - width
        scores = torch.cat([scores, scores.new_full((bsz, pad), float("-inf"))], 1)
        codes = torch.cat([codes, codes.new_zeros((bsz, pad))], 1)
        nodes = torch.cat([nodes, nodes.new_full((bsz, pad), -1)], 1)
    last_token = (codes + trie.offsets[0]).reshape(-1)
    if trie.levels > 1:
        decoder.expand(beam_size)
    parent_rows = torch.arange(bsz * beam_size, device=device)
    user_offset = (torch.arange(bsz, device=device) * beam_size)[:, None]
    for level in range(1, trie.levels):
        logits = decoder.next(last_token, parent_rows)
        lp, children = _level_log_probs(logits, trie, level, nodes.reshape(-1))
        k = trie.codebook_sizes[level]
        cand = (scores.reshape(-1, 1) + lp).reshape(bsz, beam_size * k)
        scores, idx = torch.topk(cand, beam_size, dim=1)
        nodes = torch.gather(children.reshape(bsz, beam_size * k), 1, idx).masked_fill(torch.isinf(scores), -1)
        parent_rows = (idx // k + user_offset).reshape(-1)
        last_token = (idx % k + trie.offsets[level]).reshape(-1)
    return BeamResult(items=nodes, scores=scores)


def constrained_beam_search_t5(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: SidTrie,
    beam_size: int,
    decoder_start_token_id: int = 0,
) -> BeamResult:
    """Constrained beam search of an HF ``T5ForConditionalGeneration`` (encoder once, cached decoder)."""
    with torch.no_grad():
        decoder = T5StepDecoder(model, input_ids, attention_mask, decoder_start_token_id)
        return constrained_beam_search(decoder, trie, input_ids.shape[0], beam_size, input_ids.device)


def ranked_items(result: BeamResult, item_ids: Sequence[str], k: int) -> list[list[str]]:
    """Top-``k`` item ids per user from a beam result (empty beams dropped)."""
    rows = result.items[:, :k].tolist()
    return [[item_ids[r] for r in row if r >= 0] for row in rows]
