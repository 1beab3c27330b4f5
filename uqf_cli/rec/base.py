"""What every recommender backbone shares: samples, the model directory's metadata, the ranking API.

Samples follow LC-Rec, TIGER and LETTER: per user, every position of the train part is a target
with up to ``max_history`` previous items as history; the valid target is the second to last item and
the test target the last one (:meth:`uqf_cli.data.dataset.Dataset.eval_cases`).

A model directory always holds ``uqf_model.json`` (backbone, SID hash, dataset and interaction
fingerprints, options, provenance) and, for SID backbones, ``sids.jsonl`` (a copy of the SIDs the model was
trained on), so evaluation can check that it is given compatible inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from uqf_cli.core import runtime
from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, read_json, read_sids, require_dir, to_json, write_sids

MODEL_META_FILE = "uqf_model.json"
MODEL_SIDS_FILE = "sids.jsonl"


@dataclass(frozen=True)
class Sample:
    """One training example: the history (oldest first, at most ``max_history`` items) and the target."""

    user_id: str
    history: tuple[str, ...]
    target: str


def training_samples(dataset: Dataset, max_history: int = 20, include_valid: bool = False) -> list[Sample]:
    """Every position of each user's train part (after the first) as a target with its history."""
    out = []
    for uid, seq in dataset.train_sequences(include_valid=include_valid).items():
        for pos in range(1, len(seq)):
            out.append(Sample(uid, tuple(seq[max(0, pos - max_history):pos]), seq[pos]))
    return out


class Recommender(Protocol):
    """A trained model that ranks items for histories."""

    backbone: str

    def recommend(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None) -> list[list[str]]:
        """Top-``k`` item ids, best first, for each history (oldest item first)."""
        ...


def write_model_meta(
    model_dir: Path,
    backbone: str,
    dataset: Dataset,
    options: dict[str, Any],
    provenance: dict[str, Any],
    sids: SidTable | None = None,
    **extra: Any,
) -> None:
    """Write ``uqf_model.json`` (and the SIDs copy) into a model directory being built; call it last, as it
    lists the folder's files."""
    meta: dict[str, Any] = {
        "backbone": backbone,
        "dataset_fingerprint": dataset.fingerprint,
        "interaction_fingerprint": dataset.interaction_fingerprint,
        "options": options,
        "provenance": provenance,
        **extra,
    }
    if sids is not None:
        meta["sid_hash"] = sids.content_hash()
        meta["sid_levels"] = sids.semantic_levels
        meta["sid_dedup_level"] = sids.dedup_level
        meta["codebook_sizes"] = list(sids.codebook_sizes)
        write_sids(model_dir / MODEL_SIDS_FILE, sids, force=True)
    # the folder's files, so that --force can tell them from files a user added later (files/kinds.py)
    meta["files"] = sorted(str(f.relative_to(model_dir)) for f in model_dir.rglob("*") if f.is_file())
    (model_dir / MODEL_META_FILE).write_text(to_json(meta, indent=2) + "\n", encoding="utf-8")


def read_model_meta(model_dir: str | Path, backbone: str | None = None) -> dict[str, Any]:
    """Read ``uqf_model.json``; a directory without it is not a uqf model, nor one of another ``backbone``."""
    d = require_dir(model_dir, "model directory")
    p = d / MODEL_META_FILE
    if not p.exists():
        if (d / "dataset.json").is_file():
            raise InputError(d, "is a dataset directory, not a model directory (from `uqf train-rec`)")
        raise InputError(d, f"not a uqf model directory ({MODEL_META_FILE} is missing; run `uqf train-rec`)")
    meta = read_json(p)
    if not isinstance(meta, dict) or "backbone" not in meta:
        raise InputError(p, "malformed model metadata (no 'backbone')")
    if backbone is not None and meta["backbone"] != backbone:
        raise InputError(Path(model_dir), f"is a {meta['backbone']} model, not a {backbone} one")
    return meta


def history_rows(histories: Sequence[Sequence[str]], index: Mapping[str, int], model: str) -> list[list[int]]:
    """Each history as the model's item rows; an item the model does not know is refused."""
    rows = []
    for h in histories:
        unknown = next((i for i in h if i not in index), None)
        if unknown is not None:
            raise InputError(None, f"history names item {unknown!r}, which this {model} model does not know")
        rows.append([index[i] for i in h])
    return rows


def read_model_sids(model_dir: str | Path) -> SidTable:
    """The SIDs a model was trained on (the copy inside its directory)."""
    return read_sids(Path(model_dir) / MODEL_SIDS_FILE)


def check_sids_cover(dataset: Dataset, sids: SidTable | None, backbone: str) -> SidTable:
    """The SIDs must give every dataset item a code tuple; return them restricted to the dataset.

    A fingerprint from another dataset only warns when every item is covered (the same catalogue
    re-prepared, say); missing items are refused because the model could never recommend them.
    """
    if sids is None:
        raise OptionError("--sids", f"the {backbone} backbone needs --sids (a SIDs file from `uqf quantize`)")
    have = set(sids.item_ids)
    missing = [i for i in dataset.item_ids if i not in have]
    if missing:
        raise InputError(sids.path, f"SIDs do not cover the dataset: {len(missing)} of {len(dataset.item_ids)} "
                                    f"items have no SID (e.g. {missing[0]!r})")
    if sids.dataset_fingerprint and dataset.fingerprint and sids.dataset_fingerprint != dataset.fingerprint:
        runtime.warn(f"{sids.path}: SIDs were made for dataset {sids.dataset_fingerprint}, training on "
                     f"{dataset.fingerprint} (every item is covered, continuing)")
    return restrict_sids(sids, dataset.item_ids)


def restrict_sids(sids: SidTable, item_ids: Sequence[str]) -> SidTable:
    """The SID rows of ``item_ids`` only (in the SID file's order): what a model of this dataset decodes,
    and what its SID hash is computed over."""
    keep = set(item_ids)
    rows = [r for r, iid in enumerate(sids.item_ids) if iid in keep]
    if len(rows) == len(sids.item_ids):
        return sids
    return SidTable(item_ids=[sids.item_ids[r] for r in rows], codes=sids.codes[rows],
                    codebook_sizes=list(sids.codebook_sizes), provenance=sids.provenance, stats=sids.stats,
                    dataset_fingerprint=sids.dataset_fingerprint, path=sids.path,
                    dedup_level=sids.dedup_level)
