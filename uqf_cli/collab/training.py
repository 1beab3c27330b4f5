"""LightGCN's training loop: BPR with sampled negatives, validation by full ranking, early stopping.

Negatives for a whole epoch are drawn at once and redrawn where they hit a positive; validation ranks
all items with the user's train items masked, reading the valid item's rank without a top-K sort.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch_geometric.nn.models import LightGCN

from uqf_cli.collab.config import GcnConfig
from uqf_cli.collab.graph import TrainGraph, build_model, build_train_graph, normalized_adjacency
from uqf_cli.core.runtime import resolve_device, seed_everything, warn
from uqf_cli.data.dataset import Dataset
from uqf_cli.files.checkpoint import Checkpointer, Snapshot

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

    def __repr__(self) -> str:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items())
        return (f"GcnResult({len(self.item_ids):,} items ({len(self.cold_item_ids):,} cold), "
                f"{len(self.user_ids):,} users, best epoch {self.best_epoch} of {self.epochs_run}"
                f"{', ' + metrics if metrics else ''})")


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
    ``checkpoint`` saves the loop's state at epoch ends and, with ``--resume``, restores it first.
    """
    cfg.validate()
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    generator = seed_everything(cfg.seed)
    graph = build_train_graph(ds, cfg.include_valid)
    adj = normalized_adjacency(graph, device)
    model = build_model(graph.num_nodes, cfg, generator).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    validation = None if cfg.include_valid else build_validation_set(ds, graph)
    if validation is not None and validation.users.numel() == 0:
        warn("no user has 3+ interactions, so there is no valid item: training without validation")
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
    item_emb[cold_items] = 0.0  # not learned: no train edge (docs/train-gcn.md, cold items)
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
