"""Office text embeddings at 3 x 256: the issue-5 target table for the default and the alternatives, over seeds.

Target (issue 5): every level's utilisation >= 80% and raw collision rate (items sharing a full SID
before dedup) <= 2%, while keeping what SIDs are for: the relative reconstruction error and the
text-cosine lift of items sharing a level-1 code (``uqf inspect-sids --text``'s definition:
``(within - random) / (1 - random)``) are printed beside them.

Each row fits a quantizer with ``uqf_cli.quantize.quantize`` (the function behind ``uqf quantize``)
on the same file, writes its SIDs to a temporary directory, and reports utilisation per level,
raw collisions, relative reconstruction error, the level-1 lift and the wall seconds (the machine
may be shared: compare seconds within one run only).

Run: ``UQF_THREADS=1 .venv/bin/python -m benchmarks.quality.quantize_office --emb office_text.st``, where
``office_text.st`` is ``uqf prepare builtin:office -o office && uqf embed-text office -o office_text.st``
(``--only default,rqkmeans`` for a subset; ``--seeds 0,1,2,3`` fits every row once per seed and adds
a mean / min / max line: the raw collision rate moves by a few points between seeds).

Two more tables explain the figures rather than tune them:

* **where the collisions are** (first config, first seed): all item pairs bucketed by the cosine
  of their text embeddings, with the number of pairs and the share of them that got the same full
  SID; and, per bucket, the share of items whose nearest text neighbour lies in it. A quantizer
  that groups similar items cannot split pairs closer than its finest cells, so the items with
  a near-identical neighbour set a floor that no setting of the same shape removes.
* **a peer's tokenization** (``--peer-index``, default LETTER's published Instruments index): the
  share of items sharing their first ``d`` codes for every depth ``d`` (``uqf inspect-sids``'s
  ``shared`` figure), i.e. the raw collision rate that tokenization has at 3 levels.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from uqf_cli.core.runtime import configure, set_threads_from_env
from uqf_cli.evaluation.inspect_sids import cosine_consistency, items_per_prefix
from uqf_cli.files import load_embeddings, read_sids
from uqf_cli.quantize import QuantizeConfig, quantize

COSINE_EDGES = (1.0001, 0.999, 0.99, 0.98, 0.95, 0.9, -math.inf)  # bucket b holds cosines in [edge b+1, edge b)
DEFAULT_PEER = Path(__file__).resolve().parents[3] / "shared/data/amazon-instruments/Instruments.index.json"

CONFIGS: dict[str, dict] = {
    "default": {},
    "no-sinkhorn": {"sinkhorn_eps": None},  # the previous default: nearest code on every level
    "last-level-sinkhorn-0.003": {"sinkhorn_eps": 0.003, "sinkhorn_levels": "last"},  # LC-Rec style
    "all-levels-sinkhorn": {"sinkhorn_levels": "all"},
    "beta-0.05": {"beta": 0.05},
    "code-dim-8": {"code_dim": 8},
    "code-dim-4-epochs-300": {"code_dim": 4, "epochs": 300},  # the low-collision recipe in docs/quantize.md
    "code-dim-6-epochs-300": {"code_dim": 6, "epochs": 300},
    "code-dim-16": {"code_dim": 16},
    "levels-4": {"levels": 4, "codebook_sizes": [256, 256, 256, 256]},  # not the target's shape: for comparison
    "epochs-0": {"epochs": 0},
    "rqkmeans": {"method": "rqkmeans"},
    "rqkmeans-no-sinkhorn": {"method": "rqkmeans", "sinkhorn_eps": None},
    "batch-512": {"batch_size": 512},
    "batch-256": {"batch_size": 256},
    "batch-512-code-dim-64": {"batch_size": 512, "code_dim": 64},
    "batch-1024-epochs-300": {"batch_size": 1024, "epochs": 300},
}


def collisions_by_cosine(codes: np.ndarray, emb: torch.Tensor) -> list[dict[str, float]]:
    """Pairs bucketed by text cosine: how many, how many share the full SID, and items whose nearest
    neighbour falls in the bucket. Exact over all ``N(N-1)/2`` pairs (2,420 items: 2.9 M pairs); the
    dense ``N x N`` similarity makes it quadratic in memory, fine for a catalogue of Office's size."""
    u = torch.nn.functional.normalize(emb.double(), dim=1)
    sim = u @ u.T
    iu = torch.triu_indices(len(u), len(u), offset=1)
    cos = sim[iu[0], iu[1]].numpy()
    c = torch.as_tensor(codes)
    same = (c[iu[0]] == c[iu[1]]).all(1).numpy()
    sim.fill_diagonal_(-2.0)
    nearest = sim.max(1).values.numpy()
    rows = []
    for hi, lo in itertools.pairwise(COSINE_EDGES):
        in_bucket = (cos >= lo) & (cos < hi)
        rows.append({"from": lo, "to": min(hi, 1.0), "pairs": int(in_bucket.sum()),
                     "same_sid": float(same[in_bucket].mean()) if in_bucket.any() else float("nan"),
                     "items_nearest_here": float(((nearest >= lo) & (nearest < hi)).mean())})
    return rows


def print_collision_table(name: str, codes: np.ndarray, emb: torch.Tensor) -> None:
    print(f"\nwhere the collisions are ({name}): item pairs by text cosine")
    print(f"{'cosine':>15s} {'pairs':>9s} {'same SID':>9s} {'items whose nearest neighbour is here':>38s}")
    for r in collisions_by_cosine(codes, emb):
        span = f"[{r['from']:.3f}, {r['to']:.3f}" + ("]" if r["to"] >= 1.0 else ")")
        if r["from"] == -math.inf:  # the open bottom bucket
            span = f"< {r['to']:.3f}"
        print(f"{span:>15s} {r['pairs']:9d} {r['same_sid']:9.1%} {r['items_nearest_here']:38.1%}")


def print_peer(path: Path) -> None:
    if not path.exists():
        print(f"\n(peer index {path} not found: skipped)")
        return
    table = read_sids(path)
    print(f"\npeer tokenization {path.name}: {len(table.item_ids)} items, {table.levels} levels "
          f"({','.join(map(str, table.codebook_sizes))})")
    for d in range(1, table.levels + 1):
        print(f"  items sharing their first {d} code(s): {items_per_prefix(table.codes, d)['shared']:.2%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--emb", required=True, help="uqf embed-text output for Office (see the module docstring)")
    ap.add_argument("--only", default="", help="comma-separated config names")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds; each row is fitted once per seed")
    ap.add_argument("--peer-index", type=Path, default=DEFAULT_PEER, help="an LC-Rec/LETTER index.json")
    args = ap.parse_args()
    configure(quiet=True)
    set_threads_from_env()  # as the CLI does: UQF_THREADS=1 is much faster on a loaded 2-core box
    emb = load_embeddings(args.emb).embeddings
    names = [n for n in args.only.split(",") if n] or list(CONFIGS)
    seeds = [int(x) for x in args.seeds.split(",")]
    header = (f"{'config':28s} {'seed':>4s} {'util per level':28s} {'raw coll':>8s} "
              f"{'recon rel':>9s} {'lift@1':>6s} {'seconds':>7s}")
    print(f"{args.emb}: {emb.shape[0]} items x {emb.shape[1]}; torch threads {torch.get_num_threads()}")
    print(header)
    first_codes = None
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rates = []
            for seed in seeds:
                cfg = QuantizeConfig(**{"codebook_sizes": [256, 256, 256], **CONFIGS[name]}, seed=seed)
                start = time.perf_counter()
                result = quantize(args.emb, Path(tmp) / f"{name}-{seed}.jsonl", cfg, device="cpu")
                seconds = time.perf_counter() - start
                s = result.stats
                util = "/".join(f"{lv['utilisation']:.1%}" for lv in s["per_level"])
                lift = cosine_consistency(result.table.codes, emb, 1)["lift"]
                rates.append(s["raw_collision_rate"])
                print(f"{name:28s} {seed:4d} {util:28s} {s['raw_collision_rate']:8.2%} {s['recon_rel']:9.1%} "
                      f"{lift:6.3f} {seconds:7.1f}", flush=True)
                if first_codes is None:
                    first_codes = (f"{name}, seed {seed}", result.table.codes[:, : cfg.levels])
            if len(seeds) > 1:
                print(f"{name:28s} {'all':>4s} {'raw collisions mean / min / max':28s} {statistics.mean(rates):8.2%} "
                      f"{min(rates):.2%} / {max(rates):.2%}", flush=True)
    if first_codes is not None:
        print_collision_table(first_codes[0], first_codes[1], emb)
    print_peer(args.peer_index)


if __name__ == "__main__":
    main()
