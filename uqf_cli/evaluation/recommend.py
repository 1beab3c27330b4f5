"""``uqf recommend``: one history's recommendations, explained (titles, scores, SIDs), and finding item ids.

A history is given by item ids or taken from a user of the dataset (:func:`user_history`), cut where
``uqf evaluate`` cuts it so the held-out next item can be shown beside the ranking. The score is the
model's own: the beam log-probability for SID models (TIGER, LC-Rec), the logit for SASRec, the
embedding dot product for LightGCN, the train interaction count for the popularity baseline.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from uqf_cli.core.config_field import check_ranges, configured, opt
from uqf_cli.core.errors import OptionError
from uqf_cli.data.dataset import MIN_EVAL_LENGTH, Dataset
from uqf_cli.evaluation.config import RANK_HELP, check_ks
from uqf_cli.files import SidTable

HistorySplit = Literal["valid", "test", "full"]
HISTORY_SPLITS: tuple[str, ...] = ("valid", "test", "full")
SEARCH_LIMIT = 25


@dataclass
class RecommendConfig:
    """How one history is cut, ranked and shown; each ``opt`` field is also an option of ``uqf recommend``
    (``device`` comes from ``--device``)."""

    split: str = opt("valid", "With --user: 'valid' = the train part (the valid item held out, as `evaluate --split "
                     "valid`), 'test' = all but the test item, 'full' = every item.")
    k: int = opt(10, "How many items to show.", short="-k", ge=1)
    beam_size: int | None = opt(None, "Beam size (default: max(k, 20)).", ge=1)
    user_id: str | None = opt(None, "User token for an explicit --history (models with user tokens; --user sets "
                              "it).")
    rank: str | None = opt(None, RANK_HELP)
    device: str = "auto"

    @property
    def beam(self) -> int:
        """The beam size the search runs with."""
        return self.beam_size if self.beam_size is not None else max(self.k, 20)

    def validate(self) -> None:
        """Refuse a K, beam or split that cannot rank (one line naming the option), before the model loads."""
        if self.k < 1:
            raise OptionError("--k", "must be a positive integer")
        check_ks([self.k], self.beam)
        if self.split not in HISTORY_SPLITS:
            raise OptionError("--split", f"expected one of {', '.join(HISTORY_SPLITS)}, got {self.split!r}")
        check_ranges(self)


def user_history(dataset: Dataset, user: str, split: str = "valid") -> tuple[list[str], str | None]:
    """A user's history and held-out next item, cut as ``uqf evaluate --split`` cuts it.

    ``valid``: the train part (what the model was trained on), the valid item held out; ``test``: every
    item before the test item (train + valid); ``full``: the whole sequence, nothing held out. A user
    with fewer than three items has no held-out item (all of them are train).
    """
    if split not in HISTORY_SPLITS:
        raise OptionError("--split", f"expected one of {', '.join(HISTORY_SPLITS)}, got {split!r}")
    seq = dataset.sequences.get(user)
    if seq is None:
        raise OptionError("--user", f"unknown user id {user!r} (not in {dataset.path})")
    if split == "full" or len(seq) < MIN_EVAL_LENGTH:
        return list(seq), None
    cut = 2 if split == "valid" else 1
    return list(seq[:-cut]), seq[-cut]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def match_titles(titled: Sequence[tuple[str, str]], text: str) -> list[str]:
    """Ids of ``(id, title)`` pairs whose title contains ``text`` (case-insensitive), then those whose title
    has every word of it; each group keeps the given order."""
    needle = text.strip().lower()
    words = set(_words(needle))
    if not needle:
        raise OptionError("--item-search", "give a few words of a title")
    exact, by_words = [], []
    for iid, title in titled:
        low = title.lower()
        if needle in low:
            exact.append(iid)
        elif words and words <= set(_words(low)):
            by_words.append(iid)
    return exact + by_words


def search_items(dataset: Dataset, text: str) -> list[str]:
    """Dataset item ids whose title matches ``text`` (:func:`match_titles`), substring matches first."""
    return match_titles([(iid, dataset.title(iid)) for iid in dataset.item_ids], text)


@dataclass
class Explained:
    """What ``uqf recommend`` shows: the history, the ranking with scores, the held-out item, all with titles."""

    backbone: str
    score_name: str
    history: list[dict[str, Any]]
    recommendations: list[dict[str, Any]]
    user_id: str | None = None
    split: str | None = None
    held_out: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``item_ids`` and ``titles`` kept flat for scripts that want only the list)."""
        return {"backbone": self.backbone, "score": self.score_name, "user_id": self.user_id, "split": self.split,
                "history": self.history, "held_out": self.held_out, "recommendations": self.recommendations,
                "item_ids": [r["item_id"] for r in self.recommendations],
                "titles": [r["title"] for r in self.recommendations]}

    def __repr__(self) -> str:
        return (f"Explained({self.backbone}, {len(self.history)} history items, "
                f"{len(self.recommendations)} recommendations)")


class ItemDescriber:
    """Titles and SID strings of items (SIDs from the model directory's copy, when it has one)."""

    def __init__(self, dataset: Dataset, sids: SidTable | None) -> None:
        self.dataset = dataset
        self.sids = sids
        self.rows = {iid: r for r, iid in enumerate(sids.item_ids)} if sids is not None else {}

    def sid(self, item_id: str) -> str | None:
        row = self.rows.get(item_id)
        return "".join(self.sids.tokens(row)) if row is not None and self.sids is not None else None

    def describe(self, item_id: str) -> dict[str, Any]:
        return {"item_id": item_id, "title": self.dataset.title(item_id), "sid": self.sid(item_id)}


def model_sids(model_dir: str | Path) -> SidTable | None:
    """The SIDs copy in a model directory, or ``None`` for backbones without SIDs."""
    from uqf_cli.rec.base import MODEL_SIDS_FILE, read_model_sids

    return read_model_sids(model_dir) if (Path(model_dir) / MODEL_SIDS_FILE).exists() else None


def find_items(model_dir: str | Path, dataset_dir: str | Path, text: str) -> list[dict[str, Any]]:
    """Items whose title matches ``text`` (:func:`search_items`), with titles and the model's SIDs."""
    from uqf_cli.evaluation.evaluate import check_model_inputs

    dataset = Dataset.load(dataset_dir)
    check_model_inputs(model_dir, dataset, None)
    describer = ItemDescriber(dataset, model_sids(model_dir))
    return [describer.describe(i) for i in search_items(dataset, text)]


def explain_recommendations(model_dir: str | Path, dataset_dir: str | Path, history: Sequence[str] | None = None,
                            user: str | None = None, cfg: RecommendConfig | None = None,
                            **settings: Any) -> Explained:
    """Top-``k`` items with the model's scores for ``history`` (item ids) or for ``user``'s history.

    ``cfg`` defaults to ``RecommendConfig()``; ``settings`` (its field names: ``k=20``, ``split="test"``)
    replace single fields; ``rank`` overrides a hybrid model's stored ranking mode."""
    from uqf_cli.evaluation.evaluate import check_model_inputs, load_ranker

    cfg = configured(RecommendConfig, cfg, settings)
    cfg.validate()
    if (history is None) == (user is None):
        raise OptionError("--history", "give either --history ID,ID,... or --user ID (not both)")
    dataset = Dataset.load(dataset_dir)
    held, user_id = None, cfg.user_id
    if user is not None:
        history, held = user_history(dataset, user, cfg.split)
        user_id = user
    history = list(history or [])
    if not history:
        raise OptionError("--history" if user is None else "--user",
                          "give at least one item id (oldest first, comma-separated)" if user is None
                          else f"user {user!r} has no items before the {cfg.split} item")
    unknown = [i for i in history if i not in dataset.item_index]
    if unknown:
        raise OptionError("--history", f"unknown item id {unknown[0]!r} (not in {dataset_dir})")
    meta = check_model_inputs(model_dir, dataset, None)
    rec = load_ranker(model_dir, meta, cfg.device, cfg.rank)
    kwargs = {"user_ids": [user_id or ""]} if getattr(rec, "uses_user_ids", False) else {}
    ranked = _ranked_with_scores(rec, history, cfg.k, cfg.beam, kwargs)
    describer = ItemDescriber(dataset, model_sids(model_dir))
    recs = [{"rank": n, **describer.describe(iid), "score": score} for n, (iid, score) in enumerate(ranked, 1)]
    held_out = None
    if held is not None:
        held_rank = next((r["rank"] for r in recs if r["item_id"] == held), None)
        held_out = {**describer.describe(held), "rank": held_rank}
    return Explained(str(meta["backbone"]), getattr(rec, "score_name", "n/a"),
                     [describer.describe(i) for i in history], recs, user, cfg.split if user is not None else None,
                     held_out)


def _ranked_with_scores(rec: Any, history: list[str], k: int, beam: int,
                        kwargs: dict[str, Any]) -> list[tuple[str, float]]:
    """``recommend_scored`` where the backbone has it; else its ranking with NaN scores (a third-party backbone)."""
    if hasattr(rec, "recommend_scored"):
        return rec.recommend_scored([history], k, beam, **kwargs)[0]
    return [(iid, float("nan")) for iid in rec.recommend([history], k, beam, **kwargs)[0]]
