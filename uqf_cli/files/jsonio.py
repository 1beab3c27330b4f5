"""JSON and JSONL with uqf's conventions: numpy/torch values converted, non-finite floats as null,
parse errors naming file and line, duplicate keys refused, atomic writes."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from uqf_cli.core.errors import InputError
from uqf_cli.files.atomic import atomic_path, require_file


def jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars, paths and tuples into plain JSON values."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return _finite(float(obj))
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return _finite(obj)
    return obj


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def to_json(obj: Any, indent: int | None = None) -> str:
    """Serialise to JSON with uqf's conventions (numpy scalars converted, keys kept in order)."""
    return json.dumps(jsonable(obj), indent=indent, ensure_ascii=False)



class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice (Python's json would silently keep the last value)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r} in a JSON object (only one value per key is allowed)")
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return obj


STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)  # one instance: as fast as json.loads


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses duplicate keys (:class:`DuplicateKeyError`)."""
    return STRICT_DECODER.decode(text)


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a parse error names the file, line and column; a duplicate key is refused."""
    p = require_file(path)
    return decode_json_file(p, lambda: open(p, encoding="utf-8"))


def decode_json_file(path: Path, opened: Callable[[], IO[str]]) -> Any:
    """The JSON document of the text stream ``opened()`` (a plain or gzip file): a parse error, a duplicate key
    or text that is not UTF-8 is one :class:`InputError` naming ``path`` (and the line and column)."""
    try:
        with opened() as f:
            return loads_strict(f.read())
    except DuplicateKeyError as e:
        raise InputError(path, str(e)) from e
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    except UnicodeDecodeError as e:
        raise InputError(path, "not UTF-8 text") from e


def write_json(path: str | Path, obj: Any, force: bool = False) -> Path:
    """Write JSON atomically (pretty-printed: these files are meant to be read by people too)."""
    with atomic_path(path, force) as tmp:
        tmp.write_text(to_json(obj, indent=2) + "\n", encoding="utf-8")
    return Path(path)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line; bad lines name file and line."""
    p = require_file(path)
    opener = _open_text(p)
    try:
        with opener as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = loads_strict(line)
                except DuplicateKeyError as e:
                    raise InputError(p, f"line {lineno}: {e}") from e
                except json.JSONDecodeError as e:
                    raise InputError(p, f"line {lineno}: not valid JSON ({e.msg})") from e
                if not isinstance(rec, dict):
                    raise InputError(p, f"line {lineno}: expected a JSON object")
                yield lineno, rec
    except UnicodeDecodeError as e:
        raise InputError(p, "not UTF-8 text") from e
    except (OSError, EOFError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(p, f"cannot be read ({e})") from e


def _open_text(p: Path):
    if p.suffix == ".gz":
        import gzip

        return gzip.open(p, "rt", encoding="utf-8")
    return open(p, encoding="utf-8")


def record_id(path: Path, lineno: int, rec: dict[str, Any], key: str, seen: Container[str], what: str) -> str:
    """The id ``rec[key]`` of one JSONL line: a non-empty string not in ``seen`` (else an error naming the line)."""
    value = rec.get(key)
    if not isinstance(value, str) or not value:
        raise InputError(path, f"line {lineno}: {key} must be a non-empty string")
    if value in seen:
        raise InputError(path, f"line {lineno}: duplicate {what} id {value!r}")
    return value


def write_jsonl(
    path: str | Path,
    records: Iterable[Mapping[str, Any]],
    force: bool = False,
    header: Mapping[str, Any] | None = None,
) -> Path:
    """Write JSONL atomically, one compact record a line, with an optional header line first."""
    with atomic_path(path, force) as tmp, open(tmp, "w", encoding="utf-8") as f:
        if header is not None:
            f.write(to_json(header) + "\n")
        for rec in records:
            f.write(to_json(rec) + "\n")
    return Path(path)
