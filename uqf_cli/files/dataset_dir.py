"""The dataset directory ``uqf prepare`` writes: ``items.jsonl``, ``sequences.jsonl``, ``dataset.json``."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uqf_cli.core.errors import InputError
from uqf_cli.files.atomic import atomic_path, require_dir
from uqf_cli.files.jsonio import iter_jsonl, read_json, record_id, to_json
from uqf_cli.files.kinds import DATASET_KIND
from uqf_cli.files.provenance import sha256_file

ITEMS_FILE = "items.jsonl"
SEQUENCES_FILE = "sequences.jsonl"
DATASET_INFO_FILE = "dataset.json"


def dataset_fingerprint(items_path: Path, sequences_path: Path) -> str:
    """A short hash of a dataset's content, recorded in every downstream file's metadata."""
    h = hashlib.sha256()
    h.update(sha256_file(items_path).encode())
    h.update(sha256_file(sequences_path).encode())
    return h.hexdigest()[:16]


def write_dataset_dir(
    out_dir: str | Path,
    items: Mapping[str, Mapping[str, Any]],
    sequences: Mapping[str, list[str]],
    info: Mapping[str, Any],
    force: bool = False,
) -> Path:
    """Write a dataset directory atomically (all three files appear together or not at all)."""
    with atomic_path(out_dir, force, directory=True) as tmp:
        with open(tmp / ITEMS_FILE, "w", encoding="utf-8") as f:
            for iid, fields in items.items():
                f.write(to_json({"item_id": iid, **{k: v for k, v in fields.items() if k != "item_id"}}))
                f.write("\n")
        with open(tmp / SEQUENCES_FILE, "w", encoding="utf-8") as f:
            for uid, seq in sequences.items():
                f.write(to_json({"user_id": uid, "item_ids": list(seq)}) + "\n")
        full_info = {"uqf_kind": DATASET_KIND, **{k: v for k, v in info.items() if k != "uqf_kind"}}
        full_info["fingerprint"] = dataset_fingerprint(tmp / ITEMS_FILE, tmp / SEQUENCES_FILE)
        (tmp / DATASET_INFO_FILE).write_text(to_json(full_info, indent=2) + "\n", encoding="utf-8")
    return Path(out_dir)


def read_dataset_dir(
    path: str | Path,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]], dict[str, Any]]:
    """Read and validate a dataset directory: ``(items, sequences, info)``.

    Validation is strict because every later stage trusts it: item ids are unique non-empty
    strings, every interaction names a known item, no sequence is empty.
    """
    d = require_dir(path, "dataset directory")
    items_path = d / ITEMS_FILE
    seq_path = d / SEQUENCES_FILE
    info_path = d / DATASET_INFO_FILE
    if not items_path.exists() and (d / "uqf_model.json").is_file():  # `uqf evaluate DS MODEL`
        raise InputError(d, "is a model directory, not a dataset directory (MODEL_DIR and DATASET swapped? "
                         "the model comes first)")
    for p in (items_path, seq_path):
        if not p.exists():
            raise InputError(d, f"not a uqf dataset directory: {p.name} is missing (run `uqf prepare`)")
    items: dict[str, dict[str, Any]] = {}
    for lineno, rec in iter_jsonl(items_path):
        iid = record_id(items_path, lineno, rec, "item_id", items, "item")
        items[iid] = {k: v for k, v in rec.items() if k != "item_id"}
    if not items:
        raise InputError(items_path, "no items")
    sequences: dict[str, list[str]] = {}
    for lineno, rec in iter_jsonl(seq_path):
        uid = record_id(seq_path, lineno, rec, "user_id", sequences, "user")
        seq = rec.get("item_ids")
        if not isinstance(seq, list) or not seq:
            raise InputError(seq_path, f"line {lineno}: item_ids must be a non-empty list")
        seq = [str(i) for i in seq]
        unknown = next((i for i in seq if i not in items), None)
        if unknown is not None:
            raise InputError(seq_path, f"line {lineno}: user {uid!r} names unknown item {unknown!r}")
        sequences[uid] = seq
    if not sequences:
        raise InputError(seq_path, "no sequences")
    info: dict[str, Any] = read_json(info_path) if info_path.exists() else {}
    if not isinstance(info, dict):
        raise InputError(info_path, "expected a JSON object")
    info["fingerprint"] = dataset_fingerprint(items_path, seq_path)
    return items, sequences, info
