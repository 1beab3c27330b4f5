"""Office text embeddings at 3 x 256: the issue-5 target table for the default and the alternatives, one run.

Target (issue 5): every level's utilisation >= 80% and raw collision rate (items sharing a full SID
before dedup) <= 2%, while keeping what SIDs are for: the relative reconstruction error and the
text-cosine lift of items sharing a level-1 code (``uqf inspect-sids --text``'s definition:
``(within - random) / (1 - random)``) are printed beside them.

Each row fits a quantizer with ``uqf_cli.quantize.quantize`` (the function behind ``uqf quantize``)
on the same file, writes its SIDs to a temporary directory, and reports utilisation per level,
perplexity per level, raw collisions, relative reconstruction error, the level-1 lift and the wall
seconds (the machine is shared: compare seconds within one run only).

Run: ``UQF_THREADS=1 .venv/bin/python benchmarks/quantize_office.py [--emb /work/notes/artifacts/office_text.st]``
(``--only default,rqkmeans`` for a subset).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from uqf_cli import io, runtime
from uqf_cli.inspect_sids import cosine_consistency
from uqf_cli.quantize import QuantizeConfig, quantize

CONFIGS: dict[str, dict] = {
    "default": {},
    "no-sinkhorn": {"sinkhorn_eps": None},  # the previous default: nearest code on every level
    "last-level-sinkhorn-0.003": {"sinkhorn_eps": 0.003, "sinkhorn_levels": "last"},  # LC-Rec style
    "all-levels-sinkhorn": {"sinkhorn_levels": "all"},
    "beta-0.05": {"beta": 0.05},
    "code-dim-16": {"code_dim": 16},
    "epochs-0": {"epochs": 0},
    "rqkmeans": {"method": "rqkmeans"},
    "rqkmeans-no-sinkhorn": {"method": "rqkmeans", "sinkhorn_eps": None},
    "batch-512": {"batch_size": 512},
    "batch-256": {"batch_size": 256},
    "batch-512-code-dim-64": {"batch_size": 512, "code_dim": 64},
    "batch-1024-epochs-300": {"batch_size": 1024, "epochs": 300},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--emb", default="/work/notes/artifacts/office_text.st")
    ap.add_argument("--only", default="", help="comma-separated config names")
    args = ap.parse_args()
    runtime.configure(quiet=True)
    runtime.set_threads_from_env()  # as the CLI does: UQF_THREADS=1 is much faster on a loaded 2-core box
    emb = io.load_embeddings(args.emb).embeddings
    names = [n for n in args.only.split(",") if n] or list(CONFIGS)
    header = (f"{'config':28s} {'util L1/L2/L3':22s} {'perplexity L1/L2/L3':20s} {'raw coll':>8s} "
              f"{'recon rel':>9s} {'lift@1':>6s} {'seconds':>7s}")
    print(f"{args.emb}: {emb.shape[0]} items x {emb.shape[1]}")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            cfg = QuantizeConfig(**CONFIGS[name])
            start = time.perf_counter()
            result = quantize(args.emb, Path(tmp) / f"{name}.jsonl", cfg, device="cpu")
            seconds = time.perf_counter() - start
            s = result.stats
            util = "/".join(f"{lv['utilisation']:.1%}" for lv in s["per_level"])
            perp = "/".join(f"{lv['perplexity']:.0f}" for lv in s["per_level"])
            lift = cosine_consistency(result.table.codes, emb, 1)["lift"]
            print(f"{name:28s} {util:22s} {perp:20s} {s['raw_collision_rate']:8.2%} {s['recon_rel']:9.1%} "
                  f"{lift:6.3f} {seconds:7.1f}", flush=True)


if __name__ == "__main__":
    main()
