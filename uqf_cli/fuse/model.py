"""The Unified Q-Former network: learnable queries read a text memory and a collab memory through gated
blocks; pooled, projected, plus a linear shortcut from the inputs, L2-normalised.

Shapes: B items, Q queries, d = ``d_model``, M memory tokens per modality. The design and the reasons
for each choice (neighbour memories, the renormalised gate, the shortcut) are in docs/fuse.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class FuserConfig:
    """Everything needed to rebuild a fuser from a saved file (stored as JSON beside the weights)."""

    text_dim: int
    collab_dim: int
    d_model: int = 256
    queries: int = 8  # the same default as `uqf fuse --queries`
    layers: int = 2
    heads: int = 4
    out_dim: int = 128
    memory: str = "neighbours"
    k_memory: int = 4
    memory_tokens: int = 4
    cold_collab: str = "zero"  # "borrow": collab-less items read their text neighbours' collab vectors
    ffn_mult: int = 2
    gate: bool = True
    shortcut: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FuserConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @property
    def memory_len(self) -> int:
        return 1 + self.k_memory if self.memory == "neighbours" else self.memory_tokens


class ModalityMemory(nn.Module):
    """Project one modality into a memory sequence [B, M, d]: neighbours + rank embedding, or T tokens."""

    def __init__(self, in_dim: int, cfg: FuserConfig) -> None:
        super().__init__()
        self.mode = cfg.memory
        self.d = cfg.d_model
        if self.mode == "neighbours":
            self.proj = nn.Linear(in_dim, cfg.d_model)
            self.rank = nn.Parameter(torch.zeros(cfg.memory_len, cfg.d_model))
        else:
            self.proj = nn.Linear(in_dim, cfg.memory_tokens * cfg.d_model)
            self.rank = nn.Parameter(torch.zeros(cfg.memory_tokens, cfg.d_model))
        nn.init.normal_(self.rank, std=0.02)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq``: [B, M, in] (neighbours: self + neighbours; tokens: only row 0 is read) -> [B, M', d]."""
        if self.mode == "neighbours":
            return self.proj(seq) + self.rank
        return self.proj(seq[:, 0]).view(seq.shape[0], -1, self.d) + self.rank


class CrossAttention(nn.Module):
    """Multi-head attention from queries [b, Q, d] to a memory [B, M, d]; b may be 1 (shared queries).
    Self-attention is the case memory = queries. Written out so that shared queries (first block) are
    projected once and broadcast.
    """

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.h = heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.o = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        bsz, m, d = mem.shape
        hd = d // self.h
        q = self.q(x).view(x.shape[0], -1, self.h, hd).transpose(1, 2).expand(bsz, -1, -1, -1)
        k, v = self.kv(mem).view(bsz, m, 2, self.h, hd).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o(out.transpose(1, 2).reshape(bsz, -1, d))


class QFormerBlock(nn.Module):
    """Self-attention, parallel gated cross-attention to both memories, feed-forward; pre-norm residuals."""

    def __init__(self, cfg: FuserConfig) -> None:
        super().__init__()
        d, h = cfg.d_model, cfg.heads
        self.ln_self = nn.LayerNorm(d)
        self.self_attn = CrossAttention(d, h)
        self.ln_cross = nn.LayerNorm(d)
        self.ln_mem_t = nn.LayerNorm(d)
        self.ln_mem_c = nn.LayerNorm(d)
        self.cross_text = CrossAttention(d, h)
        self.cross_collab = CrossAttention(d, h)
        self.use_gate = cfg.gate
        self.gate = nn.Linear(2 * d, d)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.ln_ffn = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn_mult * d), nn.GELU(), nn.Linear(cfg.ffn_mult * d, d))

    def forward(
        self, q: torch.Tensor, mem_t: torch.Tensor, mem_c: torch.Tensor, t_on: torch.Tensor, c_on: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``q``: [B, Q, d], or [1, Q, d] when all items share it (first block); ``t_on``/``c_on``: [B, 1, 1]
        float, 0 where the modality is absent (its branch output is zeroed)."""
        x = self.ln_self(q)
        q = q + self.self_attn(x, x)
        x = self.ln_cross(q)
        mt, mc = self.ln_mem_t(mem_t), self.ln_mem_c(mem_c)
        h_t = self.cross_text(x, mt) * t_on
        h_c = self.cross_collab(x, mc) * c_on
        # --no-gate: a constant 0.5, i.e. the plain mean of the two branches
        g = torch.sigmoid(self.gate(torch.cat([h_t, h_c], dim=-1))) if self.use_gate else torch.full_like(h_t, 0.5)
        g = torch.where(c_on > 0, torch.where(t_on > 0, g, torch.zeros_like(g)), torch.ones_like(g))
        q = q + g * h_t + (1 - g) * h_c
        q = q + self.ffn(self.ln_ffn(q))
        return q, g, h_t, h_c


@dataclass
class FuserOutput:
    """What one forward pass gives: fused unit vectors, gate values and what the extra losses need."""

    fused: torch.Tensor  # [B, out_dim], L2-normalised
    gate: torch.Tensor  # [B] mean gate (1 = text, 0 = collab)
    text_branch: torch.Tensor  # [B, out_dim] pooled text branch of the last block (unnormalised)
    collab_branch: torch.Tensor  # [B, out_dim]
    recon_text: torch.Tensor  # [B, text_dim]
    recon_collab: torch.Tensor  # [B, collab_dim]


class UnifiedQFormer(nn.Module):
    """Learnable queries reading a text memory and a collaborative memory through gated Q-Former blocks."""

    def __init__(self, cfg: FuserConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.queries = nn.Parameter(torch.randn(cfg.queries, cfg.d_model) * 0.02)
        self.mem_text = ModalityMemory(cfg.text_dim, cfg)
        self.mem_collab = ModalityMemory(cfg.collab_dim, cfg)
        # marks a borrowed collab memory, so the blocks can tell it from the item's own
        self.borrow_flag = nn.Parameter(torch.zeros(cfg.d_model)) if cfg.cold_collab == "borrow" else None
        self.blocks = nn.ModuleList(QFormerBlock(cfg) for _ in range(cfg.layers))
        self.ln_out = nn.LayerNorm(cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.out_dim)
        self.skip_text = nn.Linear(cfg.text_dim, cfg.out_dim, bias=False) if cfg.shortcut else None
        self.skip_collab = nn.Linear(cfg.collab_dim, cfg.out_dim, bias=False) if cfg.shortcut else None
        self.branch_out = nn.Linear(cfg.d_model, cfg.out_dim)
        self.dec_text = nn.Linear(cfg.out_dim, cfg.text_dim)
        self.dec_collab = nn.Linear(cfg.out_dim, cfg.collab_dim)

    def forward(
        self,
        text_seq: torch.Tensor,
        collab_seq: torch.Tensor,
        text_present: torch.Tensor,
        collab_present: torch.Tensor,
        borrowed: torch.Tensor | None = None,
    ) -> FuserOutput:
        """``*_seq``: [B, M, in_dim] memory inputs (row 0 = the item itself); ``*_present``: [B] bool;
        ``borrowed``: [B] bool, rows whose collab memory is borrowed from text neighbours (``cold_collab``)."""
        mem_t = self.mem_text(text_seq)
        mem_c = self.mem_collab(collab_seq)
        if self.borrow_flag is not None and borrowed is not None:
            mem_c = mem_c + self.borrow_flag * borrowed.to(mem_c.dtype)[:, None, None]
        t_on = text_present.to(mem_t.dtype)[:, None, None]
        c_on = collab_present.to(mem_c.dtype)[:, None, None]
        q = self.queries.unsqueeze(0)  # [1, Q, d]: broadcast over items inside the first block
        gates = []
        h_t = h_c = q
        for block in self.blocks:
            q, g, h_t, h_c = block(q, mem_t, mem_c, t_on, c_on)
            gates.append(g.mean(dim=(1, 2)))
        pooled = self.ln_out(q.mean(dim=1))
        fused = self.out(pooled)
        if self.skip_text is not None and self.skip_collab is not None:
            t_on, c_on = t_on[:, :, 0], c_on[:, :, 0]
            # inputs are unit vectors; scaling by sqrt(dim) gives them unit variance per channel, like the
            # layer-normalised pooled queries, so neither path starts out drowning the other
            t_in = text_seq[:, 0] * math.sqrt(self.cfg.text_dim)
            c_in = collab_seq[:, 0] * math.sqrt(self.cfg.collab_dim)
            fused = fused + self.skip_text(t_in) * t_on + self.skip_collab(c_in) * c_on
        fused = F.normalize(fused, dim=-1)
        return FuserOutput(
            fused=fused,
            gate=torch.stack(gates, 0).mean(0),
            text_branch=self.branch_out(h_t.mean(dim=1)),
            collab_branch=self.branch_out(h_c.mean(dim=1)),
            recon_text=self.dec_text(fused),
            recon_collab=self.dec_collab(fused),
        )
