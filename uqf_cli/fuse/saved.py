"""A saved fuser (one safetensors file: the method's tensors, its config as JSON) and ``uqf fuse --apply``,
for any registered method that trains."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from uqf_cli.core.errors import InputError
from uqf_cli.core.runtime import resolve_device
from uqf_cli.files import check_output, load_model_file, make_provenance, save_embeddings, save_model_file
from uqf_cli.fuse.interface import GATE_INFO, Fused, Fusion, SavedFuser
from uqf_cli.fuse.registry import FUSIONS
from uqf_cli.fuse.report import FuseResult, gate_summary, overlap_table

FUSER_KIND = "fuser"
METHOD_KEY = "method"  # metadata naming the method of a fuser file
UNNAMED = "uqf"  # files written before there were other methods name none (and uqf's still do: same bytes)


def save_fuser(path: str | Path, method: Fusion, fused: Fused, provenance: dict[str, Any], fingerprint: str | None,
               force: bool) -> Path:
    """What ``method.save`` gives, in one safetensors file (config and ids as JSON metadata)."""
    tensors, config, meta = method.save(fused)
    named = {} if method.name == UNNAMED else {METHOD_KEY: method.name}
    return save_model_file(path, FUSER_KIND, tensors, config, provenance, force=force, **meta,
                           dataset_fingerprint=fingerprint or "", **named)


def load_fuser(path: str | Path) -> SavedFuser:
    """A fuser file and the registered method that wrote it (refused: another kind of file, an unknown method)."""
    tensors, config, meta = load_model_file(path, FUSER_KIND)
    name = str(meta.get(METHOD_KEY, UNNAMED))
    if name not in FUSIONS:
        raise InputError(path, f"was saved by --method {name}, which this uqf does not offer "
                               f"({', '.join(FUSIONS)})")
    return SavedFuser(path, FUSIONS[name], tensors, config, meta)


def apply_fuser(
    fuser_path: str | Path,
    text_path: str | Path,
    collab_path: str | Path | None,
    output: str | Path,
    device_spec: str = "auto",
    force: bool = False,
) -> FuseResult:
    """Fuse new (or cold) items with a saved fuser, through its method's ``apply``."""
    check_output(output, force, "embeddings:unified")
    device = resolve_device(device_spec)
    saved = load_fuser(fuser_path)
    name = saved.method.name
    start = time.perf_counter()
    applied = saved.method.apply(saved, text_path, collab_path, device)
    seconds = time.perf_counter() - start
    data, emb, gate = applied.data, applied.embeddings, applied.gate
    table = overlap_table(name, emb, torch.ones(len(data.item_ids), dtype=torch.bool), data, None)
    prov = make_provenance("fuse", {"apply": str(fuser_path)},
                           {"fuser": fuser_path, "text": text_path, "collab": collab_path},
                           neighbourhood_overlap=table, device=str(device))
    extra_m: dict[str, Any] = {"cold_item_ids": data.cold_ids, "method": name, "neighbourhood_overlap": table}
    if gate is not None:
        extra_m["gate_info"] = GATE_INFO
    save_embeddings(output, emb, data.item_ids, prov, "unified", data.fingerprint or saved.meta.get(
        "dataset_fingerprint") or None, {"gate": gate} if gate is not None else None, extra_m, force=force)
    return FuseResult(Path(output), f"{name} (applied)", len(data.item_ids), len(data.cold_ids), int(emb.shape[1]),
                      round(seconds, 2), table, gate_summary(gate, data.has_collab))
