"""A lean training forward for TIGER's T5: the same weights, fewer kernels.

``lean_t5_loss`` computes the teacher-forced cross-entropy of a ``T5ForConditionalGeneration``
(ReLU feed-forward, relative position bias) directly from the model's own submodules, so the
parameters, their names, saving, loading and the beam search are those of the Hugging Face model.
What it does differently from the Hugging Face forward, and why:

* attention through ``torch.nn.functional.scaled_dot_product_attention`` (one fused kernel on CPU)
  with T5's relative position bias and the padding / causal masks folded into one additive float
  mask (``scale=1``: T5 does not scale the query-key product); Q, K, V come from one matmul;
* RMS norm through ``torch.nn.functional.rms_norm``; no key/value cache is built while training;
* no dropout on the attention probabilities (the fused kernel has none on CPU); the dropout on
  embeddings, residual branches and the feed-forward hidden layer is the model's own.

With dropout off it returns the Hugging Face loss (checked in the tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ATTENTION_FP32 = True


def _split_heads(x: torch.Tensor, parts: int, heads: int) -> tuple[torch.Tensor, ...]:
    """``[B, L, parts * H * D]`` -> ``parts`` tensors ``[B, H, L, D]`` (views, no copy)."""
    b, n, _ = x.shape
    return tuple(x.view(b, n, parts, heads, -1).permute(2, 0, 3, 1, 4).unbind(0))


def _attention(attn, x: torch.Tensor, kv: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
    """Multi-head attention of one ``T5Attention`` module; self-attention when ``kv`` is None."""
    heads = attn.n_heads
    if kv is None:
        w = torch.cat([attn.q.weight, attn.k.weight, attn.v.weight])
        q, k, v = _split_heads(F.linear(x, w), 3, heads)
    else:
        (q,) = _split_heads(attn.q(x), 1, heads)
        k, v = _split_heads(F.linear(kv, torch.cat([attn.k.weight, attn.v.weight])), 2, heads)
    if ATTENTION_FP32 and q.dtype != torch.float32:
        with torch.autocast(q.device.type, enabled=False):
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask.float(), scale=1.0)
        out = out.to(q.dtype)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), scale=1.0)
    b, _, n, _ = out.shape
    return attn.o(out.transpose(1, 2).reshape(b, n, -1))


def _norm(layer_norm, x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), layer_norm.weight, layer_norm.variance_epsilon)


def _feed_forward(ff_layer, x: torch.Tensor) -> torch.Tensor:
    dense = ff_layer.DenseReluDense
    h = dense.dropout(torch.relu(dense.wi(_norm(ff_layer.layer_norm, x))))
    return x + ff_layer.dropout(dense.wo(h))


def _self_block(layer, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x + layer.dropout(_attention(layer.SelfAttention, _norm(layer.layer_norm, x), None, mask))


def _cross_block(layer, x: torch.Tensor, enc: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x + layer.dropout(_attention(layer.EncDecAttention, _norm(layer.layer_norm, x), enc, mask))


def _masked_bias(bias: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
    """Additive attention mask: the position bias where attending is allowed, the dtype's minimum elsewhere."""
    return bias.masked_fill(blocked, torch.finfo(bias.dtype).min)


def encode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Encoder hidden states ``[B, L, d_model]`` (after the final norm and dropout)."""
    stack = model.encoder
    n = input_ids.shape[1]
    bias = stack.block[0].layer[0].SelfAttention.compute_bias(n, n, device=input_ids.device)
    mask = _masked_bias(bias, ~attention_mask.bool()[:, None, None, :])
    x = stack.dropout(stack.embed_tokens(input_ids))
    for block in stack.block:
        x = _feed_forward(block.layer[1], _self_block(block.layer[0], x, mask))
    return stack.dropout(_norm(stack.final_layer_norm, x))


def decode_logits(model, decoder_input_ids: torch.Tensor, enc: torch.Tensor,
                  attention_mask: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, T, vocab]`` of the decoder under teacher forcing."""
    return hidden_to_logits(model, decode_hidden(model, decoder_input_ids, enc, attention_mask))


def hidden_to_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head on decoder hidden states (with T5's output scaling when embeddings are tied)."""
    if getattr(model.config, "scale_decoder_outputs", model.config.tie_word_embeddings):
        hidden = hidden * (model.model_dim ** -0.5)
    return model.lm_head(hidden)


def decode_hidden(model, decoder_input_ids: torch.Tensor, enc: torch.Tensor,
                  attention_mask: torch.Tensor) -> torch.Tensor:
    """Decoder hidden states ``[B, T, d_model]`` under teacher forcing (after the final norm and dropout)."""
    stack = model.decoder
    t = decoder_input_ids.shape[1]
    bias = stack.block[0].layer[0].SelfAttention.compute_bias(t, t, device=enc.device)
    future = torch.ones(t, t, dtype=torch.bool, device=enc.device).triu(1)
    self_mask = _masked_bias(bias, future)
    cross_mask = _masked_bias(torch.zeros((), dtype=enc.dtype, device=enc.device),
                              ~attention_mask.bool()[:, None, None, :])
    x = stack.dropout(stack.embed_tokens(decoder_input_ids))
    for block in stack.block:
        x = _self_block(block.layer[0], x, self_mask)
        x = _cross_block(block.layer[1], x, enc, cross_mask)
        x = _feed_forward(block.layer[2], x)
    return stack.dropout(_norm(stack.final_layer_norm, x))


def lean_t5_loss(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean token cross-entropy of ``labels`` given the encoder input (teacher forcing, start token = pad)."""
    start = model.config.decoder_start_token_id
    decoder_input_ids = torch.cat([torch.full_like(labels[:, :1], start), labels[:, :-1]], dim=1)
    logits = decode_logits(model, decoder_input_ids, encode(model, input_ids, attention_mask), attention_mask)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))
