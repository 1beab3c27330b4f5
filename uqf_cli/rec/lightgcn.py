"""LightGCN as a recommender (``--backbone lightgcn``): user x item dot products of LightGCN embeddings.

Trains LightGCN through train-gcn's code (train-rec options, :class:`LightGcnOptions`, map onto
:class:`GcnConfig`) or reuses a train-gcn file given as option ``collab``. Unknown users get the
mean of their history items' embeddings. Details and files: ``docs/train-rec.md``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from uqf_cli.collab.config import GcnConfig
from uqf_cli.core import runtime
from uqf_cli.core.errors import InputError
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import (
    SidTable,
    atomic_path,
    check_output,
    load_embeddings,
    load_model_file,
    make_provenance,
    save_model_file,
)
from uqf_cli.files.fingerprints import interactions_of
from uqf_cli.rec import options as shared
from uqf_cli.rec.base import history_rows, read_model_meta, write_model_meta
from uqf_cli.rec.options import BackboneOptions, option_values
from uqf_cli.rec.ranking import top_k_from_scores
from uqf_cli.rec.registry import Backbone

BACKBONE = "lightgcn"
WEIGHTS_FILE = "model.safetensors"
MODEL_KIND = "lightgcn_rec"
GCN_FIELDS = ("epochs", "dim", "layers", "lr", "batch_size", "patience", "eval_every", "seed", "device", "reg")


@dataclass
class LightGcnOptions(BackboneOptions):
    """The options of the LightGCN backbone: train-gcn's (:class:`GcnConfig`, its defaults) under train-rec's
    shared flags (``--d-model`` is the embedding size, ``--num-layers`` the propagation layers), plus
    ``collab`` (reuse a train-gcn file instead of training) and ``exclude_history``."""

    epochs: int = shared.epochs(GcnConfig.epochs)
    dim: int = shared.d_model(GcnConfig.dim)
    layers: int = shared.num_layers(GcnConfig.layers)
    lr: float = shared.lr(GcnConfig.lr)
    batch_size: int = shared.batch_size(GcnConfig.batch_size)
    patience: int = shared.patience(GcnConfig.patience)
    eval_every: int = shared.eval_every(GcnConfig.eval_every)
    seed: int = 0
    device: str = "auto"
    reg: float = GcnConfig.reg
    collab: str | None = None
    exclude_history: bool = True


def gcn_config(options: dict[str, Any]) -> GcnConfig:
    """train-gcn's defaults overlaid with the train-rec options that map onto them."""
    cfg = GcnConfig()
    for name, value in option_values(LightGcnOptions, options).items():
        if name in GCN_FIELDS:
            setattr(cfg, name, type(getattr(cfg, name))(value))
    cfg.validate()
    return cfg


def embeddings_from_collab(path: str | Path, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor, list[str],
                                                                          dict[str, Any]]:
    """Item rows (dataset order), user rows and user ids of a train-gcn file made from ``dataset``."""
    emb = load_embeddings(path)
    learned_from = interactions_of(emb)
    if learned_from:
        if learned_from != dataset.interaction_fingerprint:
            raise InputError(path, f"comes from dataset with other train interactions ({learned_from}) than "
                                   f"{dataset.path} ({dataset.interaction_fingerprint})")
    elif emb.dataset_fingerprint and dataset.fingerprint and emb.dataset_fingerprint != dataset.fingerprint:
        raise InputError(path, f"comes from dataset {emb.dataset_fingerprint}, not {dataset.path} "
                               f"({dataset.fingerprint})")
    users = emb.extra_tensors.get("user_embeddings")
    user_ids = emb.extra_metadata.get("user_ids")
    if users is None or not isinstance(user_ids, list) or len(user_ids) != users.shape[0]:
        raise InputError(path, "has no user embeddings (tensor 'user_embeddings' with metadata 'user_ids'); "
                               "make it with `uqf train-gcn`")
    missing = [i for i in dataset.item_ids if i not in set(emb.item_ids)]
    if missing:
        raise InputError(path, f"{len(missing)} dataset items have no row (first: {missing[0]!r})")
    info = {"source": "collab file", "collab": str(path), "provenance_stage": emb.provenance.get("stage")}
    return emb.rows_for(dataset.item_ids).float(), users.float(), [str(u) for u in user_ids], info


def train(dataset: Dataset, sids: SidTable | None, output: str | Path, options: dict[str, Any] | None,
          force: bool = False) -> dict[str, Any]:
    """Train LightGCN (or reuse a train-gcn file given as option ``collab``) and write the model directory."""
    output = Path(output)
    options = dict(options or {})
    check_output(output, force, "model")
    exclude = bool(options.get("exclude_history", True))
    started = time.perf_counter()
    collab = options.get("collab")
    if collab is not None:
        items, users, user_ids, info = embeddings_from_collab(collab, dataset)
        params: dict[str, Any] = {"collab": str(collab), "exclude_history": exclude}
        inputs = {"collab": collab}
    else:
        cfg = gcn_config(options)
        runtime.info(f"lightgcn: training on {len(dataset.user_ids):,} users x {len(dataset.item_ids):,} items "
                     f"(dim {cfg.dim}, {cfg.layers} layers, up to {cfg.epochs} epochs)")
        from uqf_cli.collab import train_lightgcn  # imported here: it pulls in heavy modules

        result = train_lightgcn(dataset, cfg)
        items, users, user_ids = result.item_embeddings, result.user_embeddings, result.user_ids
        info = {"source": "trained", "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                **result.metrics}
        params = {**{k: v for k, v in cfg.__dict__.items() if k != "device"}, "exclude_history": exclude}
        inputs = {}
        if dataset.path is not None:
            inputs = {"dataset_items": dataset.path / "items.jsonl",
                      "dataset_sequences": dataset.path / "sequences.jsonl"}
    provenance = make_provenance("train-rec", {"backbone": BACKBONE, **params}, inputs, training=info)
    config = {"item_ids": list(dataset.item_ids), "user_ids": user_ids, "exclude_history": exclude}
    state = {"items": items.contiguous(), "users": users.contiguous()}
    with atomic_path(output, force, directory=True) as tmp:
        save_model_file(tmp / WEIGHTS_FILE, MODEL_KIND, state, config, provenance,
                        dataset_fingerprint=dataset.fingerprint or "")
        write_model_meta(tmp, BACKBONE, dataset, params, provenance, None, training=info)
    return {"backbone": BACKBONE, "output": str(output), "dim": int(items.shape[1]),
            "exclude_history": exclude, **info, "seconds": round(time.perf_counter() - started, 1)}


class LightGcnRecommender:
    """Ranks all items by ``e_u . e_i`` for the case's user (or the mean of its history's items)."""

    backbone = BACKBONE
    uses_user_ids = True
    score_name = "dot product"

    def __init__(self, items: torch.Tensor, users: torch.Tensor, item_ids: list[str], user_ids: list[str],
                 exclude_history: bool, device: torch.device) -> None:
        self.items = items.to(device)
        self.users = users.to(device)
        self.item_ids = item_ids
        self.item_row = {iid: r for r, iid in enumerate(item_ids)}
        self.user_row = {uid: r for r, uid in enumerate(user_ids)}
        self.exclude_history = exclude_history
        self.device = device
        self.learned_user = self.users.abs().sum(dim=1) > 0  # zero rows = users without train items

    def user_vectors(self, histories: Sequence[Sequence[int]], user_ids: Sequence[str] | None) -> torch.Tensor:
        """The learned user embedding where there is one, else the mean of the history items' embeddings."""
        out = torch.zeros(len(histories), self.items.shape[1], device=self.device)
        for n, hist in enumerate(histories):
            row = self.user_row.get(user_ids[n]) if user_ids is not None else None
            if row is not None and bool(self.learned_user[row]):
                out[n] = self.users[row]
            elif hist:
                out[n] = self.items[torch.as_tensor(list(hist), dtype=torch.long, device=self.device)].mean(0)
        return out

    @torch.no_grad()
    def recommend(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None,
                  user_ids: Sequence[str] | None = None) -> list[list[str]]:
        """Top-``k`` items over the catalogue (``beam_size`` is unused: no search, exact scores)."""
        return [[iid for iid, _ in ranked] for ranked in self.recommend_scored(histories, k, beam_size, user_ids)]

    @torch.no_grad()
    def recommend_scored(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None,
                         user_ids: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
        """Like :meth:`recommend`, with each item's score (the dot product of user and item embeddings)."""
        rows = history_rows(histories, self.item_row, "LightGCN")
        scores = (self.user_vectors(rows, user_ids) @ self.items.T).cpu()
        top = top_k_from_scores(scores, k, rows if self.exclude_history else None)
        values = scores.gather(1, top).tolist()
        return [[(self.item_ids[j], v) for j, v in zip(r, vs, strict=True)]
                for r, vs in zip(top.tolist(), values, strict=True)]


def load(model_dir: str | Path, device: str | torch.device = "cpu") -> LightGcnRecommender:
    """Load a LightGCN recommender directory."""
    model_dir = Path(model_dir)
    read_model_meta(model_dir, BACKBONE)  # refuses other backbones
    state, config, _ = load_model_file(model_dir / WEIGHTS_FILE, MODEL_KIND)
    item_ids, user_ids = config.get("item_ids"), config.get("user_ids")
    items, users = state.get("items"), state.get("users")
    if (not isinstance(item_ids, list) or not isinstance(user_ids, list) or items is None or users is None
            or items.shape[0] != len(item_ids) or users.shape[0] != len(user_ids)
            or items.shape[1] != users.shape[1]):
        raise InputError(model_dir / WEIGHTS_FILE, "expected tensors 'items' and 'users' matching the config's "
                                                   "item_ids and user_ids")
    dev = device if isinstance(device, torch.device) else runtime.resolve_device(str(device))
    return LightGcnRecommender(items.float(), users.float(), [str(i) for i in item_ids], [str(u) for u in user_ids],
                               bool(config.get("exclude_history", True)), dev)


SPEC = Backbone(BACKBONE, LightGcnOptions, train, load)
