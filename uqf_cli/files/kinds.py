"""What an existing path is, as far as uqf is concerned: which kind of uqf output, or none.

``--force`` replaces only an earlier output of the kind the command writes (docs/robustness.md, "Outputs"), so
the check has to recognise each kind from what it records about itself: the ``uqf_kind`` of a safetensors
file's metadata (embeddings with their modality, quantizer, fuser, checkpoint), the ``.meta.json`` sidecar of
a JSONL file (SIDs, predictions), the provenance inside a JSON file (evaluate's metrics) or a picture (``--plot``,
``--html``), the tokens of an LC-Rec index, ``uqf_model.json`` in a model directory and ``dataset.json`` in a
dataset directory. Recognising reads headers and small files only; nothing here writes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

META_SUFFIX = ".meta.json"
DATASET_KIND = "dataset"  # the uqf_kind marker in dataset.json
DATASET_FILES = ("items.jsonl", "sequences.jsonl", "dataset.json")
MODEL_META_FILE = "uqf_model.json"
TRAINER_CHECKPOINT_FILE = "uqf_checkpoint.json"
_MAX_HEADER = 100 << 20  # a safetensors header larger than this is not one of ours
_MAX_SCAN = 64 << 20  # pictures and reports are read whole up to this size
_TOKEN = re.compile(r"<[a-z]_\d+>")


@dataclass(frozen=True)
class Kind:
    """One kind of output: its name in messages, whether it is a folder, and the sidecars written with it."""

    label: str
    directory: bool = False
    sidecars: tuple[str, ...] = ()  # suffixes appended to the output's name


KINDS: dict[str, Kind] = {
    "dataset": Kind("uqf dataset directory (uqf prepare)", directory=True),
    "model": Kind("uqf model directory (uqf train-rec)", directory=True),
    "embeddings:text": Kind("text embedding file (uqf embed-text)"),
    "embeddings:collab": Kind("collab embedding file (uqf train-gcn)"),
    "embeddings:unified": Kind("unified embedding file (uqf fuse)"),
    "sids": Kind("SIDs file (uqf quantize)", sidecars=(META_SUFFIX,)),
    "lcrec-index": Kind("LC-Rec index file (uqf quantize --format lcrec)"),
    "quantizer": Kind("quantizer file (uqf quantize --save-model)"),
    "fuser": Kind("fuser file (uqf fuse --save-model)"),
    "predictions": Kind("predictions file (uqf evaluate --predictions)", sidecars=(META_SUFFIX,)),
    "metrics": Kind("metrics file (uqf evaluate --output)"),
    "figure": Kind("uqf picture (--plot)"),
    "report": Kind("uqf HTML report (--html)"),
    "checkpoint": Kind("uqf checkpoint"),
    "trainer-checkpoint": Kind("uqf checkpoint folder", directory=True),
    "demo": Kind("uqf demo folder", directory=True),  # never replaced whole: only locked (uqf demo)
}


def recognise(path: str | Path) -> str | None:
    """The :data:`KINDS` key of the uqf output at ``path``, ``None`` if it is none of them (or absent).

    Files of other uqf kinds that no command replaces (a SASRec weights file, ...) give ``"uqf:<kind>"``.
    """
    p = Path(path)
    try:
        if p.is_dir():
            return _recognise_dir(p)
        if p.is_file():
            return _recognise_file(p)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None


def describe(kind: str | None, path: Path) -> str:
    """``kind`` (from :func:`recognise`) in words, for messages."""
    if kind in KINDS:
        return f"a {KINDS[kind].label}"
    if kind and kind.startswith("uqf:"):
        return f"a uqf {kind[4:]} file"
    return "a folder that is not a uqf output" if path.is_dir() else "a file that is not a uqf output"


def unexpected_files(path: str | Path, kind: str) -> list[str]:
    """Files inside an earlier output folder that its command did not write (replacing it would delete them).

    A dataset directory holds exactly :data:`DATASET_FILES`; a model directory the files its ``uqf_model.json``
    lists (directories of earlier versions list none and are taken as they are).
    """
    d = Path(path)
    present = sorted(str(f.relative_to(d)) for f in d.rglob("*") if f.is_file() or f.is_symlink())
    if kind == "dataset":
        expected: set[str] | None = set(DATASET_FILES)
    elif kind == "model":
        listed = read_json_object(d / MODEL_META_FILE).get("files")
        expected = {str(f) for f in listed} | {MODEL_META_FILE} if isinstance(listed, list) else None
    else:
        expected = None
    return [] if expected is None else [f for f in present if f not in expected]


# ----------------------------------------------------------------------------------------------------------


def _recognise_dir(d: Path) -> str | None:
    model = read_json_object(d / MODEL_META_FILE)
    if "backbone" in model:
        return "model"
    info = read_json_object(d / "dataset.json")
    if info.get("uqf_kind") == DATASET_KIND or (
            "fingerprint" in info and all((d / name).is_file() for name in DATASET_FILES[:2])):
        return "dataset"  # dataset.json of earlier versions had no marker, but always its fingerprint
    if (d / TRAINER_CHECKPOINT_FILE).is_file():
        return "trainer-checkpoint"
    return None


def _recognise_file(p: Path) -> str | None:
    meta = safetensors_metadata(p)
    if meta is not None:
        kind = meta.get("uqf_kind")
        if kind == "embeddings":
            modality = meta.get("modality", "")
            return f"embeddings:{modality}" if f"embeddings:{modality}" in KINDS else "uqf:embeddings"
        if kind in ("quantizer", "fuser", "checkpoint"):
            return kind
        return f"uqf:{kind}" if isinstance(kind, str) else None
    sidecar = read_json_object(p.with_name(p.name + META_SUFFIX))
    if sidecar.get("uqf_kind") in ("sids", "predictions"):
        return str(sidecar["uqf_kind"])
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return "sids" if _first_line_has(p, "_uqf") else None  # SIDs files of earlier versions
    if suffix == ".json":
        return _recognise_json(p)
    if suffix in (".png", ".svg", ".pdf"):
        return "figure" if _holds_provenance(p) else None
    if suffix in (".html", ".htm"):
        return "report" if p.stat().st_size <= _MAX_SCAN and b'id="uqf-data"' in p.read_bytes() else None
    return None


def _recognise_json(p: Path) -> str | None:
    data = read_json_object(p)
    prov = data.get("provenance")
    if isinstance(prov, dict) and prov.get("stage") == "evaluate":
        return "metrics"
    if data and all(isinstance(v, list) and v and all(isinstance(t, str) and _TOKEN.fullmatch(t) for t in v)
                    for v in data.values()):
        return "lcrec-index"
    return None


def safetensors_metadata(p: Path) -> dict[str, Any] | None:
    """The ``__metadata__`` of a safetensors file from its header alone; ``None`` if ``p`` is not one."""
    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return None
        size = int.from_bytes(head, "little")
        if not 0 < size <= _MAX_HEADER:
            return None
        raw = f.read(size)
    if not raw.lstrip().startswith(b"{"):
        return None
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    meta = header.get("__metadata__", {})
    return meta if isinstance(meta, dict) else {}


def read_json_object(p: Path) -> dict[str, Any]:
    """``p`` parsed as a JSON object; ``{}`` if it is absent, not JSON or not an object."""
    try:
        if not p.is_file() or p.stat().st_size > _MAX_SCAN:
            return {}
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _first_line_has(p: Path, key: str) -> bool:
    with open(p, encoding="utf-8") as f:
        line = f.readline(1 << 20)
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(rec, dict) and key in rec


def _holds_provenance(p: Path) -> bool:
    """A picture uqf drew: its metadata holds the provenance (PDF strings may be UTF-16)."""
    if p.stat().st_size > _MAX_SCAN:
        return False
    data = p.read_bytes()
    return b"uqf_version" in data or "uqf_version".encode("utf-16-be") in data
