"""LC-Rec's options: one dataclass with every default, checked for range."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from uqf_cli.core.bounds import check_finite_fields
from uqf_cli.core.errors import OptionError

PRECISIONS = ("auto", "bf16", "fp32")  # auto: bf16 where the CPU/GPU has bf16 kernels (fp16 on older GPUs)
LM_HEADS = ("response", "full")  # response: output-head logits only at the response positions
BATCHINGS = ("bucketed", "random")  # bucketed: batches of equal-length samples, shuffled in batch order
TEMPLATES = ("compact", "alpaca")  # prompts.py holds both; models without a recorded template are alpaca
# Today's float32 path (before the cost levers): what old model directories were trained with.
LEGACY = {"precision": "fp32", "lm_head": "full", "batching": "random", "prompt_template": "alpaca"}


@dataclass
class LcRecOptions:
    """Every option of the LC-Rec backbone, with its default (docs/lcrec.md describes each)."""

    base_model: str | None = None  # hub id, local dir or .gguf; None = the embedded SmolLM2
    gguf_file: str | None = None
    trust_remote_code: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str | None = None  # None = q/k/v/o projections present in the model
    align_tasks: bool = False
    epochs: float = 1
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 5e-4
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_history: int = 20
    max_samples: int | None = None
    max_title_tokens: int = 32
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int | None = None  # users per decoding batch; None = 32 on CPU, 64 on GPU
    # cost levers (docs/lcrec.md, "Training and decoding cost"); LEGACY above is the old float32 path
    precision: str = "auto"
    lm_head: str = "response"
    batching: str = "bucketed"
    prompt_template: str = "compact"
    # the CPU protocol: which windows train, validation on a seeded user sample, early stopping
    windows: str = "all"  # all | last:K (the last K windows of every user's train part)
    eval_steps: int | None = None  # validate every N optimizer steps; None = no validation
    eval_users: int = 500  # seeded sample of validation users
    eval_beam: int = 20
    patience: int = 5  # evaluations without improvement before stopping

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> LcRecOptions:
        """Known keys override defaults; ``None`` values and other keys (``resume``) are ignored."""
        known = {f.name for f in fields(cls)}
        opts = cls(**{k: v for k, v in (options or {}).items() if k in known and v is not None})
        opts.validate()
        if isinstance(opts.lora_target_modules, str):
            opts.lora_target_modules = [t.strip() for t in opts.lora_target_modules.split(",") if t.strip()]
        return opts

    def validate(self) -> None:
        check_finite_fields(self)
        for key in ("lora_r", "lora_alpha", "batch_size", "grad_accum", "max_history", "max_title_tokens"):
            if int(getattr(self, key)) < 1:
                raise OptionError(f"--{key.replace('_', '-')}", f"must be >= 1, got {getattr(self, key)}")
        if not 0 <= float(self.lora_dropout) < 1:
            raise OptionError("--lora-dropout", f"must be in [0, 1), got {self.lora_dropout}")
        if float(self.lr) <= 0:
            raise OptionError("--lr", f"must be > 0, got {self.lr}")
        if self.max_steps is not None and int(self.max_steps) < 1:
            raise OptionError("--max-steps", f"must be >= 1, got {self.max_steps}")
        if self.max_samples is not None and int(self.max_samples) < 1:
            raise OptionError("--max-samples", f"must be >= 1, got {self.max_samples}")
        if float(self.epochs) <= 0:
            raise OptionError("--epochs", f"must be > 0, got {self.epochs}")
        for key, allowed in (("precision", PRECISIONS), ("lm_head", LM_HEADS), ("batching", BATCHINGS),
                             ("prompt_template", TEMPLATES)):
            if getattr(self, key) not in allowed:
                raise OptionError(f"--{key.replace('_', '-')}", f"must be one of {', '.join(allowed)}, "
                                                                f"got {getattr(self, key)!r}")
        window_count(self.windows)
        for key in ("eval_users", "eval_beam", "patience"):
            if int(getattr(self, key)) < 1:
                raise OptionError(f"--{key.replace('_', '-')}", f"must be >= 1, got {getattr(self, key)}")
        if self.eval_steps is not None and int(self.eval_steps) < 1:
            raise OptionError("--eval-steps", f"must be >= 1, got {self.eval_steps}")

    def params(self) -> dict[str, Any]:
        """The options a model directory records (all but the device)."""
        return {k: v for k, v in asdict(self).items() if k != "device"}


def window_count(windows: str) -> int | None:
    """``None`` for ``all``, ``K`` for ``last:K``; anything else is an option error."""
    if windows == "all":
        return None
    kind, _, count = str(windows).partition(":")
    if kind != "last" or not count.isdigit() or int(count) < 1:
        raise OptionError("--windows", f"must be all or last:K with K >= 1, got {windows!r}")
    return int(count)


OPTIONS = tuple(f.name for f in fields(LcRecOptions))  # every option key train() reads
