"""What a fuse run reports: the neighbourhood-preservation table, the gate summary, the result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from uqf_cli.fuse.ann import ANN_THRESHOLD, nearest
from uqf_cli.fuse.inputs import AlignedInputs, concat_embeddings

OVERLAP_K = 10
OVERLAP_MAX_QUERIES = 20_000  # above this, overlap@k is measured on an evenly spaced sample of query items


def overlap_queries(n: int) -> torch.Tensor:
    """Bool mask of the items whose neighbourhoods the overlap table measures: all of them up to
    ``OVERLAP_MAX_QUERIES``, else an evenly spaced (deterministic) sample. Neighbours are still searched
    among *all* items, so the estimate is unbiased; it keeps the diagnostic at O(sample x N), not O(N^2)."""
    mask = torch.zeros(n, dtype=torch.bool)
    if n <= OVERLAP_MAX_QUERIES:
        mask[:] = True
    else:
        mask[torch.linspace(0, n - 1, OVERLAP_MAX_QUERIES).round().long()] = True
    return mask


def space_neighbours(emb: torch.Tensor, rows: torch.Tensor, k: int = OVERLAP_K,
                     queries: torch.Tensor | None = None, ann_threshold: int = ANN_THRESHOLD
                     ) -> tuple[list[int], np.ndarray] | None:
    """``(query positions, their top-k neighbours among rows, as positions)`` in one embedding space."""
    sub = rows.nonzero().squeeze(1)
    if sub.numel() < 2:
        return None
    x = F.normalize(emb if sub.numel() == emb.shape[0] else emb[sub], dim=-1)  # one copy, not two, of all rows
    local_q = torch.arange(sub.numel()) if queries is None else queries[sub].nonzero().squeeze(1)
    nb = nearest(x[local_q], x, k, local_q, ann_threshold)
    return sub[local_q].tolist(), sub[nb].numpy()


def overlap_score(query_pos: list[int], found: np.ndarray, ref_neigh: list[np.ndarray]) -> float | None:
    """Mean share of each query's reference neighbours that the found top-k contains."""
    scores = []
    for j, i in enumerate(query_pos):
        ref = ref_neigh[i]
        if len(ref):
            scores.append(len(set(found[j].tolist()) & set(ref.tolist())) / len(ref))
    return float(np.mean(scores)) if scores else None


@dataclass
class ReferenceNeighbours:
    text: list[np.ndarray]
    collab: list[np.ndarray]  # among warm items; empty for cold items
    cooc: list[np.ndarray] | None
    queries: torch.Tensor | None = None  # items whose lists were computed (None: all)


def reference_neighbours(data: AlignedInputs, cooc: list[np.ndarray] | None, k: int = OVERLAP_K,
                         queries: torch.Tensor | None = None, ann_threshold: int = ANN_THRESHOLD
                         ) -> ReferenceNeighbours:
    """Each (query) item's k nearest text and collab neighbours and top-k co-occurrences, as positions."""
    n = len(data.item_ids)
    q = torch.ones(n, dtype=torch.bool) if queries is None else queries
    empty = np.zeros(0, dtype=np.int64)
    text: list[np.ndarray] = [empty] * n
    qi = q.nonzero().squeeze(1)
    for j, row in zip(qi.tolist(), nearest(data.text[qi], data.text, k, qi, ann_threshold), strict=True):
        text[j] = row.numpy()
    collab: list[np.ndarray] = [empty] * n
    warm = data.has_collab.nonzero().squeeze(1)
    if warm.numel() >= 2:
        local_q = q[warm].nonzero().squeeze(1)
        nb = nearest(data.collab[warm[local_q]], data.collab[warm], k, local_q, ann_threshold)
        for j, i in enumerate(warm[local_q].tolist()):
            collab[i] = warm[nb[j]].numpy()
    top_cooc = [c[:k] for c in cooc] if cooc is not None else None
    return ReferenceNeighbours(text, collab, top_cooc, queries)


def overlap_row(emb: torch.Tensor, present: torch.Tensor, data: AlignedInputs, ref: ReferenceNeighbours,
                ann_threshold: int = ANN_THRESHOLD) -> dict[str, float | None]:
    """Overlap@10 of an embedding space with the text, collab and co-occurrence neighbourhoods."""
    warm = data.has_collab & present
    q = ref.queries
    # One search per candidate set (not per reference): on 200k items each is a 20k x 200k scan.
    over_present = space_neighbours(emb, present, queries=q, ann_threshold=ann_threshold)
    over_warm = over_present if torch.equal(warm, present) else space_neighbours(emb, warm, queries=q,
                                                                                  ann_threshold=ann_threshold)

    def score(found: tuple[list[int], np.ndarray] | None, neigh: list[np.ndarray] | None) -> float | None:
        return None if found is None or neigh is None else overlap_score(*found, neigh)

    return {"text": score(over_present, ref.text), "collab": score(over_warm, ref.collab),
            "cooc": score(over_present, ref.cooc)}


def overlap_table(method: str, emb: torch.Tensor, present: torch.Tensor, data: AlignedInputs,
                  cooc: list[np.ndarray] | None, ann_threshold: int = ANN_THRESHOLD
                  ) -> dict[str, dict[str, float | None]]:
    """The neighbourhood-preservation table: inputs, concat and the chosen method, in one run."""
    ref = reference_neighbours(data, cooc, queries=overlap_queries(len(data.item_ids)), ann_threshold=ann_threshold)
    everyone = torch.ones(len(data.item_ids), dtype=torch.bool)
    table = {
        "text": overlap_row(data.text, everyone, data, ref, ann_threshold),
        "collab": overlap_row(data.collab, data.has_collab, data, ref, ann_threshold),
        "concat": overlap_row(concat_embeddings(data), everyone, data, ref, ann_threshold),
    }
    if method not in table:
        table[method] = overlap_row(emb, present, data, ref, ann_threshold)
    return table


@dataclass
class FuseResult:
    """What the CLI prints: counts, timings, the overlap table, the gate summary and the loss curve."""

    output: Path
    method: str
    items: int
    cold_items: int
    dim: int
    seconds: float
    overlap: dict[str, dict[str, float | None]]
    gate: dict[str, float] | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    model_path: Path | None = None
    omitted_items: int = 0

    def __repr__(self) -> str:
        gate = f", gate mean {self.gate['mean']:.3f}" if self.gate and "mean" in self.gate else ""
        return (f"FuseResult({self.output}: {self.items:,} items ({self.cold_items:,} cold), {self.dim}-d, "
                f"{self.method}{gate})")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output"] = str(self.output)
        d["model_path"] = str(self.model_path) if self.model_path else None
        return d


def gate_summary(gate: torch.Tensor | None, has_collab: torch.Tensor) -> dict[str, float] | None:
    if gate is None:
        return None
    summary = {"mean": float(gate.mean()), "min": float(gate.min()), "max": float(gate.max())}
    if bool(has_collab.any()):
        summary["mean_warm"] = float(gate[has_collab].mean())
    if bool((~has_collab).any()):
        summary["mean_cold"] = float(gate[~has_collab].mean())
    return {k: round(v, 4) for k, v in summary.items()}
