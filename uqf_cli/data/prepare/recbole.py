"""Reader for RecBole atomic files: ``X.inter`` (tab-separated, typed header) and ``X.item`` (text columns)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from uqf_cli.core.errors import InputError
from uqf_cli.data.prepare.cleaning import clean_text
from uqf_cli.data.prepare.raw import Interaction, RawDataset, find_one


def _recbole_header(path: Path, line: str) -> list[tuple[str, str]]:
    columns = []
    for col in line.rstrip("\n\r").split("\t"):
        name, sep, kind = col.partition(":")
        if not sep or not name:
            raise InputError(path, f"line 1: header column {col!r} is not 'name:type' (RecBole atomic file)")
        columns.append((name, kind))
    return columns


def iter_recbole(path: Path) -> Iterator[tuple[int, dict[str, str], list[tuple[str, str]]]]:
    """Rows of a RecBole atomic file as dicts (column name -> raw string)."""
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")) as f:
            header = _recbole_header(path, f.readline())
            for lineno, line in enumerate(f, 2):
                if not line.strip():
                    continue
                values = line.rstrip("\n\r").split("\t")
                if len(values) != len(header):
                    raise InputError(path, f"line {lineno}: {len(values)} tab-separated values, header has "
                                     f"{len(header)} columns")
                yield lineno, {name: v for (name, _), v in zip(header, values, strict=True)}, header
    except UnicodeDecodeError as e:
        raise InputError(path, "not UTF-8 text") from e


def read_recbole(source: Path) -> RawDataset:
    """``X.inter`` (+ ``X.item`` with the text) in RecBole's atomic-file format."""
    if source.is_file():
        inter_path, item_path = source, source.with_suffix(".item")
    else:
        found = find_one(source, "*.inter")
        if found is None:
            raise InputError(source, "RecBole format needs X.inter (and X.item)")
        inter_path, item_path = found, found.with_suffix(".item")
    if not item_path.is_file():
        raise InputError(item_path, "not found (uqf needs the items' text, which RecBole keeps in X.item)")
    items: dict[str, dict[str, Any]] = {}
    for lineno, row, header in iter_recbole(item_path):
        if "item_id" not in row:
            raise InputError(item_path, "header has no item_id column")
        iid = row["item_id"]
        if not iid:
            raise InputError(item_path, f"line {lineno}: empty item_id")
        if iid in items:
            raise InputError(item_path, f"line {lineno}: duplicate item id {iid!r}")
        text_cols = [n for n, kind in header if kind in ("token", "token_seq") and n != "item_id"]
        items[iid] = {n: clean_text(row[n]) for n in text_cols}
    interactions: list[Interaction] = []
    for lineno, row, _ in iter_recbole(inter_path):
        missing = [c for c in ("user_id", "item_id") if c not in row]
        if missing:
            raise InputError(inter_path, f"header lacks column(s) {', '.join(missing)}")
        t = row.get("timestamp", "")
        try:
            when = float(t) if t else 0.0
        except ValueError as e:
            raise InputError(inter_path, f"line {lineno}: timestamp {t!r} is not a number") from e
        if not row["user_id"] or not row["item_id"]:
            raise InputError(inter_path, f"line {lineno}: empty user_id or item_id")
        interactions.append(Interaction(row["user_id"], row["item_id"], when, len(interactions)))
    notes = {"files": [inter_path.name, item_path.name]}
    return RawDataset(items, interactions, str(source), "recbole", notes)
