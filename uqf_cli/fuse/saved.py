"""A saved fuser (weights, config and memory bank in one file) and ``uqf fuse --apply``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from uqf_cli.core.errors import InputError
from uqf_cli.core.runtime import resolve_device, warn
from uqf_cli.files import check_output, load_model_file, make_provenance, save_embeddings, save_model_file
from uqf_cli.fuse.inputs import align_inputs, check_text_model, load_collab, load_text
from uqf_cli.fuse.memory import MemoryBank, build_memory
from uqf_cli.fuse.model import FuserConfig, UnifiedQFormer
from uqf_cli.fuse.report import FuseResult, gate_summary, overlap_table
from uqf_cli.fuse.training import embed_items

FUSER_KIND = "fuser"
BANK_PREFIX = "bank."
MODEL_PREFIX = "model."


def save_fuser(path: str | Path, state: dict[str, torch.Tensor], cfg: FuserConfig, bank: MemoryBank,
               provenance: dict[str, Any], fingerprint: str | None, force: bool) -> Path:
    """Weights + memory bank in one safetensors file, config as JSON metadata."""
    tensors = dict(state)
    tensors[BANK_PREFIX + "text"] = bank.text
    tensors[BANK_PREFIX + "collab"] = bank.collab
    return save_model_file(path, FUSER_KIND, tensors, cfg.to_dict(), provenance, force=force,
                           bank_item_ids=bank.item_ids, bank_collab_ids=bank.collab_ids,
                           dataset_fingerprint=fingerprint or "")


def load_fuser(path: str | Path) -> tuple[UnifiedQFormer, MemoryBank, dict[str, Any]]:
    """Rebuild a saved fuser and its memory bank; a file that does not fit its config is refused."""
    tensors, config, meta = load_model_file(path, FUSER_KIND)
    try:
        cfg = FuserConfig.from_dict(config)
        model = UnifiedQFormer(cfg)
        state = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
        model.load_state_dict(state)
        bank = MemoryBank(list(meta["bank_item_ids"]), tensors[BANK_PREFIX + "text"],
                          tensors[BANK_PREFIX + "collab"], list(meta["bank_collab_ids"]))
    except (TypeError, KeyError, RuntimeError, ValueError) as e:
        raise InputError(path, f"fuser file is damaged or from another version ({str(e).splitlines()[0][:120]})"
                         ) from e
    model.eval()
    return model, bank, meta


def apply_fuser(
    fuser_path: str | Path,
    text_path: str | Path,
    collab_path: str | Path | None,
    output: str | Path,
    device_spec: str = "auto",
    force: bool = False,
) -> FuseResult:
    """Fuse new (or cold) items with a saved fuser; items without a collab row take the text-only path."""
    check_output(output, force, "embeddings:unified")
    device = resolve_device(device_spec)
    model, bank, meta = load_fuser(fuser_path)
    cfg = model.cfg
    text = load_text(text_path)
    if text.dim != cfg.text_dim:
        raise InputError(text_path, f"text embeddings are {text.dim}-d but the fuser {fuser_path} expects "
                                    f"{cfg.text_dim}-d")
    check_text_model(fuser_path, meta, text)
    collab = load_collab(collab_path) if collab_path is not None else None
    if collab is not None and collab.dim != cfg.collab_dim:
        raise InputError(collab_path, f"collab embeddings are {collab.dim}-d but the fuser {fuser_path} expects "
                                      f"{cfg.collab_dim}-d")
    data = align_inputs(text, collab)
    if collab is None:
        data.collab = torch.zeros(len(data.item_ids), cfg.collab_dim)
    fused_fp = meta.get("dataset_fingerprint") or None
    if fused_fp and data.fingerprint and fused_fp != data.fingerprint:
        warn(f"{text_path}: dataset fingerprint {data.fingerprint} differs from the fuser's {fused_fp} "
             "(fine for new items; neighbours come from the fuser's catalogue)")
    start = time.perf_counter()
    mem = build_memory(data, bank, cfg)
    emb, gate = embed_items(model.to(device), mem, device)
    seconds = time.perf_counter() - start
    table = overlap_table("uqf", emb, torch.ones(len(data.item_ids), dtype=torch.bool), data, None)
    prov = make_provenance("fuse", {"apply": str(fuser_path)},
                           {"fuser": fuser_path, "text": text_path, "collab": collab_path},
                           neighbourhood_overlap=table, device=str(device))
    extra_m = {"cold_item_ids": data.cold_ids, "method": "uqf", "neighbourhood_overlap": table,
               "gate_info": "tensor 'gate' follows item_ids; 1 = leans on text, 0 = on collab"}
    save_embeddings(output, emb, data.item_ids, prov, "unified", data.fingerprint or fused_fp,
                    {"gate": gate}, extra_m, force=force)
    return FuseResult(Path(output), "uqf (applied)", len(data.item_ids), len(data.cold_ids), int(emb.shape[1]),
                      round(seconds, 2), table, gate_summary(gate, data.has_collab))
