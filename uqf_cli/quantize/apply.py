"""``uqf quantize --apply``: code new items with a saved quantizer, unique against the fitted items."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uqf_cli.core.errors import InputError
from uqf_cli.core.runtime import resolve_device, warn
from uqf_cli.files import SidTable, depth_label, make_provenance
from uqf_cli.quantize.codes import collision_rate, dedup_by_distances, dedup_by_level, last_distances, level_stats
from uqf_cli.quantize.saved import load_quantizer
from uqf_cli.quantize.stage import QuantizeResult, check_outputs, load_valid_embeddings, write_outputs


def apply_quantizer(
    model_path: str | Path,
    embeddings_path: str | Path,
    output: str | Path,
    fmt: str = "jsonl",
    device: str = "auto",
    force: bool = False,
) -> QuantizeResult:
    """Give new items SIDs with a saved quantizer (any registered method; the residual ones: encoder + nearest
    codes at every level).

    Raw collisions with the items the quantizer was fitted on are reported; final SIDs are made
    unique against them the same way the original run deduplicated (next free number in the extra
    level, or nearest free last-level code).
    """
    output = Path(output)
    lcrec = check_outputs(output, fmt, None, force)
    model, cfg, extras = load_quantizer(model_path)
    emb = load_valid_embeddings(embeddings_path)
    if emb.dim != model.input_dim:
        raise InputError(embeddings_path, f"embeddings have dim {emb.dim}, the quantizer expects {model.input_dim}")
    trained_on = extras.get("modality")
    if trained_on and emb.modality not in ("unknown", trained_on):  # same dim, another space: codes mean little
        warn(f"{embeddings_path}: {emb.modality!r} embeddings, but the quantizer {model_path} was trained "
             f"on {trained_on!r} embeddings; their codes are not comparable")
    dev = resolve_device(device)
    model.to(dev)
    encoded = model.code(emb.embeddings, cfg.batch_size)
    raw = encoded.codes
    old_ids = extras["item_ids"]
    new_set = set(emb.item_ids)
    keep_old = [k for k, iid in enumerate(old_ids) if iid not in new_set]  # re-coded items replace their old SIDs
    old_raw = {tuple(extras["raw_codes"][k].tolist()) for k in keep_old}
    old_final = extras["final_codes"][keep_old] if keep_old else None
    hits_existing = sum(tuple(r) in old_raw for r in raw.tolist())
    stats: dict[str, Any] = {"items": len(raw), "method": cfg.method, "applied": True,
                             "per_level": level_stats(raw, cfg.codebook_sizes), **encoded.errors,
                             "raw_collision_rate": collision_rate(raw),
                             "collisions_with_existing": hits_existing,
                             "collision_rate_with_existing": hits_existing / len(raw)}
    sizes = list(extras["final_codebook_sizes"])
    if len(sizes) > cfg.levels:  # the original run appended a dedup level: new items get one too
        final = dedup_by_level(raw, old_final)
        sizes[-1] = max(sizes[-1], int(final[:, -1].max()) + 1)
        if sizes[-1] > extras["final_codebook_sizes"][-1]:
            warn(f"the dedup level now needs {sizes[-1]} codes (the model was trained with "
                 f"{extras['final_codebook_sizes'][-1]})")
    elif hits_existing or stats["raw_collision_rate"] > 0:
        reserved = {tuple(r) for r in (old_final.tolist() if old_final is not None else [])}
        final, _ = dedup_by_distances(raw, last_distances(encoded, cfg.method), cfg, reserved)
    else:
        final = raw
    stats["levels"], stats["final_levels"] = cfg.levels, int(final.shape[1])
    stats["depth"] = depth_label(cfg.levels, final.shape[1] > cfg.levels)
    stats["final_collision_rate"] = collision_rate(final)
    provenance = make_provenance("quantize-apply", {"quantizer": str(model_path)},
                                 {"quantizer": model_path, "embeddings": embeddings_path},
                                 modality=emb.modality, stats=stats)
    table = SidTable(item_ids=list(emb.item_ids), codes=final, codebook_sizes=sizes, provenance=provenance,
                     stats=stats, dataset_fingerprint=emb.dataset_fingerprint, dedup_level=len(sizes) > cfg.levels)
    outputs = write_outputs(table, output, lcrec, force)
    if hits_existing:
        warn(f"{hits_existing} of {len(raw)} new items got the raw SID of an existing item "
             "(made unique in the output)")
    return QuantizeResult(table, stats, outputs)
