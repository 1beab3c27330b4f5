"""Semantic IDs: the SID table, its JSONL file with a ``.meta.json`` sidecar, and LC-Rec/LETTER
``*.index.json`` files (read and written)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uqf_cli.core.errors import InputError
from uqf_cli.files.atomic import atomic_path, require_file
from uqf_cli.files.jsonio import iter_jsonl, read_json, record_id
from uqf_cli.files.sidecar import read_meta, write_jsonl_with_meta

SIDS_HEADER_KEY = "_uqf"
LEVEL_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def level_token(level: int, code: int) -> str:
    """The SID token for ``code`` at ``level`` (0-based): ``<a_12>``, ``<b_3>`` ... as LC-Rec writes them."""
    return f"<{LEVEL_LETTERS[level]}_{code}>"


def depth_label(levels: int, dedup_level: bool) -> str:
    """How deep a SID is, said one way everywhere: ``"3 levels + dedup"`` or ``"3 levels"``."""
    return f"{levels} levels + dedup" if dedup_level else f"{levels} levels"


def parse_token(token: str) -> tuple[int, int]:
    """Inverse of :func:`level_token`: ``'<b_3>'`` -> ``(1, 3)``."""
    if not (token.startswith("<") and token.endswith(">") and "_" in token):
        raise ValueError(f"not a SID token: {token!r}")
    letter, code = token[1:-1].split("_", 1)
    if len(letter) != 1 or letter not in LEVEL_LETTERS:
        raise ValueError(f"not a SID token: {token!r}")
    return LEVEL_LETTERS.index(letter), int(code)


@dataclass
class SidTable:
    """Semantic IDs: one row of codes per item, all rows the same length.

    ``dedup_level``: the last code is not semantic but tells apart items whose semantic codes collide
    (``quantize --dedup level``); ``levels`` counts every code, ``semantic_levels`` the others.
    """

    item_ids: list[str]
    codes: np.ndarray  # int64 [N, L]
    codebook_sizes: list[int]
    provenance: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    dataset_fingerprint: str | None = None
    path: Path | None = None
    dedup_level: bool = False

    @property
    def levels(self) -> int:
        """Codes per item (the dedup code included)."""
        return int(self.codes.shape[1])

    @property
    def semantic_levels(self) -> int:
        """Codes per item that carry meaning (the dedup code excluded)."""
        return self.levels - int(self.dedup_level)

    @property
    def depth(self) -> str:
        """``"3 levels + dedup"``."""
        return depth_label(self.semantic_levels, self.dedup_level)

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return (f"SidTable({len(self.item_ids):,} items, {self.depth}, codebook sizes {list(self.codebook_sizes)}"
                f"{where})")

    def tokens(self, row: int) -> list[str]:
        return [level_token(lv, int(c)) for lv, c in enumerate(self.codes[row])]

    def as_dict(self) -> dict[str, tuple[int, ...]]:
        return {iid: tuple(int(c) for c in row) for iid, row in zip(self.item_ids, self.codes, strict=True)}

    def content_hash(self) -> str:
        """Hash of the id -> codes map alone: what a trained model depends on."""
        h = hashlib.sha256()
        for iid, row in zip(self.item_ids, self.codes, strict=True):
            h.update(iid.encode())
            h.update(b"\0")
            h.update(",".join(str(int(c)) for c in row).encode())
            h.update(b"\n")
        return h.hexdigest()[:16]


def write_sids(path: str | Path, table: SidTable, force: bool = False) -> Path:
    """Write a SIDs JSONL file (one item a line, nothing else) and its ``.meta.json`` sidecar."""
    meta = {
        "uqf_kind": "sids",
        "records": {"item_id": "string", "codes": "list of int, one per level", "tokens": "string"},
        "levels": table.semantic_levels,
        "dedup_level": table.dedup_level,
        "codebook_sizes": list(table.codebook_sizes),
        "items": len(table.item_ids),
        "sid_hash": table.content_hash(),
        "dataset_fingerprint": table.dataset_fingerprint,
        "stats": table.stats,
        "provenance": table.provenance,
    }
    records = (
        {"item_id": iid, "codes": [int(c) for c in row], "tokens": "".join(table.tokens(k))}
        for k, (iid, row) in enumerate(zip(table.item_ids, table.codes, strict=True))
    )
    return write_jsonl_with_meta(path, records, meta, force=force)


def write_lcrec_index(path: str | Path, table: SidTable, force: bool = False) -> Path:
    """Write the LC-Rec/LETTER ``index.json``: item id -> list of tokens."""
    index = {iid: table.tokens(k) for k, iid in enumerate(table.item_ids)}
    with atomic_path(path, force) as tmp:
        tmp.write_text(json.dumps(index), encoding="utf-8")
    return Path(path)


def read_sids(path: str | Path) -> SidTable:
    """Read a uqf SIDs JSONL file or an LC-Rec/LETTER ``*.index.json``; validate shape and ids."""
    p = require_file(path, "SIDs file")
    if p.stat().st_size == 0:
        raise InputError(p, "empty file")
    if p.suffix == ".json":
        return _read_lcrec_index(p)
    header: dict[str, Any] = {}
    ids: list[str] = []
    rows: list[list[int]] = []
    seen: set[str] = set()
    for lineno, rec in iter_jsonl(p):
        if SIDS_HEADER_KEY in rec:  # files of earlier versions: metadata as the first line
            if ids or header:
                raise InputError(p, f"line {lineno}: header line must come first")
            header = rec
            continue
        iid = record_id(p, lineno, rec, "item_id", seen, "item")
        codes = rec.get("codes")
        if codes is None and isinstance(rec.get("tokens"), (str, list)):
            codes = _codes_from_tokens(p, lineno, rec["tokens"])
        if not isinstance(codes, list) or not codes or not all(isinstance(c, int) and c >= 0 for c in codes):
            raise InputError(p, f"line {lineno}: codes must be a non-empty list of non-negative ints")
        if rows and len(codes) != len(rows[0]):
            raise InputError(p, f"line {lineno}: ragged SIDs ({len(codes)} codes, earlier lines have {len(rows[0])})")
        seen.add(iid)
        ids.append(iid)
        rows.append(codes)
    if not ids:
        raise InputError(p, "no SIDs")
    header = header or read_meta(p, "sids") or {}
    codes_arr = np.asarray(rows, dtype=np.int64)
    sizes = header.get("codebook_sizes") or [int(c) + 1 for c in codes_arr.max(axis=0)]
    if len(sizes) != codes_arr.shape[1]:
        raise InputError(p, f"header says {len(sizes)} levels, lines have {codes_arr.shape[1]}")
    return SidTable(
        item_ids=ids,
        codes=codes_arr,
        codebook_sizes=[int(s) for s in sizes],
        provenance=header.get("provenance", {}),
        stats=header.get("stats", {}),
        dataset_fingerprint=header.get("dataset_fingerprint"),
        path=p,
        dedup_level=has_dedup_level(header, codes_arr.shape[1]),
    )


def has_dedup_level(meta: dict[str, Any], columns: int) -> bool:
    """Whether a SIDs file's last code is the dedup code, from its metadata.

    Files written since ``dedup_level`` exists say so; earlier ones said ``"levels": 4`` (every code)
    at the top and ``"stats": {"levels": 3, "final_levels": 4}`` inside, so one more code than the
    quantizer's levels means a dedup level.
    """
    if isinstance(meta.get("dedup_level"), bool):
        return meta["dedup_level"]
    stats = meta.get("stats") if isinstance(meta.get("stats"), dict) else {}
    fitted = stats.get("levels")
    return isinstance(fitted, int) and columns == fitted + 1


def _codes_from_tokens(p: Path, lineno: int, tokens: str | list[str]) -> list[int]:
    if isinstance(tokens, str):
        tokens = ["<" + t for t in tokens.split("<") if t]
    out = []
    for lv, tok in enumerate(tokens):
        try:
            level, code = parse_token(tok)
        except ValueError as e:
            raise InputError(p, f"line {lineno}: {e}") from e
        if level != lv:
            expected = LEVEL_LETTERS[lv]
            raise InputError(p, f"line {lineno}: token {tok!r} at position {lv}, expected level {expected!r}")
        out.append(code)
    return out


def _read_lcrec_index(p: Path) -> SidTable:
    data = read_json(p)
    if not isinstance(data, dict) or not data:
        raise InputError(p, "expected a JSON object mapping item id -> list of SID tokens")
    ids, rows = [], []
    for iid, toks in data.items():
        if not isinstance(toks, list) or not toks:
            raise InputError(p, f"item {iid!r}: expected a non-empty list of tokens")
        try:
            codes = [parse_token(t)[1] for t in toks]
        except (ValueError, TypeError) as e:
            raise InputError(p, f"item {iid!r}: {e}") from e
        if rows and len(codes) != len(rows[0]):
            raise InputError(p, f"item {iid!r}: ragged SIDs ({len(codes)} tokens, others have {len(rows[0])})")
        ids.append(str(iid))
        rows.append(codes)
    codes_arr = np.asarray(rows, dtype=np.int64)
    sizes = [int(c) + 1 for c in codes_arr.max(axis=0)]
    sizes = [max(s, 1 << max(0, (s - 1).bit_length())) for s in sizes]  # round up to a power of two
    return SidTable(item_ids=ids, codes=codes_arr, codebook_sizes=sizes, path=p,
                    provenance={"source": "lcrec-index", "path": str(p)})
