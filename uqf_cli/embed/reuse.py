"""``uqf embed-text --reuse OLD``: encode only the items that are new or whose text changed.

An earlier text embedding file records each item's text hash (:mod:`uqf_cli.files.fingerprints`). An item
of the dataset whose id is in that file with the same text hash gets its old row copied; every
other item (new, or its text changed) is encoded. Rows of items no longer in the dataset are
dropped. Mixing vectors of two encoders would be meaningless, so the old file must have been made
with the same model, pooling, fields or template, max length and normalisation; otherwise the run
stops before loading any model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from uqf_cli.core.errors import InputError
from uqf_cli.files import load_embeddings
from uqf_cli.files.fingerprints import text_record

# The settings that decide an item's vector; all must match for a row to be reused.
SIGNATURE_KEYS = ("model", "pooling", "fields", "template", "max_length", "normalize")


def encoder_signature(params: dict[str, Any]) -> dict[str, Any]:
    """The vector-deciding settings in embed-text's provenance parameters (model by name, not location)."""
    model = params.get("model")
    sig = {k: params.get(k) for k in SIGNATURE_KEYS}
    sig["model"] = model.get("name") if isinstance(model, dict) else model
    if sig["fields"] is not None:
        sig["fields"] = list(sig["fields"])
    return sig


@dataclass
class ReusePlan:
    """For each dataset item, the old row to copy (or None: encode it)."""

    source: Path
    rows: list[int | None]
    old: torch.Tensor
    new_items: int
    changed_items: int

    @property
    def to_embed(self) -> list[int]:
        """Positions (in dataset order) of the items to encode."""
        return [k for k, r in enumerate(self.rows) if r is None]

    @property
    def copied(self) -> int:
        return len(self.rows) - self.new_items - self.changed_items

    def assemble(self, fresh: torch.Tensor | None) -> torch.Tensor:
        """All items' rows in dataset order: copied rows, and ``fresh`` (rows of :attr:`to_embed`) in between."""
        out = torch.empty(len(self.rows), self.old.shape[1], dtype=torch.float32)
        keep = [(k, r) for k, r in enumerate(self.rows) if r is not None]
        if keep:
            out[torch.tensor([k for k, _ in keep])] = self.old[torch.tensor([r for _, r in keep])]
        todo = self.to_embed
        if todo:
            if fresh is None or fresh.shape != (len(todo), self.old.shape[1]):
                got = None if fresh is None else tuple(fresh.shape)
                raise InputError(self.source, f"new rows {got} do not fit its {self.old.shape[1]}-d embeddings")
            out[torch.tensor(todo)] = fresh.to(torch.float32)
        return out

    def provenance(self) -> dict[str, Any]:
        return {"file": str(self.source), "copied": self.copied, "embedded": self.new_items + self.changed_items,
                "new": self.new_items, "changed": self.changed_items}


def plan_reuse(path: str | Path, item_ids: list[str], hashes: torch.Tensor, signature: dict[str, Any]) -> ReusePlan:
    """Decide which rows of ``path`` can be copied for ``item_ids`` (their current text ``hashes``)."""
    old = load_embeddings(path)
    record = text_record(old)
    if record is None:
        raise InputError(path, "records no per-item text hashes (made by an earlier uqf or another tool), so "
                               "unchanged items cannot be told apart; embed without --reuse once")
    params = old.provenance.get("parameters") or {}
    if "from_array" in params:
        raise InputError(path, "was wrapped from an array (--from-array), not encoded by a model; nothing to reuse")
    before = encoder_signature(params)
    before["fields"] = list(record.spec.fields) if record.spec.fields and not record.spec.template else None
    before["template"] = record.spec.template
    differs = [k for k in SIGNATURE_KEYS if before.get(k) != signature.get(k)]
    if differs:
        what = ", ".join(f"{k} {before.get(k)!r} (now {signature.get(k)!r})" for k in differs)
        raise InputError(path, f"was made with other settings: {what}; --reuse needs the same model, pooling, "
                               "fields or template, max length and normalisation")
    index = old.index()
    rows: list[int | None] = []
    new = changed = 0
    for iid, h in zip(item_ids, hashes.tolist(), strict=True):
        if iid not in record.hashes:
            rows.append(None)
            new += 1
        elif record.hashes[iid] != h:
            rows.append(None)
            changed += 1
        else:
            rows.append(index[iid])
    return ReusePlan(Path(path), rows, old.embeddings, new, changed)


__all__ = ["ReusePlan", "encoder_signature", "plan_reuse"]
