"""A trained hybrid: ranking in three modes, and loading a model directory.

* ``generate``: TIGER's constrained beam search, best beam first;
* ``dense``: every item by the cosine of the dense query and its item vector (SASRec-like retrieval,
  history not excluded, as for the other sequential models);
* ``hybrid`` (LIGER's inference): the candidates are the beam's items plus every cold item (no train
  interaction), ranked by ``alpha * P_dense + (1 - alpha) * P_generate``, two distributions over the
  candidate set: ``P_dense`` = softmax of cosine / temperature over the candidates, ``P_generate`` =
  the beam's log-probabilities renormalised over the beam (softmax), 0 for a candidate the beam did
  not return. Ties (e.g. cold items at ``alpha = 0``) go to the higher cosine. ``alpha = 1`` is
  LIGER's dense re-ranking of the candidates; ``alpha = 0`` is the beam's order with the cold items after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.files import load_model_file
from uqf_cli.rec.hybrid.model import DenseHead, encoder_pool
from uqf_cli.rec.hybrid.options import BACKBONE, RANK_MODES, HybridOptions, check_rank
from uqf_cli.rec.item_vectors import load_item_vectors
from uqf_cli.rec.tiger.recommender import load_t5
from uqf_cli.rec.tiger.t5_decoder import constrained_beam_search_t5, t5_encode
from uqf_cli.rec.tiger.vocab import PAD, TigerVocab, encode_histories

HEAD_FILE = "dense_head.safetensors"
HEAD_KIND = "hybrid-dense-head"


class HybridRecommender:
    """A T5 (TIGER) with a dense head; ``rank`` and ``alpha`` choose how it ranks (see the module docstring)."""

    backbone = BACKBONE

    def __init__(self, model, head: DenseHead, vocab: TigerVocab, cold_rows: Sequence[int], opts: HybridOptions,
                 device: torch.device, batch_size: int = 256) -> None:
        self.model = model.eval()
        self.head = head.eval()
        self.vocab = vocab
        self.max_history = opts.max_history
        self.dense_query = opts.dense_query
        self.temperature = opts.temperature
        self.rank, self.alpha = opts.rank, opts.alpha
        self.device = device
        self.batch_size = batch_size
        self.trie = vocab.trie().to(device)
        self.row = {iid: r for r, iid in enumerate(vocab.item_ids)}
        self.cold_rows = torch.as_tensor(list(cold_rows), dtype=torch.long, device=device)
        self.uses_user_ids = vocab.user_tokens > 0
        with torch.no_grad():
            self.item_vectors = head.item_vectors().to(device)

    def set_ranking(self, rank: str | None = None, alpha: float | None = None) -> None:
        """Override the stored ranking mode and/or mix weight (``uqf evaluate --rank/--alpha``)."""
        rank = self.rank if rank is None else rank
        alpha = self.alpha if alpha is None else float(alpha)
        check_rank(rank, alpha)
        self.rank, self.alpha = rank, alpha

    def recommend(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None,
                  user_ids: Sequence[str] | None = None) -> list[list[str]]:
        """Top-``k`` item ids (best first) per history in the current ranking mode."""
        return self.rank_modes(histories, k, beam_size, user_ids, (self.rank,))[self.rank]

    def rank_modes(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None,
                   user_ids: Sequence[str] | None = None, modes: Sequence[str] = RANK_MODES,
                   alphas: Sequence[float] | None = None) -> dict[str, list[list[str]]]:
        """Top-``k`` lists in several modes from one beam search and one dense query per history.

        ``alphas`` adds ``hybrid@<alpha>`` lists for each mix weight (validation grids reuse the search)."""
        beam = beam_size or k
        searching = any(m != "dense" for m in modes) or bool(alphas)
        if searching and k > beam:
            raise OptionError("--k", f"K={k} is larger than the beam size {beam}; a beam search returns at most "
                                     "beam-size items")
        rows = [[self.row[i] for i in h if i in self.row][-self.max_history:] for h in histories]
        order = sorted(range(len(rows)), key=lambda n: len(rows[n]))  # similar lengths: little padding
        names = [*modes, *(f"hybrid@{a:g}" for a in (alphas or ()))]
        out: dict[str, list[list[str]]] = {m: [[] for _ in rows] for m in names}
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            uids = [user_ids[n] for n in chunk] if user_ids is not None else None
            ids, mask = encode_histories(self.vocab, [rows[n] for n in chunk], self.max_history, uids)
            ids, mask = ids.to(self.device), mask.to(self.device)
            cos = self.cosines(ids, mask)
            res = constrained_beam_search_t5(self.model, ids, mask, self.trie, beam) if searching else None
            for name in names:
                top = self._top(name, cos, res, k)
                for n, items in zip(chunk, top.tolist(), strict=True):
                    out[name][n] = [self.vocab.item_ids[r] for r in items if r >= 0]
        return out

    def _top(self, name: str, cos: torch.Tensor, res, k: int) -> torch.Tensor:
        if name == "dense":
            return torch.topk(cos, min(k, cos.shape[1]), dim=1).indices
        if name == "generate":
            return res.items[:, :k]
        alpha = self.alpha if name == "hybrid" else float(name.split("@", 1)[1])
        return hybrid_top(cos, res.items, res.scores, self.cold_rows, alpha, self.temperature, k)

    @torch.inference_mode()
    def cosines(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` cosine of each history's dense query with every item vector."""
        enc = t5_encode(self.model, input_ids, mask)
        if self.dense_query == "encoder":
            hidden = encoder_pool(enc, mask)
        else:
            start = torch.full((input_ids.shape[0], 1), PAD, dtype=torch.long, device=input_ids.device)
            hidden = self.model.decoder(input_ids=start, encoder_hidden_states=enc,
                                        encoder_attention_mask=mask).last_hidden_state[:, 0]
        return self.head.queries(hidden) @ self.item_vectors.T


def hybrid_top(cos: torch.Tensor, beam_rows: torch.Tensor, beam_scores: torch.Tensor, cold_rows: torch.Tensor,
               alpha: float, temperature: float, k: int) -> torch.Tensor:
    """Top-``k`` item rows of beam + cold candidates by the documented mix (``-1`` pads short lists)."""
    bsz, width = beam_rows.shape
    cand = torch.cat([beam_rows, cold_rows[None, :].expand(bsz, -1)], dim=1)  # [B, W + C]
    valid = cand >= 0
    if len(cold_rows):
        in_beam = (cold_rows[None, :, None] == beam_rows[:, None, :]).any(-1)  # a cold item the beam returned
        valid[:, width:] &= ~in_beam
    cand_cos = torch.gather(cos, 1, cand.clamp(min=0)).float()
    p_dense = torch.softmax((cand_cos / temperature).masked_fill(~valid, float("-inf")), dim=1)
    beam_lp = beam_scores.float().masked_fill(beam_rows < 0, float("-inf"))
    p_gen = torch.softmax(beam_lp, dim=1).nan_to_num(0.0)  # an all-empty beam gives 0, not NaN
    p_gen = torch.cat([p_gen, p_gen.new_zeros(bsz, cand.shape[1] - width)], dim=1)
    score = (alpha * p_dense + (1.0 - alpha) * p_gen).masked_fill(~valid, float("-inf"))
    by_cos = torch.sort(cand_cos.masked_fill(~valid, float("-inf")), dim=1, descending=True, stable=True).indices
    by_score = torch.sort(torch.gather(score, 1, by_cos), dim=1, descending=True, stable=True).indices
    order = torch.gather(by_cos, 1, by_score)[:, :k]
    rows = torch.gather(cand, 1, order)
    return rows.masked_fill(~torch.gather(valid, 1, order), -1)


def load(model_dir: str | Path, device: str | torch.device = "cpu") -> HybridRecommender:
    """Load a hybrid model directory written by :func:`uqf_cli.rec.hybrid.train`."""
    model_dir = Path(model_dir)
    meta, opts, vocab, model, dev = load_t5(model_dir, BACKBONE, HybridOptions, device)
    vectors = load_item_vectors(model_dir, vocab.item_ids)
    state, config, _ = load_model_file(model_dir / HEAD_FILE, HEAD_KIND)
    head = DenseHead(int(config["d_model"]), vectors, train_adapter=False,
                     item_ids=bool(config.get("dense_item_ids", False)))  # absent in a model saved before it
    try:
        head.load_state_dict(state)
    except RuntimeError as e:
        raise InputError(model_dir / HEAD_FILE, f"weights do not match the config ({str(e).splitlines()[0]})") from e
    cold = set(meta.get("cold_item_ids") or [])
    cold_rows = [r for r, iid in enumerate(vocab.item_ids) if iid in cold]
    return HybridRecommender(model, head.to(dev), vocab, cold_rows, opts, dev)
