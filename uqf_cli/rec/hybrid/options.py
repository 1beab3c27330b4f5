"""The hybrid backbone's options: TIGER's (:class:`~uqf_cli.rec.tiger.options.TigerOptions`) plus the dense head's."""

from __future__ import annotations

from dataclasses import dataclass

from uqf_cli.core.config_field import opt
from uqf_cli.core.errors import OptionError
from uqf_cli.rec import options as shared
from uqf_cli.rec.tiger.options import TigerOptions

BACKBONE = "hybrid"
PANEL = "Hybrid (--backbone hybrid: TIGER's options plus these; textknn: --item-emb)"
# How a trained hybrid ranks (uqf evaluate/recommend --rank; the model directory stores a default):
RANK_MODES = ("generate", "hybrid", "dense")
DENSE_LOSSES = ("cosine", "inbatch", "softmax")
DENSE_QUERIES = ("decoder", "encoder")
# Options added after hybrid runs were checkpointed, with their default: at it, an option stays out of a
# --resume checkpoint's identity, so a run interrupted under the earlier code continues with this code.
LATER_OPTIONS: dict[str, object] = {"dense_item_ids": False}


@dataclass
class HybridOptions(TigerOptions):
    """Every option of the hybrid backbone (TIGER's, then the dense head's), with its default."""

    # the item representations (the UQF unified embedding in the docs); loss = generation CE + dense_weight *
    # dense loss (softmax: over the items seen in training; the temperature is also the hybrid mix's)
    item_emb: str | None = shared.item_emb(None)
    dense_weight: float = opt(1.0, "hybrid: weight of the dense loss", ge=0)
    dense_loss: str = opt("inbatch", "hybrid: cosine | inbatch | softmax (default inbatch)")
    temperature: float = opt(0.07, "hybrid: softmax temperature of the dense scores", gt=0)
    dense_query: str = opt("decoder", "hybrid: decoder (first decoder state, default) | encoder (mean of the "
                           "encoder states)")
    rank: str = opt("hybrid", "hybrid: stored ranking mode and validation metric, generate | hybrid | dense "
                    "(default hybrid)")
    alpha: float = opt(0.5, "hybrid: mix alpha * P_dense + (1 - alpha) * P_generate in the hybrid mode", ge=0, le=1)
    # item vector normalize(e + A e + b_i) with b a learnable row per item from zero; cold items keep b_i = 0
    dense_item_ids: bool = opt(False, "hybrid: add a learnable per-item residual (from zero) to the dense item "
                               "vectors, as SASRec's ID embedding; cold items keep their content vector. Not "
                               "with --dense-loss cosine (default off)", flag="--dense-item-ids/--no-dense-item-ids")

    def check(self) -> None:
        super().check()
        if self.item_emb is not None:
            self.item_emb = str(self.item_emb)  # a path given as Path: recorded as text
        if self.engine != "lean":
            raise OptionError("--engine", "the hybrid backbone trains with the lean engine only")
        if self.dense_loss not in DENSE_LOSSES:
            raise OptionError("--dense-loss", f"unknown loss {self.dense_loss!r} (choose from "
                                              f"{', '.join(DENSE_LOSSES)})")
        if self.dense_query not in DENSE_QUERIES:
            raise OptionError("--dense-query", f"unknown query {self.dense_query!r} (choose from "
                                               f"{', '.join(DENSE_QUERIES)})")
        if self.dense_item_ids and self.dense_loss == "cosine":
            raise OptionError("--dense-item-ids", "not with --dense-loss cosine: a learnable item vector could "
                                                  "collapse onto the query (why the item map stays fixed there); "
                                                  "use --dense-loss inbatch or softmax")
        check_rank(self.rank, self.alpha)

    def checkpoint_params(self) -> dict[str, object]:
        """The options that identify a ``--resume`` checkpoint: :meth:`params` less the later options at their
        default (:data:`LATER_OPTIONS`)."""
        return {k: v for k, v in self.params().items() if not (k in LATER_OPTIONS and v == LATER_OPTIONS[k])}


def check_rank(rank: str, alpha: float) -> None:
    """A known ranking mode and a mix weight in [0, 1]."""
    if rank not in RANK_MODES:
        raise OptionError("--rank", f"unknown ranking mode {rank!r} (choose from {', '.join(RANK_MODES)})")
    if not 0 <= alpha <= 1:
        raise OptionError("--alpha", f"must be in [0, 1], got {alpha}")
