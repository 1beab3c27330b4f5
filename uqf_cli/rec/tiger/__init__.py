"""TIGER backbone: a small T5 encoder-decoder that generates the next item's semantic ID.

TIGER (Rajput et al., 2023): the encoder reads the SID tokens of the user's recent items, the
decoder emits the next item's SID, constrained to real items. Options: :mod:`.options`; token
layout and colliding SIDs: :mod:`.vocab`; network: :mod:`.model`; training: :mod:`.training`;
decoding: :mod:`.t5_decoder`; ranking and loading: :mod:`.recommender`. docs/train-rec.md explains
the defaults and their cost.
"""

from uqf_cli.rec.registry import Backbone
from uqf_cli.rec.tiger.model import FastDropout, build_model, use_fast_dropout
from uqf_cli.rec.tiger.options import BACKBONE, ENGINES, PANEL, PRESETS, TigerOptions
from uqf_cli.rec.tiger.recommender import TigerRecommender, load
from uqf_cli.rec.tiger.training import (
    _amp,
    _length_bucketed_batches,
    _param_digest,
    _step,
    _tensorize,
    check_sids_cover,
    make_optimizer,
    recorded_curve,
    train,
)
from uqf_cli.rec.tiger.vocab import EOS, FIRST_CODE_TOKEN, PAD, TigerVocab, encode_histories

__all__ = [
    "BACKBONE",
    "ENGINES",
    "EOS",
    "FIRST_CODE_TOKEN",
    "PAD",
    "PANEL",
    "PRESETS",
    "SPEC",
    "FastDropout",
    "TigerOptions",
    "TigerRecommender",
    "TigerVocab",
    "_amp",
    "_length_bucketed_batches",
    "_param_digest",
    "_step",
    "_tensorize",
    "build_model",
    "check_sids_cover",
    "encode_histories",
    "load",
    "make_optimizer",
    "recorded_curve",
    "train",
    "use_fast_dropout",
]

SPEC = Backbone(BACKBONE, TigerOptions, train, load, curve=recorded_curve, panel=PANEL)
