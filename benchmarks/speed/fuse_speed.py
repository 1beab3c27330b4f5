"""Speed and neighbourhood-preservation check of ``uqf fuse`` on real files (Office by default).

    .venv/bin/python -m benchmarks.speed.fuse_speed --text T.st --collab C.st --dataset DS [--threads 2] [--epochs N]

Runs the default UQF fit once, in this process, with ``torch.set_num_threads(threads)``, and prints:
wall seconds, process CPU seconds (user + sys; on a shared box the CPU time divided by the thread count
is the better estimate of what an idle machine would need), the ratio of each to the 60 s target, and
the overlap@10 table (uqf next to concat, text and collab, all computed in the same run).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from uqf_cli.fuse import FuseOptions, fuse

TARGET_S = 60.0


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text", required=True)
    ap.add_argument("--collab", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="override the default epochs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    opts = FuseOptions(device="cpu")
    if args.epochs:
        opts.epochs = args.epochs
    with tempfile.TemporaryDirectory() as tmp:
        wall0, cpu0 = time.perf_counter(), _cpu_seconds()
        result = fuse(args.text, args.collab, args.dataset, Path(tmp) / "u.st", opts)
        wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    print(f"items {result.items} (cold {result.cold_items}), epochs {opts.epochs}, threads {args.threads}")
    print(f"wall {wall:.1f}s  (ratio to {TARGET_S:.0f}s target: {wall / TARGET_S:.2f})")
    print(f"cpu  {cpu:.1f}s  cpu/threads {cpu / args.threads:.1f}s (ratio: {cpu / args.threads / TARGET_S:.2f})")
    print(f"{'space':<8} {'text':>7} {'collab':>7} {'cooc':>7}")
    for name, row in result.overlap.items():
        cells = [f"{row[c]:.3f}" if row[c] is not None else "-" for c in ("text", "collab", "cooc")]
        print(f"{name:<8} {cells[0]:>7} {cells[1]:>7} {cells[2]:>7}")
    print(f"gate {result.gate}")


if __name__ == "__main__":
    main()
