"""Beam steps that attend to each user's prompt once, not once per beam (LC-Rec decoding on a CPU).

Profiled on SmolLM2-135M shapes (32 users, beam 20, bf16 body, one thread), a third of constrained beam
search went to the prompt's KV cache repeated for the beams: Hugging Face's ``reorder_cache`` copies the
whole cache (prompt included) to the beams' parents at every SID level, its ``update`` copies it again
to append one token, and the attention then reads every beam's copy of the same prompt. All beams of a
user share their prompt, so here the prompt's keys and values stay one copy per user (float32, kept
from the prompt's forward) and only the few SID tokens a beam has written are per beam, reordered and
appended. A step's attention for the ``W`` beams of a user is one ``[W x heads, prompt]`` score matrix
against that user's prompt beside each beam's own ``[heads, s]`` scores against its SID tokens, with
one softmax over both. The arithmetic is float32 (PyTorch's CPU flash attention in bf16 rounds the
softmax weights to bf16 before multiplying the values), so scores move by rounding only.

:class:`uqf_cli.rec.lcrec.recommender.SharedPrefixStepDecoder` runs the steps;
:func:`uqf_cli.rec.lcrec.recommender.load` uses it for bf16/half decoding of the architectures in
:data:`SUPPORTED` (their attention runs through transformers' attention interface and passes the model's
keyword arguments on to it); the float32 path keeps Hugging Face's cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

ATTENTION = "uqf_shared_prefix"  # the registered attention implementation
STATE_KWARG = "uqf_shared_prefix"  # the keyword argument that carries the state to the attention
SUPPORTED = ("llama",)  # model types whose every layer is full causal attention through the interface (SDPA)


def supported(model) -> bool:
    """Whether ``model`` (a Hugging Face causal LM) can decode with :class:`SharedPrefixStepDecoder`."""
    try:
        from transformers import AttentionInterface  # noqa: F401  (attention functions get the model's kwargs)
    except ImportError:
        return False
    config = getattr(model, "config", None)
    return (hasattr(model, "set_attn_implementation") and getattr(config, "model_type", None) in SUPPORTED
            and getattr(config, "_attn_implementation", None) in ("sdpa", ATTENTION))


def prepare(model) -> None:
    """Switch ``model`` to :data:`ATTENTION`: SDPA unless a step carries a :class:`PrefixState`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, _attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    model.set_attn_implementation(ATTENTION)


@dataclass
class PrefixState:
    """The prompt's keys/values per user and layer (float32, ``[B, kv_heads, T, D]``), an additive mask
    of its left padding (``[B, 1, 1, T]``) and each beam's own keys/values (``[R, kv_heads, s, D]``)."""

    prefix_keys: list[torch.Tensor]
    prefix_values: list[torch.Tensor]
    prefix_bias: torch.Tensor
    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)
    calls: int = 0  # attention calls of the current step (one per layer)

    @classmethod
    def from_cache(cls, cache, mask: torch.Tensor) -> PrefixState:
        """The state after the prompt's forward (its ``DynamicCache`` and 0/1 attention mask ``[B, T]``)."""
        layers = getattr(cache, "layers", None)  # transformers < 4.56: key_cache and value_cache lists
        pairs = [(la.keys, la.values) for la in layers] if layers is not None else list(
            zip(cache.key_cache, cache.value_cache, strict=True))
        if not pairs:
            raise RuntimeError("the prompt's forward left an empty cache")
        keys, values = [k.float() for k, _ in pairs], [v.float() for _, v in pairs]
        bias = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        bias = bias.masked_fill(mask == 0, float("-inf"))[:, None, None, :]
        return cls(keys, values, bias, [None] * len(keys), [None] * len(keys))

    def reorder(self, parent_rows: torch.Tensor) -> None:
        """Each beam row takes its parent's SID-token keys/values (the prompt is per user: untouched)."""
        for lv in range(len(self.keys)):
            k, v = self.keys[lv], self.values[lv]
            if k is not None and v is not None:
                self.keys[lv], self.values[lv] = k.index_select(0, parent_rows), v.index_select(0, parent_rows)
        self.calls = 0

    def append(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add a step's key/value (``[R, kv_heads, 1, D]``) to layer ``layer``'s beam part; return that part."""
        k, v = key.float(), value.float()
        old_k, old_v = self.keys[layer], self.values[layer]
        if old_k is not None and old_v is not None:
            k, v = torch.cat([old_k, k], dim=2), torch.cat([old_v, v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        self.calls += 1
        return k, v


def _attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """SDPA for the prompt's forward; the shared-prefix attention (float32) for a beam step."""
    state = kwargs.pop(STATE_KWARG, None)
    if state is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    own_k, own_v = state.append(module.layer_idx, key, value)
    out = shared_prefix_attention(query, state.prefix_keys[module.layer_idx], state.prefix_values[module.layer_idx],
                                  state.prefix_bias, own_k, own_v, float(scaling if scaling is not None
                                                                         else query.shape[-1] ** -0.5))
    return out.to(query.dtype), None


def shared_prefix_attention(query: torch.Tensor, prefix_k: torch.Tensor, prefix_v: torch.Tensor,
                            prefix_bias: torch.Tensor, own_k: torch.Tensor, own_v: torch.Tensor,
                            scaling: float) -> torch.Tensor:
    """One query token per beam row (``query`` ``[R, heads, 1, D]``, rows user-major, ``R = B * W``)
    against its user's prompt (``[B, kv_heads, T, D]``, ``prefix_bias`` ``[B, 1, 1, T]``) and its own
    tokens (``[R, kv_heads, s, D]``); float32, returned as ``[R, 1, heads, D]`` (the attention
    interface's layout)."""
    rows, heads, _, dim = query.shape
    users, kv_heads, _, _ = prefix_k.shape
    width, groups = rows // users, heads // kv_heads
    q = query.float().reshape(users, width, kv_heads, groups, dim)
    q_user = q.permute(0, 2, 1, 3, 4).reshape(users, kv_heads, width * groups, dim)  # a user's beams as queries
    s_prefix = torch.matmul(q_user, prefix_k.transpose(-1, -2)).mul_(scaling).add_(prefix_bias)
    q_row = q.reshape(rows, kv_heads, groups, dim)
    s_own = torch.matmul(q_row, own_k.transpose(-1, -2)).mul_(scaling)  # [R, kv_heads, groups, s]
    own = own_k.shape[2]
    s_own_user = s_own.reshape(users, width, kv_heads, groups, own).permute(0, 2, 1, 3, 4)
    scores = torch.cat([s_prefix, s_own_user.reshape(users, kv_heads, width * groups, own)], dim=-1)
    weights = torch.softmax(scores, dim=-1)
    out = torch.matmul(weights[..., :-own], prefix_v)  # [B, kv_heads, W * groups, D]
    w_own = weights[..., -own:].reshape(users, kv_heads, width, groups, own).permute(0, 2, 1, 3, 4)
    out_own = torch.matmul(w_own.reshape(rows, kv_heads, groups, own), own_v)  # [R, kv_heads, groups, D]
    out = out.reshape(users, kv_heads, width, groups, dim).permute(0, 2, 1, 3, 4).reshape(rows, heads, dim)
    return (out + out_own.reshape(rows, heads, dim))[:, None]
