"""The options of ``uqf evaluate`` in one dataclass: each ``opt`` field is also the command's option."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from uqf_cli.core.config_field import check_ranges, comma_list, opt
from uqf_cli.core.errors import OptionError
from uqf_cli.evaluation.metrics import NDCG_KS, RECALL_KS

SPLITS = ("valid", "test")
RANK_HELP = "hybrid models: generate | hybrid | dense (default: the model's stored mode)."  # evaluate, recommend


@dataclass
class EvaluateConfig:
    """What is ranked and reported; ``device`` comes from ``--device``."""

    split: str = opt("test", "valid | test")
    recall_ks: tuple[int, ...] = opt(RECALL_KS, "Comma list of K for Recall@K.", flag="--recall-k",
                                     spelled=comma_list(int, tuple))
    ndcg_ks: tuple[int, ...] = opt(NDCG_KS, "Comma list of K for NDCG@K.", flag="--ndcg-k",
                                   spelled=comma_list(int, tuple))
    beam_size: int = opt(20, "Beam size (>= the largest K).", ge=1)
    baseline: bool = opt(False, "Add the popularity baseline.")
    by_popularity: bool = opt(False, "Also report the metrics for targets in the head / torso / tail of the train "
                              "popularity (50% / 80% cumulative interaction share; cold items in the tail).")
    by_coldness: bool | None = opt(None, "Also report the metrics of cold and warm targets (default: when the "
                                   "dataset marks cold items, `uqf prepare --cold-share`).",
                                   flag="--by-coldness/--no-by-coldness")
    rank: str | None = opt(None, RANK_HELP)
    alpha: float | None = opt(None, "hybrid models: mix weight of the hybrid mode, alpha * P_dense + (1 - alpha) * "
                              "P_generate.", ge=0, le=1)
    max_users: int | None = opt(None, "Only the first N users (quick look).", ge=1)
    device: str = "auto"

    def validate(self) -> None:
        """Refuse a split, K or beam that cannot be scored (one line naming the option), before the model loads."""
        if self.split not in SPLITS:
            raise OptionError("--split", f"must be valid or test, not {self.split!r}")
        if not (self.recall_ks or self.ndcg_ks):
            raise OptionError("--recall-k", "give at least one K (with --ndcg-k)")
        check_ks(sorted({*self.recall_ks, *self.ndcg_ks}), self.beam_size)
        check_ranges(self)


def check_ks(ks: Sequence[int], beam_size: int) -> None:
    """Every K is positive and within the beam (a beam search returns at most beam-size items)."""
    if any(k < 1 for k in ks):
        raise OptionError("--k", "every K must be a positive integer")
    if max(ks) > beam_size:
        raise OptionError("--beam-size", f"beam size {beam_size} is smaller than the largest K ({max(ks)}); "
                                         "a beam search returns at most beam-size items")
