"""``--method uqf``: the Unified Q-Former, trained on the hybrid objective; saved with its memory bank so that
``--apply`` fuses new items (docs/fuse.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from uqf_cli.core.errors import InputError
from uqf_cli.core.runtime import warn
from uqf_cli.fuse.ann import nearest
from uqf_cli.fuse.inputs import align_inputs, check_text_model, load_collab, load_text
from uqf_cli.fuse.interface import Applied, Fused, FuseInputs, Fusion, SavedFuser
from uqf_cli.fuse.memory import MemoryBank, bank_from, build_memory
from uqf_cli.fuse.model import FuserConfig, UnifiedQFormer
from uqf_cli.fuse.neighbours import knn_lists
from uqf_cli.fuse.report import reference_neighbours
from uqf_cli.fuse.training import embed_items, train_fuser

BANK_PREFIX = "bank."
MODEL_PREFIX = "model."


class UnifiedQFormerFusion(Fusion):
    """Learnable queries read a text and a collaborative memory per item; their output is the item's vector."""

    name = "uqf"
    summary = "the Unified Q-Former (trained)"
    trains = True

    def fit(self, inputs: FuseInputs) -> Fused:
        data, opts = inputs.data, inputs.opts
        cfg = opts.fuser_config(data.text.shape[1], data.collab.shape[1])
        bank = bank_from(data)  # the bank is these items, so the text search below serves the memory too
        text_knn = nearest(data.text, data.text, max(opts.k_semantic, cfg.k_memory),
                           torch.arange(len(data.item_ids)), opts.ann_threshold, opts.seed)
        mem = build_memory(data, bank, cfg, text_neighbours=text_knn, ann_threshold=opts.ann_threshold,
                           seed=opts.seed)
        structural = (inputs.cooc if opts.structural == "cooc" else
                      reference_neighbours(data, None, opts.k_structural, ann_threshold=opts.ann_threshold).collab)
        semantic = knn_lists(text_knn[:, :opts.k_semantic])
        trained = train_fuser(mem, data.text, data.collab, structural, semantic, cfg, opts, inputs.device,
                              checkpoint=inputs.checkpoint)
        emb, gate = embed_items(trained.model, mem, inputs.device)
        state = {MODEL_PREFIX + k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
        return Fused(emb, gate=gate, curve=trained.curve, model=(state, cfg, bank))

    def save(self, fused: Fused) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
        """Weights + memory bank as tensors, the fuser's config as JSON."""
        state, cfg, bank = fused.model
        tensors = {**state, BANK_PREFIX + "text": bank.text, BANK_PREFIX + "collab": bank.collab}
        return tensors, cfg.to_dict(), {"bank_item_ids": bank.item_ids, "bank_collab_ids": bank.collab_ids}

    def apply(self, saved: SavedFuser, text_path: str | Path, collab_path: str | Path | None,
              device: torch.device) -> Applied:
        """Items without a collab row take the text-only path; neighbours come from the fuser's memory bank."""
        model, bank = rebuild(saved)
        cfg = model.cfg
        text = load_text(text_path)
        if text.dim != cfg.text_dim:
            raise InputError(text_path, f"text embeddings are {text.dim}-d but the fuser {saved.path} expects "
                                        f"{cfg.text_dim}-d")
        check_text_model(saved.path, saved.meta, text)
        collab = load_collab(collab_path) if collab_path is not None else None
        if collab is not None and collab.dim != cfg.collab_dim:
            raise InputError(collab_path, f"collab embeddings are {collab.dim}-d but the fuser {saved.path} "
                                          f"expects {cfg.collab_dim}-d")
        data = align_inputs(text, collab)
        if collab is None:
            data.collab = torch.zeros(len(data.item_ids), cfg.collab_dim)
        fused_fp = saved.meta.get("dataset_fingerprint") or None
        if fused_fp and data.fingerprint and fused_fp != data.fingerprint:
            warn(f"{text_path}: dataset fingerprint {data.fingerprint} differs from the fuser's {fused_fp} "
                 "(fine for new items; neighbours come from the fuser's catalogue)")
        mem = build_memory(data, bank, cfg)
        emb, gate = embed_items(model.to(device), mem, device)
        return Applied(data, emb, gate)


def rebuild(saved: SavedFuser) -> tuple[UnifiedQFormer, MemoryBank]:
    """The saved Q-Former and its memory bank; a file that does not fit its config is refused."""
    try:
        cfg = FuserConfig.from_dict(saved.config)
        model = UnifiedQFormer(cfg)
        model.load_state_dict({k[len(MODEL_PREFIX):]: v for k, v in saved.tensors.items()
                               if k.startswith(MODEL_PREFIX)})
        bank = MemoryBank(list(saved.meta["bank_item_ids"]), saved.tensors[BANK_PREFIX + "text"],
                          saved.tensors[BANK_PREFIX + "collab"], list(saved.meta["bank_collab_ids"]))
    except (TypeError, KeyError, RuntimeError, ValueError) as e:
        raise InputError(saved.path, f"fuser file is damaged or from another version "
                                     f"({str(e).splitlines()[0][:120]})") from e
    model.eval()
    return model, bank
