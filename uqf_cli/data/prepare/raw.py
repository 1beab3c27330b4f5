"""What every reader returns (items with text fields, interactions in file order) and the helpers readers share."""

from __future__ import annotations

import gzip
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uqf_cli.core.errors import InputError
from uqf_cli.files.jsonio import decode_json_file

UNTITLED_OK = ("lcrec", "recbole", "recbole-benchmark")  # curated files: every item with a line counts as text


@dataclass(slots=True)
class Interaction:
    """One (user, item) event; ``order`` is its position in the source file (the stable tie-break)."""

    user: str
    item: str
    time: float
    order: int


@dataclass
class CompactInteractions:
    """Interactions in file order: row n is (users[user[n]], items[item[n]], time[n])."""

    users: list[str]
    items: list[str]
    user: np.ndarray  # int32
    item: np.ndarray  # int32
    time: np.ndarray  # float64

    def __len__(self) -> int:
        return int(self.user.shape[0])


class InteractionLog:
    """Collects (user, item, time) events one at a time, interning the ids."""

    def __init__(self) -> None:
        self._users: dict[str, int] = {}
        self._items: dict[str, int] = {}
        self._user, self._item, self._time = array("i"), array("i"), array("d")

    def add(self, user: str, item: str, time: float) -> None:
        self._user.append(self._users.setdefault(user, len(self._users)))
        self._item.append(self._items.setdefault(item, len(self._items)))
        self._time.append(time)

    def __len__(self) -> int:
        return len(self._user)

    def build(self) -> CompactInteractions:
        def as_numpy(buf: array, dtype: type) -> np.ndarray:
            return np.frombuffer(buf, dtype=dtype) if len(buf) else np.zeros(0, dtype=dtype)

        return CompactInteractions(list(self._users), list(self._items), as_numpy(self._user, np.int32),
                                   as_numpy(self._item, np.int32), as_numpy(self._time, np.float64))


@dataclass
class RawDataset:
    """What a reader returns: items (id -> text fields) and interactions in file order (a list, or
    compact arrays for large dumps)."""

    items: dict[str, dict[str, Any]]
    interactions: list[Interaction] | CompactInteractions
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
    """A whole JSON document, gzip-compressed or not; errors name the file, line and column; a key repeated in
    one object (an item id twice in X.item.json: Python would keep the last copy) is refused."""
    gzipped = path.suffix == ".gz"
    try:
        return decode_json_file(path, lambda: gzip.open(path, "rt", encoding="utf-8") if gzipped
                                else open(path, encoding="utf-8"))
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot be read ({e})") from e
