"""Every file format uqf reads or writes, in one place.

The contracts (also in docs/formats.md):

* **Dataset directory**: ``items.jsonl`` (``item_id`` string + text fields), ``sequences.jsonl``
  (``user_id``, chronological ``item_ids``), ``dataset.json`` (counts, source, split protocol,
  fingerprint).
* **Embedding file** (safetensors): tensor ``embeddings`` float32 [N, d]; metadata ``item_ids`` (JSON
  list of strings in row order), ``provenance`` (JSON), ``uqf_kind`` = ``embeddings``, ``modality``
  and ``dataset_fingerprint``. Extra tensors (user embeddings, gate values) may sit beside it with
  their own id lists in metadata. Stages align files by id, never by position.
* **Model files** (safetensors + JSON config in metadata ``config``), ``uqf_kind`` names the stage.
* **SIDs file** (JSONL): one item a line, ``item_id``, ``codes`` (ints), ``tokens`` (``<a_12><b_3>...``),
  and a sidecar ``<file>.meta.json`` with levels, codebook sizes and provenance
  (:mod:`uqf_cli.sidecar`). Files of earlier versions, whose first line was a header
  ``{"_uqf": "sids", ...}``, and LC-Rec/LETTER ``*.index.json`` files are read too.

Writes are atomic: the data goes to a temporary file in the target directory, which is renamed over
the target only once complete, so an interrupted run never leaves a partial file. An existing output
is only replaced with ``force=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uqf_cli import __version__
from uqf_cli.errors import InputError, OutputExistsError, UqfError

EMBEDDINGS_KIND = "embeddings"
SIDS_HEADER_KEY = "_uqf"
LEVEL_LETTERS = "abcdefghijklmnopqrstuvwxyz"

# --------------------------------------------------------------------------------------------
# Paths, hashing, atomic writes
# --------------------------------------------------------------------------------------------


def require_file(path: str | Path, what: str = "file") -> Path:
    """Return ``path`` as a Path if it is an existing regular file, else raise a clear error."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, f"{what} not found")
    if p.is_dir():
        raise InputError(p, f"is a directory, expected a {what}")
    return p


def require_dir(path: str | Path, what: str = "directory") -> Path:
    """Return ``path`` as a Path if it is an existing directory, else raise a clear error."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, f"{what} not found")
    if not p.is_dir():
        raise InputError(p, f"is a file, expected a {what}")
    return p


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


def check_output(path: str | Path, force: bool) -> Path:
    """Fail early (before any heavy work) if ``path`` cannot be written as an output.

    Why early: a user should learn that the output exists, or that its directory is missing, before
    a ten-minute training run, not after it.
    """
    p = Path(path)
    if p.exists() and not force:
        raise OutputExistsError(p)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise InputError(parent, "output directory does not exist")
    if not parent.is_dir():
        raise InputError(parent, "output's parent is not a directory")
    if not os.access(parent, os.W_OK):
        raise InputError(parent, "output directory is not writable")
    return p


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path, force: bool = False, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success move it over ``path``, on failure remove it.

    ``directory=True`` yields a fresh temporary directory for outputs that are directories
    (model dirs). The rename happens only after the body finished without an exception, and a
    KeyboardInterrupt inside the body removes the temporary, so nothing partial is left behind.
    """
    target = check_output(path, force)
    parent = target.parent if str(target.parent) else Path(".")
    tmp: Path | None = None
    try:
        with signals_deferred():  # a Ctrl-C between creating the temporary and noting its name would leak it
            tmp = _make_temporary(target, parent, directory)
        yield tmp
        _test_pause_before_rename()
        with signals_deferred():  # the directory swap is two renames: never stop between them
            if target.exists() and not force:  # appeared while we worked
                raise OutputExistsError(target)
            if directory:
                _replace_dir(tmp, target)
            else:
                os.replace(tmp, target)
    except BaseException:
        if tmp is not None:
            _remove(tmp)
        raise


def _make_temporary(target: Path, parent: Path, directory: bool) -> Path:
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
        tmp.chmod(0o777 & ~_UMASK)
        return tmp
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should follow the user's umask
    return tmp


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a few file-system calls must happen together; they act right after.

    Python raises KeyboardInterrupt between any two bytecodes, so without this a Ctrl-C could land
    after ``mkstemp`` created the temporary file but before its name is known (a leaked ``.tmp``), or
    between the two renames that swap a directory output (the earlier output gone). The Python-level
    handlers are swapped for one that only records the signal (blocking it with ``pthread_sigmask``
    would not do: the kernel hands a process signal to any thread, and torch runs several); the
    recorded signal is then passed to the previous handler. Only the main thread can do this
    (Python runs signal handlers there); elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    held = [sig for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) is not None]  # None: set in C
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)  # KeyboardInterrupt / the CLI's Terminated
            elif handler == signal.SIG_DFL:
                signal.raise_signal(pending[0])


def _test_pause_before_rename() -> None:
    """Test hook: ``UQF_TEST_PAUSE_BEFORE_RENAME=SECONDS`` sleeps with the complete temporary output in place,
    so tests/test_interrupt.py can signal a stage exactly while it is writing (see docs/robustness.md)."""
    raw = os.environ.get("UQF_TEST_PAUSE_BEFORE_RENAME", "")
    if raw:
        import time

        time.sleep(float(raw))


def _replace_dir(tmp: Path, target: Path) -> None:
    if target.exists():
        backup = target.with_name(f".{target.name}.old")
        _remove(backup)
        os.replace(target, backup)
        os.replace(tmp, target)
        _remove(backup)
    else:
        os.replace(tmp, target)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        with contextlib.suppress(OSError):
            p.unlink()


# --------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------


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
        "parameters": _jsonable(dict(parameters)),
        "inputs": hashed,
    }
    record.update(_jsonable(extra))
    return record


def _invoked_as_cli() -> bool:
    return Path(sys.argv[0]).name in {"uqf", "uqf.exe", "__main__.py"} or sys.argv[0].endswith("uqf")


def _jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars, paths and tuples into plain JSON values."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return _finite(float(obj))
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.tolist())
    if isinstance(obj, float):
        return _finite(obj)
    return obj


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def to_json(obj: Any, indent: int | None = None) -> str:
    """Serialise to JSON with uqf's conventions (numpy scalars converted, keys kept in order)."""
    return json.dumps(_jsonable(obj), indent=indent, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# JSON and JSONL
# --------------------------------------------------------------------------------------------


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a parse error names the file, line and column."""
    p = require_file(path)
    try:
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(p, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    except UnicodeDecodeError as e:
        raise InputError(p, "not UTF-8 text") from e


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
                    rec = json.loads(line)
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


# --------------------------------------------------------------------------------------------
# Dataset directory
# --------------------------------------------------------------------------------------------

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
        full_info = dict(info)
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
    for p in (items_path, seq_path):
        if not p.exists():
            raise InputError(d, f"not a uqf dataset directory: {p.name} is missing (run `uqf prepare`)")
    items: dict[str, dict[str, Any]] = {}
    for lineno, rec in iter_jsonl(items_path):
        iid = rec.get("item_id")
        if not isinstance(iid, str) or not iid:
            raise InputError(items_path, f"line {lineno}: item_id must be a non-empty string")
        if iid in items:
            raise InputError(items_path, f"line {lineno}: duplicate item id {iid!r}")
        items[iid] = {k: v for k, v in rec.items() if k != "item_id"}
    if not items:
        raise InputError(items_path, "no items")
    sequences: dict[str, list[str]] = {}
    for lineno, rec in iter_jsonl(seq_path):
        uid = rec.get("user_id")
        seq = rec.get("item_ids")
        if not isinstance(uid, str) or not uid:
            raise InputError(seq_path, f"line {lineno}: user_id must be a non-empty string")
        if uid in sequences:
            raise InputError(seq_path, f"line {lineno}: duplicate user id {uid!r}")
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


# --------------------------------------------------------------------------------------------
# Safetensors: generic tensors + embedding files
# --------------------------------------------------------------------------------------------


def save_tensors(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any],
    force: bool = False,
) -> Path:
    """Save tensors with JSON-encoded metadata values, atomically, in the safetensors format.

    Why our own writer: the safetensors library emits metadata keys in hash-map order, so two
    identical runs gave files that differed in bytes. The format is simple (an 8-byte header length,
    a JSON header, the raw little-endian data), so we write it with sorted keys and sorted tensor
    names; any safetensors reader loads the result.
    """
    meta = {k: v if isinstance(v, str) else to_json(v) for k, v in metadata.items()}
    payload = serialize_safetensors({k: t.detach().to("cpu") for k, t in tensors.items()}, meta)
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def serialize_safetensors(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """Deterministic safetensors bytes: tensors in name order, metadata keys sorted, header padded to 8."""
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        if t.dtype not in _ST_DTYPES:
            raise ValueError(f"tensor {name!r}: dtype {t.dtype} cannot be stored")
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        end = offset + len(data)
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, end]}
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + b"".join(chunks)


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load every tensor and the raw metadata of a safetensors file, with a clear error if it is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    p = require_file(path, "safetensors file")
    if p.stat().st_size == 0:
        raise InputError(p, "empty file")
    try:
        with safe_open(str(p), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise InputError(p, f"not a readable safetensors file ({_short(e)})") from e
    return tensors, metadata


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__


def meta_json(path: Path, metadata: Mapping[str, str], key: str, default: Any = ...) -> Any:
    """Decode one JSON metadata value, naming file and key when it is missing or malformed."""
    if key not in metadata:
        if default is not ...:
            return default
        raise InputError(path, f"metadata {key!r} is missing (not a uqf file of this kind?)")
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as e:
        raise InputError(path, f"metadata {key!r} is not valid JSON") from e


@dataclass
class EmbeddingFile:
    """Item embeddings aligned by id, plus whatever else the file carries."""

    embeddings: torch.Tensor
    item_ids: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)
    modality: str = "unknown"
    dataset_fingerprint: str | None = None
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    extra_metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def index(self) -> dict[str, int]:
        """Map item id -> row."""
        return {iid: k for k, iid in enumerate(self.item_ids)}

    def rows_for(self, item_ids: Iterable[str]) -> torch.Tensor:
        """Embeddings for ``item_ids`` in that order (ids must be present)."""
        idx = self.index()
        return self.embeddings[torch.tensor([idx[i] for i in item_ids], dtype=torch.long)]


def save_embeddings(
    path: str | Path,
    embeddings: torch.Tensor | np.ndarray,
    item_ids: list[str],
    provenance: Mapping[str, Any],
    modality: str,
    dataset_fingerprint: str | None = None,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write an embedding file following the contract (float32, ids in metadata)."""
    emb = torch.as_tensor(embeddings).detach().to("cpu", torch.float32)
    if emb.ndim != 2 or emb.shape[0] != len(item_ids):
        raise ValueError(f"embeddings {tuple(emb.shape)} do not match {len(item_ids)} item ids")
    tensors = {"embeddings": emb, **dict(extra_tensors or {})}
    metadata: dict[str, Any] = {
        "uqf_kind": EMBEDDINGS_KIND,
        "modality": modality,
        "item_ids": list(item_ids),
        "provenance": dict(provenance),
    }
    if dataset_fingerprint:
        metadata["dataset_fingerprint"] = dataset_fingerprint
    for k, v in (extra_metadata or {}).items():
        metadata[k] = v
    return save_tensors(path, tensors, metadata, force)


def load_embeddings(path: str | Path, check_finite: bool = True) -> EmbeddingFile:
    """Read and validate an embedding file: 2-D float tensor, unique ids matching its rows, finite."""
    p = Path(path)
    tensors, metadata = load_tensors(p)
    kind = metadata.get("uqf_kind", EMBEDDINGS_KIND)
    if kind != EMBEDDINGS_KIND:
        raise InputError(p, f"is a uqf {kind} file, expected an embedding file")
    if "embeddings" not in tensors:
        names = ", ".join(sorted(tensors)) or "none"
        raise InputError(p, f"has no tensor 'embeddings' (tensors: {names})")
    emb = tensors.pop("embeddings")
    if emb.ndim != 2:
        raise InputError(p, f"'embeddings' must be 2-D [items, dim], got shape {tuple(emb.shape)}")
    if emb.shape[0] == 0 or emb.shape[1] == 0:
        raise InputError(p, "'embeddings' is empty")
    if not emb.is_floating_point():
        raise InputError(p, f"'embeddings' must be floating point, got {emb.dtype}")
    item_ids = meta_json(p, metadata, "item_ids")
    if not isinstance(item_ids, list) or not all(isinstance(i, str) for i in item_ids):
        raise InputError(p, "metadata 'item_ids' must be a JSON list of strings")
    if len(item_ids) != emb.shape[0]:
        raise InputError(p, f"{len(item_ids)} item ids for {emb.shape[0]} embedding rows")
    if len(set(item_ids)) != len(item_ids):
        dup = next(i for i in item_ids if item_ids.count(i) > 1)
        raise InputError(p, f"duplicate item id {dup!r}")
    emb = emb.to(torch.float32)
    if check_finite:
        bad = ~torch.isfinite(emb).all(dim=1)
        if bool(bad.any()):
            first = item_ids[int(bad.nonzero()[0, 0])]
            raise InputError(p, f"{int(bad.sum())} rows contain NaN or Inf (first: item {first!r})")
    known = {"uqf_kind", "modality", "item_ids", "provenance", "dataset_fingerprint"}
    extra_meta = {}
    for k, v in metadata.items():
        if k in known:
            continue
        try:
            extra_meta[k] = json.loads(v)
        except json.JSONDecodeError:
            extra_meta[k] = v
    return EmbeddingFile(
        embeddings=emb,
        item_ids=item_ids,
        provenance=meta_json(p, metadata, "provenance", {}),
        modality=metadata.get("modality", "unknown"),
        dataset_fingerprint=metadata.get("dataset_fingerprint"),
        extra_tensors=tensors,
        extra_metadata=extra_meta,
        path=p,
    )


def save_model_file(
    path: str | Path,
    kind: str,
    state: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    provenance: Mapping[str, Any],
    force: bool = False,
    **metadata: Any,
) -> Path:
    """Save a small model (fuser, quantizer) as safetensors with its JSON config in the metadata."""
    meta = {"uqf_kind": kind, "config": dict(config), "provenance": dict(provenance), **metadata}
    return save_tensors(path, state, meta, force)


def load_model_file(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Load ``(state, config, metadata)`` of a model file, refusing files of another kind."""
    p = Path(path)
    tensors, metadata = load_tensors(p)
    found = metadata.get("uqf_kind")
    if found != kind:
        what = f"a uqf {found} file" if found else "not a uqf model file"
        raise InputError(p, f"is {what}, expected a {kind} file")
    config = meta_json(p, metadata, "config")
    decoded = {}
    for k, v in metadata.items():
        try:
            decoded[k] = json.loads(v)
        except json.JSONDecodeError:
            decoded[k] = v
    return tensors, config, decoded


# --------------------------------------------------------------------------------------------
# Semantic IDs
# --------------------------------------------------------------------------------------------


def level_token(level: int, code: int) -> str:
    """The SID token for ``code`` at ``level`` (0-based): ``<a_12>``, ``<b_3>`` ... as LC-Rec writes them."""
    return f"<{LEVEL_LETTERS[level]}_{code}>"


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
    """Semantic IDs: one row of codes per item, all rows the same length."""

    item_ids: list[str]
    codes: np.ndarray  # int64 [N, L]
    codebook_sizes: list[int]
    provenance: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    dataset_fingerprint: str | None = None
    path: Path | None = None

    @property
    def levels(self) -> int:
        return int(self.codes.shape[1])

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
    from uqf_cli.sidecar import write_jsonl_with_meta

    meta = {
        "uqf_kind": "sids",
        "records": {"item_id": "string", "codes": "list of int, one per level", "tokens": "string"},
        "levels": table.levels,
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
    from uqf_cli.sidecar import read_meta

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
        iid = rec.get("item_id")
        codes = rec.get("codes")
        if not isinstance(iid, str) or not iid:
            raise InputError(p, f"line {lineno}: item_id must be a non-empty string")
        if iid in seen:
            raise InputError(p, f"line {lineno}: duplicate item id {iid!r}")
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
    )


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


def raise_if(condition: bool, path: str | Path | None, problem: str) -> None:
    """Raise an :class:`InputError` naming ``path`` when ``condition`` holds (keeps checks one-liners)."""
    if condition:
        raise InputError(path, problem)


__all__ = [
    "EmbeddingFile",
    "InputError",
    "SidTable",
    "UqfError",
    "atomic_path",
    "check_output",
    "iter_jsonl",
    "load_embeddings",
    "load_model_file",
    "load_tensors",
    "make_provenance",
    "read_dataset_dir",
    "read_json",
    "read_sids",
    "save_embeddings",
    "save_model_file",
    "save_tensors",
    "sha256_file",
    "write_dataset_dir",
    "write_json",
    "write_jsonl",
    "write_lcrec_index",
    "write_sids",
]
