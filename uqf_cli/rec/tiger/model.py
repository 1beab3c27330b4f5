"""TIGER's network: a randomly initialised T5 with our vocabulary, and a CPU-cheap dropout."""

from __future__ import annotations

import torch

from uqf_cli.rec.tiger.options import TigerOptions
from uqf_cli.rec.tiger.vocab import EOS, PAD, TigerVocab


def build_model(vocab: TigerVocab, opts: TigerOptions):
    """A randomly initialised T5 with TIGER's shape and our vocabulary."""
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=vocab.size, d_model=opts.d_model, d_kv=opts.d_kv, d_ff=opts.d_ff,
                   num_layers=opts.num_layers, num_decoder_layers=opts.num_decoder_layers, num_heads=opts.num_heads,
                   dropout_rate=opts.dropout, feed_forward_proj="relu", pad_token_id=PAD, eos_token_id=EOS,
                   decoder_start_token_id=PAD)
    return T5ForConditionalGeneration(cfg)


class FastDropout(torch.nn.Module):
    """Inverted dropout (zero with probability ``p``, scale the rest by ``1 / (1 - p)``), CPU-cheap masks.

    Same function as ``torch.nn.Dropout``; only where the random bits come from differs. On a CPU
    ``nn.Dropout`` draws one random number per element, and for this small model that costs several
    times the feed-forward matmul it follows (a ``[tokens, d_ff]`` mask per layer). Here one 64-bit
    draw gives four 16-bit uniform integers, and an element is dropped when its integer is below
    ``round(p * 65536)`` (so ``p`` is honoured to 1/65536). Deterministic given the torch seed.
    On GPUs the native dropout is used (it is fast there).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)
        self.threshold = round(self.p * 65536) - 32768  # int16 values are uniform on [-32768, 32767]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return torch.nn.functional.dropout(x, self.p, True)
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2 ** 63), None)  # 64 uniform bits each
        bits = words.view(torch.int16)[:n].view(x.shape)
        return x.masked_fill(bits < self.threshold, 0.0).mul_(1.0 / (1.0 - self.p))


def use_fast_dropout(model: torch.nn.Module) -> int:
    """Replace every ``nn.Dropout`` submodule by :class:`FastDropout` with the same ``p``; returns how many."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(parent, name, FastDropout(child.p))
                swapped += 1
    return swapped
