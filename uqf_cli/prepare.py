"""``uqf prepare``: turn a public recommendation dataset into a uqf dataset directory.

Readers (format auto-detected, or chosen with ``format=``):

* ``lcrec``: the LC-Rec/LETTER JSON pair ``X.inter.json`` (user -> chronological item ids) and
  ``X.item.json`` (item id -> text fields). Item ids are kept as strings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uqf_cli.dataset import Dataset
from uqf_cli.errors import InputError, OptionError
from uqf_cli.io import read_json, require_dir, write_dataset_dir

TEXT_FIELDS = ("title", "brand", "categories", "description")


@dataclass
class RawDataset:
    """What a reader returns: items (id -> text fields) and chronological sequences (user -> ids)."""

    items: dict[str, dict[str, Any]]
    sequences: dict[str, list[str]]
    source: str
    format: str
    notes: dict[str, Any]


def _find_one(directory: Path, pattern: str) -> Path | None:
    hits = sorted(directory.glob(pattern))
    if len(hits) > 1:
        names = ", ".join(h.name for h in hits)
        raise InputError(directory, f"several files match {pattern} ({names}); keep one per directory")
    return hits[0] if hits else None


def read_lcrec(directory: Path) -> RawDataset:
    """Read ``X.inter.json`` + ``X.item.json`` (the format LC-Rec, LETTER and MiniOneRec share)."""
    inter_path = _find_one(directory, "*.inter.json")
    item_path = _find_one(directory, "*.item.json")
    if inter_path is None or item_path is None:
        raise InputError(directory, "LC-Rec format needs X.inter.json and X.item.json")
    inter = read_json(inter_path)
    raw_items = read_json(item_path)
    if not isinstance(inter, dict):
        raise InputError(inter_path, "expected a JSON object mapping user id -> list of item ids")
    if not isinstance(raw_items, dict):
        raise InputError(item_path, "expected a JSON object mapping item id -> text fields")
    items: dict[str, dict[str, Any]] = {}
    for iid in sorted(raw_items, key=_natural_key):
        fields = raw_items[iid]
        if not isinstance(fields, dict):
            raise InputError(item_path, f"item {iid!r}: expected an object of text fields")
        items[str(iid)] = {k: _clean_text(v) for k, v in fields.items()}
    sequences: dict[str, list[str]] = {}
    for uid in sorted(inter, key=_natural_key):
        seq = inter[uid]
        if not isinstance(seq, list):
            raise InputError(inter_path, f"user {uid!r}: expected a list of item ids")
        ids = [str(i) for i in seq]
        unknown = next((i for i in ids if i not in items), None)
        if unknown is not None:
            raise InputError(inter_path, f"user {uid!r} names item {unknown!r}, which {item_path.name} lacks")
        if ids:
            sequences[str(uid)] = ids
    return RawDataset(items, sequences, str(directory), "lcrec", {"files": [inter_path.name, item_path.name]})


def _natural_key(s: str) -> tuple[int, int | str]:
    return (0, int(s)) if str(s).isdigit() else (1, str(s))


def _clean_text(v: Any) -> Any:
    if isinstance(v, str):
        return " ".join(v.split())
    return v


READERS: dict[str, Callable[[Path], RawDataset]] = {"lcrec": read_lcrec}


def detect_format(source: Path) -> str:
    """Guess the format from the files present."""
    if source.is_dir() and any(source.glob("*.inter.json")):
        return "lcrec"
    raise InputError(source, "unknown dataset format (pass --format; known: " + ", ".join(READERS) + ")")


def prepare(source: str | Path, output: str | Path, fmt: str = "auto", force: bool = False) -> Dataset:
    """Read ``source`` in ``fmt`` and write a validated dataset directory at ``output``."""
    src = require_dir(source, "source directory")
    name = detect_format(src) if fmt == "auto" else fmt
    if name not in READERS:
        raise OptionError("--format", f"unknown format {name!r} (known: auto, {', '.join(READERS)})")
    raw = READERS[name](src)
    if not raw.items:
        raise InputError(src, "no items")
    if not raw.sequences:
        raise InputError(src, "no interactions")
    info = {
        "source": raw.source,
        "format": raw.format,
        "split": "leave-one-out: last item = test, second to last = valid, the rest = train",
        "notes": raw.notes,
    }
    ds = Dataset(raw.items, raw.sequences, info)
    info.update({k: ds.stats()[k] for k in ("users", "items", "interactions")})
    write_dataset_dir(output, raw.items, raw.sequences, info, force=force)
    return Dataset.load(output)
