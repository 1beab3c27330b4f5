"""Step-wise decoding of TIGER's T5 for the constrained beam search (:mod:`uqf_cli.rec.decoding`).

The encoder runs once per user and the cross-attention keys/values once per user; the decoder
layers are evaluated from their weight tensors with T5's arithmetic (RMS norms, unscaled dot
products, relative position bias), with a per-beam self-attention cache. docs/train-rec.md has
the design and its measurements.
"""

from __future__ import annotations

import torch

from uqf_cli.rec.decoding import BeamResult, SidTrie, constrained_beam_search


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """T5's layer norm (no mean subtraction, no bias; variance in fp32), as ``T5LayerNorm`` computes it."""
    variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def _feed_forward(x: torch.Tensor, wi: torch.Tensor, wo: torch.Tensor) -> torch.Tensor:
    """T5's ReLU feed-forward (``wo(relu(wi(x)))``; dropout is the identity in eval mode)."""
    return torch.nn.functional.linear(torch.relu_(torch.nn.functional.linear(x, wi)), wo)


def t5_encode(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              chunk_users: int = 32) -> torch.Tensor:
    """The T5 encoder's last hidden state, computed straight from the model's weights.

    Same arithmetic as ``model.get_encoder()`` in eval mode (embeddings, pre-norm blocks, unscaled
    dot-product attention with the first layer's relative position bias added to the padding mask,
    ReLU feed-forward, final RMS norm), but (a) the relative position bias is computed once for the
    whole batch and (b) the users are processed in chunks of ``chunk_users``, so the feed-forward's
    ``[tokens, d_ff]`` intermediate stays in the CPU cache instead of streaming through memory; on
    a small model these memory-bound steps cost as much as the matrix products.
    """
    enc = model.get_encoder()
    cfg = model.config
    heads, d_kv, eps = cfg.num_heads, cfg.d_kv, cfg.layer_norm_epsilon
    seq = input_ids.shape[1]
    first = enc.block[0].layer[0].SelfAttention
    pos_bias = first.compute_bias(seq, seq, device=input_ids.device)  # [1, H, S, S]
    neg = torch.finfo(enc.embed_tokens.weight.dtype).min
    layers = [(blk.layer[0].layer_norm.weight,
               torch.cat([blk.layer[0].SelfAttention.q.weight, blk.layer[0].SelfAttention.k.weight,
                          blk.layer[0].SelfAttention.v.weight]),
               blk.layer[0].SelfAttention.o.weight, blk.layer[1].layer_norm.weight,
               blk.layer[1].DenseReluDense) for blk in enc.block]
    linear = torch.nn.functional.linear
    outs = []
    for start in range(0, input_ids.shape[0], chunk_users):
        ids, mask = input_ids[start:start + chunk_users], attention_mask[start:start + chunk_users]
        bsz = ids.shape[0]
        bias = pos_bias + (1.0 - mask[:, None, None, :].to(pos_bias.dtype)) * neg  # [b, H, S, S]
        x = enc.embed_tokens(ids)
        for ln_att, w_qkv, w_o, ln_ff, ff in layers:
            # q, k, v in one product; [b, S, 3, H, d] -> three [b, H, S, d] views
            qkv = linear(_rms_norm(x, ln_att, eps), w_qkv).view(bsz, seq, 3, heads, d_kv).permute(2, 0, 3, 1, 4)
            # Sequences of a few dozen tokens: plain batched products beat the fused attention kernel.
            scores = torch.matmul(qkv[0], qkv[1].transpose(-1, -2)).add_(bias)
            ctx = torch.matmul(torch.softmax(scores, dim=-1), qkv[2])  # [b, H, S, d]
            x = x + linear(ctx.transpose(1, 2).reshape(bsz, seq, heads * d_kv), w_o)
            x = x + _feed_forward(_rms_norm(x, ln_ff, eps), ff.wi.weight, ff.wo.weight)
        outs.append(_rms_norm(x, enc.final_layer_norm.weight, eps))
    return torch.cat(outs) if len(outs) > 1 else outs[0]


class T5StepDecoder:
    """Incremental decoding of an HF ``T5ForConditionalGeneration`` with per-user cross-attention.

    The encoder runs once per user (:func:`t5_encode`), and the cross-attention keys/values of all
    decoder layers are projected once per user in one matrix product (``[B, H, S, d]`` per layer);
    every beam of a user attends to them through a batched matmul with the beams as the query axis,
    so nothing of size ``beam x source length`` is ever copied. The self-attention cache (at most
    ``levels`` positions) is reordered with ``index_select`` after each step. The decoder layers are
    evaluated from their weight tensors (no module dispatch in the inner loop), with the arithmetic
    of T5: RMS layer norms, unscaled dot products, the decoder's relative position bias from its first
    layer (computed once for positions ``0..levels``), ``d_model ** -0.5`` output scaling when
    embeddings are tied.
    """

    def __init__(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 decoder_start_token_id: int = 0, max_steps: int = 8) -> None:
        self.model = model
        self.cfg = model.config
        self.eps = self.cfg.layer_norm_epsilon
        self.heads, self.d_kv = self.cfg.num_heads, self.cfg.d_kv
        self.bsz = input_ids.shape[0]
        self.rows_per_user = 1
        self.start_token = decoder_start_token_id
        blocks = list(model.decoder.block)
        self.layers = [self._layer_weights(b) for b in blocks]
        hidden = t5_encode(model, input_ids, attention_mask)
        inner = self.heads * self.d_kv
        cross_w = torch.cat([torch.cat([b.layer[1].EncDecAttention.k.weight, b.layer[1].EncDecAttention.v.weight])
                             for b in blocks])  # [layers * 2 * inner, D]
        kv = torch.nn.functional.linear(hidden, cross_w)  # [B, S, layers * 2 * inner]
        # Contiguous once, keys already transposed: the per-step matmuls then read them in place.
        self.cross_kv = [(self._heads(kv[..., (2 * i) * inner:(2 * i + 1) * inner]).transpose(2, 3).contiguous(),
                          self._heads(kv[..., (2 * i + 1) * inner:(2 * i + 2) * inner]).contiguous())
                         for i in range(len(blocks))]  # ([B, H, d, S], [B, H, S, d]) per layer
        neg = torch.finfo(hidden.dtype).min
        self.cross_bias = ((1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * neg)  # [B, 1, 1, S]
        first_att = blocks[0].layer[0].SelfAttention
        # Row t: bias of query position t over key positions 0..max_steps-1 (sliced to 0..t when used).
        self.pos_bias = first_att.compute_bias(max_steps, max_steps, device=hidden.device)[0]  # [H, T, T]
        self.self_kv: list[list[torch.Tensor]] = []  # per layer: [k_0, v_0, k_1, v_1, ...], each [rows, H, d]
        self.position = 0

    @staticmethod
    def _layer_weights(block: torch.nn.Module) -> dict[str, torch.Tensor]:
        sa, ca, ff = block.layer[0], block.layer[1], block.layer[2]
        att, catt = sa.SelfAttention, ca.EncDecAttention
        return {"ln_sa": sa.layer_norm.weight, "qkv": torch.cat([att.q.weight, att.k.weight, att.v.weight]),
                "o": att.o.weight, "ln_ca": ca.layer_norm.weight, "cq": catt.q.weight, "co": catt.o.weight,
                "ln_ff": ff.layer_norm.weight, "wi": ff.DenseReluDense.wi.weight, "wo": ff.DenseReluDense.wo.weight}

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, S, H*d]`` -> ``[B, H, S, d]``."""
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.d_kv).transpose(1, 2)

    def first(self) -> torch.Tensor:
        tokens = torch.full((self.bsz,), self.start_token, dtype=torch.long, device=self.cross_bias.device)
        return self._forward(tokens)

    def next(self, last_tokens: torch.Tensor, parent_rows: torch.Tensor) -> torch.Tensor:
        self.self_kv = [[kv.index_select(0, parent_rows) for kv in layer] for layer in self.self_kv]
        self.rows_per_user = last_tokens.shape[0] // self.bsz
        return self._forward(last_tokens)

    def _forward(self, tokens: torch.Tensor) -> torch.Tensor:
        rows, r, t = tokens.shape[0], self.rows_per_user, self.position
        linear = torch.nn.functional.linear
        inner = self.heads * self.d_kv
        x = self.model.decoder.embed_tokens(tokens)  # [rows, D]
        pos_bias = self.pos_bias[:, t:t + 1, :t + 1]  # [H, 1, t+1]
        new_kv = []
        for i, w in enumerate(self.layers):
            qkv = linear(_rms_norm(x, w["ln_sa"], self.eps), w["qkv"]).view(rows, 3, self.heads, self.d_kv)
            q = qkv[:, 0]  # [rows, H, d]
            # The cache holds one [rows, H, d] key and value per earlier position, so a step appends
            # two tensors instead of copying the whole cache into a longer one.
            cached = self.self_kv[i] if self.self_kv else []
            keys, values = [*cached[0::2], qkv[:, 1]], [*cached[1::2], qkv[:, 2]]
            new_kv.append([kv for pair in zip(keys, values, strict=True) for kv in pair])
            # One query against at most `levels` keys per row: elementwise products beat a batched
            # matmul of rows x heads tiny matrices.
            scores = torch.stack([(q * k).sum(-1) for k in keys], dim=-1)  # [rows, H, t+1]
            att = torch.softmax(scores + pos_bias[:, 0], dim=-1)
            ctx = att[..., 0, None] * values[0]
            for p in range(1, len(values)):
                ctx = ctx.addcmul_(att[..., p, None], values[p])
            x = x + linear(ctx.reshape(rows, inner), w["o"])
            # Cross-attention: the beams of one user form its query axis.
            q = linear(_rms_norm(x, w["ln_ca"], self.eps), w["cq"]).view(self.bsz, r, self.heads, self.d_kv)
            ck, cv = self.cross_kv[i]
            att = torch.softmax(q.transpose(1, 2) @ ck + self.cross_bias, dim=-1)  # [B, H, r, S]
            x = x + linear((att @ cv).transpose(1, 2).reshape(rows, inner), w["co"])
            x = x + _feed_forward(_rms_norm(x, w["ln_ff"], self.eps), w["wi"], w["wo"])
        self.self_kv = new_kv
        self.position += 1
        out = _rms_norm(x, self.model.decoder.final_layer_norm.weight, self.eps)
        if getattr(self.cfg, "scale_decoder_outputs", self.cfg.tie_word_embeddings):
            out = out * (self.cfg.d_model ** -0.5)
        return self.model.lm_head(out)


def constrained_beam_search_t5(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: SidTrie,
    beam_size: int,
    decoder_start_token_id: int = 0,
    users_per_chunk: int | None = None,
) -> BeamResult:
    """Constrained beam search of an HF ``T5ForConditionalGeneration`` (encoder once, cached decoder).

    Users are searched in chunks of ``users_per_chunk`` (results do not depend on it: every user's
    search is independent); the default aims at about 512 decoder rows on a CPU, where products of a
    few hundred rows stay in cache (all users at once on a GPU).
    """
    n = input_ids.shape[0]
    if users_per_chunk is None:
        users_per_chunk = n if input_ids.device.type != "cpu" else max(1, 512 // max(1, beam_size))
    items, scores = [], []
    with torch.inference_mode():
        for start in range(0, n, users_per_chunk):
            ids, mask = input_ids[start:start + users_per_chunk], attention_mask[start:start + users_per_chunk]
            decoder = T5StepDecoder(model, ids, mask, decoder_start_token_id, trie.levels + 1)
            res = constrained_beam_search(decoder, trie, ids.shape[0], beam_size)
            items.append(res.items)
            scores.append(res.scores)
    if len(items) == 1:
        return BeamResult(items=items[0], scores=scores[0])
    return BeamResult(items=torch.cat(items), scores=torch.cat(scores))
