"""``uqf train-gcn``: dataset directory in, collab embedding file (items and users) out."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from uqf_cli.collab.config import GcnConfig
from uqf_cli.collab.training import EpochCallback, EvalCallback, EvalRecord, GcnResult, train_lightgcn
from uqf_cli.core.config_field import configured
from uqf_cli.core.runtime import resolve_device
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import check_output, make_provenance, save_embeddings
from uqf_cli.files.checkpoint import Checkpointer
from uqf_cli.files.fingerprints import interaction_fields

STAGE = "train-gcn"
MODALITY = "collab"


def train_gcn(
    dataset_dir: str | Path,
    output: str | Path,
    cfg: GcnConfig | None = None,
    force: bool = False,
    on_eval: EvalCallback | None = None,
    on_epoch: EpochCallback | None = None,
    resume: bool = False,
    **settings: Any,
) -> GcnResult:
    """Load the dataset, train, and write the collab embedding file (atomically, with provenance).

    A checkpoint ``<output>.ckpt.st`` is kept while training; ``resume`` continues from it. ``cfg`` defaults
    to ``GcnConfig()``; ``settings`` (its field names: ``epochs=50``) replace single fields."""
    cfg = configured(GcnConfig, cfg, settings)
    cfg.validate()
    check_output(output, force, "embeddings:collab")
    resolve_device(cfg.device)  # a bad --device fails before the dataset is read
    ds = Dataset.load(dataset_dir)
    params = {k: v for k, v in asdict(cfg).items() if k != "device"}
    ckpt = Checkpointer(output, STAGE, params, inputs={"dataset": dataset_dir}, resume=resume)
    result = train_lightgcn(ds, cfg, on_eval=on_eval, on_epoch=on_epoch, checkpoint=ckpt)
    save_collab_embeddings(output, result, ds, cfg, dataset_dir, force)
    ckpt.finish()
    return result


def save_collab_embeddings(
    output: str | Path, result: GcnResult, ds: Dataset, cfg: GcnConfig, dataset_dir: str | Path, force: bool
) -> Path:
    """Write item embeddings (``embeddings``) and user embeddings (``user_embeddings``) with ids,
    cold lists, metrics and the training curve (no wall times: identical runs give identical files)."""
    params = {k: v for k, v in asdict(cfg).items() if k != "device"}
    provenance = make_provenance(
        STAGE,
        params,
        inputs={"dataset": dataset_dir},
        model="LightGCN (torch_geometric LightGCN/LGConv, cached symmetric-normalised sparse adjacency)",
        metrics=result.metrics,
        best_epoch=result.best_epoch,
        epochs_run=result.epochs_run,
        stopped_early=result.stopped_early,
        train_edges=result.num_edges,
        eval_users=result.num_eval_users,
        cold_items=len(result.cold_item_ids),
        curve=[_curve_row(r, cfg.k) for r in result.curve],
    )
    return save_embeddings(
        output,
        result.item_embeddings,
        result.item_ids,
        provenance,
        MODALITY,
        dataset_fingerprint=ds.fingerprint,
        extra_tensors={"user_embeddings": result.user_embeddings},
        extra_metadata={
            "user_ids": result.user_ids,
            "cold_item_ids": result.cold_item_ids,
            "cold_user_ids": result.cold_user_ids,
            "cold_rows": "zeros: items/users without any train interaction are not learned",
            **interaction_fields(ds),
        },
        force=force,
    )


def _curve_row(record: EvalRecord, k: int) -> dict[str, Any]:
    row: dict[str, Any] = {"epoch": record.epoch, "loss": round(record.loss, 6)}
    if record.recall is not None:
        row[f"recall@{k}"] = round(record.recall, 6)
        row[f"ndcg@{k}"] = round(float(record.ndcg), 6) if record.ndcg is not None else None
    return row
