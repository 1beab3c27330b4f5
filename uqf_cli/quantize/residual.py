"""What the residual quantizers (``rqvae``, ``rqkmeans``) share: one model, residual codebooks over a
latent (:class:`~uqf_cli.quantize.model.ResidualQuantizer`), fitted by
:func:`~uqf_cli.quantize.training.fit_quantizer` and saved as its ``state_dict``."""

from __future__ import annotations

from typing import Any

import torch

from uqf_cli.files.checkpoint import Checkpointer
from uqf_cli.quantize.config import QuantizeConfig
from uqf_cli.quantize.interface import Quantizer, Setup
from uqf_cli.quantize.model import ResidualQuantizer
from uqf_cli.quantize.training import fit_quantizer


class ResidualMethod(Quantizer):
    """A residual quantizer; ``setup.state`` may hold a regulariser that training adds (LETTER's terms)."""

    def fit(self, x: torch.Tensor, cfg: QuantizeConfig, setup: Setup, device: torch.device,
            checkpoint: Checkpointer | None) -> tuple[ResidualQuantizer, dict[str, Any]]:
        return fit_quantizer(x, cfg, device, checkpoint, setup.state)

    def load(self, state: dict[str, torch.Tensor], cfg: QuantizeConfig, input_dim: int) -> ResidualQuantizer:
        model = ResidualQuantizer(input_dim, cfg)
        for level, k in enumerate(cfg.codebook_sizes or []):  # files saved before balanced levels existed
            state.setdefault(f"code_bias_{level}", torch.zeros(k))
        model.load_state_dict(state)
        return model
