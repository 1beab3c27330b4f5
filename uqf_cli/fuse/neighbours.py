"""Nearest-neighbour searches: exact top-k cosine in blocks, and train co-occurrence neighbours."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from uqf_cli.data.dataset import Dataset

TOPK_BLOCK_ELEMENTS = 1 << 24  # similarity entries per block (64 MB of float32), whatever the catalogue size


def topk_cosine(
    queries: torch.Tensor,
    bank: torch.Tensor,
    k: int,
    exclude: torch.Tensor | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """Indices [Nq, k] of each query's k most cosine-similar bank rows (inputs already unit length).

    ``exclude[i]`` is a bank row query i may not pick (itself), -1 for none. Ties break by index, so
    results are deterministic. ``k`` is capped at the usable bank size. Queries go in blocks of
    ``chunk`` rows (default: ``TOPK_BLOCK_ELEMENTS`` similarities per block), so no [Nq, Nb] matrix exists.
    """
    k = max(0, min(k, bank.shape[0] - (1 if exclude is not None else 0)))
    out = torch.empty(queries.shape[0], k, dtype=torch.long)
    if k == 0:
        return out
    rows_per_block = chunk or max(1, TOPK_BLOCK_ELEMENTS // max(1, bank.shape[0]))
    for s in range(0, queries.shape[0], rows_per_block):
        sims = queries[s:s + rows_per_block] @ bank.T
        if exclude is not None:
            ex = exclude[s:s + rows_per_block]
            rows = torch.nonzero(ex >= 0).squeeze(1)
            sims[rows, ex[rows]] = -math.inf
        out[s:s + rows_per_block] = _topk_index_ties(sims, k)
    return out


def _topk_index_ties(sims: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k column indices of each row, larger first, equal values by ascending index."""
    vals, idx = torch.topk(sims, k, dim=1)
    # order the selected entries by (value desc, index asc): sort by index, then a stable sort by value
    by_index = torch.sort(idx, dim=1).indices
    idx, vals = torch.gather(idx, 1, by_index), torch.gather(vals, 1, by_index)
    idx = torch.gather(idx, 1, torch.sort(vals, dim=1, descending=True, stable=True).indices)
    kth = vals.min(dim=1, keepdim=True).values
    tied = ((sims >= kth).sum(dim=1) > k).nonzero().squeeze(1)  # the boundary value also lies outside the top k
    for r in tied.tolist():
        idx[r] = torch.sort(sims[r], descending=True, stable=True).indices[:k]
    return idx


def cooccurrence_neighbours(ds: Dataset, item_ids: list[str], k: int) -> list[np.ndarray]:
    """Each item's top-k train co-occurrence neighbours (positions in ``item_ids``), cosine-normalised.

    Only :meth:`Dataset.train_sequences` is read, so valid and test interactions cannot leak in.
    """
    pos = {iid: n for n, iid in enumerate(item_ids)}
    rows, cols = [], []
    for u, seq in enumerate(ds.train_sequences().values()):
        for iid in dict.fromkeys(seq):
            if iid in pos:
                rows.append(u)
                cols.append(pos[iid])
    n = len(item_ids)
    empty = [np.zeros(0, dtype=np.int64) for _ in range(n)]
    if not rows:
        return empty
    idx = torch.tensor([rows, cols], dtype=torch.long)
    x = torch.sparse_coo_tensor(idx, torch.ones(len(rows)), (max(rows) + 1, n), check_invariants=False).coalesce()
    with warnings.catch_warnings():  # torch flags its sparse kernels as beta; the product is exact
        warnings.simplefilter("ignore", UserWarning)
        c = torch.sparse.mm(x.t().coalesce(), x).coalesce()
    r, q = c.indices().numpy()
    v = c.values().numpy().astype(np.float64)
    deg = np.zeros(n)
    diag = r == q
    deg[r[diag]] = v[diag]
    off = ~diag
    r, q, v = r[off], q[off], v[off] / np.sqrt(deg[r[off]] * deg[q[off]])
    order = np.lexsort((q, -v, r))  # by row, then similarity descending, then index (deterministic ties)
    r, q = r[order], q[order]
    starts = np.searchsorted(r, np.arange(n + 1))
    return [q[starts[i]:min(starts[i + 1], starts[i] + k)].astype(np.int64) for i in range(n)]


def knn_lists(neigh: torch.Tensor) -> list[np.ndarray]:
    return [row.numpy() for row in neigh]
