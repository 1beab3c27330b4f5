"""TIGER's options: one dataclass with every default, and the model-shape presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from uqf_cli.core.config_field import opt
from uqf_cli.core.errors import OptionError
from uqf_cli.rec import options as shared
from uqf_cli.rec.options import BackboneOptions, option_values

BACKBONE = "tiger"
PANEL = "TIGER (--backbone tiger; the hybrid backbone reads them too)"
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
# Learning-rate shapes after the warmup: linear or cosine decay over --decay-epochs down to the floor
# --min-lr-ratio x --lr (the epochs after it train at the floor until early stopping), or constant.
LR_SCHEDULES = ("linear", "cosine", "constant")


@dataclass
class TigerOptions(BackboneOptions):
    """Every option of the TIGER backbone, with its default (the field order is the order models record)."""

    preset: str = opt("tiger", "tiger: model shape, tiger (the paper's, default) | small (CPU budgets); explicit "
                      "shape options override it.")
    max_history: int = shared.max_history(20)
    user_tokens: int = opt(0, "tiger: hashed user tokens, 0 = off", ge=0)
    epochs: int = shared.epochs(60, ge=1)
    batch_size: int = shared.batch_size(256)
    lr: float = shared.lr(1e-3)
    weight_decay: float = shared.weight_decay(0.01)
    warmup_steps: int = opt(200, "tiger: warmup steps when --warmup-ratio is 0, at most a tenth of all", ge=0)
    warmup_ratio: float = shared.warmup_ratio(0.02)
    lr_schedule: str = opt("cosine", "tiger: after warmup, cosine (default) | linear decay over --decay-epochs "
                           "to the floor --min-lr-ratio, or constant.")
    decay_epochs: int = shared.decay_epochs(30, ge=1)
    min_lr_ratio: float = shared.min_lr_ratio(0.05)
    ema_decay: float = opt(0.0, "tiger: validate and save a running average of the weights, updated each step "
                           "with this decay (e.g. 0.998 remembers ~500 steps); 0 = off (the raw weights)",
                           ge=0, lt=1)
    eval_every: int = shared.eval_every(1)
    eval_users: int = shared.eval_users(0)
    patience: int = shared.patience(5, ge=1)
    beam_size: int = 20
    eval_beam: int = shared.eval_beam(20)
    num_layers: int = shared.num_layers(4)
    num_decoder_layers: int = opt(4, "tiger: decoder layers", ge=1)
    d_model: int = shared.d_model(128)
    num_heads: int = 6
    d_kv: int = 64
    d_ff: int = 1024
    dropout: float = shared.dropout(0.1)
    seed: int = 0
    device: str = "auto"
    engine: str = opt("lean", "tiger: training forward, lean (fused attention, bf16 autocast where the CPU has it; "
                      "default) | hf (Hugging Face's, fp32 on CPU).")

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> TigerOptions:
        """Known keys override the preset's shape and the defaults; ``None`` values and other keys are ignored."""
        given = option_values(cls, options)
        preset = str(given.get("preset", "tiger"))
        if preset not in PRESETS:
            raise OptionError("--preset", f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
        opts = cls(**{**PRESETS[preset], **given})
        opts.validate()
        return opts

    def check(self) -> None:
        for name in ("beam_size", "num_heads", "d_kv", "d_ff"):  # library-only: no flag declares their range
            if int(getattr(self, name)) < 1:
                raise OptionError(f"--{name.replace('_', '-')}", "must be a positive integer")
        if self.lr_schedule not in LR_SCHEDULES:
            raise OptionError("--lr-schedule", f"unknown schedule {self.lr_schedule!r} (choose from "
                                               f"{', '.join(LR_SCHEDULES)})")
        if self.engine not in ENGINES:
            raise OptionError("--engine", f"unknown engine {self.engine!r} (choose from {', '.join(ENGINES)})")
