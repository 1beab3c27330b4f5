"""Peak memory and time of `uqf fuse` on a large synthetic catalogue (default 200k items, text 384-d, collab 64-d).

What it checks: that fuse runs in memory bounded by the inputs, not by N^2 (neighbour search is blocked,
co-occurrence is sparse, inference is batched). The inputs are written once (random unit vectors,
sequences of 5-10 items drawn with a popularity skew), then `uqf fuse` runs in a child process; its peak
resident memory is the child's ``ru_maxrss`` (``benchmarks.tools.peak_memory``; the generator is not
counted). Training uses few epochs (``--epochs``, default 1) to keep the run short:
the memory peak does not depend on the epoch count.

    .venv/bin/python -m benchmarks.scale.fuse_memory                 # 200k items
    .venv/bin/python -m benchmarks.scale.fuse_memory --items 50000   # a quicker look

It prints the input sizes, the peak RSS, the wall time and the ratio peak / (size of the input embedding
files), plus what one dense N x N float32 similarity matrix would take, for comparison.
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

from benchmarks.tools.peak_memory import run_measured
from uqf_cli.files import save_embeddings, write_dataset_dir


def make_inputs(root: Path, n_items: int, n_users: int, seed: int) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(seed)
    ids = [f"i{k}" for k in range(n_items)]
    items = {iid: {"title": f"item {iid}"} for iid in ids}
    pop = rng.zipf(1.3, size=n_items).astype(np.float64)
    pop /= pop.sum()
    lengths = rng.integers(5, 11, size=n_users)
    drawn = rng.choice(n_items, size=int(lengths.sum()), p=pop)
    seqs, at = {}, 0
    for u, n in enumerate(lengths.tolist()):
        seqs[f"u{u}"] = [ids[j] for j in drawn[at:at + n]]
        at += n
    ds = write_dataset_dir(root / "ds", items, seqs, {"source": "synthetic-200k"})
    fp = json.loads((ds / "dataset.json").read_text())["fingerprint"]
    g = torch.Generator().manual_seed(seed)
    text = torch.nn.functional.normalize(torch.randn(n_items, 384, generator=g), dim=1)
    save_embeddings(root / "text.st", text, ids, {"stage": "synthetic"}, "text", fp)
    del text
    collab = torch.randn(n_items, 64, generator=g)
    save_embeddings(root / "collab.st", collab, ids, {"stage": "synthetic"}, "collab", fp)
    return ds, root / "text.st", root / "collab.st"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=None, help="default: as many users as items")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="uqf_fuse_mem_"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ds, text, collab = make_inputs(root, args.items, args.users or args.items, args.seed)
    print(f"inputs: {args.items:,} items written in {time.perf_counter() - t0:.0f} s to {root}", flush=True)
    uqf = Path(sys.executable).with_name("uqf")
    cmd = [str(uqf), "fuse", "--text", str(text), "--collab", str(collab), "--dataset", str(ds),
           "-o", str(root / "fused.st"), "--epochs", str(args.epochs), "--device", "cpu", "--force", "--json"]
    out_path, err_path = root / "fuse.stdout", root / "fuse.stderr"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        usage = run_measured(cmd, stdout=out, stderr=err, env={**os.environ, "HF_HUB_OFFLINE": "1"}, watch="fuse")
    wall, peak_mib = usage.wall_s, usage.peak_mib
    if usage.returncode != 0:
        print(err_path.read_text(), file=sys.stderr)
        raise SystemExit(f"fuse failed with exit code {usage.returncode}")
    inputs_mib = (text.stat().st_size + collab.stat().st_size) / 2**20
    dense_gib = args.items**2 * 4 / 2**30
    result = json.loads(out_path.read_text())
    print(f"fuse ({args.epochs} epoch(s), cpu, {torch.get_num_threads()} threads): {wall:.0f} s wall")
    print(f"peak RSS of the fuse process: {peak_mib:,.0f} MiB; input embedding files {inputs_mib:,.0f} MiB "
          f"(ratio {peak_mib / inputs_mib:.1f}x); one dense N x N float32 matrix would be {dense_gib:,.0f} GiB")
    print("overlap@10:", json.dumps(result.get("overlap", {})))


if __name__ == "__main__":
    main()
