"""Popularity baseline (``--backbone pop``): every user gets the most frequent train items.

No training and no randomness; option ``exclude_history`` (on by default) skips the user's history
items. Details and files: ``docs/train-rec.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uqf_cli.core.errors import InputError
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, atomic_path, check_output, make_provenance, read_json, to_json
from uqf_cli.rec.base import read_model_meta, write_model_meta
from uqf_cli.rec.options import BackboneOptions
from uqf_cli.rec.ranking import item_counts, popularity_order
from uqf_cli.rec.registry import Backbone

BACKBONE = "pop"
RANKING_FILE = "popularity.json"


@dataclass
class PopOptions(BackboneOptions):
    """The one option of the popularity backbone (library only: no flag)."""

    exclude_history: bool = True  # skip the user's history items


def train(dataset: Dataset, sids: SidTable | None, output: str | Path, options: dict[str, Any] | None,
          force: bool = False) -> dict[str, Any]:
    """Count train items and write the model directory (``uqf_model.json`` + ``popularity.json``)."""
    output = Path(output)
    check_output(output, force, "model")
    exclude = bool((options or {}).get("exclude_history", True))
    order = popularity_order(dataset)
    counts = item_counts(dataset)
    if not counts:
        raise InputError(dataset.path, "the train split has no interactions; popularity has nothing to count")
    params = {"exclude_history": exclude}
    inputs = {}
    if dataset.path is not None:
        inputs = {"dataset_items": dataset.path / "items.jsonl", "dataset_sequences": dataset.path / "sequences.jsonl"}
    provenance = make_provenance("train-rec", {"backbone": BACKBONE, **params}, inputs)
    ranking = {"item_ids": order, "counts": [counts.get(i, 0) for i in order]}
    with atomic_path(output, force, directory=True) as tmp:
        (tmp / RANKING_FILE).write_text(to_json(ranking) + "\n", encoding="utf-8")
        write_model_meta(tmp, BACKBONE, dataset, params, provenance, None)
    return {"backbone": BACKBONE, "output": str(output), "items": len(order), "train_interactions":
            sum(counts.values()), "top_item": order[0], "top_count": counts[order[0]], "exclude_history": exclude}


class PopularityRecommender:
    """The same ranking for every user, minus the user's history items when ``exclude_history``."""

    backbone = BACKBONE
    uses_user_ids = False
    score_name = "train count"

    def __init__(self, item_ids: list[str], exclude_history: bool, counts: list[int] | None = None) -> None:
        self.item_ids = item_ids
        self.exclude_history = exclude_history
        self.counts = dict(zip(item_ids, counts, strict=True)) if counts is not None else {}

    def recommend(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None) -> list[list[str]]:
        """Top-``k`` popular items per history (``beam_size`` is unused: there is no search)."""
        k = min(int(k), len(self.item_ids))
        out = []
        for hist in histories:
            if not self.exclude_history:
                out.append(self.item_ids[:k])
                continue
            seen = set(hist)
            out.append([i for i in self.item_ids[:k + len(seen)] if i not in seen][:k])
        return out

    def recommend_scored(self, histories: Sequence[Sequence[str]], k: int,
                         beam_size: int | None = None) -> list[list[tuple[str, float]]]:
        """Like :meth:`recommend`, with each item's train interaction count (NaN if the model did not record it)."""
        return [[(i, float(self.counts.get(i, float("nan")))) for i in ranked]
                for ranked in self.recommend(histories, k, beam_size)]


def load(model_dir: str | Path, device: Any = "cpu") -> PopularityRecommender:
    """Load a popularity model directory (``device`` is unused)."""
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir, BACKBONE)
    ranking = read_json(model_dir / RANKING_FILE)
    ids = ranking.get("item_ids") if isinstance(ranking, dict) else None
    if not isinstance(ids, list) or not ids or len(set(ids)) != len(ids):
        raise InputError(model_dir / RANKING_FILE, "expected a non-empty list 'item_ids' of unique ids")
    counts = ranking.get("counts")
    if not (isinstance(counts, list) and len(counts) == len(ids) and all(isinstance(c, int) for c in counts)):
        counts = None  # an older or hand-written ranking: the order alone still ranks
    return PopularityRecommender([str(i) for i in ids], bool(meta.get("options", {}).get("exclude_history", True)),
                                 counts)


SPEC = Backbone(BACKBONE, PopOptions, train, load)
