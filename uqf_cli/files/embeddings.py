"""Embedding files: float32 ``embeddings`` [N, d] with ``item_ids`` in row order, provenance and modality
in the metadata; stages align files by id, never by position."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uqf_cli.core.errors import InputError
from uqf_cli.files.tensors import load_tensors, meta_json, save_tensors

EMBEDDINGS_KIND = "embeddings"


@dataclass
class EmbeddingFile:
    """Item embeddings aligned by id, plus whatever else the file carries."""

    embeddings: torch.Tensor
    item_ids: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)
    modality: str = "unknown"
    dataset_fingerprint: str | None = None
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    extra_metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __repr__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"EmbeddingFile({where}[{len(self.item_ids):,}, {self.dim}] {self.modality})"

    def index(self) -> dict[str, int]:
        """Map item id -> row."""
        return {iid: k for k, iid in enumerate(self.item_ids)}

    def rows_for(self, item_ids: Iterable[str]) -> torch.Tensor:
        """Embeddings for ``item_ids`` in that order (ids must be present)."""
        idx = self.index()
        return self.embeddings[torch.tensor([idx[i] for i in item_ids], dtype=torch.long)]


def save_embeddings(
    path: str | Path,
    embeddings: torch.Tensor | np.ndarray,
    item_ids: list[str],
    provenance: Mapping[str, Any],
    modality: str,
    dataset_fingerprint: str | None = None,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write an embedding file following the contract (float32, ids in metadata)."""
    emb = torch.as_tensor(embeddings).detach().to("cpu", torch.float32)
    if emb.ndim != 2 or emb.shape[0] != len(item_ids):
        raise ValueError(f"embeddings {tuple(emb.shape)} do not match {len(item_ids)} item ids")
    tensors = {"embeddings": emb, **dict(extra_tensors or {})}
    metadata: dict[str, Any] = {
        "uqf_kind": EMBEDDINGS_KIND,
        "modality": modality,
        "item_ids": list(item_ids),
        "provenance": dict(provenance),
    }
    if dataset_fingerprint:
        metadata["dataset_fingerprint"] = dataset_fingerprint
    for k, v in (extra_metadata or {}).items():
        metadata[k] = v
    return save_tensors(path, tensors, metadata, force)


def load_embeddings(path: str | Path, check_finite: bool = True) -> EmbeddingFile:
    """Read and validate an embedding file: 2-D float tensor, unique ids matching its rows, finite."""
    p = Path(path)
    tensors, metadata = load_tensors(p)
    kind = metadata.get("uqf_kind", EMBEDDINGS_KIND)
    if kind != EMBEDDINGS_KIND:
        raise InputError(p, f"is a uqf {kind} file, expected an embedding file")
    if "embeddings" not in tensors:
        names = ", ".join(sorted(tensors)) or "none"
        raise InputError(p, f"has no tensor 'embeddings' (tensors: {names})")
    emb = tensors.pop("embeddings")
    if emb.ndim != 2:
        raise InputError(p, f"'embeddings' must be 2-D [items, dim], got shape {tuple(emb.shape)}")
    if emb.shape[0] == 0 or emb.shape[1] == 0:
        raise InputError(p, "'embeddings' is empty")
    if not emb.is_floating_point():
        raise InputError(p, f"'embeddings' must be floating point, got {emb.dtype}")
    item_ids = meta_json(p, metadata, "item_ids")
    if not isinstance(item_ids, list) or not all(isinstance(i, str) for i in item_ids):
        raise InputError(p, "metadata 'item_ids' must be a JSON list of strings")
    if len(item_ids) != emb.shape[0]:
        raise InputError(p, f"{len(item_ids)} item ids for {emb.shape[0]} embedding rows")
    if len(set(item_ids)) != len(item_ids):
        dup = next(i for i in item_ids if item_ids.count(i) > 1)
        raise InputError(p, f"duplicate item id {dup!r}")
    emb = emb.to(torch.float32)
    if check_finite:
        bad = ~torch.isfinite(emb).all(dim=1)
        if bool(bad.any()):
            first = item_ids[int(bad.nonzero()[0, 0])]
            raise InputError(p, f"{int(bad.sum())} rows contain NaN or Inf (first: item {first!r})")
    known = {"uqf_kind", "modality", "item_ids", "provenance", "dataset_fingerprint"}
    extra_meta = {}
    for k, v in metadata.items():
        if k in known:
            continue
        try:
            extra_meta[k] = json.loads(v)
        except json.JSONDecodeError:
            extra_meta[k] = v
    return EmbeddingFile(
        embeddings=emb,
        item_ids=item_ids,
        provenance=meta_json(p, metadata, "provenance", {}),
        modality=metadata.get("modality", "unknown"),
        dataset_fingerprint=metadata.get("dataset_fingerprint"),
        extra_tensors=tensors,
        extra_metadata=extra_meta,
        path=p,
    )
