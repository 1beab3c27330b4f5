"""The options of ``uqf fuse`` in one dataclass: each ``opt`` field is also one of its options."""

from __future__ import annotations

import math
from dataclasses import dataclass

from uqf_cli.core.config_field import check_ranges, opt
from uqf_cli.core.errors import OptionError
from uqf_cli.fuse.ann import ANN_THRESHOLD
from uqf_cli.fuse.model import FuserConfig

MEMORIES = ("neighbours", "tokens")
COLD_COLLAB = ("zero", "borrow")
STRUCTURAL_SOURCES = ("cooc", "collab")
MODEL, OBJECTIVE, ABLATIONS = "UQF model", "Objective", "Ablations"  # help panels of uqf fuse


def method_help() -> str:
    """``--method``'s help: the registered fusion methods."""
    from uqf_cli.fuse.registry import FUSIONS

    return " | ".join(FUSIONS)


@dataclass
class FuseOptions:
    """Every knob of ``uqf fuse``; each ``opt`` field is also one of its options. Besides the method, they are
    the Unified Q-Former's (recorded as they always were); another method declares its own options."""

    method: str = opt("uqf", method_help)
    # the fuser's shape: FuserConfig holds the defaults, so a saved fuser and the CLI cannot disagree
    d_model: int = opt(FuserConfig.d_model, "Width of queries and memories.", panel=MODEL, ge=8)
    queries: int = opt(FuserConfig.queries, "Number of learnable queries.", panel=MODEL, ge=1)
    layers: int = opt(FuserConfig.layers, "Q-Former blocks.", panel=MODEL, ge=1)
    heads: int = opt(FuserConfig.heads, "Attention heads.", panel=MODEL, ge=1)
    out_dim: int = opt(FuserConfig.out_dim, "Output dimension.", panel=MODEL, ge=2)
    memory: str = opt(FuserConfig.memory, "neighbours | tokens: what the queries attend to.", panel=MODEL)
    k_memory: int = opt(FuserConfig.k_memory, "Neighbours per memory (--memory neighbours).", panel=MODEL, ge=0)
    memory_tokens: int = opt(FuserConfig.memory_tokens, "Tokens per memory (--memory tokens).", panel=MODEL, ge=1)
    cold_collab: str = opt(FuserConfig.cold_collab, "zero | borrow: the collab memory of an item without one (cold, "
                           "or collab dropped in training); borrow = the collab vectors of its nearest warm items "
                           "by text.", panel=MODEL)
    epochs: int = opt(10, "Training epochs over all items.", panel=OBJECTIVE, ge=1)
    batch_size: int = opt(256, "Anchor items per step (in-batch negatives).", panel=OBJECTIVE, ge=2)
    lr: float = opt(2e-3, "AdamW learning rate.", panel=OBJECTIVE, gt=0)
    weight_decay: float = 0.01
    temperature: float = opt(0.1, "InfoNCE temperature.", panel=OBJECTIVE, gt=0)
    k_structural: int = opt(10, "Structural neighbours per item that a positive is drawn from.",
                            panel=OBJECTIVE, ge=1)
    k_semantic: int = opt(10, "Semantic (text cosine) neighbours per item that a positive is drawn "
                          "from.", panel=OBJECTIVE, ge=1)
    structural: str = opt("cooc", "cooc (train co-occurrence) | collab (LightGCN cosine): source of structural "
                          "neighbours.", panel=OBJECTIVE, before="k_structural")
    w_structural: float = opt(1.0, "How often a structural positive is drawn (relative to --w-semantic).",
                              panel=OBJECTIVE, ge=0)
    w_semantic: float = opt(0.25, "How often a semantic positive is drawn (relative to "
                            "--w-structural).", panel=OBJECTIVE, ge=0)
    w_recon: float = opt(0.1, "Reconstruction of both inputs (0 = off).", panel=OBJECTIVE, ge=0)
    w_align: float = opt(0.1, "Text/collab branch alignment (0 = off).", panel=OBJECTIVE, ge=0)
    w_distill: float = opt(0.0, "Teach the collab-less path the full fused vector of warm items, for cold "
                           "start (0 = off).", panel=OBJECTIVE, ge=0)
    p_drop_collab: float = opt(0.3, "Probability of dropping an anchor's collab input in training.",
                               panel=OBJECTIVE, ge=0, lt=1)
    p_drop_text: float = opt(0.1, "Probability of dropping its text input instead (never both).",
                             panel=OBJECTIVE, ge=0, lt=1)
    gate: bool = opt(True, "Mean of the branches instead of the gate.", flag="--no-gate", panel=ABLATIONS)
    shortcut: bool = opt(True, "No linear input shortcut to the output.", flag="--no-shortcut", panel=ABLATIONS)
    use_structural: bool = opt(True, "No structural positives (semantic ones only).", flag="--no-structural",
                               panel=ABLATIONS)
    use_semantic: bool = opt(True, "No semantic positives (structural ones only).", flag="--no-semantic",
                             panel=ABLATIONS)
    modality_dropout: bool = opt(True, "No modality dropout (--p-drop-* ignored).", flag="--no-modality-dropout",
                                 panel=ABLATIONS)
    ann_threshold: int = opt(ANN_THRESHOLD, "Catalogue size from which neighbours are searched approximately "
                             "(faiss, the 'ann' extra); 0 = always exact.", ge=0)
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        """Refuse out-of-range or contradictory options before any work (the stage calls it once)."""
        from uqf_cli.fuse.registry import FUSIONS

        check_ranges(self)
        checks: list[tuple[bool, str, str]] = [
            (self.method not in FUSIONS, "--method", f"must be one of {', '.join(FUSIONS)}"),
            (self.memory not in MEMORIES, "--memory", f"must be one of {', '.join(MEMORIES)}"),
            (self.cold_collab not in COLD_COLLAB, "--cold-collab", f"must be one of {', '.join(COLD_COLLAB)}"),
            (self.cold_collab == "borrow" and self.memory != "neighbours", "--cold-collab",
             "borrow needs --memory neighbours"),
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
                             (self.w_recon, "--w-recon"), (self.w_align, "--w-align"),
                             (self.w_distill, "--w-distill")):
            checks.append((not (weight >= 0 and math.isfinite(weight)), name, "must be a finite number >= 0"))
        for bad, flag, problem in checks:
            if bad:
                raise OptionError(flag, problem)
        if self.method == "uqf" and self.contrastive_weights() == (0.0, 0.0):
            raise OptionError("--no-structural", "with --no-semantic (or zero weights) there is no contrastive "
                              "objective left to train on")

    def contrastive_weights(self) -> tuple[float, float]:
        return (self.w_structural if self.use_structural else 0.0, self.w_semantic if self.use_semantic else 0.0)

    def fuser_config(self, text_dim: int, collab_dim: int) -> FuserConfig:
        return FuserConfig(text_dim=text_dim, collab_dim=collab_dim, d_model=self.d_model, queries=self.queries,
                           layers=self.layers, heads=self.heads, out_dim=self.out_dim, memory=self.memory,
                           k_memory=self.k_memory, memory_tokens=self.memory_tokens,
                           cold_collab=self.cold_collab, gate=self.gate,
                           shortcut=self.shortcut)
