"""Hyper-parameters of ``uqf train-gcn``.

Kept free of torch_geometric (seconds to import), since the CLI reads the defaults for every command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from uqf_cli.core.errors import OptionError


@dataclass
class GcnConfig:
    """Hyper-parameters of one training run (the CLI's options, with the same defaults)."""

    layers: int = 3
    dim: int = 64
    reg: float = 1e-4
    lr: float = 1e-2
    batch_size: int = 4096
    epochs: int = 300
    eval_every: int = 2
    patience: int = 10
    k: int = 20
    init_std: float = 0.01
    seed: int = 0
    device: str = "auto"
    include_valid: bool = False

    def validate(self) -> None:
        """Raise :class:`OptionError` for values that cannot train (before any heavy work)."""
        positive_ints = {"--layers": self.layers, "--dim": self.dim, "--batch-size": self.batch_size,
                         "--epochs": self.epochs, "--eval-every": self.eval_every, "--k": self.k}
        for opt, value in positive_ints.items():
            if value <= 0:
                raise OptionError(opt, f"must be a positive integer, got {value}")
        if self.patience < 0:
            raise OptionError("--patience", f"must be >= 0, got {self.patience}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise OptionError("--lr", f"must be a positive number, got {self.lr}")
        if not (math.isfinite(self.reg) and self.reg >= 0):
            raise OptionError("--reg", f"must be >= 0, got {self.reg}")
        if not (math.isfinite(self.init_std) and self.init_std > 0):
            raise OptionError("--init-std", f"must be a positive number, got {self.init_std}")
