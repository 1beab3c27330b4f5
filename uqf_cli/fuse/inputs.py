"""Load the text and collab files, check they fit each other and the dataset, align them by item id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from uqf_cli.core.errors import InputError
from uqf_cli.core.runtime import warn
from uqf_cli.data.dataset import Dataset
from uqf_cli.embed.catalogue import check_catalogue
from uqf_cli.files import EmbeddingFile, load_embeddings
from uqf_cli.files.fingerprints import both_recorded, interactions_of, text_record


@dataclass
class AlignedInputs:
    """Text and collab rows for one item universe (the text file's ids), aligned by id."""

    item_ids: list[str]
    text: torch.Tensor  # [N, dt], L2-normalised
    collab: torch.Tensor  # [N, dc], L2-normalised, zero rows for cold items
    has_collab: torch.Tensor  # [N] bool
    fingerprint: str | None
    text_path: Path
    collab_path: Path | None

    @property
    def cold_ids(self) -> list[str]:
        return [iid for iid, warm in zip(self.item_ids, self.has_collab.tolist(), strict=True) if not warm]


def load_text(path: str | Path) -> EmbeddingFile:
    """Load the text file; NaN/Inf rows and empty files are refused by the io layer (naming the item)."""
    ef = load_embeddings(path)
    if ef.modality == "collab":  # the classic swap: refuse, the fused space would be meaningless
        raise InputError(path, "modality is 'collab' (a train-gcn file), expected text embeddings for --text")
    if ef.modality not in ("text", "unknown"):
        warn(f"{path}: modality is {ef.modality!r}, expected 'text'")
    return ef


def load_collab(path: str | Path) -> EmbeddingFile:
    ef = load_embeddings(path)
    if ef.modality == "text":
        raise InputError(path, "modality is 'text' (an embed-text file), expected collaborative embeddings (--collab)")
    if ef.modality not in ("collab", "unknown"):
        warn(f"{path}: modality is {ef.modality!r}, expected 'collab'")
    return ef


def text_model_of(text: EmbeddingFile) -> dict[str, Any]:
    """Which text encoder made ``text`` (from embed-text's provenance) and its dimension.

    Recorded in the fuser so that ``--apply`` can tell text from another encoder."""
    model = (text.provenance.get("parameters") or {}).get("model")
    name = model.get("name") if isinstance(model, dict) else model
    return {"name": name if isinstance(name, str) else None, "dim": text.dim}


def check_text_model(fuser_path: str | Path, meta: dict[str, Any], text: EmbeddingFile) -> None:
    """Warn when ``text`` was made by another encoder than the one the fuser was trained on."""
    trained = ((meta.get("provenance") or {}).get("text_model") or {}).get("name")
    given = text_model_of(text)["name"]
    if trained and given and trained != given:
        warn(f"{text.path}: text embeddings come from model {given!r}, but the fuser {fuser_path} was "
             f"trained on {trained!r} text; fused vectors will not match the fuser's catalogue")


def check_same_dataset(a: EmbeddingFile, b: EmbeddingFile) -> None:
    """Refuse files whose recorded dataset fingerprints differ (mixing datasets silently is the worst bug).

    Files that both record the split fingerprints are not compared with each other: text is checked
    against the dataset's catalogue and collab against its interactions (:func:`check_dataset`)."""
    if both_recorded((a, b)):
        return
    if a.dataset_fingerprint and b.dataset_fingerprint and a.dataset_fingerprint != b.dataset_fingerprint:
        raise InputError(b.path, f"comes from dataset {b.dataset_fingerprint}, but {a.path} comes from "
                                 f"{a.dataset_fingerprint}; both inputs must come from the same dataset")


def align_inputs(text: EmbeddingFile, collab: EmbeddingFile | None) -> AlignedInputs:
    """Join text and collab rows by id; collab-less or ``cold_item_ids`` items become cold."""
    ids = list(text.item_ids)
    text_x = F.normalize(text.embeddings, dim=-1)
    if collab is None:
        return AlignedInputs(ids, text_x, torch.zeros(len(ids), 1), torch.zeros(len(ids), dtype=torch.bool),
                             text.dataset_fingerprint, text.path, None)
    check_same_dataset(text, collab)
    text_set = set(ids)
    missing = [i for i in collab.item_ids if i not in text_set]
    if len(missing) == len(collab.item_ids):
        raise InputError(collab.path, f"shares no item ids with {text.path} (first collab id {missing[0]!r}, "
                                      f"first text id {ids[0]!r})")
    if missing:
        raise InputError(collab.path, f"{len(missing)} collab items are missing from the text file {text.path} "
                                      f"(first: {missing[0]!r})")
    cold_meta = collab.extra_metadata.get("cold_item_ids", [])
    if not isinstance(cold_meta, list):
        raise InputError(collab.path, "metadata 'cold_item_ids' must be a JSON list of ids")
    cold = {str(i) for i in cold_meta}
    cidx = collab.index()
    collab_x = torch.zeros(len(ids), collab.dim)
    has = torch.zeros(len(ids), dtype=torch.bool)
    normed = F.normalize(collab.embeddings, dim=-1)
    for k, iid in enumerate(ids):
        row = cidx.get(iid)
        if row is not None and iid not in cold:
            collab_x[k] = normed[row]
            has[k] = True
    if not bool(has.any()):
        raise InputError(collab.path, "has no warm items (every item is missing or listed in cold_item_ids)")
    fp = text.dataset_fingerprint or collab.dataset_fingerprint
    return AlignedInputs(ids, text_x, collab_x, has, fp, text.path, collab.path)


def check_dataset(data: AlignedInputs, ds: Dataset, text: EmbeddingFile | None = None,
                  collab: EmbeddingFile | None = None, allow_subset: bool = False) -> None:
    """The dataset should be the one the embeddings were computed from, and share items with them.

    Split fingerprints when both files record them; otherwise the whole-dataset fingerprint, refused only
    when the embeddings miss some of the dataset's items (docs/fuse.md, "Bad input"). Embeddings of more
    items than the dataset has (a full catalogue with a sample of it) are refused unless ``allow_subset``:
    the output would hold every embedded item, most of them unknown to the dataset's graph.
    """
    known = set(ds.item_ids)
    covered = sum(1 for i in data.item_ids if i in known)
    if text is not None and collab is not None and both_recorded((text, collab)):
        check_split_fingerprints(text, collab, ds)
    elif data.fingerprint and ds.fingerprint and data.fingerprint != ds.fingerprint:
        if covered < len(known):
            raise InputError(ds.path, f"dataset fingerprint {ds.fingerprint} differs from the embeddings' "
                                      f"{data.fingerprint} ({data.text_path}) and {len(known) - covered} of its "
                                      "items have no embedding; use the dataset they were made from")
        warn(f"{data.text_path}: made from dataset {data.fingerprint}, {ds.path} is {ds.fingerprint} "
             "(every item is covered, continuing)")
    if covered == 0:
        raise InputError(data.text_path, f"shares no item ids with dataset {ds.path}")
    outside = len(data.item_ids) - covered
    if outside and not allow_subset:
        raise InputError(data.text_path, f"{outside:,} of its {len(data.item_ids):,} items are not in dataset "
                         f"{ds.path} ({len(known):,} items), and the output would hold them all; use embeddings "
                         "of this dataset's items, or --allow-subset to fuse them anyway")
    lacking = len(known) - covered
    if lacking:
        warn(f"{data.text_path}: {lacking} dataset items have no text embedding and will not be fused")


def check_split_fingerprints(text: EmbeddingFile, collab: EmbeddingFile, ds: Dataset) -> None:
    """Text against the dataset's catalogue (refused on a changed or missing item), collab against its
    train interactions (warned: the embeddings are valid per item, the structural graph is newer)."""
    record = text_record(text)
    if record is None:
        raise InputError(text.path, "records fingerprints but no per-item text hashes (not an embed-text file?)")
    check_catalogue(text, record, ds)
    made_from = interactions_of(collab)
    if made_from and made_from != ds.interaction_fingerprint:
        warn(f"{collab.path}: learned from other train interactions ({made_from}) than {ds.path}'s "
             f"({ds.interaction_fingerprint}); structural neighbours come from {ds.path}")


def concat_embeddings(data: AlignedInputs) -> torch.Tensor:
    """Per-modality L2-normalised concatenation (cold items get zeros in the collab half)."""
    return torch.cat([data.text, data.collab], dim=1)
