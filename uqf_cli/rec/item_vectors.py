"""Item vectors for the backbones that score items by an embedding (hybrid, textknn).

The vectors come from any uqf embeddings file (the UQF unified embedding, the text embedding, ...),
aligned by item id (never by position) to the model's catalogue. A model directory keeps its own copy
(``item_vectors.safetensors``, the rows of its items) together with the source file's SHA-256, so
evaluation never depends on a file that may have changed since training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.files import load_embeddings, require_file, save_embeddings, sha256_file

ITEM_VECTORS_FILE = "item_vectors.safetensors"


def aligned_item_vectors(path: str | Path | None, item_ids: Sequence[str], backbone: str,
                         flag: str = "--item-emb") -> tuple[torch.Tensor, dict[str, Any]]:
    """``[N, d]`` float32 rows of ``path`` for ``item_ids`` (in that order) and a description of the source.

    Every item must have a row: an item without one could never be scored, so it is refused here.
    """
    if path is None:
        raise OptionError(flag, f"the {backbone} backbone needs an item embeddings file ({flag} unified.st)")
    src = require_file(path, "item embeddings file")
    emb = load_embeddings(src)
    have = emb.index()
    missing = [i for i in item_ids if i not in have]
    if missing:
        raise InputError(src, f"has no row for {len(missing)} of {len(item_ids)} dataset items "
                              f"(e.g. {missing[0]!r}); embed every item, cold ones too (`uqf fuse --apply`)")
    source = {"path": str(src), "sha256": sha256_file(src), "modality": emb.modality, "dim": emb.dim,
              "dataset_fingerprint": emb.dataset_fingerprint}
    return emb.rows_for(item_ids).contiguous(), source


def save_item_vectors(model_dir: Path, vectors: torch.Tensor, item_ids: Sequence[str], source: dict[str, Any],
                      provenance: dict[str, Any]) -> None:
    """The model directory's copy of its item vectors (inside a directory being built atomically)."""
    save_embeddings(model_dir / ITEM_VECTORS_FILE, vectors, list(item_ids), provenance,
                    str(source.get("modality", "unknown")), source.get("dataset_fingerprint"),
                    extra_metadata={"source": source}, force=True)


def load_item_vectors(model_dir: str | Path, item_ids: Sequence[str]) -> torch.Tensor:
    """The model directory's item vectors in the order of ``item_ids`` (every id must be there)."""
    path = Path(model_dir) / ITEM_VECTORS_FILE
    emb = load_embeddings(require_file(path, "item vectors file"))
    have = emb.index()
    missing = next((i for i in item_ids if i not in have), None)
    if missing is not None:
        raise InputError(path, f"has no row for item {missing!r} of the model's catalogue")
    return emb.rows_for(item_ids).contiguous()
