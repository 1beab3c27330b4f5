"""The quick benchmarks (what ``make bench`` runs): each script's documented quick mode, outputs in a temp folder.

Only the scripts that need no prepared data and take under a minute each on a quiet CPU: synthetic
inputs (the memory and scale scripts) or the bundled Office catalogue and model (text embedding). Nothing
is written under ``benchmarks/results/``: each script's log and work files go to ``--out`` (default: a new
temporary folder). The figures of a quick mode are a smoke check that the script runs end to end, not a
measurement to quote.

    .venv/bin/python -m benchmarks.tools.quick [--out DIR] [--only quantize_memory,fuse_memory]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def quick_commands(out: Path) -> dict[str, list[str]]:
    """Name -> ``python -m`` arguments of each quick benchmark, its work files under ``out``."""
    return {
        "quantize_memory": ["benchmarks.scale.quantize_memory", "--items", "2000", "--", "--epochs", "10"],
        "fuse_memory": ["benchmarks.scale.fuse_memory", "--items", "2000", "--workdir", str(out / "fuse_memory")],
        "prepare_stream": ["benchmarks.scale.prepare_stream", "--lines", "20000",
                           "--workdir", str(out / "prepare_stream")],
        "ann_scale": ["benchmarks.scale.ann_scale", "--items", "3000", "--big-items", "0", "--ann-threshold", "1000",
                      "--recall-queries", "200", "--workdir", str(out / "ann_scale")],
        "embed_text_speed": ["benchmarks.speed.embed_text_speed", "--limit", "200", "--device", "cpu"],
    }


def child_env() -> dict[str, str]:
    """One thread unless told otherwise, offline models, and the repository root importable from any cwd."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"UQF_THREADS": "1", **os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}


def run_quick(out: Path, only: list[str] | None = None) -> dict[str, int]:
    """Run the chosen quick benchmarks one after the other; print each one's exit code and wall time."""
    commands = quick_commands(out)
    unknown = sorted(set(only or []) - set(commands))
    if unknown:
        raise SystemExit(f"error: --only: unknown benchmark(s) {', '.join(unknown)} (known: {', '.join(commands)})")
    codes = {}
    for name, argv in commands.items():
        if only and name not in only:
            continue
        log = out / f"{name}.log"
        start = time.perf_counter()
        with open(log, "w", encoding="utf-8") as f:
            codes[name] = subprocess.call([sys.executable, "-m", *argv], stdout=f, stderr=subprocess.STDOUT,
                                          env=child_env())
        status = "ok" if codes[name] == 0 else f"FAILED (exit {codes[name]})"
        print(f"{name:18s} {status:18s} {time.perf_counter() - start:6.1f} s  {log}", flush=True)
    return codes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="logs and work files (default: a new temp folder)")
    ap.add_argument("--only", default=None, help="comma-separated names to run (default: all)")
    args = ap.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="uqf_bench_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"quick benchmarks, logs and work files in {out}", flush=True)
    codes = run_quick(out, args.only.split(",") if args.only else None)
    return 1 if any(codes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
