"""``uqf fuse``: fit a fusion method on (text, collab, train graph) and write unified embeddings."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from uqf_cli.core.config_field import configured
from uqf_cli.core.errors import OptionError
from uqf_cli.core.runtime import info, resolve_device, seed_everything, warn
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import check_output, make_provenance, save_embeddings
from uqf_cli.files.checkpoint import Checkpointer
from uqf_cli.fuse.ann import nearest
from uqf_cli.fuse.config import FuseOptions
from uqf_cli.fuse.inputs import align_inputs, check_dataset, concat_embeddings, load_collab, load_text, text_model_of
from uqf_cli.fuse.memory import bank_from, build_memory
from uqf_cli.fuse.neighbours import cooccurrence_neighbours, knn_lists
from uqf_cli.fuse.report import FuseResult, gate_summary, overlap_table, reference_neighbours
from uqf_cli.fuse.saved import MODEL_PREFIX, save_fuser
from uqf_cli.fuse.training import embed_items, train_fuser


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
    **settings: Any,
) -> FuseResult:
    """Fit the chosen method on (text, collab, train graph) and write the unified embeddings.

    ``--method uqf`` keeps a checkpoint ``<output>.ckpt.st`` while training; ``resume`` continues from it.
    ``allow_subset``: fuse embeddings of more items than the dataset has (refused otherwise).
    ``opts`` defaults to ``FuseOptions()``; ``settings`` (its field names: ``epochs=3``) replace single fields."""
    opts = configured(FuseOptions, opts, settings)
    opts.validate()
    check_output(output, force, "embeddings:unified")
    if save_model is not None:
        if opts.method != "uqf":
            raise OptionError("--save-model", f"only --method uqf trains a fuser (got {opts.method})")
        check_output(save_model, force, "fuser", "--save-model")
        if Path(save_model).resolve() == Path(output).resolve():
            raise OptionError("--save-model", "must differ from --output")
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
    present = torch.ones(len(data.item_ids), dtype=torch.bool)
    gate = None
    curve: list[dict[str, float]] = []
    state = None
    cfg = None
    bank = None
    ckpt = None
    if opts.method == "uqf":
        cfg = opts.fuser_config(text.dim, collab.dim)
        bank = bank_from(data)  # the bank is these items, so the text search below serves the memory too
        text_knn = nearest(data.text, data.text, max(opts.k_semantic, cfg.k_memory),
                           torch.arange(len(data.item_ids)), opts.ann_threshold, opts.seed)
        mem = build_memory(data, bank, cfg, text_neighbours=text_knn, ann_threshold=opts.ann_threshold,
                           seed=opts.seed)
        structural = (cooc if opts.structural == "cooc" else
                      reference_neighbours(data, None, opts.k_structural, ann_threshold=opts.ann_threshold).collab)
        semantic = knn_lists(text_knn[:, :opts.k_semantic])
        ckpt = Checkpointer(output, "fuse", {k: v for k, v in asdict(opts).items() if k != "device"},
                            {"text": text_path, "collab": collab_path, "dataset": dataset_dir}, resume=resume)
        trained = train_fuser(mem, data.text, data.collab, structural, semantic, cfg, opts, device, checkpoint=ckpt)
        emb, gate = embed_items(trained.model, mem, device)
        curve = trained.curve
        state = {MODEL_PREFIX + k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
    elif opts.method == "concat":
        emb = concat_embeddings(data)
    elif opts.method == "text":
        emb = data.text.clone()
    else:
        emb = data.collab.clone()
        present = data.has_collab.clone()
    seconds = time.perf_counter() - start
    table = overlap_table(opts.method, emb, present, data, cooc, opts.ann_threshold)
    keep = present.nonzero().squeeze(1)
    out_ids = [data.item_ids[i] for i in keep.tolist()]
    omitted = [i for i, p in zip(data.item_ids, present.tolist(), strict=True) if not p]
    if omitted:
        warn(f"--method collab: {len(omitted)} cold items have no collab row and are left out")
    params = {k: v for k, v in asdict(opts).items() if k != "device"}
    prov = make_provenance("fuse", params, {"text": text_path, "collab": collab_path, "dataset": dataset_dir},
                           loss_curve=curve, neighbourhood_overlap=table,
                           device=str(device), text_model=text_model_of(text))
    extra_t = {"gate": gate[keep]} if gate is not None else None
    extra_m = {"cold_item_ids": data.cold_ids, "method": opts.method, "neighbourhood_overlap": table}
    if omitted:
        extra_m["omitted_item_ids"] = omitted
    if gate is not None:
        extra_m["gate_info"] = "tensor 'gate' follows item_ids; 1 = leans on text, 0 = on collab"
    save_embeddings(output, emb[keep], out_ids, prov, "unified", fp, extra_t, extra_m, force=force)
    if save_model is not None and state is not None and cfg is not None and bank is not None:
        save_fuser(save_model, state, cfg, bank, prov, fp, force)
    if ckpt is not None:
        ckpt.finish()
    return FuseResult(Path(output), opts.method, len(out_ids), len(data.cold_ids), int(emb.shape[1]),
                      round(seconds, 2), table, gate_summary(gate, data.has_collab), curve,
                      Path(save_model) if save_model else None, len(omitted))
