"""The provenance record every output carries: uqf version, command, parameters, input hashes."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uqf_cli import __version__
from uqf_cli.files.jsonio import jsonable

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """sha256 of a file (or of a directory's files, sorted by name), cached by size and mtime."""
    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        for child in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(str(child.relative_to(p)).encode())
            h.update(sha256_file(child).encode())
        return h.hexdigest()
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def make_provenance(
    stage: str,
    parameters: Mapping[str, Any],
    inputs: Mapping[str, str | Path | None] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build the provenance record every output carries.

    It holds the uqf version, the command line, the stage's key parameters and the sha256 of each
    input, so a later stage can check that its inputs come from compatible upstream runs. No
    timestamp: identical runs must give byte-identical files.
    """
    hashed = {}
    for name, p in (inputs or {}).items():
        if p is None:
            continue
        hashed[name] = {"path": str(p), "sha256": sha256_file(p)}
    record: dict[str, Any] = {
        "uqf_version": __version__,
        "stage": stage,
        "command": " ".join(["uqf", *sys.argv[1:]]) if _invoked_as_cli() else f"uqf_cli.{stage}",
        "parameters": jsonable(dict(parameters)),
        "inputs": hashed,
    }
    record.update(jsonable(extra))
    return record


def _invoked_as_cli() -> bool:
    return Path(sys.argv[0]).name in {"uqf", "uqf.exe", "__main__.py"} or sys.argv[0].endswith("uqf")
