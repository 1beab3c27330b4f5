"""Top-k cosine neighbours for any catalogue size: exact below a size threshold, faiss IVF above it.

Below ``ann_threshold`` bank rows (or without faiss) the exact blocked search of
:func:`uqf_cli.fuse.neighbours.topk_cosine` runs unchanged. Above it an inverted-file index (k-means
cells, inner product on unit rows) is searched instead: k-means is seeded and the search of each query
does not depend on thread count, so results are deterministic given the seed.

Index shape for N bank rows: ``nlist = 8 sqrt(N)`` cells (about sqrt(N)/8 rows each) of which
``nprobe = sqrt(N)/4`` (1/32 of them, at least ``ANN_NPROBE``) are scanned per query, so a query costs
about ``nlist + nprobe N / nlist = 8 sqrt(N) + N/32`` inner products instead of N. A search for only a few
queries (the overlap report's sample) is done exactly when that costs less than training the index.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from uqf_cli.core.runtime import info
from uqf_cli.fuse.neighbours import topk_cosine

ANN_THRESHOLD = 50_000  # bank rows from which the approximate search is used
ANN_CELLS_PER_SQRT_N = 8  # nlist = 8 sqrt(N) cells
ANN_PROBE_SHARE = 32  # nprobe = nlist / 32 cells searched per query ...
ANN_NPROBE = 48  # ... and at least this many
ANN_KMEANS_ITERATIONS = 10
ANN_TRAIN_POINTS_PER_CELL = 128  # k-means trains on a seeded sample of at most this many rows per cell
ANN_QUERY_CHUNK = 16_384  # queries per faiss search call (bounds its per-query scratch memory)
_noted = False


def faiss_module() -> Any:
    """``faiss`` when installed (the ``ann`` extra), else None."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def nearest(queries: torch.Tensor, bank: torch.Tensor, k: int, exclude: torch.Tensor | None = None,
            ann_threshold: int = ANN_THRESHOLD, seed: int = 0) -> torch.Tensor:
    """Indices [Nq, k] of each query's k most cosine-similar bank rows (unit-length inputs).

    Same contract as :func:`topk_cosine` (``exclude``, ``k`` capped at the usable bank size); the
    approximate index is used when the bank has at least ``ann_threshold`` rows, faiss is installed and
    the queries are enough to repay building it (:func:`exact_is_cheaper`).
    """
    if bank.shape[0] < ann_threshold or ann_threshold <= 0 or exact_is_cheaper(queries.shape[0], bank.shape[0]):
        return topk_cosine(queries, bank, k, exclude)
    faiss = faiss_module()
    if faiss is None:
        _note_missing_faiss(bank.shape[0])
        return topk_cosine(queries, bank, k, exclude)
    return ivf_topk(faiss, queries, bank, k, exclude, seed)


def ivf_shape(n: int) -> tuple[int, int]:
    """``(nlist, nprobe)`` of the index over ``n`` bank rows (see the module docstring)."""
    nlist = max(1, min(int(ANN_CELLS_PER_SQRT_N * math.sqrt(n)), n // 39))  # faiss wants >= 39 points per cell
    return nlist, min(max(ANN_NPROBE, nlist // ANN_PROBE_SHARE), nlist)


def exact_is_cheaper(n_queries: int, n_bank: int) -> bool:
    """Whether exact search (``n_queries x n_bank`` inner products) costs less than the index: k-means
    training, adding the bank, then ``nlist + nprobe x cell size`` per query."""
    nlist, nprobe = ivf_shape(n_bank)
    train = min(n_bank, ANN_TRAIN_POINTS_PER_CELL * nlist) * nlist * ANN_KMEANS_ITERATIONS
    index = train + n_bank * nlist + n_queries * (nlist + nprobe * n_bank // nlist)
    return n_queries * n_bank <= index


def _note_missing_faiss(n: int) -> None:
    global _noted
    if not _noted:
        _noted = True
        info(f"note: exact neighbour search over {n} items; install the 'ann' extra (faiss-cpu) for a faster "
             "approximate one")


def ivf_topk(faiss: Any, queries: torch.Tensor, bank: torch.Tensor, k: int,
             exclude: torch.Tensor | None, seed: int) -> torch.Tensor:
    """Approximate top-k by an IVF-Flat inner-product index over ``bank`` (see the module docstring)."""
    k = max(0, min(k, bank.shape[0] - (1 if exclude is not None else 0)))
    if k == 0:
        return torch.empty(queries.shape[0], 0, dtype=torch.long)
    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
    index = build_ivf(faiss, _as_float32(bank), seed)
    extra = 1 if exclude is not None else 0
    found = search_in_chunks(index, _as_float32(queries), k + extra)
    keep = found >= 0
    if exclude is not None:
        keep &= found != exclude.numpy()[:, None]
    # the kept entries of each row, in faiss's order (similarity descending), first k of them
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(found, order, axis=1)
    short = np.nonzero(np.take_along_axis(keep, order, axis=1).sum(axis=1) < k)[0]
    if short.size:  # a query whose probed cells held fewer than k rows: search it exactly
        rows = torch.from_numpy(short)
        ex = exclude[rows] if exclude is not None else None
        out[short] = topk_cosine(queries[rows], bank, k, ex).numpy()
    return torch.from_numpy(out.astype(np.int64))


def search_in_chunks(index: Any, queries: np.ndarray, k: int, chunk: int = ANN_QUERY_CHUNK) -> np.ndarray:
    """Neighbour ids [Nq, k], searched ``chunk`` queries at a time: faiss keeps every query's probed cells
    (nprobe ids and distances) while it searches, which for 1M queries was gigabytes."""
    found = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], chunk):
        _, found[start:start + chunk] = index.search(queries[start:start + chunk], k)
    return found


def build_ivf(faiss: Any, x: np.ndarray, seed: int, shape: tuple[int, int] | None = None) -> Any:
    """An IVF-Flat inner-product index over the rows of ``x``, k-means seeded by ``seed``; ``shape``
    ``(nlist, nprobe)`` defaults to :func:`ivf_shape` (another is for ``benchmarks/scale/ann_sweep.py``)."""
    n, d = x.shape
    nlist, nprobe = shape or ivf_shape(n)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.niter = ANN_KMEANS_ITERATIONS
    index.cp.max_points_per_centroid = ANN_TRAIN_POINTS_PER_CELL
    index.cp.verbose = False
    index.train(x)
    index.add(x)
    index.nprobe = nprobe
    return index


def _as_float32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)
