"""LC-Rec's options: one dataclass with every default, checked for range."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from uqf_cli.core.config_field import opt
from uqf_cli.core.errors import OptionError
from uqf_cli.rec import options as shared
from uqf_cli.rec.options import BackboneOptions

PANEL = "LC-Rec (--backbone lcrec)"
PRECISIONS = ("auto", "bf16", "fp32")  # auto: bf16 where the CPU/GPU has bf16 kernels (fp16 on older GPUs)
LM_HEADS = ("response", "full")  # response: output-head logits only at the response positions
BATCHINGS = ("bucketed", "random")  # the same random batches, as length-sorted micro-batches or one forward each
TEMPLATES = ("compact", "alpaca")  # prompts.py holds both; models without a recorded template are alpaca
# The fixed cost of a forward+backward pass in padded token positions, estimated from the quiet benchmarks (2-core
# Xeon, SmolLM2-135M, batch 8, 2 threads; docs/lcrec.md): all levers (bf16) ran 6.46 samples/s as 4 passes of 2
# (3.3 % padding) and 10.0 as one pass of length-sorted windows (1.8 %): about 0.14 s a pass beside 1.3 ms a
# padded position; in float32, 0.29 s beside 2.7 ms. Both are about 110 positions.
MICRO_BATCH_OVERHEAD = 112
# Today's float32 path (before the cost levers): what old model directories were trained with.
LEGACY = {"precision": "fp32", "lm_head": "full", "batching": "random", "prompt_template": "alpaca"}


@dataclass
class LcRecOptions(BackboneOptions):
    """Every option of the LC-Rec backbone, with its default (docs/lcrec.md describes each)."""

    base_model: str | None = opt(None, "lcrec: hub id, local dir or .gguf (default: embedded SmolLM2-135M).")
    gguf_file: str | None = opt(None, "lcrec: GGUF file inside --base-model.")
    trust_remote_code: bool = opt(False, "lcrec: allow the base model's own code (only for models you trust).")
    lora_r: int = opt(8, "lcrec: LoRA rank", ge=1)
    lora_alpha: int = opt(16, "lcrec: LoRA alpha", ge=1)
    lora_dropout: float = opt(0.05, "lcrec: LoRA dropout", ge=0, lt=1)
    # None = the q/k/v/o projections present in the model
    lora_target_modules: str | list[str] | None = opt(None, "lcrec: comma list of module names.")
    align_tasks: bool = opt(False, "lcrec: add title<->SID tasks.")
    epochs: float = shared.epochs(1)
    max_steps: int | None = opt(None, "lcrec: cap optimizer steps.", ge=1)
    batch_size: int = shared.batch_size(8)
    grad_accum: int = opt(1, "lcrec: gradient accumulation", ge=1)
    lr: float = shared.lr(5e-4)
    warmup_ratio: float = shared.warmup_ratio(0.03)
    decay_epochs: float | None = shared.decay_epochs(None)  # None: the decay spans the run (the Trainer's linear)
    min_lr_ratio: float = shared.min_lr_ratio(0.0)
    weight_decay: float = shared.weight_decay(0.0)
    max_history: int = shared.max_history(20)
    max_samples: int | None = opt(None, "lcrec: cap training samples.", ge=1)
    max_title_tokens: int = 32
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int | None = None  # users per decoding batch; None = 32 on CPU, 64 on GPU
    # cost levers (docs/lcrec.md, "Training and decoding cost"); LEGACY above is the old float32 path
    precision: str = opt("auto", "lcrec: auto (bf16 where the CPU/GPU has it; default) | bf16 | fp32.")
    lm_head: str = opt("response", "lcrec: response (output head only at response positions; default) | full.")
    batching: str = opt("bucketed", "lcrec: bucketed (each random batch sorted by length and run as up to "
                        "--micro-batches forward passes; default) | random (one padded forward pass a batch).")
    micro_batches: int = opt(4, "lcrec: with --batching bucketed, at most N forward passes per batch: the batch sorted "
                             "by length and cut where padding is least, gradients accumulated.", ge=1)
    micro_batch_overhead: int = opt(
        MICRO_BATCH_OVERHEAD, "lcrec: the cost of one more forward+backward pass in padded token positions: each "
        "batch takes the number of passes (1 to --micro-batches) that minimises padded positions + this a pass. "
        "Estimated on a 2-core CPU with SmolLM2-135M (bf16: about 0.14 s a pass, 1.3 ms a position); 0: always "
        "--micro-batches passes.", ge=0)
    prompt_template: str = opt("compact", "lcrec: compact (default) | alpaca (LC-Rec's original).")
    # the CPU protocol: which windows train, validation on a seeded user sample, early stopping
    windows: str = opt("all", "lcrec: training windows, all | last:K (the last K of every user; default all).")
    eval_steps: int | None = opt(None, "lcrec: validate every N optimizer steps and stop early (default: no "
                                 "validation).", ge=1)
    eval_users: int = shared.eval_users(500)  # seeded sample of validation users
    eval_beam: int = shared.eval_beam(20, ge=1)
    patience: int = shared.patience(5, ge=1)  # evaluations without improvement before stopping

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> LcRecOptions:
        """Known keys override defaults; ``None`` values and other keys (``resume``) are ignored; a comma list
        of LoRA target modules becomes a list."""
        opts = super().from_dict(options)
        if isinstance(opts.lora_target_modules, str):
            opts.lora_target_modules = [t.strip() for t in opts.lora_target_modules.split(",") if t.strip()]
        return opts

    def check(self) -> None:
        if int(self.max_title_tokens) < 1:  # library-only: no flag declares its range
            raise OptionError("--max-title-tokens", f"must be >= 1, got {self.max_title_tokens}")
        for key, allowed in (("precision", PRECISIONS), ("lm_head", LM_HEADS), ("batching", BATCHINGS),
                             ("prompt_template", TEMPLATES)):
            if getattr(self, key) not in allowed:
                raise OptionError(f"--{key.replace('_', '-')}", f"must be one of {', '.join(allowed)}, "
                                                                f"got {getattr(self, key)!r}")
        window_count(self.windows)


def window_count(windows: str) -> int | None:
    """``None`` for ``all``, ``K`` for ``last:K``; anything else is an option error."""
    if windows == "all":
        return None
    kind, _, count = str(windows).partition(":")
    if kind != "last" or not count.isdigit() or int(count) < 1:
        raise OptionError("--windows", f"must be all or last:K with K >= 1, got {windows!r}")
    return int(count)
