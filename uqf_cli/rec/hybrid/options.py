"""The hybrid backbone's options: TIGER's (:class:`~uqf_cli.rec.tiger.options.TigerOptions`) plus the dense head's."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from uqf_cli.core.errors import OptionError
from uqf_cli.rec.tiger.options import TigerOptions

BACKBONE = "hybrid"
# How a trained hybrid ranks (uqf evaluate/recommend --rank; the model directory stores a default):
RANK_MODES = ("generate", "hybrid", "dense")
DENSE_LOSSES = ("cosine", "inbatch", "softmax")
DENSE_QUERIES = ("decoder", "encoder")


@dataclass
class HybridOptions(TigerOptions):
    """Every option of the hybrid backbone (TIGER's, then the dense head's), with its default."""

    item_emb: str | None = None  # embeddings file of the item representations (UQF unified by default in docs)
    dense_weight: float = 1.0  # loss = generation CE + dense_weight * dense loss
    dense_loss: str = "inbatch"  # cosine | inbatch | softmax (over the items seen in training)
    temperature: float = 0.07  # of the softmax losses and of the dense distribution in the hybrid mix
    dense_query: str = "decoder"  # decoder: its first hidden state (LIGER); encoder: mean of its states
    rank: str = "hybrid"  # the stored default ranking mode
    alpha: float = 0.5  # hybrid mix: alpha * P_dense + (1 - alpha) * P_generate over the candidates

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> HybridOptions:  # type: ignore[override]
        opts = super().from_dict(options)
        assert isinstance(opts, HybridOptions)
        return opts

    def validate(self) -> None:
        super().validate()
        if self.item_emb is not None:
            self.item_emb = str(self.item_emb)  # a path given as Path: recorded as text
        if self.engine != "lean":
            raise OptionError("--engine", "the hybrid backbone trains with the lean engine only")
        if not self.dense_weight >= 0:
            raise OptionError("--dense-weight", "must be >= 0")
        if self.dense_loss not in DENSE_LOSSES:
            raise OptionError("--dense-loss", f"unknown loss {self.dense_loss!r} (choose from "
                                              f"{', '.join(DENSE_LOSSES)})")
        if not self.temperature > 0:
            raise OptionError("--temperature", "must be > 0")
        if self.dense_query not in DENSE_QUERIES:
            raise OptionError("--dense-query", f"unknown query {self.dense_query!r} (choose from "
                                               f"{', '.join(DENSE_QUERIES)})")
        check_rank(self.rank, self.alpha)


def check_rank(rank: str, alpha: float) -> None:
    """A known ranking mode and a mix weight in [0, 1]."""
    if rank not in RANK_MODES:
        raise OptionError("--rank", f"unknown ranking mode {rank!r} (choose from {', '.join(RANK_MODES)})")
    if not 0 <= alpha <= 1:
        raise OptionError("--alpha", f"must be in [0, 1], got {alpha}")


OPTIONS = tuple(f.name for f in fields(HybridOptions))  # every option key train() reads
