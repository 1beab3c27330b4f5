"""Two fingerprints of a dataset, so that what depends on texts and what depends on interactions are checked apart.

* The **catalogue** fingerprint covers item ids and the item text that embed-text reads (the text
  built from the chosen fields or template, so a change in a field that is not embedded does not
  count). A text embedding file records it, the text spec it was built with, and a 64-bit hash of
  each item's text (tensor ``item_text_hash``, in ``item_ids`` order). With those, a later dataset
  can be checked item by item: the file fits when every dataset item is in it with the same text,
  whatever happened to the interactions.
* The **interaction** fingerprint covers the train part of the split (each user's id and
  chronological train items), which is all that collaborative embeddings, fuse's structural
  neighbours and the recommenders learn from.

The check of a text file against a dataset's current item texts builds those texts, so it lives
with embed-text in :mod:`uqf_cli.embed.catalogue`.

Both are recorded in metadata key ``fingerprints`` (a JSON object) beside the whole-dataset
``dataset_fingerprint`` that earlier versions wrote. Files without them are checked as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from uqf_cli.core.errors import InputError

if TYPE_CHECKING:
    from uqf_cli.files.embeddings import EmbeddingFile

FINGERPRINTS_KEY = "fingerprints"
TEXT_HASH_TENSOR = "item_text_hash"
SHORT = 16


@dataclass(frozen=True)
class TextSpec:
    """What embed-text read of each item: these fields, or this template; neither = ids only (--from-array)."""

    fields: tuple[str, ...] = ()
    template: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"fields": list(self.fields), "template": self.template}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TextSpec:
        return cls(tuple(str(f) for f in d.get("fields") or ()), d.get("template"))


def text_hash(text: str) -> int:
    """A signed 64-bit hash of one item's text (first 8 bytes of its sha256): stored as an int64 tensor."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little", signed=True)


def text_hashes(texts: Sequence[str]) -> torch.Tensor:
    """Per-item text hashes as an int64 tensor, in the order given."""
    return torch.tensor([text_hash(t) for t in texts], dtype=torch.int64)


def catalogue_fingerprint(item_ids: Sequence[str], hashes: Sequence[int], spec: TextSpec) -> str:
    """Hash of the text spec and every (item id, text hash) pair, independent of item order."""
    h = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode())
    for iid, value in sorted(zip(item_ids, (int(v) for v in hashes), strict=True)):
        h.update(iid.encode())
        h.update(b"\0")
        h.update(value.to_bytes(8, "little", signed=True))
    return h.hexdigest()[:SHORT]


def interaction_fingerprint(train_sequences: Mapping[str, Sequence[str]]) -> str:
    """Hash of each user's chronological train items, independent of the order of users."""
    h = hashlib.sha256()
    for uid in sorted(train_sequences):
        h.update(uid.encode())
        h.update(b"\0")
        h.update("\x1f".join(train_sequences[uid]).encode())
        h.update(b"\n")
    return h.hexdigest()[:SHORT]


# --------------------------------------------------------------------------------------------
# What files record
# --------------------------------------------------------------------------------------------


def text_file_fields(item_ids: Sequence[str], hashes: torch.Tensor, spec: TextSpec
                     ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Extra tensors and metadata a text embedding file carries: per-item hashes, spec, catalogue fingerprint."""
    fp = catalogue_fingerprint(item_ids, hashes.tolist(), spec)
    return {TEXT_HASH_TENSOR: hashes}, {FINGERPRINTS_KEY: {"catalogue": fp, "text": spec.to_dict()}}


class HasInteractions(Protocol):
    """What :func:`interaction_fields` reads of a dataset (files/ sits below data/, so no ``Dataset`` here)."""

    @property
    def interaction_fingerprint(self) -> str: ...


def interaction_fields(dataset: HasInteractions) -> dict[str, Any]:
    """Metadata a file learned from the train interactions carries."""
    return {FINGERPRINTS_KEY: {"interactions": dataset.interaction_fingerprint}}


@dataclass(frozen=True)
class TextRecord:
    """A text file's catalogue record: its spec, fingerprint and item id -> text hash."""

    spec: TextSpec
    catalogue: str
    hashes: dict[str, int]


def recorded(ef: EmbeddingFile) -> dict[str, Any]:
    """The file's ``fingerprints`` metadata (empty for files of earlier versions)."""
    fps = ef.extra_metadata.get(FINGERPRINTS_KEY)
    return fps if isinstance(fps, dict) else {}


def text_record(ef: EmbeddingFile) -> TextRecord | None:
    """The catalogue record of a text file, or None when it has none (an earlier version wrote it)."""
    fps = recorded(ef)
    hashes = ef.extra_tensors.get(TEXT_HASH_TENSOR)
    if "catalogue" not in fps or not isinstance(fps.get("text"), dict) or hashes is None:
        return None
    if hashes.ndim != 1 or hashes.shape[0] != len(ef.item_ids):
        raise InputError(ef.path, f"tensor {TEXT_HASH_TENSOR!r} has shape {tuple(hashes.shape)}, expected "
                                  f"[{len(ef.item_ids)}] (one per item id)")
    return TextRecord(TextSpec.from_dict(fps["text"]), str(fps["catalogue"]),
                      dict(zip(ef.item_ids, (int(v) for v in hashes.tolist()), strict=True)))


def interactions_of(ef: EmbeddingFile) -> str | None:
    """The interaction fingerprint a collaborative file records, if any."""
    fp = recorded(ef).get("interactions")
    return str(fp) if fp else None


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def both_recorded(files: Iterable[EmbeddingFile]) -> bool:
    """True when every file carries the split fingerprints (so the whole-dataset one is not compared)."""
    return all(bool(recorded(f)) for f in files)


__all__ = ["FINGERPRINTS_KEY", "TEXT_HASH_TENSOR", "TextRecord", "TextSpec", "catalogue_fingerprint",
           "interaction_fingerprint", "text_file_fields", "text_hashes", "text_record"]
