"""Peak memory and wall time of ``uqf quantize`` on a large synthetic embedding file (issue 8).

Writes ``--items`` (default 200,000) synthetic ``--dim``-d (default 384) clustered embeddings
(a two-level hierarchy: 1,024 top clusters, each with 16 sub-clusters, plus noise, then L2-normalised
like sentence embeddings) to a temporary ``.st`` file, runs the real CLI on it in a child process
under the default settings (``uqf quantize EMB -o sids.jsonl --json``), and prints the child's peak
resident memory (its ``ru_maxrss``, ``benchmarks.tools.peak_memory``), its wall and CPU time (CPU
time is the steadier figure on a shared machine), the size of the input matrix, and the
quantization statistics the command reported.

Why a child process: its ``ru_maxrss`` is the peak of the command alone, not of the generator in this
process. Run:
``UQF_THREADS=1 .venv/bin/python -m benchmarks.scale.quantize_memory`` (``--items 20000`` for a quick check;
extra arguments after ``--`` go to ``uqf quantize``, e.g. ``-- --method rqkmeans``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.tools.peak_memory import run_measured
from uqf_cli.files import make_provenance, save_embeddings


def synthetic_embeddings(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Clustered unit vectors: top-cluster centre + sub-cluster offset + item noise, normalised."""
    g = torch.Generator().manual_seed(seed)
    top = torch.randn(1024, dim, generator=g)
    sub = torch.randn(1024, 16, dim, generator=g) * 0.5
    t = torch.randint(1024, (n,), generator=g)
    s = torch.randint(16, (n,), generator=g)
    x = top[t] + sub[t, s]
    x += torch.randn(n, dim, generator=g) * 0.3
    return x / x.norm(dim=1, keepdim=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("extra", nargs="*", help="extra uqf quantize arguments (after --)")
    args = ap.parse_args()
    uqf = Path(sys.executable).with_name("uqf")
    with tempfile.TemporaryDirectory() as tmp:
        emb_path, out = Path(tmp) / "synthetic.st", Path(tmp) / "sids.jsonl"
        x = synthetic_embeddings(args.items, args.dim)
        save_embeddings(emb_path, x, [f"s{k}" for k in range(args.items)],
                        make_provenance("benchmark", {"items": args.items, "dim": args.dim}), "text")
        input_mb = x.numel() * 4 / 2**20
        del x
        cmd = [str(uqf), "quantize", str(emb_path), "-o", str(out), "--json", "--quiet", *args.extra]
        with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
            usage = run_measured(cmd, stdout=out_f, stderr=err_f, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            out_f.seek(0)
            err_f.seek(0)
            stdout, stderr = out_f.read(), err_f.read()
        wall, peak_mb, cpu = usage.wall_s, usage.peak_mib, usage.cpu_s
        if usage.returncode != 0:
            sys.exit(f"uqf quantize failed ({usage.returncode}): {stderr.strip()}")
        stats = json.loads(stdout)
        out_lines = sum(1 for _ in out.open()) - 1
    util = " / ".join(f"{lv['utilisation']:.1%}" for lv in stats["per_level"])
    print(f"command: {' '.join([*cmd[1:2], 'EMB.st', '-o', 'sids.jsonl', *cmd[5:]])}")
    print(f"threads: UQF_THREADS={os.environ.get('UQF_THREADS', '(torch default)')}, cpus {os.cpu_count()}")
    print(f"items {args.items:,} x dim {args.dim}: input matrix {input_mb:.0f} MiB")
    print(f"peak RSS of uqf quantize: {peak_mb:.0f} MiB ({peak_mb / input_mb:.2f} x the input matrix)")
    print(f"wall time: {wall:.1f} s, CPU time {cpu:.1f} s (fit on {stats['training'].get('fit_items', '?'):,} items)")
    print(f"utilisation L1..L{len(stats['per_level'])}: {util}; raw collisions {stats['raw_collision_rate']:.2%}; "
          f"final collisions {stats['final_collision_rate']:.2%}; recon rel {stats['recon_rel']:.1%}; "
          f"{out_lines:,} SIDs written")


if __name__ == "__main__":
    main()
