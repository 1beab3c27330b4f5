"""A saved quantizer (weights, config, the fitted items' codes), for any registered method."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uqf_cli.core.errors import InputError
from uqf_cli.files import SidTable, load_model_file, save_model_file
from uqf_cli.quantize.config import QuantizeConfig
from uqf_cli.quantize.interface import Coder
from uqf_cli.quantize.registry import QUANTIZERS

QUANTIZER_KIND = "quantizer"


def save_quantizer(path: Path, model: Coder, cfg: QuantizeConfig, table: SidTable, raw: np.ndarray,
                   provenance: dict[str, Any], force: bool) -> None:
    """Weights + config + the coded items (so ``--apply`` can report and avoid collisions)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state["items.raw_codes"] = torch.as_tensor(raw)
    state["items.final_codes"] = torch.as_tensor(table.codes)
    config = {**asdict(cfg), "input_dim": model.input_dim, "final_codebook_sizes": table.codebook_sizes}
    save_model_file(path, QUANTIZER_KIND, state, config, provenance, force=force,
                    item_ids=table.item_ids, dataset_fingerprint=table.dataset_fingerprint or "")


def load_quantizer(path: str | Path) -> tuple[Coder, QuantizeConfig, dict[str, Any]]:
    """Rebuild a saved quantizer through its method; returns ``(coder, config, extras)`` with the coded items
    in extras."""
    state, config, meta = load_model_file(path, QUANTIZER_KIND)
    known = {f for f in QuantizeConfig.__dataclass_fields__}
    try:
        cfg = QuantizeConfig(**{k: v for k, v in config.items() if k in known})
        if cfg.method not in QUANTIZERS:
            raise InputError(path, f"was saved by --method {cfg.method}, which this uqf does not offer "
                                   f"({', '.join(QUANTIZERS)})")
        extras = {"raw_codes": state.pop("items.raw_codes").numpy(),
                  "final_codes": state.pop("items.final_codes").numpy(),
                  "item_ids": list(meta.get("item_ids", [])), "final_codebook_sizes": config["final_codebook_sizes"],
                  "dataset_fingerprint": meta.get("dataset_fingerprint") or None,
                  "modality": (meta.get("provenance") or {}).get("modality")}
        model = QUANTIZERS[cfg.method].load(state, cfg, int(config["input_dim"]))
    except (KeyError, TypeError, RuntimeError) as e:
        raise InputError(path, f"quantizer file is incomplete or inconsistent ({e})") from e
    model.eval()
    return model, cfg, extras
