"""Collaborative embeddings: LightGCN on the train interactions (``uqf train-gcn``).

:mod:`~uqf_cli.collab.config` loads without torch_geometric (seconds to import), so the other
names load on first use: the CLI reads ``GcnConfig`` for every command, even ``uqf --help``.
"""

from importlib import import_module
from typing import Any

from uqf_cli.collab.config import GcnConfig

_HOMES = {
    "TrainGraph": "graph", "build_model": "graph", "build_train_graph": "graph", "normalized_adjacency": "graph",
    "EvalRecord": "training", "GcnResult": "training", "ValidationSet": "training", "bpr_loss": "training",
    "build_validation_set": "training", "rank_metrics": "training", "sample_negatives": "training",
    "train_lightgcn": "training", "save_collab_embeddings": "stage", "train_gcn": "stage",
}

__all__ = ["GcnConfig", *_HOMES]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f"uqf_cli.collab.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
