"""Recall@10 and search cost of faiss IVF shapes (cells x probed cells) on one embedding file.

For choosing the index shape of `uqf_cli.fuse.ann` (8 sqrt(N) cells, sqrt(N)/4 probed): every
combination of ``--nlist`` and ``--nprobe`` is built by fuse's own ``build_ivf`` (inner product on unit
rows, seeded k-means) and searched for ``--queries`` evenly spaced items, self excluded, against exact search. The
search time is extrapolated to one query per item (the search fuse runs).

    UQF_THREADS=2 .venv/bin/python -m benchmarks.scale.ann_sweep DIR/n1000000/collab.st \
        --nlist 2000,8000 --nprobe 64,128,250
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from uqf_cli.core.runtime import set_threads_from_env
from uqf_cli.files import load_embeddings
from uqf_cli.fuse import topk_cosine
from uqf_cli.fuse.ann import build_ivf, faiss_module, ivf_shape


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def sweep(path: Path, nlists: list[int], nprobes: list[int], n_queries: int) -> None:
    faiss = faiss_module()
    if faiss is None:
        raise SystemExit("ann_sweep needs faiss (the 'ann' extra)")
    faiss.omp_set_num_threads(torch.get_num_threads())
    x = F.normalize(load_embeddings(path).embeddings.float(), dim=1)
    n, d = x.shape
    q = torch.linspace(0, n - 1, min(n_queries, n)).round().long().unique()
    t0 = time.perf_counter()
    exact = topk_cosine(x[q], x, 10, q).numpy()
    print(f"{path.name}: {n:,} x {d}; fuse's shape here {ivf_shape(n)} (nlist, nprobe); exact search of "
          f"{len(q)} queries {time.perf_counter() - t0:.1f} s", flush=True)
    xs, qs = x.numpy(), x[q].numpy()
    for nlist in nlists:
        t0 = time.perf_counter()
        index = build_ivf(faiss, xs, 0, (nlist, nlist))
        build = time.perf_counter() - t0
        for nprobe in nprobes:
            index.nprobe = min(nprobe, nlist)
            t0 = time.perf_counter()
            _, found = index.search(qs, 11)
            seconds = time.perf_counter() - t0
            hits = sum(len(set(f[f != i][:10].tolist()) & set(e.tolist()))
                       for f, e, i in zip(found, exact, q.tolist(), strict=True))
            print(f"  nlist {nlist:>6} (train + add {build:5.0f} s)  nprobe {index.nprobe:>4}: recall@10 "
                  f"{hits / exact.size:.4f}; search of all {n:,} items ~{seconds * n / len(q) / 60:.1f} min",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("embeddings", type=Path, help="a uqf embeddings file (.st)")
    ap.add_argument("--nlist", type=ints, default=[2000, 8000], help="comma-separated cell counts")
    ap.add_argument("--nprobe", type=ints, default=[64, 128, 250], help="comma-separated probed-cell counts")
    ap.add_argument("--queries", type=int, default=2000)
    args = ap.parse_args()
    set_threads_from_env()
    sweep(args.embeddings, args.nlist, args.nprobe, args.queries)


if __name__ == "__main__":
    main()
