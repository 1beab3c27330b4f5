"""Safetensors files: tensors with JSON metadata written byte-for-byte deterministically, and small
model files (weights + JSON config in the metadata)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from uqf_cli.core.errors import InputError
from uqf_cli.files.atomic import atomic_path, require_file
from uqf_cli.files.jsonio import to_json


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
        raise InputError(p, _what_it_is(p) or f"not a readable safetensors file ({_short(e)})") from e
    return tensors, metadata


def _what_it_is(p: Path) -> str | None:
    """For a file that is not safetensors, what it looks like instead: the parser's own message ("header too
    large") reads the first 8 bytes of text as a length and says nothing useful."""
    with p.open("rb") as f:
        head = f.read(512).lstrip()
    if head[:1] not in (b"{", b"["):
        return None
    first_line = head.split(b"\n", 1)
    kind = "JSON lines" if len(first_line) > 1 and first_line[1].lstrip()[:1] == b"{" else "JSON"
    hint = " (a SIDs or predictions file?)" if kind == "JSON lines" else ""
    return f"looks like {kind}, expected a safetensors file{hint}"


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
