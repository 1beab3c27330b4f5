"""A trained TIGER model: loading a model directory and ranking by constrained beam search."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from uqf_cli.core import runtime
from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.rec.base import read_model_meta, read_model_sids
from uqf_cli.rec.tiger.options import BACKBONE, TigerOptions
from uqf_cli.rec.tiger.t5_decoder import constrained_beam_search_t5
from uqf_cli.rec.tiger.vocab import TigerVocab, encode_histories


class TigerRecommender:
    """A trained TIGER model that ranks items with the constrained beam search."""

    backbone = BACKBONE
    uses_user_ids = False

    def __init__(self, model, vocab: TigerVocab, max_history: int, device: torch.device,
                 batch_size: int = 256) -> None:
        self.model = model.eval()
        self.vocab = vocab
        self.max_history = max_history
        self.device = device
        self.batch_size = batch_size
        self.trie = vocab.trie().to(device)
        self.row = {iid: r for r, iid in enumerate(vocab.item_ids)}
        self.uses_user_ids = vocab.user_tokens > 0

    score_name = "beam log-prob"

    def recommend(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None,
                  user_ids: Sequence[str] | None = None) -> list[list[str]]:
        """Top-``k`` item ids (best first) per history; ``beam_size`` defaults to ``k``."""
        return [[iid for iid, _ in ranked] for ranked in self.recommend_scored(histories, k, beam_size, user_ids)]

    def recommend_scored(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None,
                         user_ids: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
        """Like :meth:`recommend`, with each item's beam score (summed log-probability of its SID tokens)."""
        beam = beam_size or k
        if k > beam:
            raise OptionError("--k", f"K={k} is larger than the beam size {beam}; a beam search returns at most "
                                     "beam-size items")
        rows = [[self.row[i] for i in h if i in self.row][-self.max_history:] for h in histories]
        # Batches of similar lengths: the encoder then spends little on padding.
        order = sorted(range(len(rows)), key=lambda n: len(rows[n]))
        out: list[list[tuple[str, float]]] = [[] for _ in rows]
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            uids = [user_ids[n] for n in chunk] if user_ids is not None else None
            input_ids, mask = encode_histories(self.vocab, [rows[n] for n in chunk], self.max_history, uids)
            res = constrained_beam_search_t5(self.model, input_ids.to(self.device), mask.to(self.device),
                                             self.trie, beam)
            for n, items, scores in zip(chunk, res.items[:, :k].tolist(), res.scores[:, :k].tolist(), strict=True):
                out[n] = [(self.vocab.item_ids[r], float(s)) for r, s in zip(items, scores, strict=True) if r >= 0]
        return out


def load(model_dir: str | Path, device: str | torch.device = "cpu") -> TigerRecommender:
    """Load a TIGER model directory written by :func:`train`."""
    _, opts, vocab, model, dev = load_t5(model_dir, BACKBONE, TigerOptions, device)
    return TigerRecommender(model, vocab, opts.max_history, dev)


def load_t5(model_dir: str | Path, backbone: str, options: type[TigerOptions], device: str | torch.device
            ) -> tuple[dict[str, Any], Any, TigerVocab, Any, torch.device]:
    """What a TIGER-style model directory holds: its metadata, options, vocabulary (checked against the SIDs
    copy and the recorded layout), T5 weights (on the device) and the device."""
    from safetensors import SafetensorError
    from transformers import T5ForConditionalGeneration

    meta = read_model_meta(model_dir, backbone)
    sids = read_model_sids(model_dir)
    if sids.content_hash() != meta.get("sid_hash"):
        raise InputError(Path(model_dir) / "sids.jsonl", "SID copy does not match the hash in uqf_model.json")
    opts = options.from_dict(meta.get("options", {}))
    vocab = TigerVocab.build(sids, sids.item_ids, opts.user_tokens)
    if vocab.offsets != meta.get("vocab", {}).get("offsets"):
        raise InputError(model_dir, "vocabulary layout differs from the one the model was trained with")
    dev = device if isinstance(device, torch.device) else runtime.resolve_device(device)
    try:
        model = T5ForConditionalGeneration.from_pretrained(model_dir, local_files_only=True).to(dev)
    except (OSError, ValueError, SafetensorError) as e:
        raise InputError(model_dir, f"cannot load the T5 weights ({e})") from e
    return meta, opts, vocab, model, dev
