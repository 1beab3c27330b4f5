"""The options of ``uqf fuse`` in one dataclass (the CLI reads its defaults from here)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from uqf_cli.core.errors import OptionError
from uqf_cli.fuse.ann import ANN_THRESHOLD
from uqf_cli.fuse.model import FuserConfig

METHODS = ("uqf", "concat", "text", "collab")
MEMORIES = ("neighbours", "tokens")
STRUCTURAL_SOURCES = ("cooc", "collab")


@dataclass
class FuseOptions:
    """Every knob of ``uqf fuse`` (defaults are the CLI defaults)."""

    method: str = "uqf"
    # the fuser's shape: FuserConfig holds the defaults, so a saved fuser and the CLI cannot disagree
    d_model: int = FuserConfig.d_model
    queries: int = FuserConfig.queries
    layers: int = FuserConfig.layers
    heads: int = FuserConfig.heads
    out_dim: int = FuserConfig.out_dim
    memory: str = FuserConfig.memory
    k_memory: int = FuserConfig.k_memory
    memory_tokens: int = FuserConfig.memory_tokens
    epochs: int = 10
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.01
    temperature: float = 0.1
    k_structural: int = 10
    k_semantic: int = 10
    structural: str = "cooc"
    w_structural: float = 1.0
    w_semantic: float = 0.25
    w_recon: float = 0.1
    w_align: float = 0.1
    p_drop_collab: float = 0.3
    p_drop_text: float = 0.1
    gate: bool = True
    shortcut: bool = True
    use_structural: bool = True
    use_semantic: bool = True
    modality_dropout: bool = True
    ann_threshold: int = ANN_THRESHOLD  # items from which neighbours are searched approximately (faiss)
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        """Refuse out-of-range or contradictory options before any work."""
        checks: list[tuple[bool, str, str]] = [
            (self.method not in METHODS, "--method", f"must be one of {', '.join(METHODS)}"),
            (self.memory not in MEMORIES, "--memory", f"must be one of {', '.join(MEMORIES)}"),
            (self.structural not in STRUCTURAL_SOURCES, "--structural", "must be cooc or collab"),
            (self.d_model < 8, "--d-model", "must be at least 8"),
            (self.d_model % self.heads != 0, "--heads", f"must divide --d-model ({self.d_model})"),
            (self.queries < 1, "--queries", "must be at least 1"),
            (self.layers < 1, "--layers", "must be at least 1"),
            (self.out_dim < 2, "--out-dim", "must be at least 2"),
            (self.k_memory < 0, "--k-memory", "must be >= 0"),
            (self.memory_tokens < 1, "--memory-tokens", "must be at least 1"),
            (self.epochs < 1, "--epochs", "must be at least 1"),
            (self.batch_size < 2, "--batch-size", "must be at least 2 (in-batch negatives)"),
            (not self.lr > 0, "--lr", "must be > 0"),
            (not self.temperature > 0, "--temperature", "must be > 0"),
            (self.k_structural < 1, "--k-structural", "must be at least 1"),
            (self.k_semantic < 1, "--k-semantic", "must be at least 1"),
            (self.ann_threshold < 0, "--ann-threshold", "must be >= 0 (0: always exact)"),
            (not 0 <= self.p_drop_collab < 1, "--p-drop-collab", "must be in [0, 1)"),
            (not 0 <= self.p_drop_text < 1, "--p-drop-text", "must be in [0, 1)"),
        ]
        for weight, name in ((self.w_structural, "--w-structural"), (self.w_semantic, "--w-semantic"),
                             (self.w_recon, "--w-recon"), (self.w_align, "--w-align")):
            checks.append((not (weight >= 0 and math.isfinite(weight)), name, "must be a finite number >= 0"))
        for bad, opt, problem in checks:
            if bad:
                raise OptionError(opt, problem)
        if self.method == "uqf" and self.contrastive_weights() == (0.0, 0.0):
            raise OptionError("--no-structural", "with --no-semantic (or zero weights) there is no contrastive "
                              "objective left to train on")

    def contrastive_weights(self) -> tuple[float, float]:
        return (self.w_structural if self.use_structural else 0.0, self.w_semantic if self.use_semantic else 0.0)

    def fuser_config(self, text_dim: int, collab_dim: int) -> FuserConfig:
        return FuserConfig(text_dim=text_dim, collab_dim=collab_dim, d_model=self.d_model, queries=self.queries,
                           layers=self.layers, heads=self.heads, out_dim=self.out_dim, memory=self.memory,
                           k_memory=self.k_memory, memory_tokens=self.memory_tokens, gate=self.gate,
                           shortcut=self.shortcut)
