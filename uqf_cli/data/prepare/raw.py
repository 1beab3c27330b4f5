"""What every reader returns (items with text fields, interactions in file order) and the helpers readers share."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uqf_cli.core.errors import InputError


@dataclass(slots=True)
class Interaction:
    """One (user, item) event; ``order`` is its position in the source file (the stable tie-break)."""

    user: str
    item: str
    time: float
    order: int


@dataclass
class RawDataset:
    """What a reader returns: items (id -> text fields) and interactions in file order."""

    items: dict[str, dict[str, Any]]
    interactions: list[Interaction]
    source: str
    format: str
    notes: dict[str, Any] = field(default_factory=dict)



def natural_key(s: str) -> tuple[int, int | str]:
    return (0, int(s)) if str(s).isdigit() else (1, str(s))


def find_one(directory: Path, pattern: str, exclude: str | None = None) -> Path | None:
    hits = sorted(p for p in directory.glob(pattern) if not (exclude and p.name.startswith(exclude)))
    if len(hits) > 1:
        names = ", ".join(h.name for h in hits)
        raise InputError(directory, f"several files match {pattern} ({names}); pass one of them as SOURCE")
    return hits[0] if hits else None


def load_json(path: Path) -> Any:
    """A whole JSON document, gzip-compressed or not; errors name the file, line and column."""
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    except UnicodeDecodeError as e:
        raise InputError(path, "not UTF-8 text") from e
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot be read ({e})") from e
