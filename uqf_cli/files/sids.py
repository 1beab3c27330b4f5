"""Semantic IDs: the SID table, its JSONL file with a ``.meta.json`` sidecar, and LC-Rec/LETTER
``*.index.json`` files (read and written).

Both readers check what a model built from the SIDs relies on, and refuse anything else in one line:
every item has the same number of codes (1 to 26 levels: one letter each), every code is a
non-negative 64-bit integer below its level's codebook size (from the sidecar, else derived from the
codes), tokens carry their level's letter in order (``<a_1><b_2><c_3>``; ``<b_2><a_1>`` is not read
as other codes), codes and tokens of one line agree, and no item id or JSON key appears twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uqf_cli.core.bounds import INT64_MAX
from uqf_cli.core.errors import InputError
from uqf_cli.files.atomic import atomic_path, require_file
from uqf_cli.files.jsonio import iter_jsonl, read_json, record_id
from uqf_cli.files.sidecar import read_meta, write_jsonl_with_meta

SIDS_HEADER_KEY = "_uqf"
LEVEL_LETTERS = "abcdefghijklmnopqrstuvwxyz"
MAX_LEVELS = len(LEVEL_LETTERS)
MAX_CODEBOOK_SIZE = 2**24  # codes per level: far beyond any tokenizer, small enough to build a model's vocabulary
_TOKEN = re.compile(r"<([a-z])_(0|[1-9][0-9]*)>", re.ASCII)  # canonical: no sign, no leading zeros


def level_token(level: int, code: int) -> str:
    """The SID token for ``code`` at ``level`` (0-based): ``<a_12>``, ``<b_3>`` ... as LC-Rec writes them."""
    return f"<{LEVEL_LETTERS[level]}_{code}>"


def depth_label(levels: int, dedup_level: bool) -> str:
    """How deep a SID is, said one way everywhere: ``"3 levels + dedup"`` or ``"3 levels"``."""
    return f"{levels} levels + dedup" if dedup_level else f"{levels} levels"


def parse_token(token: str) -> tuple[int, int]:
    """Inverse of :func:`level_token`: ``'<b_3>'`` -> ``(1, 3)``. Only the canonical form is read (``<b_03>``,
    ``<b_-3>``, ``<b_+3>`` or ``<b_3 >`` would otherwise alias or invent codes)."""
    match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        raise ValueError(f"not a SID token: {token!r} (expected <letter_code>, e.g. <a_12>)")
    code = int(match.group(2))
    if code > INT64_MAX:
        raise ValueError(f"code of {token!r} does not fit in 64 bits")
    return LEVEL_LETTERS.index(match.group(1)), code


def tokens_to_codes(tokens: list[Any]) -> list[int]:
    """Codes of one item's tokens, whose letters must run ``a, b, c ...`` (ValueError naming the first that
    does not)."""
    codes = []
    for position, token in enumerate(tokens):
        level, code = parse_token(token)
        if level != position:
            raise ValueError(f"token {token!r} at position {position + 1}, expected level "
                             f"{LEVEL_LETTERS[position] if position < MAX_LEVELS else '(none)'!r}: level letters "
                             "must run a, b, c ... in order")
        codes.append(code)
    return codes


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

    def problem(self) -> str | None:
        """What makes this table unusable (``None`` when nothing): shape, levels, codes beyond their codebook."""
        if self.codes.ndim != 2 or len(self.codes) != len(self.item_ids) or self.codes.shape[1] < 1:
            return f"codes of shape {tuple(self.codes.shape)} for {len(self.item_ids)} items"
        if self.levels > MAX_LEVELS:
            return f"{self.levels} levels; at most {MAX_LEVELS} (one letter each) are supported"
        if len(self.codebook_sizes) != self.levels:
            return f"{len(self.codebook_sizes)} codebook sizes for {self.levels} levels"
        if len(self.item_ids) and int(self.codes.min()) < 0:
            return "negative codes"
        for level, size in enumerate(self.codebook_sizes):
            top = int(self.codes[:, level].max()) if len(self.item_ids) else -1
            if top >= size:
                row = int(np.argmax(self.codes[:, level]))
                return (f"item {self.item_ids[row]!r} has code {top} at level {level + 1}, beyond its codebook "
                        f"of {size} codes (0 to {size - 1})")
            if size > MAX_CODEBOOK_SIZE:
                return (f"level {level + 1} has a codebook of {size:,} codes (largest code {top:,}); at most "
                        f"{MAX_CODEBOOK_SIZE:,} are supported")
        return None

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
    _check_writable(table)
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
    _check_writable(table)
    index = {iid: table.tokens(k) for k, iid in enumerate(table.item_ids)}
    with atomic_path(path, force) as tmp:
        tmp.write_text(json.dumps(index), encoding="utf-8")
    return Path(path)


def _check_writable(table: SidTable) -> None:
    problem = table.problem()
    if problem:  # a table the readers would refuse: a bug upstream, never written
        raise ValueError(f"refusing to write inconsistent SIDs: {problem}")


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
        from_tokens = _codes_from_tokens(p, lineno, rec["tokens"]) if "tokens" in rec else None
        if codes is None:
            codes = from_tokens
        if not isinstance(codes, list) or not codes or not all(_is_code(c) for c in codes):
            raise InputError(p, f"line {lineno}: codes must be a non-empty list of non-negative ints")
        if len(codes) > MAX_LEVELS:
            raise InputError(p, f"line {lineno}: {len(codes)} codes; at most {MAX_LEVELS} levels are supported")
        if from_tokens is not None and from_tokens != codes:
            raise InputError(p, f"line {lineno}: tokens {rec['tokens']!r} disagree with codes {codes}")
        if rows and len(codes) != len(rows[0]):
            raise InputError(p, f"line {lineno}: ragged SIDs ({len(codes)} codes, earlier lines have {len(rows[0])})")
        seen.add(iid)
        ids.append(iid)
        rows.append(codes)
    if not ids:
        raise InputError(p, "no SIDs")
    described = header or read_meta(p, "sids") or {}
    codes_arr = np.asarray(rows, dtype=np.int64)
    where = p if header else _meta_path(p)
    sizes = _declared_sizes(where, described, codes_arr.shape[1])
    table = SidTable(
        item_ids=ids,
        codes=codes_arr,
        codebook_sizes=sizes or [int(c) + 1 for c in codes_arr.max(axis=0)],
        provenance=described.get("provenance", {}),
        stats=described.get("stats", {}),
        dataset_fingerprint=described.get("dataset_fingerprint"),
        path=p,
        dedup_level=has_dedup_level(described, codes_arr.shape[1]),
    )
    problem = table.problem()
    if problem:
        raise InputError(p, f"{problem} (codebook sizes from {where.name})" if sizes else problem)
    return table


def _meta_path(p: Path) -> Path:
    from uqf_cli.files.sidecar import meta_path

    return meta_path(p)


def _is_code(c: Any) -> bool:
    return isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= INT64_MAX


def _declared_sizes(where: Path, described: dict[str, Any], levels: int) -> list[int] | None:
    """The codebook sizes a sidecar (or an old header line) declares, checked; ``None`` when it declares none."""
    if not isinstance(described, dict):
        raise InputError(where, "expected a JSON object")
    sizes = described.get("codebook_sizes")
    if sizes is None:
        return None
    if not isinstance(sizes, list) or not sizes or not all(_is_code(s) and s >= 1 for s in sizes):
        raise InputError(where, f"codebook_sizes must be a list of positive ints, got {sizes!r}")
    if len(sizes) != levels:
        raise InputError(where, f"says {len(sizes)} levels (codebook_sizes), the SIDs lines have {levels}")
    declared_levels = described.get("levels")
    # since dedup_level exists, "levels" counts the semantic levels only; earlier files counted every code
    semantic = levels - 1 if described.get("dedup_level") is True else levels
    if declared_levels is not None and declared_levels != semantic:
        raise InputError(where, f"says levels {declared_levels!r}, the SIDs lines have {semantic}"
                                + (" + a dedup code" if semantic != levels else ""))
    return [int(s) for s in sizes]


def _codes_from_tokens(p: Path, lineno: int, tokens: Any) -> list[int]:
    """The codes a line's ``tokens`` (``"<a_1><b_2>"`` or a list) spell."""


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
        tokens = ["<" + t for t in tokens.split("<")[1:]] if tokens.startswith("<") else [tokens]
    if not isinstance(tokens, list) or not tokens:
        raise InputError(p, f"line {lineno}: tokens must be a non-empty string like <a_1><b_2> or a list of them")
    try:
        return tokens_to_codes(tokens)
    except ValueError as e:
        raise InputError(p, f"line {lineno}: {e}") from e


def _read_lcrec_index(p: Path) -> SidTable:
    data = read_json(p)  # refuses an item id given twice
    if not isinstance(data, dict) or not data:
        raise InputError(p, "expected a JSON object mapping item id -> list of SID tokens")
    ids, rows = [], []
    for iid, toks in data.items():
        if not iid:
            raise InputError(p, "an item id is the empty string")
        if not isinstance(toks, list) or not toks:
            raise InputError(p, f"item {iid!r}: expected a non-empty list of tokens")
        if len(toks) > MAX_LEVELS:
            raise InputError(p, f"item {iid!r}: {len(toks)} tokens; at most {MAX_LEVELS} levels are supported")
        try:
            codes = tokens_to_codes(toks)
        except ValueError as e:
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
