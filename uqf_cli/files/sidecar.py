"""JSONL outputs with their metadata beside them, so every line of the JSONL is one record of one schema.

``<file>.jsonl`` holds only records (pandas, Hugging Face ``datasets`` and DuckDB read it as it
is); ``<file>.jsonl.meta.json`` holds what describes them: ``uqf_kind``, the record fields, counts,
fingerprints and provenance. Both are written to temporaries first and renamed together with
signals held, so an interrupted run leaves neither, and an existing pair is only replaced with
``force=True``. Files of earlier versions carried the metadata as a first line (``{"_uqf": ...}``);
readers still accept that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from uqf_cli.core.errors import InputError
from uqf_cli.files.atomic import atomic_files
from uqf_cli.files.jsonio import read_json, to_json

META_SUFFIX = ".meta.json"


def meta_path(path: str | Path) -> Path:
    """The sidecar of ``path``: the same name with ``.meta.json`` appended."""
    p = Path(path)
    return p.with_name(p.name + META_SUFFIX)


def write_jsonl_with_meta(path: str | Path, records: Iterable[Mapping[str, Any]], meta: Mapping[str, Any],
                          force: bool = False) -> Path:
    """Write records one a line to ``path`` and ``meta`` to its sidecar, atomically together."""
    with atomic_files([path, meta_path(path)], force) as (data_tmp, meta_tmp):
        with open(data_tmp, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(to_json(rec) + "\n")
        meta_tmp.write_text(to_json(meta, indent=2) + "\n", encoding="utf-8")
    return Path(path)


def read_meta(path: str | Path, kind: str) -> dict[str, Any] | None:
    """The sidecar of ``path`` if there is one; a sidecar of another kind is refused."""
    mp = meta_path(path)
    if not mp.is_file():
        return None
    meta = read_json(mp)
    if not isinstance(meta, dict):
        raise InputError(mp, "expected a JSON object")
    found = meta.get("uqf_kind")
    if found != kind:
        raise InputError(mp, f"describes a uqf {found} file, expected {kind}")
    return meta


__all__ = ["META_SUFFIX", "meta_path", "read_meta", "write_jsonl_with_meta"]
