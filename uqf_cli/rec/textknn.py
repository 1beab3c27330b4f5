"""Text nearest-neighbour baseline (``--backbone textknn``): items scored by their embedding's cosine to the
mean embedding of the user's history.

No training and no interactions: it ranks an item with no train interaction (a cold item) exactly as any
other, so it is the floor a cold-start model must clear. The embeddings are any uqf embeddings file
(``--item-emb``: the text embedding for the classic text-kNN, or the UQF unified one), copied into the model
directory. Each history item is L2-normalised, the mean is the query; ties go to dataset order. Option
``exclude_history`` (on by default, as for pop and lightgcn: the query is nearest to the history itself)
skips the user's history items. An empty history gives a zero query: every score ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, atomic_path, check_output, make_provenance
from uqf_cli.rec import options as shared
from uqf_cli.rec.base import history_rows, read_model_meta, write_model_meta
from uqf_cli.rec.item_vectors import aligned_item_vectors, load_item_vectors, save_item_vectors
from uqf_cli.rec.options import BackboneOptions
from uqf_cli.rec.ranking import top_k_from_scores
from uqf_cli.rec.registry import Backbone

BACKBONE = "textknn"


@dataclass
class TextKnnOptions(BackboneOptions):
    """The options of the text kNN backbone."""

    item_emb: str | None = shared.item_emb(None)
    exclude_history: bool = True  # skip the user's history items (library only: no flag)


def train(dataset: Dataset, sids: SidTable | None, output: str | Path, options: dict[str, Any] | None,
          force: bool = False) -> dict[str, Any]:
    """Copy the dataset items' embedding rows into a model directory (nothing is fitted)."""
    options = options or {}
    output = Path(output)
    check_output(output, force)
    vectors, source = aligned_item_vectors(options.get("item_emb"), dataset.item_ids, BACKBONE)
    params = {"item_emb": str(options.get("item_emb")), "exclude_history": bool(options.get("exclude_history", True))}
    inputs = {"item_emb": options.get("item_emb")}
    if dataset.path is not None:
        inputs.update({"dataset_items": dataset.path / "items.jsonl",
                       "dataset_sequences": dataset.path / "sequences.jsonl"})
    provenance = make_provenance("train-rec", {"backbone": BACKBONE, **params}, inputs)
    with atomic_path(output, force, directory=True) as tmp:
        save_item_vectors(tmp, vectors, dataset.item_ids, source, provenance)
        write_model_meta(tmp, BACKBONE, dataset, params, provenance, None, item_ids=list(dataset.item_ids),
                         item_emb=source)
    return {"backbone": BACKBONE, "output": str(output), "items": len(dataset.item_ids), "dim": int(vectors.shape[1]),
            "exclude_history": params["exclude_history"], "item_emb": source["path"]}


class TextKnnRecommender:
    """Cosine of each item to the mean of the normalised history vectors."""

    backbone = BACKBONE
    uses_user_ids = False

    def __init__(self, item_ids: list[str], vectors: torch.Tensor, exclude_history: bool) -> None:
        self.item_ids = item_ids
        self.index = {iid: k for k, iid in enumerate(item_ids)}
        self.vectors = F.normalize(vectors.float(), dim=-1)
        self.exclude_history = exclude_history

    def scores(self, histories: Sequence[Sequence[str]]) -> tuple[torch.Tensor, list[list[int]]]:
        """``[B, N]`` cosine scores and the histories as item rows."""
        rows = history_rows(histories, self.index, "textknn")
        query = torch.zeros((len(rows), self.vectors.shape[1]))
        for n, r in enumerate(rows):
            if r:
                query[n] = self.vectors[torch.as_tensor(r)].mean(0)
        return F.normalize(query, dim=-1) @ self.vectors.T, rows

    def recommend(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None) -> list[list[str]]:
        """Top-``k`` items per history (``beam_size`` is unused: there is no search)."""
        scores, rows = self.scores(histories)
        top = top_k_from_scores(scores, k, rows if self.exclude_history else None)
        return [[self.item_ids[j] for j in r] for r in top.tolist()]


def load(model_dir: str | Path, device: Any = "cpu") -> TextKnnRecommender:
    """Load a textknn model directory (``device`` is unused: scoring is one matrix product on the CPU)."""
    meta = read_model_meta(model_dir, BACKBONE)
    item_ids = [str(i) for i in meta.get("item_ids") or []]
    vectors = load_item_vectors(model_dir, item_ids)
    return TextKnnRecommender(item_ids, vectors, bool(meta.get("options", {}).get("exclude_history", True)))


SPEC = Backbone(BACKBONE, TextKnnOptions, train, load, inputs=("item_emb",))
