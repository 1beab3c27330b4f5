"""``uqf quantize``: an embedding file in, a SIDs file (and optionally the quantizer) out."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uqf_cli.core.config_field import configured, options_for
from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.core.runtime import info, resolve_device
from uqf_cli.files import (
    EmbeddingFile,
    SidTable,
    load_embeddings,
    make_provenance,
    write_lcrec_index,
    write_sids,
)
from uqf_cli.files.checkpoint import Checkpointer
from uqf_cli.quantize.codes import finalise_codes
from uqf_cli.quantize.config import QuantizeConfig
from uqf_cli.quantize.letter import LetterConfig
from uqf_cli.quantize.registry import quantizer
from uqf_cli.quantize.saved import save_quantizer


@dataclass
class QuantizeResult:
    """What the command prints: stats, output paths and the table itself."""

    table: SidTable
    stats: dict[str, Any]
    outputs: dict[str, str]

    def __repr__(self) -> str:
        s = self.stats
        collisions = (f", collisions {s['raw_collision_rate']:.2%} -> {s['final_collision_rate']:.2%}"
                      if "raw_collision_rate" in s and "final_collision_rate" in s else "")
        return f"QuantizeResult({len(self.table.item_ids):,} items, {self.table.depth}{collisions}, {self.outputs})"


def load_valid_embeddings(path: str | Path) -> EmbeddingFile:
    emb = load_embeddings(path)  # refuses empty, NaN/Inf, id mismatches
    if float(emb.embeddings.std()) == 0.0:
        raise InputError(path, "all embeddings are identical; nothing to quantize")
    return emb


def check_format(fmt: str) -> None:
    if fmt not in ("jsonl", "lcrec"):
        raise OptionError("--format", f"unknown format {fmt!r} (use jsonl or lcrec)")


def check_outputs(output: Path, fmt: str, save_model: Path | None, force: bool) -> Path | None:
    """Check the outputs (``--force`` replaces only earlier ones of their kinds); the LC-Rec index path or ``None``."""
    from uqf_cli.files.outputs import plan_outputs, want

    check_format(fmt)
    lcrec = lcrec_index_path(output) if fmt == "lcrec" else None
    plan_outputs([want(output, "sids"), want(lcrec, "lcrec-index", "--format lcrec",
                                              role="the LC-Rec index of --output (--format lcrec)"),
                  want(save_model, "quantizer", "--save-model")], force=force)
    return lcrec


def lcrec_index_path(output: str | Path) -> Path:
    """``sids.jsonl`` -> ``sids.index.json`` beside it; the whole stem is kept (``run.v1.jsonl`` ->
    ``run.v1.index.json``), so that two runs named by version never share one index."""
    p = Path(output)
    return p.with_name(p.stem + ".index.json")


def dedup_note(cfg: QuantizeConfig) -> str:
    """What happens to colliding SIDs, said where the depth is announced."""
    return " (+ a dedup code if SIDs collide)" if cfg.dedup == "level" else " (collisions re-assigned)"


def _final_sizes(cfg: QuantizeConfig, final: np.ndarray) -> list[int]:
    sizes = list(cfg.codebook_sizes)
    if final.shape[1] > len(sizes):
        sizes.append(int(final[:, -1].max()) + 1)
    return sizes


def quantize(
    embeddings_path: str | Path,
    output: str | Path,
    cfg: QuantizeConfig | None = None,
    save_model: str | Path | None = None,
    fmt: str = "jsonl",
    device: str = "auto",
    force: bool = False,
    resume: bool = False,
    letter: LetterConfig | None = None,
    options: Any = None,
    **settings: Any,
) -> QuantizeResult:
    """Quantize an embedding file into a SIDs file (and optionally save the quantizer).

    ``cfg`` defaults to ``QuantizeConfig()``; ``settings`` (its field names: ``levels=4``, ``method="rqkmeans"``)
    replace single fields, so ``quantize("unified.st", "sids.jsonl")`` runs with the CLI's defaults.
    ``options``: the method's own options (its ``options`` dataclass; default: its defaults); ``letter`` is
    ``rqvae``'s, which train with LETTER's collaborative and diversity terms (:mod:`uqf_cli.quantize.letter`).

    A resumable method (``rqvae``) keeps a checkpoint ``<output>.ckpt.st`` while training; ``resume`` continues
    from it. The settings are validated here, once, against the number of items.
    """
    cfg = configured(QuantizeConfig, cfg, settings)
    output = Path(output)
    save_model = Path(save_model) if save_model else None
    lcrec = check_outputs(output, fmt, save_model, force)
    emb = load_valid_embeddings(embeddings_path)
    cfg = cfg.resolved(len(emb.item_ids))
    cfg.validate(len(emb.item_ids))
    method = quantizer(cfg.method)
    given = options if options is not None else letter
    setup = method.setup(emb, cfg, options_for(method.name, method.options, given))
    params = {**asdict(cfg), **setup.parameters}
    inputs = {"embeddings": embeddings_path, **setup.inputs}
    dev = resolve_device(device)
    info(f"quantizing {len(emb.item_ids):,} {emb.modality} embeddings (dim {emb.dim}) with {cfg.method}, "
         f"{cfg.levels} levels of {cfg.codebook_sizes} codes{dedup_note(cfg)} on {dev}")
    ckpt = Checkpointer(output, "quantize", params, inputs, resume=resume) if method.resumable else None
    model, history = method.fit(emb.embeddings, cfg, setup, dev, ckpt)
    raw, final, stats = finalise_codes(model, emb.embeddings, cfg)
    stats["training"] = history
    stats.update(setup.stats)
    sizes = _final_sizes(cfg, final)
    provenance = make_provenance("quantize", params, inputs,
                                 modality=emb.modality, stats=stats)
    table = SidTable(item_ids=list(emb.item_ids), codes=final, codebook_sizes=sizes, provenance=provenance,
                     stats=stats, dataset_fingerprint=emb.dataset_fingerprint, dedup_level=len(sizes) > cfg.levels)
    outputs = write_outputs(table, output, lcrec, force)
    if save_model is not None:
        save_quantizer(save_model, model, cfg, table, raw, provenance, force)
        outputs["model"] = str(save_model)
    if ckpt is not None:
        ckpt.finish()
    return QuantizeResult(table, stats, outputs)


def write_outputs(table: SidTable, output: Path, lcrec: Path | None, force: bool) -> dict[str, str]:
    write_sids(output, table, force=force)
    outputs = {"sids": str(output)}
    if lcrec is not None:
        write_lcrec_index(lcrec, table, force=force)
        outputs["lcrec_index"] = str(lcrec)
    return outputs
