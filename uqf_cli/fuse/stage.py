"""``uqf fuse``: fit a fusion method on (text, collab, train graph) and write unified embeddings."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from uqf_cli.core.config_field import configured, options_for
from uqf_cli.core.errors import OptionError
from uqf_cli.core.runtime import info, resolve_device, seed_everything, warn
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import check_output, make_provenance, save_embeddings
from uqf_cli.files.checkpoint import Checkpointer
from uqf_cli.fuse.config import FuseOptions
from uqf_cli.fuse.inputs import align_inputs, check_dataset, load_collab, load_text, text_model_of
from uqf_cli.fuse.interface import GATE_INFO, FuseInputs, Fusion
from uqf_cli.fuse.neighbours import cooccurrence_neighbours
from uqf_cli.fuse.registry import fusion, trainers
from uqf_cli.fuse.report import FuseResult, gate_summary, overlap_table
from uqf_cli.fuse.saved import save_fuser


def fuse(
    text_path: str | Path,
    collab_path: str | Path,
    dataset_dir: str | Path,
    output: str | Path,
    opts: FuseOptions | None = None,
    save_model: str | Path | None = None,
    force: bool = False,
    resume: bool = False,
    allow_subset: bool = False,
    options: Any = None,
    **settings: Any,
) -> FuseResult:
    """Fit the chosen method on (text, collab, train graph) and write the unified embeddings.

    A method that trains (``--method uqf``) keeps a checkpoint ``<output>.ckpt.st`` while training; ``resume``
    continues from it. ``allow_subset``: fuse embeddings of more items than the dataset has (refused otherwise).
    ``opts`` defaults to ``FuseOptions()``; ``settings`` (its field names: ``epochs=3``) replace single fields.
    ``options``: the method's own options (its ``options`` dataclass; default: its defaults)."""
    opts = configured(FuseOptions, opts, settings)
    opts.validate()
    method = fusion(opts.method)
    own = options_for(method.name, method.options, options)
    check_output(output, force, "embeddings:unified")
    if save_model is not None:
        check_saveable(method, output, save_model, force)
    device = resolve_device(opts.device)
    seed_everything(opts.seed)
    ds = Dataset.load(dataset_dir)
    text, collab = load_text(text_path), load_collab(collab_path)
    data = align_inputs(text, collab)
    check_dataset(data, ds, text, collab, allow_subset)
    fp = ds.fingerprint or data.fingerprint
    info(f"fuse: {len(data.item_ids)} items ({len(data.cold_ids)} cold), text {text.dim}-d, "
         f"collab {collab.dim}-d, method {opts.method}")
    start = time.perf_counter()
    cooc = cooccurrence_neighbours(ds, data.item_ids, opts.k_structural)
    params = fuse_parameters(opts, method, own)
    inputs = {"text": text_path, "collab": collab_path, "dataset": dataset_dir}
    ckpt = Checkpointer(output, "fuse", params, inputs, resume=resume) if method.trains else None
    fused = method.fit(FuseInputs(data, cooc, opts, own, device, ckpt))
    seconds = time.perf_counter() - start
    emb, gate = fused.embeddings, fused.gate
    present = fused.present if fused.present is not None else torch.ones(len(data.item_ids), dtype=torch.bool)
    table = overlap_table(opts.method, emb, present, data, cooc, opts.ann_threshold)
    keep = present.nonzero().squeeze(1)
    out_ids = [data.item_ids[i] for i in keep.tolist()]
    omitted = [i for i, p in zip(data.item_ids, present.tolist(), strict=True) if not p]
    if omitted:
        warn(f"--method {opts.method}: {len(omitted)} {fused.left_out} and are left out")
    prov = make_provenance("fuse", params, inputs, loss_curve=fused.curve, neighbourhood_overlap=table,
                           device=str(device), text_model=text_model_of(text))
    extra_t = {"gate": gate[keep]} if gate is not None else None
    extra_m: dict[str, Any] = {"cold_item_ids": data.cold_ids, "method": opts.method, "neighbourhood_overlap": table}
    if omitted:
        extra_m["omitted_item_ids"] = omitted
    if gate is not None:
        extra_m["gate_info"] = GATE_INFO
    save_embeddings(output, emb[keep], out_ids, prov, "unified", fp, extra_t, extra_m, force=force)
    if save_model is not None:
        save_fuser(save_model, method, fused, prov, fp, force)
    if ckpt is not None:
        ckpt.finish()
    return FuseResult(Path(output), opts.method, len(out_ids), len(data.cold_ids), int(emb.shape[1]),
                      round(seconds, 2), table, gate_summary(gate, data.has_collab), fused.curve,
                      Path(save_model) if save_model else None, len(omitted))


def check_saveable(method: Fusion, output: str | Path, save_model: str | Path, force: bool) -> None:
    """``--save-model``: only a method that trains has a fuser to save, and not over ``--output``."""
    if not method.trains:
        raise OptionError("--save-model", f"only {trainers()} trains a fuser (got {method.name})")
    check_output(save_model, force, "fuser", "--save-model")
    if Path(save_model).resolve() == Path(output).resolve():
        raise OptionError("--save-model", "must differ from --output")


def fuse_parameters(opts: FuseOptions, method: Fusion, own: Any) -> dict[str, Any]:
    """What provenance and the checkpoint record: the options but the device, then the method's own (if any)."""
    params = {k: v for k, v in asdict(opts).items() if k != "device"}
    return {**params, method.name: asdict(own)} if own is not None else params
