"""TIGER's options: one dataclass with every default, and the model-shape presets."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from uqf_cli.core.bounds import check_finite_fields
from uqf_cli.core.errors import OptionError

BACKBONE = "tiger"
PAD, EOS, FIRST_CODE_TOKEN = 0, 1, 2


# Model shapes by name. "tiger" is the paper's; "small" is for CPU budgets (about a quarter of the
# FLOPs per token: half the layers, half the feed-forward width, 4 heads x 32). Options given
# explicitly override the preset's values.
PRESETS: dict[str, dict[str, int]] = {
    "tiger": {"num_layers": 4, "num_decoder_layers": 4, "d_model": 128, "num_heads": 6, "d_kv": 64, "d_ff": 1024},
    "small": {"num_layers": 2, "num_decoder_layers": 2, "d_model": 128, "num_heads": 4, "d_kv": 32, "d_ff": 512},
}

# Training engines: "lean" (uqf_cli.rec.t5_lean's forward, bf16 autocast on CPUs with bf16 support,
# fused AdamW) and "hf" (the Hugging Face forward in fp32 on CPU, plain AdamW; the earlier path).
ENGINES = ("lean", "hf")
# Learning-rate shapes after the warmup: linear or cosine decay to zero at the last planned step, or constant.
LR_SCHEDULES = ("linear", "cosine", "constant")


@dataclass
class TigerOptions:
    """Every option of the TIGER backbone, with its default."""

    preset: str = "tiger"
    max_history: int = 20
    user_tokens: int = 0
    epochs: int = 20
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    warmup_ratio: float = 0.0
    lr_schedule: str = "linear"
    eval_every: int = 1
    eval_users: int = 1000
    patience: int = 3
    beam_size: int = 20
    eval_beam: int = 20
    num_layers: int = 4
    num_decoder_layers: int = 4
    d_model: int = 128
    num_heads: int = 6
    d_kv: int = 64
    d_ff: int = 1024
    dropout: float = 0.1
    seed: int = 0
    device: str = "auto"
    engine: str = "lean"

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> TigerOptions:
        """Known keys override defaults; ``None`` values and other backbones' keys are ignored."""
        known = {f.name: f.type for f in fields(cls)}
        given = {k: v for k, v in (options or {}).items() if k in known and v is not None}
        preset = str(given.get("preset", "tiger"))
        if preset not in PRESETS:
            raise OptionError("--preset", f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
        opts = cls(**{**PRESETS[preset], **given})
        opts.validate()
        return opts

    def validate(self) -> None:
        check_finite_fields(self)
        positive = ("max_history", "epochs", "batch_size", "eval_every", "patience", "beam_size", "eval_beam",
                    "num_layers", "num_decoder_layers", "d_model", "num_heads", "d_kv", "d_ff")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise OptionError(f"--{name.replace('_', '-')}", "must be a positive integer")
        if self.user_tokens < 0:
            raise OptionError("--user-tokens", "must be >= 0")
        if not self.lr > 0:
            raise OptionError("--lr", "must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise OptionError("--warmup-ratio", "must be in [0, 1)")
        if self.lr_schedule not in LR_SCHEDULES:
            raise OptionError("--lr-schedule", f"unknown schedule {self.lr_schedule!r} (choose from "
                                               f"{', '.join(LR_SCHEDULES)})")
        if self.eval_beam < 10:
            raise OptionError("--eval-beam", "must be >= 10 (validation ranks the top 10)")
        if not 0 <= self.dropout < 1:
            raise OptionError("--dropout", "must be in [0, 1)")
        if self.engine not in ENGINES:
            raise OptionError("--engine", f"unknown engine {self.engine!r} (choose from {', '.join(ENGINES)})")


OPTIONS = tuple(f.name for f in fields(TigerOptions))  # every option key train() reads
