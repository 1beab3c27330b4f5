"""Approximate neighbours at scale: recall@10 against exact search and `uqf fuse` wall time at 200k items,
then `uqf fuse` + `uqf quantize` peak memory and time at 1M items (384-d text, 64-d collab).

Synthetic catalogue (written once per size into ``--workdir``): item texts are clustered like sentence
embeddings (a top cluster, one of 16 sub-clusters, noise 0.6, L2-normalised), collaborative vectors are
clustered the same way in 64-d with more noise (1.0: the harder search), and each user draws 5-10 items
of one collaborative cluster (so co-occurrence is meaningful). Uniform random vectors are avoided on
purpose: in 384-d their nearest neighbours are barely nearer than any other item, which no approximate
index (nor a real catalogue) resembles.

1. ``--items`` (default 200,000): the neighbour search fuse runs above ``--ann-threshold`` (faiss IVF,
   the same index and seed) for ``--recall-queries`` evenly spaced query items, text and collab,
   against exact search for the same queries: recall@10. Then `uqf fuse` (UQF, one epoch) in a child
   process: wall time and peak resident memory (the child's ``ru_maxrss``, ``benchmarks.tools.peak_memory``).
2. ``--big-items`` (default 1,000,000; 0 skips): `uqf fuse` then `uqf quantize` on the fused output,
   each in its own child process: wall time and peak resident memory of each.

``--recall-only`` prints recall@10 at each size and skips fuse and quantize.

    UQF_THREADS=1 .venv/bin/python -m benchmarks.scale.ann_scale --workdir DIR
    UQF_THREADS=1 .venv/bin/python -m benchmarks.scale.ann_scale \
        --items 20000 --big-items 0 --ann-threshold 5000  # quick
    UQF_THREADS=2 .venv/bin/python -m benchmarks.scale.ann_scale --items 0 --recall-only --workdir DIR  # recall at 1M
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.tools.peak_memory import run_measured
from uqf_cli.core.runtime import set_threads_from_env
from uqf_cli.files import load_embeddings, save_embeddings, write_dataset_dir
from uqf_cli.fuse import topk_cosine
from uqf_cli.fuse.ann import faiss_module, ivf_topk


def clustered(n: int, dim: int, n_top: int, g: torch.Generator, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(unit rows, top-cluster labels)``: top centre + one of 16 sub-cluster offsets + item noise."""
    top = torch.randn(n_top, dim, generator=g)
    sub = torch.randn(n_top, 16, dim, generator=g) * 0.5
    t = torch.randint(n_top, (n,), generator=g)
    x = top[t] + sub[t, torch.randint(16, (n,), generator=g)]
    x += torch.randn(n, dim, generator=g) * noise
    return F.normalize(x, dim=1), t


def make_inputs(root: Path, n_items: int, seed: int) -> tuple[Path, Path, Path]:
    """Write (dataset dir, text.st, collab.st) for ``n_items`` items and as many users."""
    root.mkdir(parents=True, exist_ok=True)
    if (root / "collab.st").is_file():  # written by an earlier run with the same size
        return root / "ds", root / "text.st", root / "collab.st"
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    ids = [f"i{k}" for k in range(n_items)]
    collab, groups = clustered(n_items, 64, max(1, n_items // 100), g, noise=1.0)
    order = np.argsort(groups.numpy(), kind="stable")
    counts = np.bincount(groups.numpy(), minlength=max(1, n_items // 100))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    user_group = rng.choice(np.nonzero(counts)[0], size=n_items)
    lengths = rng.integers(5, 11, size=n_items)
    seqs = {}
    for u, (grp, n) in enumerate(zip(user_group.tolist(), lengths.tolist(), strict=True)):
        members = order[starts[grp] + rng.integers(0, counts[grp], size=n)]
        seqs[f"u{u}"] = [ids[j] for j in members.tolist()]
    ds = write_dataset_dir(root / "ds", {iid: {"title": f"item {iid}"} for iid in ids}, seqs,
                           {"source": f"synthetic-{n_items}"})
    del seqs
    fp = json.loads((ds / "dataset.json").read_text())["fingerprint"]
    save_embeddings(root / "collab.st.tmp", collab, ids, {"stage": "synthetic"}, "collab", fp)
    text, _ = clustered(n_items, 384, max(1, n_items // 200), g, noise=0.6)
    save_embeddings(root / "text.st", text, ids, {"stage": "synthetic"}, "text", fp)
    (root / "collab.st.tmp").rename(root / "collab.st")
    return ds, root / "text.st", root / "collab.st"


def recall_at_10(x: torch.Tensor, n_queries: int, threshold: int) -> tuple[float, float, float]:
    """``(recall@10, approximate seconds, exact seconds)`` for evenly spaced queries, self excluded.

    The index is the one fuse's whole-catalogue search builds (same bank, same seed; each query's answer
    does not depend on the others), queried for the sample only: ``nearest`` itself would search so few
    queries exactly."""
    q = torch.linspace(0, len(x) - 1, min(n_queries, len(x))).round().long().unique()
    faiss = faiss_module()
    approximate = faiss is not None and len(x) >= threshold
    t0 = time.perf_counter()
    found = ivf_topk(faiss, x[q], x, 10, q, 0) if approximate else topk_cosine(x[q], x, 10, q)
    t1 = time.perf_counter()
    exact = topk_cosine(x[q], x, 10, q)
    t2 = time.perf_counter()
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, exact, strict=True))
    return hits / exact.numel(), t1 - t0, t2 - t1


def run_child(args: list[str], log: Path) -> tuple[float, float, str]:
    """Run ``python -m uqf_cli ARGS`` (wall seconds, peak RSS MiB of that child alone, stdout)."""
    cmd = [sys.executable, "-m", "uqf_cli", *args]
    with open(log, "w") as err, tempfile.TemporaryFile("w+") as out:
        usage = run_measured(cmd, stdout=out, stderr=err, env={**os.environ, "HF_HUB_OFFLINE": "1"}, watch=args[0])
        out.seek(0)
        stdout = out.read()
    if usage.returncode != 0:
        sys.exit(f"uqf {args[0]} failed ({usage.returncode}): {log.read_text()[-2000:]}")
    return usage.wall_s, usage.peak_mib, stdout


def fuse_args(root: Path, ds: Path, text: Path, collab: Path, threshold: int, epochs: int) -> list[str]:
    return ["fuse", "--text", str(text), "--collab", str(collab), "--dataset", str(ds), "-o", str(root / "fused.st"),
            "--epochs", str(epochs), "--ann-threshold", str(threshold), "--device", "cpu", "--force", "--json"]


def scale_run(root: Path, n: int, args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    ds, text, collab = make_inputs(root, n, args.seed)
    print(f"[{n:,} items] inputs ready in {time.perf_counter() - t0:.0f} s ({root})", flush=True)
    print_recall(n, text, collab, args)
    if args.recall_only:
        return
    wall, peak, out = run_child(fuse_args(root, ds, text, collab, args.ann_threshold, args.epochs), root / "fuse.log")
    overlap = json.loads(out).get("overlap", {}).get("uqf", {})
    print(f"[{n:,} items] uqf fuse (UQF, {args.epochs} epoch): {wall:.0f} s wall, peak RSS {peak:,.0f} MiB; "
          f"uqf overlap@10 {json.dumps(overlap)}", flush=True)


def print_recall(n: int, text: Path, collab: Path, args: argparse.Namespace) -> None:
    if n < args.ann_threshold:
        print(f"note: {n:,} items < --ann-threshold {args.ann_threshold:,}: fuse searches exactly", flush=True)
    for name, path in (("text", text), ("collab", collab)):
        emb = load_embeddings(path).embeddings.float()
        rec, t_ann, t_exact = recall_at_10(F.normalize(emb, dim=1), args.recall_queries, args.ann_threshold)
        print(f"[{n:,} items] {name} ({emb.shape[1]}-d) neighbour recall@10 vs exact: {rec:.4f} "
              f"({args.recall_queries} queries; index + search {t_ann:.1f} s, exact {t_exact:.1f} s)", flush=True)
        del emb


def big_run(root: Path, n: int, args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    ds, text, collab = make_inputs(root, n, args.seed)
    print(f"[{n:,} items] inputs ready in {time.perf_counter() - t0:.0f} s ({root})", flush=True)
    if args.recall_only:
        print_recall(n, text, collab, args)
        return
    wall, peak, _ = run_child(fuse_args(root, ds, text, collab, args.ann_threshold, args.epochs), root / "fuse.log")
    print(f"[{n:,} items] uqf fuse (UQF, {args.epochs} epoch): {wall:.0f} s wall, peak RSS {peak:,.0f} MiB", flush=True)
    q_wall, q_peak, out = run_child(["quantize", str(root / "fused.st"), "-o", str(root / "sids.jsonl"), "--force",
                                     "--json", "--quiet"], root / "quantize.log")
    stats = json.loads(out)
    print(f"[{n:,} items] uqf quantize: {q_wall:.0f} s wall, peak RSS {q_peak:,.0f} MiB; raw collisions "
          f"{stats['raw_collision_rate']:.2%}", flush=True)
    print(f"[{n:,} items] fuse + quantize: {wall + q_wall:.0f} s, peak RSS {max(peak, q_peak):,.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200_000, help="recall and fuse wall time at this size (0 skips)")
    ap.add_argument("--big-items", type=int, default=1_000_000, help="fuse + quantize memory at this size (0 skips)")
    ap.add_argument("--recall-queries", type=int, default=2000)
    ap.add_argument("--ann-threshold", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recall-only", action="store_true", help="only recall@10 at each size (no fuse, no quantize)")
    ap.add_argument("--workdir", type=Path, default=None, help="inputs are kept here and reused by a rerun")
    args = ap.parse_args()
    set_threads_from_env()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="uqf_ann_scale_"))
    print(f"threads: UQF_THREADS={os.environ.get('UQF_THREADS', '(torch default)')}, torch "
          f"{torch.get_num_threads()}, cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.items:
        scale_run(root / f"n{args.items}", args.items, args)
    if args.big_items:
        big_run(root / f"n{args.big_items}", args.big_items, args)


if __name__ == "__main__":
    main()
