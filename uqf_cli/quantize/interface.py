"""The one interface of a quantization method (``uqf quantize --method NAME``), one method per module.

A :class:`Quantizer` says how a method fits and how a saved one is rebuilt; what it fits is a
:class:`Coder` (an ``nn.Module`` whose ``state_dict`` is what ``--save-model`` writes and ``--apply``
reloads). The stage, the saved quantizer and ``--apply`` go through these classes only; the methods are
listed in :mod:`uqf_cli.quantize.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from uqf_cli.core.config_field import check_ranges

if TYPE_CHECKING:
    from uqf_cli.files import EmbeddingFile
    from uqf_cli.files.checkpoint import Checkpointer
    from uqf_cli.quantize.config import QuantizeConfig


@dataclass
class Encoded:
    """Codes of some items and what the statistics and the deduplication need of them.

    ``codes`` [N, levels]: level ``l``'s code is below ``codebook_sizes[l]``. ``errors``: reconstruction
    errors for the stats (``recon_mse``, ``recon_rel``, ...; empty when the method reconstructs nothing).
    ``last_distances()`` [N, last codebook size]: each item's distance to every code of the last level,
    for ``--dedup sinkhorn`` (``None``: the method offers only ``--dedup level``).
    """

    codes: np.ndarray
    errors: dict[str, float] = field(default_factory=dict)
    last_distances: Callable[[], torch.Tensor] | None = None


class Coder(Protocol):
    """A fitted quantizer, an ``nn.Module``: codes embeddings in chunks of ``batch_size`` rows; its
    ``state_dict`` holds everything coding needs (what ``--save-model`` writes)."""

    input_dim: int

    def code(self, embeddings: torch.Tensor, batch_size: int) -> Encoded: ...

    def state_dict(self) -> dict[str, Any]: ...

    def to(self, device: torch.device) -> Any: ...

    def eval(self) -> Any: ...


@dataclass
class Setup:
    """What a method adds to a run before it fits: provenance ``parameters`` and ``inputs`` besides the
    config's and the embeddings, ``stats`` for the result, its own ``options`` and any ``state`` it built."""

    options: Any = None
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    state: Any = None


class Quantizer:
    """One quantization method.

    ``name``: its ``--method``; ``summary``: the words after the name in ``--method``'s help; ``options``:
    a dataclass of :func:`~uqf_cli.core.config_field.opt` fields, its own flags (``None``: it has none);
    ``resumable``: it trains in epochs and keeps ``<output>.ckpt.st`` for ``--resume``.
    """

    name: str = ""
    summary: str = ""
    options: type | None = None
    resumable: bool = False

    def setup(self, emb: EmbeddingFile, cfg: QuantizeConfig, options: Any) -> Setup:
        """Check the own ``options`` against ``cfg`` before any work; provenance records them under ``name``."""
        if options is None:
            return Setup()
        check_ranges(options)
        return Setup(options, parameters={self.name: asdict(options)})

    def fit(self, x: torch.Tensor, cfg: QuantizeConfig, setup: Setup, device: torch.device,
            checkpoint: Checkpointer | None) -> tuple[Coder, dict[str, Any]]:
        """Fit on the embeddings ``x`` [N, d] (deterministic given ``cfg.seed``): the coder and its training
        history (``stats["training"]``)."""
        raise NotImplementedError

    def load(self, state: dict[str, torch.Tensor], cfg: QuantizeConfig, input_dim: int) -> Coder:
        """Rebuild a saved coder from its ``state_dict`` (a file that does not fit raises KeyError,
        TypeError or RuntimeError: the caller names the file)."""
        raise NotImplementedError
