"""``uqf train-gcn``: LightGCN collaborative embeddings for users and items, trained leak-free.

The model (He et al., "LightGCN", SIGIR'20)
-------------------------------------------
Users and items are the nodes of one bipartite graph with an edge for every *train* interaction.
With the symmetric-normalised adjacency ``Â = D^-1/2 A D^-1/2`` (``D`` the degree matrix), LightGCN
propagates the free ("ego") embeddings ``E⁰`` without weights or non-linearities::

    E^(l+1) = Â E^l,        E = (E⁰ + E¹ + ... + E^L) / (L + 1)       (layer mean)

and scores a user-item pair by the dot product ``e_u · e_i`` of the final embeddings. Training
minimises the BPR loss over (user, positive, negative) triples with an L2 penalty on the ego
embeddings of the triples in the batch (as the official implementation does)::

    loss = mean_b softplus(e_u·e_n - e_u·e_p) + λ · (‖e⁰_u‖² + ‖e⁰_p‖² + ‖e⁰_n‖²) / (2 B)

Leak-freedom: the graph is built from :meth:`Dataset.train_edges` alone, so the valid and the test
item of a user never become edges (``include_valid=True`` adds the valid item for a final fit; the
test item is never included). Validation ranks *all* items for each user, masks the user's train
items, and reads Recall@K / NDCG@K at the held-out valid item.

Why it is fast (the choices, and the reasons)
---------------------------------------------
* **One propagation per step over a cached adjacency.** ``Â`` depends only on the train graph, so it
  is built once as a ``torch.sparse_csr`` matrix. PyG's :class:`~torch_geometric.nn.conv.LGConv`
  does the propagation (``normalize=False``: the weights are already in ``Â``); PyG's own example
  instead re-normalises an edge list and scatters messages in every layer of every step.
* **A symmetric backward.** ``Â`` is symmetric, so the gradient of ``y = Â x`` is ``Â g``. The
  generic autograd rule for a sparse CSR product transposes the matrix on every call (several
  times slower than the product itself on CPU); :class:`SymmetricSpmm` reuses ``Â`` instead.
* **Large batches, larger learning rate.** A step costs about the same for 2,048 or 8,192 triples
  (the propagation over the whole graph dominates), so big batches with a proportionally larger
  Adam learning rate reach the same quality in a small fraction of the steps.
* **Negatives for a whole epoch at once.** Uniform item ids are drawn for every train edge with
  one call; draws that hit one of the user's positives (looked up with ``searchsorted`` in the
  sorted ``user * n_items + item`` keys) are redrawn, vectorised, until none is left.
* **Cheap evaluation.** Scores are computed in user chunks; instead of a top-K sort, the rank of
  the valid item is the number of unmasked items that score strictly higher, from which both
  Recall@K (rank < K) and NDCG@K (1 / log2(rank + 2)) follow.

Cold items
----------
An item with no train interaction has no edge: LightGCN can learn nothing about it (its ego
vector only ever serves as a random negative). Such items still need a row so that the output
covers the whole catalogue, but the row is **all zeros, not learned**, and the item is listed in
the file's metadata ``cold_item_ids``. Downstream stages must treat those rows as missing.
(Evaluation ranks every item with the model as trained, cold ones included, like the yardstick.)
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch_geometric.nn.conv import LGConv
from torch_geometric.nn.models import LightGCN

from uqf_cli import runtime
from uqf_cli.checkpoint import Checkpointer, Snapshot
from uqf_cli.dataset import Dataset
from uqf_cli.errors import InputError
from uqf_cli.fingerprints import interaction_fields
from uqf_cli.gcn_config import GcnConfig
from uqf_cli.io import check_output, make_provenance, save_embeddings

STAGE = "train-gcn"
MODALITY = "collab"
EVAL_CHUNK_SCORES = 1 << 24  # score-matrix entries per evaluation chunk (64 MiB of float32)


@dataclass
class EvalRecord:
    """One row of the training curve."""

    epoch: int
    loss: float
    recall: float | None = None
    ndcg: float | None = None
    seconds: float = 0.0  # wall time since training started (shown, never written to the file)


@dataclass
class GcnResult:
    """What training produced: final embeddings (from the best epoch) and how it went."""

    item_embeddings: torch.Tensor
    user_embeddings: torch.Tensor
    item_ids: list[str]
    user_ids: list[str]
    cold_item_ids: list[str]
    cold_user_ids: list[str]
    best_epoch: int
    epochs_run: int
    metrics: dict[str, float]
    curve: list[EvalRecord] = field(default_factory=list)
    stopped_early: bool = False
    train_seconds: float = 0.0
    num_edges: int = 0
    num_eval_users: int = 0


# ----------------------------------------------------------------------------------------------
# The graph
# ----------------------------------------------------------------------------------------------


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

    Why a seeded normal init of std 0.01 (rather than PyG's Xavier or the official 0.1): the init draws
    from our own generator (same seed, same model), and on Office a small start generalises better
    with the large learning rate: with std 0.1 valid Recall@20 stalled near 0.076, with 0.01 it passed
    0.079 (see docs/train-gcn.md for the measurements).
    """
    model = LightGCN(num_nodes, cfg.dim, cfg.layers)
    model.convs = torch.nn.ModuleList([SymmetricLGConv() for _ in range(cfg.layers)])
    with torch.no_grad():
        model.embedding.weight.normal_(0.0, cfg.init_std, generator=generator)
    return model


# ----------------------------------------------------------------------------------------------
# Training pieces
# ----------------------------------------------------------------------------------------------


def sample_negatives(users: torch.Tensor, graph: TrainGraph, generator: torch.Generator) -> torch.Tensor:
    """One uniform negative item per user in ``users``, never one of that user's train positives.

    Every draw that hits a positive (a ``searchsorted`` lookup of ``user * n_items + item`` in the
    sorted positive keys) is redrawn, all of them together, until none is left. This terminates:
    :func:`build_train_graph` refuses users who interacted with every item.
    """
    n_i = graph.num_items
    keys_sorted = graph.positive_keys
    neg = torch.randint(0, n_i, (users.numel(),), generator=generator)
    todo = torch.arange(users.numel())
    while todo.numel():
        keys = users[todo] * n_i + neg[todo]
        pos = torch.searchsorted(keys_sorted, keys).clamp_(max=keys_sorted.numel() - 1)
        todo = todo[keys_sorted[pos] == keys]
        neg[todo] = torch.randint(0, n_i, (todo.numel(),), generator=generator)
    return neg


def bpr_loss(
    final: torch.Tensor, ego: torch.Tensor, u: torch.Tensor, p: torch.Tensor, n: torch.Tensor, reg: float
) -> torch.Tensor:
    """BPR on final embeddings + λ·(‖e⁰_u‖² + ‖e⁰_p‖² + ‖e⁰_n‖²)/(2B) on ego embeddings (node indices).

    Rows are gathered with ``index_select``, not ``final[u]``: advanced indexing's backward adds the
    gradients of repeated nodes in a thread-dependent order on a multi-threaded CPU, which broke
    run-to-run determinism; ``index_select``'s backward accumulates in a fixed order.
    """
    e_u = final.index_select(0, u)
    diff = (e_u * (final.index_select(0, n) - final.index_select(0, p))).sum(-1)
    loss = F.softplus(diff).mean()
    if reg > 0:
        idx = torch.cat([u, p, n])
        loss = loss + reg * ego.index_select(0, idx).square().sum() / (2 * u.numel())
    return loss


@dataclass
class ValidationSet:
    """Eval users, their targets and their masked (train) items, prepared once."""

    users: torch.Tensor  # int64 [M]
    targets: torch.Tensor  # int64 [M]
    mask_rows: torch.Tensor  # int64: position in ``users`` of each masked (user, item) pair, sorted
    mask_items: torch.Tensor  # int64: the masked item of each pair


def build_validation_set(ds: Dataset, graph: TrainGraph) -> ValidationSet:
    """Valid cases as index tensors; the mask is the user's train items (the graph's edges)."""
    cases = ds.eval_cases("valid")
    users = torch.tensor([ds.user_index[c.user_id] for c in cases], dtype=torch.int64)
    targets = torch.tensor([ds.item_index[c.target] for c in cases], dtype=torch.int64)
    position = torch.full((graph.num_users,), -1, dtype=torch.int64)
    position[users] = torch.arange(users.numel())
    rows = position[graph.users]
    keep = rows >= 0
    rows, items = rows[keep], graph.items[keep]
    order = torch.argsort(rows, stable=True)
    return ValidationSet(users, targets, rows[order], items[order])


@torch.no_grad()
def rank_metrics(
    user_emb: torch.Tensor, item_emb: torch.Tensor, val: ValidationSet, k: int
) -> tuple[float, float]:
    """Recall@k and NDCG@k of the valid item under full ranking with train items masked.

    The rank of the target is the number of unmasked items scoring strictly higher; that is the
    position a top-k list would put it at (ties aside), without sorting anything.
    """
    n_users, n_items = val.users.numel(), item_emb.shape[0]
    if n_users == 0:
        return float("nan"), float("nan")
    device = item_emb.device
    chunk = max(1, EVAL_CHUNK_SCORES // max(1, n_items))
    bounds = torch.searchsorted(val.mask_rows, torch.arange(0, n_users + chunk, chunk)).tolist()
    hits, gains = 0.0, 0.0
    for c, start in enumerate(range(0, n_users, chunk)):
        stop = min(start + chunk, n_users)
        scores = user_emb[val.users[start:stop].to(device)] @ item_emb.T
        lo, hi = bounds[c], bounds[c + 1]
        scores[(val.mask_rows[lo:hi] - start).to(device), val.mask_items[lo:hi].to(device)] = -math.inf
        local = torch.arange(stop - start, device=device)
        target_scores = scores[local, val.targets[start:stop].to(device)]
        rank = (scores > target_scores[:, None]).sum(1)
        rank = torch.where(torch.isinf(target_scores), torch.full_like(rank, n_items), rank)
        found = rank < k
        hits += float(found.sum())
        gains += float((found.float() / torch.log2(rank.float() + 2.0)).sum())
    return hits / n_users, gains / n_users


# ----------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------

EvalCallback = Callable[[EvalRecord, bool], None]
EpochCallback = Callable[[int, float], None]


def train_lightgcn(
    ds: Dataset,
    cfg: GcnConfig,
    on_eval: EvalCallback | None = None,
    on_epoch: EpochCallback | None = None,
    checkpoint: Checkpointer | None = None,
) -> GcnResult:
    """Train LightGCN on ``ds``'s train split; return the embeddings of the best validated epoch.

    ``on_eval(record, is_best)`` is called after each validation, ``on_epoch(epoch, loss)`` after
    each epoch (progress display). With ``include_valid`` there is no validation (the valid items
    are training edges): exactly ``cfg.epochs`` epochs run and the last one is kept.
    ``checkpoint`` saves the loop's state at epoch ends and, with ``--resume``, restores it first
    (see :mod:`uqf_cli.checkpoint`).
    """
    cfg.validate()
    started = time.perf_counter()
    device = runtime.resolve_device(cfg.device)
    generator = runtime.seed_everything(cfg.seed)
    graph = build_train_graph(ds, cfg.include_valid)
    adj = normalized_adjacency(graph, device)
    model = build_model(graph.num_nodes, cfg, generator).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    validation = None if cfg.include_valid else build_validation_set(ds, graph)
    if validation is not None and validation.users.numel() == 0:
        runtime.warn("no user has 3+ interactions, so there is no valid item: training without validation")
        validation = None

    edge_users = graph.users.to(device)
    edge_items = (graph.items + graph.num_users).to(device)  # node index of each edge's item
    best = {"recall": -1.0, "epoch": 0, "weight": model.embedding.weight.detach().clone(), "ndcg": float("nan")}
    curve: list[EvalRecord] = []
    since_best, stopped_early, epoch = 0, False, 0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        saved.restore(modules={"lightgcn": model}, optimizers={"adam": optimizer}, generators={"sample": generator})
        best = {**saved.state["best"], "weight": saved.extra_tensors()["best_weight"].to(device)}
        curve = [EvalRecord(**row) for row in saved.state["curve"]]
        since_best, epoch = int(saved.state["since_best"]), saved.epoch
    first_epoch = epoch + 1

    def snapshot() -> Snapshot:
        return Snapshot.capture(
            epoch, modules={"lightgcn": model}, optimizers={"adam": optimizer}, generators={"sample": generator},
            tensors={"best_weight": best["weight"]},
            state={"best": {k: v for k, v in best.items() if k != "weight"}, "since_best": since_best,
                   "curve": [asdict(r) for r in curve]},
        )

    for epoch in range(first_epoch, cfg.epochs + 1):
        loss = _train_epoch(model, optimizer, adj, graph, edge_users, edge_items, cfg, generator)
        if on_epoch is not None:
            on_epoch(epoch, loss)
        last = epoch == cfg.epochs
        if validation is None:
            if epoch % cfg.eval_every == 0 or last:
                record = EvalRecord(epoch, loss, seconds=time.perf_counter() - started)
                curve.append(record)
                if on_eval is not None:
                    on_eval(record, False)
            if checkpoint is not None:
                checkpoint.epoch_done(epoch, snapshot, last)
            continue
        if epoch % cfg.eval_every and not last:
            if checkpoint is not None:
                checkpoint.epoch_done(epoch, snapshot, last)
            continue
        recall, ndcg = _evaluate(model, adj, graph, validation, cfg.k)
        record = EvalRecord(epoch, loss, recall, ndcg, time.perf_counter() - started)
        curve.append(record)
        is_best = recall > best["recall"]
        if is_best:
            best.update(recall=recall, ndcg=ndcg, epoch=epoch, weight=model.embedding.weight.detach().clone())
            since_best = 0
        else:
            since_best += 1
        if on_eval is not None:
            on_eval(record, is_best)
        if cfg.patience and since_best >= cfg.patience:
            stopped_early = not last
            break
        if checkpoint is not None:
            checkpoint.epoch_done(epoch, snapshot, last)

    if validation is None:
        best.update(epoch=epoch, weight=model.embedding.weight.detach().clone())
        metrics: dict[str, float] = {}
    else:
        metrics = {f"valid_recall@{cfg.k}": best["recall"], f"valid_ndcg@{cfg.k}": best["ndcg"]}
    with torch.no_grad():
        model.embedding.weight.copy_(best["weight"])
        final = model.get_embedding(adj).detach().to("cpu", torch.float32)
    user_emb, item_emb = final[: graph.num_users].clone(), final[graph.num_users :].clone()
    cold_items = graph.item_degree() == 0
    cold_users = graph.user_degree() == 0
    item_emb[cold_items] = 0.0  # not learned: no train edge (see the module docstring)
    user_emb[cold_users] = 0.0
    return GcnResult(
        item_embeddings=item_emb,
        user_embeddings=user_emb,
        item_ids=list(ds.item_ids),
        user_ids=list(ds.user_ids),
        cold_item_ids=[ds.item_ids[k] for k in torch.nonzero(cold_items).flatten().tolist()],
        cold_user_ids=[ds.user_ids[k] for k in torch.nonzero(cold_users).flatten().tolist()],
        best_epoch=int(best["epoch"]),
        epochs_run=epoch,
        metrics=metrics,
        curve=curve,
        stopped_early=stopped_early,
        train_seconds=time.perf_counter() - started,
        num_edges=graph.num_edges,
        num_eval_users=0 if validation is None else int(validation.users.numel()),
    )


def _train_epoch(
    model: LightGCN,
    optimizer: torch.optim.Optimizer,
    adj: torch.Tensor,
    graph: TrainGraph,
    edge_users: torch.Tensor,
    edge_items: torch.Tensor,
    cfg: GcnConfig,
    generator: torch.Generator,
) -> float:
    """One pass over the train edges in shuffled batches; returns the mean batch loss."""
    negatives = sample_negatives(graph.users, graph, generator).to(edge_users.device) + graph.num_users
    order = torch.randperm(graph.num_edges, generator=generator).to(edge_users.device)
    total, steps = torch.zeros((), device=edge_users.device), 0
    ego = model.embedding.weight
    for batch in order.split(cfg.batch_size):
        final = model.get_embedding(adj)
        loss = bpr_loss(final, ego, edge_users[batch], edge_items[batch], negatives[batch], cfg.reg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        steps += 1
    return float(total) / steps


def _evaluate(model: LightGCN, adj: torch.Tensor, graph: TrainGraph, val: ValidationSet, k: int) -> tuple[float, float]:
    with torch.no_grad():
        final = model.get_embedding(adj)
    return rank_metrics(final[: graph.num_users], final[graph.num_users :], val, k)


# ----------------------------------------------------------------------------------------------
# The stage: dataset directory in, embedding file out
# ----------------------------------------------------------------------------------------------


def train_gcn(
    dataset_dir: str | Path,
    output: str | Path,
    cfg: GcnConfig,
    force: bool = False,
    on_eval: EvalCallback | None = None,
    on_epoch: EpochCallback | None = None,
    resume: bool = False,
) -> GcnResult:
    """Load the dataset, train, and write the collab embedding file (atomically, with provenance).

    A checkpoint ``<output>.ckpt.st`` is kept while training; ``resume`` continues from it."""
    cfg.validate()
    check_output(output, force)
    runtime.resolve_device(cfg.device)  # a bad --device fails before the dataset is read
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
