"""LETTER-style regularisers for the RQ-VAE (``uqf quantize --collab collab.st``).

LETTER (Wang et al., CIKM 2024) trains ``L = L_sem + alpha * L_cf + beta * L_div``; ``L_sem`` is the usual
RQ-VAE loss (:func:`uqf_cli.quantize.training.train_rqvae`), this module adds collaborative alignment and
code diversity (docs/quantize.md). The terms exist only while training: the saved quantizer is a plain
RQ-VAE.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from uqf_cli.core.bounds import check_finite_fields
from uqf_cli.core.config_field import Spelled, opt
from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.files import EmbeddingFile
from uqf_cli.fuse.inputs import align_inputs, load_collab
from uqf_cli.quantize.sinkhorn import balanced_kmeans

COLLAB_FILE = Spelled(Path | None, lambda path: Path(path) if path else None,
                      lambda path, values: str(path) if path else "", {"dir_okay": False})


@dataclass
class LetterConfig:
    """The LETTER terms' settings (recorded in provenance next to the quantizer's): ``--method rqvae``'s own
    options, on when ``collab`` names a file."""

    collab: str = opt("", "LETTER-style training: align the quantized items with these collaborative (train-gcn) "
                      "embeddings.", spelled=COLLAB_FILE)
    w_collab: float = opt(0.02, "LETTER collaborative alignment weight (alpha; needs --collab).", ge=0)
    w_diversity: float = opt(1e-4, "LETTER code diversity weight (beta; needs --collab).", ge=0)
    temperature: float = opt(0.1, "Temperature of both LETTER InfoNCE terms.", flag="--letter-temperature", gt=0)
    clusters: int = opt(10, "Clusters of code vectors per level for the diversity term.", flag="--letter-clusters",
                        ge=2)
    recluster_every: int = 10

    def validate(self, method: str, codebook_sizes: list[int]) -> None:
        """Reject settings the terms cannot use, naming the option."""
        check_finite_fields(self, lambda f: "--letter-temperature" if f.name == "temperature" else None)
        if method != "rqvae":
            raise OptionError("--collab", "the LETTER terms train an RQ-VAE; use --method rqvae")
        if self.w_collab < 0 or self.w_diversity < 0:
            raise OptionError("--w-collab/--w-diversity", "weights must not be negative")
        if self.temperature <= 0:
            raise OptionError("--letter-temperature", "must be positive")
        if self.w_diversity > 0 and not 2 <= self.clusters <= min(codebook_sizes):
            raise OptionError("--letter-clusters",
                              f"must be between 2 and the smallest codebook ({min(codebook_sizes)})")
        if self.recluster_every < 1:
            raise OptionError("--letter-recluster-every", "must be positive")


def collab_targets(embeddings: EmbeddingFile, collab_path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Collaborative rows aligned with ``embeddings`` (L2-normalised, zeros for cold items) and the warm mask.

    Refuses a collab file from another dataset, one whose items are not all in ``embeddings``, and
    one without any warm item (one line each, via :func:`uqf_cli.fuse.inputs.align_inputs`).
    """
    collab = load_collab(collab_path)
    if embeddings.dataset_fingerprint is None and collab.dataset_fingerprint is not None:
        raise InputError(embeddings.path, f"records no dataset fingerprint, so it cannot be checked against "
                                          f"{collab_path} (dataset {collab.dataset_fingerprint})")
    aligned = align_inputs(embeddings, collab)
    return aligned.collab, aligned.has_collab


def alignment_loss(z_q: torch.Tensor, head: nn.Module, targets: torch.Tensor, warm: torch.Tensor,
                   temperature: float) -> torch.Tensor:
    """In-batch InfoNCE between ``head(z_q)`` and the collaborative rows of warm items (0 with < 2 warm)."""
    if int(warm.sum()) < 2:
        return z_q.sum() * 0.0
    pred = F.normalize(head(z_q[warm]), dim=-1)
    logits = pred @ F.normalize(targets[warm], dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def diversity_loss(book: torch.Tensor, codes: torch.Tensor, cluster: torch.Tensor, temperature: float) -> torch.Tensor:
    """Chosen codes pulled to their cluster's other codes, pushed from all other codes (cosine InfoNCE).

    ``book`` [K, d], ``codes`` [B] chosen code per item, ``cluster`` [K] cluster label per code.
    Codes alone in their cluster have no positive and are skipped.
    """
    unit = F.normalize(book, dim=-1)
    sims = unit.index_select(0, codes) @ unit.T / temperature  # [B, K]
    self_mask = F.one_hot(codes, book.shape[0]).bool()
    same = (cluster.index_select(0, codes)[:, None] == cluster[None, :]) & ~self_mask
    has_pos = same.any(1)
    if not bool(has_pos.any()):
        return book.sum() * 0.0
    sims = sims[has_pos]
    denom = torch.logsumexp(sims.masked_fill(self_mask[has_pos], float("-inf")), dim=1)
    numer = torch.logsumexp(sims.masked_fill(~same[has_pos], float("-inf")), dim=1)
    return (denom - numer).mean()


class LetterRegulariser(nn.Module):
    """The two LETTER terms as one module: ``forward(rows, z, z_q, codes, model) -> weighted loss``.

    ``rows`` index the fitting items (the rows ``targets`` and ``warm`` are aligned with). The head
    and the cluster labels are buffers/parameters so a checkpoint restores them.
    """

    def __init__(self, cfg: LetterConfig, latent_dim: int, targets: torch.Tensor, warm: torch.Tensor,
                 codebook_sizes: list[int], seed: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.seed = seed
        with torch.random.fork_rng(devices=[]):  # the head's initialisation, without touching the global stream
            torch.manual_seed(seed + 31)
            self.head = nn.Linear(latent_dim, targets.shape[1])
        self.register_buffer("targets", targets.float())
        self.register_buffer("warm", warm.bool())
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        for level, k in enumerate(codebook_sizes):
            self.register_buffer(f"cluster_{level}", torch.zeros(k, dtype=torch.long))
        self.last: dict[str, float] = {}

    def restricted(self, rows: torch.Tensor) -> LetterRegulariser:
        """This regulariser for the fitting sample ``rows`` (targets re-indexed in place)."""
        self.targets = self.targets[rows]
        self.warm = self.warm[rows]
        return self

    @torch.no_grad()
    def recluster(self, books: list[torch.Tensor]) -> None:
        """Balanced k-means on each level's code directions (seeded by the run's seed, level and step)."""
        for level, book in enumerate(books):
            derived = (self.seed * 1009 + level * 97 + int(self.steps)) % 2**63  # any 64-bit --seed fits
            gen = torch.Generator().manual_seed(derived)
            _, assign = balanced_kmeans(F.normalize(book.detach(), dim=-1).cpu(), self.cfg.clusters, 20, gen, 0.01)
            getattr(self, f"cluster_{level}").copy_(assign.to(book.device))

    def forward(self, rows: torch.Tensor, z: torch.Tensor, z_q: torch.Tensor, codes: torch.Tensor,
                books: list[torch.Tensor]) -> torch.Tensor:
        rows = rows.to(self.targets.device)
        total = z_q.sum() * 0.0
        if self.cfg.w_collab > 0:
            mixed = z_q + z - z.detach()  # value z_q; gradient to codebooks and (straight-through) encoder
            cf = alignment_loss(mixed, self.head, self.targets[rows], self.warm[rows], self.cfg.temperature)
            total = total + self.cfg.w_collab * cf
            self.last["collab"] = float(cf.detach())
        if self.cfg.w_diversity > 0:
            if int(self.steps) % self.cfg.recluster_every == 0:
                self.recluster(books)
            div = sum(diversity_loss(book, codes[:, level], getattr(self, f"cluster_{level}"), self.cfg.temperature)
                      for level, book in enumerate(books))
            total = total + self.cfg.w_diversity * div
            self.last["diversity"] = float(div.detach())
        self.steps += 1
        return total


def build_regulariser(cfg: LetterConfig, embeddings: EmbeddingFile, latent_dim: int,
                      codebook_sizes: list[int], seed: int) -> tuple[LetterRegulariser, dict[str, Any]]:
    """The regulariser for ``embeddings`` and a summary for the stats (warm and cold item counts)."""
    targets, warm = collab_targets(embeddings, cfg.collab)
    reg = LetterRegulariser(cfg, latent_dim, targets, warm, codebook_sizes, seed)
    return reg, {"warm_items": int(warm.sum()), "cold_items": int((~warm).sum())}
