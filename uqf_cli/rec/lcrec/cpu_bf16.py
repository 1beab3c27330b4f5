"""bf16 autocast training on a CPU, without the costs that ate most of its gain.

Profiled on SmolLM2-135M + LoRA (one thread, batches of 8 x 36-171 tokens; numbers in
``benchmarks/results/lcrec_speed.md``):

1. PyTorch's CPU flash-attention backward is 2-4x slower in bfloat16 than in float32, so under autocast
   (which runs ``scaled_dot_product_attention`` in bf16) attention was a fifth of a training step.
   :func:`prepare` switches the model to an attention function that runs SDPA in float32 (queries, keys
   and values cast up, autocast off inside it); the projections around it stay bf16.
2. Autocast casts every frozen weight to bf16 on every forward (it caches casts only of trainable
   weights). The frozen linear layers keep a bf16 copy of their weight instead, made on first use: the
   same values autocast's cast gives, so the same outputs.
3. With the matmuls in bf16, LoRA's dropout became a fifth of a step: ``bernoulli_`` on a CPU draws one
   random number per element, serially. The LoRA dropout layers draw their masks from 64-bit random
   words cut into four 16-bit lanes instead (keep where the lane is at least ``round(p * 65536)``: the
   same independent per-element masks, ``p`` to 1/65536), about 2.5x cheaper.

Outside autocast the first two are no-ops (the model still runs in float32); the dropout is the same
distribution either way.
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F

ATTENTION = "uqf_sdpa_fp32"  # the registered attention implementation


def prepare(model: torch.nn.Module) -> None:
    """Give ``model`` (a Hugging Face causal LM, peft-wrapped or not) float32 attention under autocast,
    cached bf16 copies of its frozen linear weights and cheaper dropout masks in its LoRA layers."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", None) == "sdpa":
        _register()
        base.set_attn_implementation(ATTENTION)
    for module in model.modules():
        if type(module) is torch.nn.Linear and not module.weight.requires_grad:
            module.forward = functools.partial(_linear, module)
            module._uqf_cast = {}
    for name, module in model.named_modules():
        if ".lora_dropout." in f".{name}." and type(module) is torch.nn.Dropout and not module.inplace:
            module.forward = functools.partial(_dropout, module)


def _register() -> None:
    """Register :data:`ATTENTION` (and SDPA's mask builder under its name) with transformers."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, _sdpa_fp32)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def _sdpa_fp32(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention, in float32 and outside autocast."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    with torch.autocast(query.device.type, enabled=False):
        return sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask, **kwargs)


def _linear(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``; under autocast with the weight's cached copy in autocast's dtype."""
    device_type = x.device.type
    if not torch.is_autocast_enabled(device_type):
        return F.linear(x, module.weight, module.bias)
    dtype = torch.get_autocast_dtype(device_type)
    key = (dtype, module.weight.data_ptr())
    if key not in module._uqf_cast:
        module._uqf_cast.clear()
        module._uqf_cast[key] = module.weight.detach().to(dtype)
    return F.linear(x, module._uqf_cast[key], module.bias)


def _dropout(module: torch.nn.Dropout, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with the mask drawn 16 bits an element (see the module docstring)."""
    p = float(module.p)
    if not module.training or p == 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2**63, None)
    lanes = words.view(torch.int16)[:n].view(x.shape)  # uniform on [-32768, 32767]
    keep = (lanes >= round(p * 65536) - 32768).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * keep
