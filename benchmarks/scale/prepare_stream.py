"""Peak memory and time of `uqf prepare` on a synthetic Amazon 2023 review dump (default 5 million lines).

Writes ``--lines`` review lines (``Office_Products.jsonl.gz``, fields as in the real 2023 dumps: rating,
title, text, asin, parent_asin, user_id, timestamp, helpful_vote, verified_purchase) and the matching
``meta_Office_Products.jsonl.gz`` into ``--workdir`` (kept and reused by a rerun with the same size),
then runs `uqf prepare` on it in a child process and prints the child's peak resident memory (its
``ru_maxrss``, ``benchmarks.tools.peak_memory``) and wall time, with the prepared dataset's size. Users (lines / 5) and
items (lines / 40) are drawn with a popularity skew, so the 5-core keeps a sizeable dataset.

``--baseline-src DIR`` also runs the `uqf_cli` of another checkout (for instance the code before
streaming) on the same dump, for a before/after figure in one run.

    UQF_THREADS=1 .venv/bin/python -m benchmarks.scale.prepare_stream --workdir DIR
    UQF_THREADS=1 .venv/bin/python -m benchmarks.scale.prepare_stream --lines 200000   # a quick look
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.tools.peak_memory import run_measured

REVIEW = ('{{"rating": {rating}.0, "title": "Works as expected", "text": "Review {n}: the product arrived on time '
          'and does what it says; I would buy it again.", "images": [], "asin": "{asin}", "parent_asin": "{parent}", '
          '"user_id": "{user}", "timestamp": {ts}, "helpful_vote": {votes}, "verified_purchase": true}}\n')


def item_id(k: int) -> str:
    return f"B{k:09d}"


def write_dump(root: Path, lines: int, seed: int) -> Path:
    """The reviews and meta files for ``lines`` reviews; returns the directory holding both."""
    src = root / f"dump{lines}"
    if (src / "meta_Office_Products.jsonl.gz").is_file():
        return src
    tmp = root / f"dump{lines}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n_users, n_items = max(1, lines // 5), max(1, lines // 40)
    block = 500_000
    with gzip.open(tmp / "Office_Products.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as f:
        for start in range(0, lines, block):
            m = min(block, lines - start)
            users = np.minimum(rng.zipf(1.6, m) - 1 + rng.integers(0, n_users, m) // 4, n_users - 1)
            items = np.minimum(rng.zipf(1.4, m) - 1 + rng.integers(0, n_items, m) // 8, n_items - 1)
            ts = 1_500_000_000_000 + rng.integers(0, 200_000_000_000, m)
            rows = zip(users.tolist(), items.tolist(), ts.tolist(), strict=True)
            f.write("".join(REVIEW.format(rating=1 + n % 5, n=start + n, asin=item_id(i) + "V", parent=item_id(i),
                                          user=f"AG{u:026d}", ts=t, votes=n % 3) for n, (u, i, t) in enumerate(rows)))
    with gzip.open(tmp / "meta_Office_Products.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as f:
        for k in range(n_items):
            f.write(json.dumps({"main_category": "Office Products", "title": f"Gel pen set {k}, 12 colours",
                                "store": f"Store{k % 97}", "categories": ["Office Products", "Pens"],
                                "description": ["Smooth <b>ink</b> for everyday writing."],
                                "details": {"Brand": f"Brand{k % 31}"}, "parent_asin": item_id(k)}) + "\n")
    tmp.rename(src)
    return src


def run_prepare(src: Path, out: Path, code_root: Path) -> tuple[float, float, dict]:
    """`uqf prepare SRC -o OUT` from ``code_root``'s uqf_cli: (wall s, peak RSS MiB, dataset.json)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(code_root), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "uqf_cli", "prepare", str(src), "-o", str(out), "--force", "-q"]
    with tempfile.TemporaryFile("w+") as err:
        usage = run_measured(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=code_root)
        if usage.returncode != 0:
            err.seek(0)
            sys.exit(f"uqf prepare failed: {err.read()[-2000:]}")
    return usage.wall_s, usage.peak_mib, json.loads((out / "dataset.json").read_text())


def report(label: str, wall: float, peak: float, info: dict) -> None:
    cleaning = info.get("cleaning", {})
    print(f"{label}: {wall:.0f} s wall, peak RSS {peak:,.0f} MiB; read {cleaning.get('interactions_read', 0):,} "
          f"reviews -> {info.get('users', 0):,} users, {info.get('items', 0):,} items, "
          f"{info.get('interactions', 0):,} interactions after the 5-core", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="the dump is kept here and reused by a rerun")
    ap.add_argument("--baseline-src", type=Path, default=None, help="also run this checkout's uqf_cli")
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="uqf_prepare_stream_"))
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    t0 = time.perf_counter()
    src = write_dump(root, args.lines, args.seed)
    size = sum(p.stat().st_size for p in src.iterdir()) / 2**20
    print(f"dump: {args.lines:,} review lines, {size:,.0f} MiB gzip ({time.perf_counter() - t0:.0f} s) in {src}",
          flush=True)
    here = Path(__file__).resolve().parents[2]
    report("uqf prepare (this checkout)", *run_prepare(src, root / "ds", here))
    if args.baseline_src:
        baseline = args.baseline_src.resolve()
        report(f"uqf prepare ({baseline})", *run_prepare(src, root / "ds_baseline", baseline))


if __name__ == "__main__":
    main()
