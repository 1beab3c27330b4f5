"""What one LC-Rec epoch over a dataset costs here, and what a run you can afford scores.

Trains the lcrec backbone (default base: the embedded SmolLM2-135M-Instruct GGUF) for ``--steps``
optimizer steps over the full sequential training set, takes the median step time (first step left
out), and extrapolates to one epoch (``ceil(samples / batch)`` steps). Then loads the saved model
through the public API (``lcrec.load(...).recommend(...)``) and scores a seeded random subset of
test users (Recall@10 / NDCG@10, one target per user, full ranking over all items by constrained
beam search), beside the popularity baseline on the same users.

Run (Office; ``--sids`` any uqf SIDs file or LC-Rec index.json):

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.speed.lcrec_epoch_cost runs/lcrec/office \\
        --sids office_text_sids.jsonl --steps 30 --batch-size 8 --eval-users 200 \\
        --out benchmarks/results/lcrec_office_cpu.json

Without ``--sids`` the script builds *index SIDs* (3 levels from the item's row number: no
semantics at all). They cost the same per step (same number of tokens) but their quality numbers
mean nothing; the JSON says which SIDs were used.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, read_sids, to_json
from uqf_cli.rec import lcrec
from uqf_cli.rec.lcrec.options import LcRecOptions


def index_sids(ds: Dataset) -> SidTable:
    """3-level SIDs from the row number (16 x 16 x 16 grid): same token count as real SIDs, no meaning."""
    n = len(ds.item_ids)
    codes = np.array([[i // 256, (i // 16) % 16, i % 16] for i in range(n)], dtype=np.int64)
    return SidTable(list(ds.item_ids), codes, [int(codes[:, 0].max()) + 1, 16, 16])


def recall_ndcg(ranked: list[list[str]], targets: list[str], k: int) -> tuple[float, float]:
    hits, gains = 0.0, 0.0
    for row, t in zip(ranked, targets, strict=True):
        top = row[:k]
        if t in top:
            hits += 1
            gains += 1.0 / math.log2(top.index(t) + 2)
    return hits / len(targets), gains / len(targets)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--sids", type=Path, default=None)
    ap.add_argument("--base-model", default=None)
    ap.add_argument("--steps", type=int, default=30)
    defaults = LcRecOptions()  # uqf train-rec --backbone lcrec's own
    ap.add_argument("--batch-size", type=int, default=defaults.batch_size)
    ap.add_argument("--max-history", type=int, default=defaults.max_history)
    ap.add_argument("--lr", type=float, default=defaults.lr)
    ap.add_argument("--eval-users", type=int, default=200)
    ap.add_argument("--beam", type=int, default=defaults.eval_beam)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    ds = Dataset.load(args.dataset)
    sids = read_sids(args.sids) if args.sids else index_sids(ds)
    opts = {"base_model": args.base_model, "max_steps": args.steps, "batch_size": args.batch_size,
            "max_history": args.max_history, "lr": args.lr, "seed": args.seed, "device": args.device}
    with tempfile.TemporaryDirectory(prefix="lcrec-bench-") as tmp:
        model_dir = Path(tmp) / "model"
        summary = lcrec.train(ds, sids, model_dir, opts)
        epoch_steps = summary["steps_per_epoch"]
        per_step = summary["seconds_per_step"]
        rec = lcrec.load(model_dir, args.device)
        cases = ds.eval_cases("test")
        cases = random.Random(args.seed).sample(cases, min(args.eval_users, len(cases)))
        t0 = time.perf_counter()
        ranked = rec.recommend([c.history for c in cases], k=20, beam_size=args.beam)
        decode_s = time.perf_counter() - t0
    targets = [c.target for c in cases]
    popular = [i for i, _ in Counter(i for s in ds.train_sequences().values() for i in s).most_common(20)]
    result = {
        "dataset": str(args.dataset),
        "sids": str(args.sids) if args.sids else "index SIDs (no semantics; cost only)",
        "base_model": summary["base_model"],
        "device": summary["device"],
        "training_samples": summary["examples"],
        "batch_size": args.batch_size,
        "measured_steps": summary["steps"],
        "seconds_per_step": per_step,
        "steps_per_epoch": epoch_steps,
        "epoch_hours_extrapolated": per_step * epoch_steps / 3600 if per_step else None,
        "cpu_seconds_per_step": summary.get("cpu_seconds_per_step"),
        "epoch_cpu_hours_extrapolated": (summary["cpu_seconds_per_step"] * epoch_steps / 3600
                                         if summary.get("cpu_seconds_per_step") else None),
        "torch_threads": torch.get_num_threads(),
        "train_loss": summary["train_loss"],
        "train_seconds_total_incl_load": summary["seconds"],
        "eval_users": len(cases),
        "beam": args.beam,
        "decode_users_per_s": len(cases) / decode_s,
        "budget": f"{summary['steps']} steps x batch {args.batch_size} = {summary['steps'] * args.batch_size} "
                  f"of {summary['examples']} samples ({summary['steps'] / epoch_steps:.2%} of one epoch)",
    }
    for k in (10, 20):
        r, n = recall_ndcg(ranked, targets, k)
        pr, pn = recall_ndcg([popular] * len(targets), targets, k)
        result[f"recall@{k}"], result[f"ndcg@{k}"] = r, n
        result[f"popularity_recall@{k}"], result[f"popularity_ndcg@{k}"] = pr, pn
    text = to_json(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
