"""The trained SID token rows, computed beside the frozen matrices instead of merged into copies of them.

peft's trainable tokens (``trainable_token_indices``) merge the trained rows into a full copy of the
embedding matrix on every forward, and with a tied head (SmolLM2) into a second copy for the output
head; the embedding's backward then builds a dense vocabulary-sized gradient and the head's backward the
gradient of the whole head weight, only for the SID rows of both to be kept. On the CPU that was about a
tenth of a training step of the levers path (profile in ``benchmarks/results/lcrec_speed.md``).

:func:`install` gives those layers a forward with the same parameters and the same values: the frozen
lookup with the SID positions swapped for their trained rows; the frozen head's logits with the SID
columns computed from the trained rows. Under autocast the frozen head weight is cast once and kept
(autocast casts it on every forward: it caches casts only of trainable weights). Training installs it
with ``lm_head="response"``; the float32 path (``LEGACY``) keeps peft's forward.
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F


def install(model: torch.nn.Module) -> int:
    """Give every peft trainable-tokens layer of ``model`` (an embedding or a head) the forward above;
    return how many layers got it."""
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    count = 0
    for module in model.modules():
        if isinstance(module, TrainableTokensLayer) and isinstance(module.base_layer,
                                                                   (torch.nn.Embedding, torch.nn.Linear)):
            module.forward = functools.partial(_forward, module)
            module._uqf_cache = {}
            count += 1
    return count


def _forward(layer, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """peft's forward where adapters are merged, disabled or several are active; ours otherwise."""
    names = layer.active_adapters
    if layer.merged or layer.disable_adapters or len(names) != 1 or names[0] not in layer.trainable_tokens_delta:
        return type(layer).forward(layer, x, *args, **kwargs)
    delta = layer.trainable_tokens_delta[names[0]]
    if isinstance(layer.base_layer, torch.nn.Embedding):
        return _embed(layer, x, delta, _slots(layer, names[0], x.device))
    return _head(layer, x, delta, _indices(layer, names[0], x.device))


def _indices(layer, name: str, device: torch.device) -> torch.Tensor:
    """The SID token ids of adapter ``name`` (cached)."""
    key = ("indices", name, device)
    if key not in layer._uqf_cache:
        layer._uqf_cache[key] = torch.tensor(layer.token_indices[name], dtype=torch.long, device=device)
    return layer._uqf_cache[key]


def _slots(layer, name: str, device: torch.device) -> torch.Tensor:
    """Token id -> its row in the trained rows, -1 for the frozen tokens (cached)."""
    key = ("slots", name, device)
    if key not in layer._uqf_cache:
        indices = _indices(layer, name, device)
        slots = torch.full((layer.base_layer.weight.shape[0],), -1, dtype=torch.long, device=device)
        slots[indices] = torch.arange(len(indices), device=device)
        layer._uqf_cache[key] = slots
    return layer._uqf_cache[key]


def _embed(layer, ids: torch.Tensor, delta: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """The frozen lookup, SID positions replaced by their trained rows (peft's merged lookup, value for value)."""
    base = layer.base_layer
    out = F.embedding(ids, base.weight, padding_idx=base.padding_idx, max_norm=base.max_norm,
                      norm_type=base.norm_type, scale_grad_by_freq=base.scale_grad_by_freq, sparse=base.sparse)
    slot = slots[ids]
    rows = F.embedding(slot.clamp(min=0), delta.to(out.dtype))
    out = torch.where((slot >= 0).unsqueeze(-1), rows, out)
    scale = layer._get_embed_scale()
    return out if scale is None else out * scale.to(out.dtype)


def _head(layer, hidden: torch.Tensor, delta: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The frozen head's logits with the SID columns from the trained rows (no bias, as in peft)."""
    logits = F.linear(hidden, _frozen_weight(layer, hidden.device.type))
    return logits.index_copy(-1, indices, F.linear(hidden, delta).to(logits.dtype))


def _frozen_weight(layer, device_type: str) -> torch.Tensor:
    """The base weight, or under autocast its copy in autocast's dtype, made once (the same values
    autocast's own cast gives)."""
    weight = layer.base_layer.weight
    if weight.requires_grad or not torch.is_autocast_enabled(device_type):
        return weight
    dtype = torch.get_autocast_dtype(device_type)
    key = ("cast", dtype, weight.data_ptr())
    if key not in layer._uqf_cache:
        layer._uqf_cache[key] = weight.detach().to(dtype)
    return layer._uqf_cache[key]
