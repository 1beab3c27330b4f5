"""Hybrid backbone (``--backbone hybrid``): TIGER's generative retrieval plus a dense head, LIGER-style.

LIGER (Yang et al., 2024, arXiv 2411.18814) trains one sequence model on two objectives: next-SID
generation and the alignment of a predicted vector with the next item's representation; at inference
the beam's candidates plus the cold items (no train interaction) are re-ranked by the dense score.
Here the sequence model is TIGER's T5 (:mod:`uqf_cli.rec.tiger`, imported, not copied), the item
representation any embeddings file (the UQF unified embedding, which a new item gets from its text
through ``uqf fuse --apply``; or the text embedding). Options: :mod:`.options`; dense head and
losses: :mod:`.model`; training: :mod:`.training`; the three ranking modes and loading:
:mod:`.recommender`. docs/train-rec.md has the design.
"""

from uqf_cli.rec.hybrid.model import DenseHead, dense_loss, encoder_pool
from uqf_cli.rec.hybrid.options import (
    BACKBONE,
    DENSE_LOSSES,
    DENSE_QUERIES,
    PANEL,
    RANK_MODES,
    HybridOptions,
    check_rank,
)
from uqf_cli.rec.hybrid.recommender import HybridRecommender, hybrid_top, load
from uqf_cli.rec.hybrid.training import train
from uqf_cli.rec.registry import Backbone
from uqf_cli.rec.tiger.training import recorded_curve

__all__ = [
    "BACKBONE",
    "DENSE_LOSSES",
    "DENSE_QUERIES",
    "PANEL",
    "RANK_MODES",
    "SPEC",
    "DenseHead",
    "HybridOptions",
    "HybridRecommender",
    "check_rank",
    "dense_loss",
    "encoder_pool",
    "hybrid_top",
    "load",
    "train",
]

SPEC = Backbone(BACKBONE, HybridOptions, train, load, curve=recorded_curve, panel=PANEL, inputs=("item_emb",))
