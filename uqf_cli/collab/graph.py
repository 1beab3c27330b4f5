"""The train interactions as a bipartite graph, and PyG's LightGCN over its cached adjacency.

Only train edges become graph edges (no valid/test leak). The symmetric-normalised adjacency is
built once as a sparse CSR matrix; its symmetry gives a cheap backward (docs/train-gcn.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch_geometric.nn.conv import LGConv
from torch_geometric.nn.models import LightGCN

from uqf_cli.collab.config import GcnConfig
from uqf_cli.core.errors import InputError
from uqf_cli.core.runtime import private_tempdir
from uqf_cli.data.dataset import Dataset


@dataclass
class TrainGraph:
    """The train interactions as index arrays, plus everything derived from them once."""

    users: torch.Tensor  # int64 [E] user index of each train edge
    items: torch.Tensor  # int64 [E] item index of each train edge
    num_users: int
    num_items: int
    positive_keys: torch.Tensor  # sorted int64 user * num_items + item, for negative rejection

    @property
    def num_nodes(self) -> int:
        return self.num_users + self.num_items

    @property
    def num_edges(self) -> int:
        return int(self.users.numel())

    def item_degree(self) -> torch.Tensor:
        return torch.bincount(self.items, minlength=self.num_items)

    def user_degree(self) -> torch.Tensor:
        return torch.bincount(self.users, minlength=self.num_users)


def build_train_graph(ds: Dataset, include_valid: bool = False) -> TrainGraph:
    """The bipartite train graph, from :meth:`Dataset.train_edges` only (no valid/test leak)."""
    users_np, items_np = ds.train_edges(include_valid=include_valid)
    if users_np.size == 0:
        raise InputError(ds.path, "dataset has no train interactions; LightGCN has nothing to learn from")
    users = torch.from_numpy(users_np)
    items = torch.from_numpy(items_np)
    num_items = len(ds.item_ids)
    keys = torch.sort(users * num_items + items).values
    graph = TrainGraph(users, items, len(ds.user_ids), num_items, keys)
    full = torch.nonzero(graph.user_degree() >= num_items).flatten()
    if full.numel():
        raise InputError(ds.path, f"user {ds.user_ids[int(full[0])]!r} interacted with every item in train: "
                         "no negative item exists for BPR")
    return graph


def normalized_adjacency(graph: TrainGraph, device: torch.device) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the user-item graph (users first, then items) as a sparse CSR matrix."""
    n_u = graph.num_users
    rows = torch.cat([graph.users, graph.items + n_u])
    cols = torch.cat([graph.items + n_u, graph.users])
    degree = torch.bincount(rows, minlength=graph.num_nodes).to(torch.float32)
    inv_sqrt = degree.pow(-0.5)
    inv_sqrt[degree == 0] = 0.0
    weights = inv_sqrt[rows] * inv_sqrt[cols]
    order = torch.argsort(rows * graph.num_nodes + cols)  # CSR wants rows sorted (cols sorted within)
    rows, cols, weights = rows[order], cols[order], weights[order]
    crow = torch.zeros(graph.num_nodes + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=graph.num_nodes), 0)
    with warnings.catch_warnings():  # "CSR support is in beta": the product we use is long-standing
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        adj = torch.sparse_csr_tensor(crow, cols, weights, (graph.num_nodes, graph.num_nodes),
                                      check_invariants=False)  # built sorted and in range just above
    return adj.to(device)


class SymmetricSpmm(torch.autograd.Function):
    """``y = Â x`` for a symmetric sparse ``Â``, whose backward is ``Â g`` (no transpose needed)."""

    @staticmethod
    def forward(ctx: Any, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, torch.sparse.mm(ctx.adj, grad.contiguous())


class SymmetricLGConv(LGConv):
    """PyG's LGConv over a pre-normalised symmetric sparse adjacency, with the cheap backward."""

    def __init__(self) -> None:
        super().__init__(normalize=False)

    def message_and_aggregate(self, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return SymmetricSpmm.apply(adj_t, x)


def build_model(num_nodes: int, cfg: GcnConfig, generator: torch.Generator) -> LightGCN:
    """PyG's LightGCN (layer mean) with :class:`SymmetricLGConv` layers and N(0, init_std²) ego vectors.

    The init draws from our seeded generator (same seed, same model); why std 0.01: docs/train-gcn.md.
    """
    with private_tempdir():  # PyG writes the code it generates for each conv class into the temp folder
        model = LightGCN(num_nodes, cfg.dim, cfg.layers)
        model.convs = torch.nn.ModuleList([SymmetricLGConv() for _ in range(cfg.layers)])
    with torch.no_grad():
        model.embedding.weight.normal_(0.0, cfg.init_std, generator=generator)
    return model
