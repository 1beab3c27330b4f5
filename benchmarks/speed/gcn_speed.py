"""Speed and quality of ``uqf train-gcn`` against the PyG LightGCN yardstick, measured in one run.

The yardstick is ``../shared/refs/lightgcn_pyg_ref.py`` (``--yardstick``; paths are relative to the
repository), PyG's own example loop: ``LightGCN.forward`` over the whole edge list for every batch of
2,048 triples, lr 1e-3. On Office it reaches valid Recall@20 0.0773 at epoch 200 (its 300-epoch log), so
its time to that quality is 200 x its per-epoch time. This script

1. runs the yardstick for a few epochs (default 20) and reads its steady per-epoch time from its own
   log lines (epochs 11-20, one of its evaluations included, as in its 200-epoch time);
2. trains our LightGCN with the defaults of ``uqf train-gcn`` and notes the wall time at which valid
   Recall@20 first reaches the target (graph building and every evaluation included);
3. runs the yardstick again (``--no-bracket`` to skip) because the machine is shared and its load
   drifts; the mean of the two per-epoch times is used;
4. prints both times and their ratio (target: ours <= 1/5 of the yardstick's).

Both sides use the same number of CPU threads (``--threads``, default 1: on a loaded 2-core machine
two OpenMP threads per process are much slower than one).

``--scale DIR`` instead trains on a dataset that ``uqf prepare`` cannot read (an LC-Rec
``*.inter.json`` without an item file, e.g. amazon-instruments), with placeholder items, and reports
wall time and peak memory.

Run: ``.venv/bin/python -m benchmarks.speed.gcn_speed`` (Office) or
``.venv/bin/python -m benchmarks.speed.gcn_speed --scale ../shared/data/amazon-instruments``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from uqf_cli.collab import EvalRecord, GcnConfig, train_lightgcn
from uqf_cli.data.dataset import Dataset

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
OFFICE = SHARED / "data" / "amazon-office"
YARDSTICK = SHARED / "refs" / "lightgcn_pyg_ref.py"
YARDSTICK_EPOCHS_TO_TARGET = 200  # from lightgcn_pyg_ref_office_300.log: 0.0773 first at epoch 200
EPOCH_LINE = re.compile(r"epoch (\d+) recall@20 ([0-9.]+) time ([0-9.]+)s")


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_yardstick(yardstick: Path, inter_json: Path, epochs: int, threads: int) -> dict[str, float]:
    """Run the yardstick; per-epoch time from the last ten epochs it logs (steady state)."""
    cmd = [sys.executable, str(yardstick), str(inter_json), str(epochs)]
    print(f"yardstick: {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=thread_env(threads), check=True)
    marks = [(int(m[1]), float(m[2]), float(m[3])) for m in EPOCH_LINE.finditer(proc.stdout)]
    if len(marks) >= 2:
        (e0, _, t0), (e1, _, t1) = marks[-2], marks[-1]
        per_epoch = (t1 - t0) / (e1 - e0)
    else:
        e1, _, t1 = marks[-1]
        per_epoch = t1 / e1
    print(f"  {proc.stdout.strip().splitlines()[-1]}  -> {per_epoch:.3f} s/epoch", flush=True)
    return {"seconds_per_epoch": per_epoch, "recall_at_last_log": marks[-1][1]}


def train_ours(ds: Dataset, cfg: GcnConfig, target: float) -> dict[str, object]:
    reached: dict[str, float] = {}

    def on_eval(rec: EvalRecord, is_best: bool) -> None:
        if rec.recall is not None and rec.recall >= target and not reached:
            reached.update(epoch=rec.epoch, seconds=rec.seconds, recall=rec.recall)
        print(f"  ours epoch {rec.epoch:4d} loss {rec.loss:.4f} recall@20 {rec.recall:.4f} "
              f"ndcg@20 {rec.ndcg:.4f} {rec.seconds:7.1f}s{'  best' if is_best else ''}", flush=True)

    res = train_lightgcn(ds, cfg, on_eval=on_eval)
    return {"reached": reached, "metrics": res.metrics, "best_epoch": res.best_epoch,
            "epochs_run": res.epochs_run, "total_seconds": res.train_seconds}


def office_benchmark(args: argparse.Namespace, cfg: GcnConfig) -> dict[str, object]:
    ds_dir = args.dataset_dir
    if ds_dir is None:
        ds_dir = Path(tempfile.mkdtemp(prefix="gcn_speed_")) / "office"
        subprocess.run([str(Path(sys.executable).parent / "uqf"), "prepare", str(args.source), "-o", str(ds_dir),
                        "-q"], check=True)
    inter_json = next(Path(args.source).glob("*.inter.json"))
    before = run_yardstick(args.yardstick, inter_json, args.yardstick_epochs, args.threads)
    t0 = time.perf_counter()
    ds = Dataset.load(ds_dir)
    load_seconds = time.perf_counter() - t0
    print(f"ours: {cfg}", flush=True)
    ours = train_ours(ds, cfg, args.target)
    after = run_yardstick(args.yardstick, inter_json, args.yardstick_epochs, args.threads) if args.bracket else None
    per_epochs = [before["seconds_per_epoch"]] + ([after["seconds_per_epoch"]] if after else [])
    per_epoch = sum(per_epochs) / len(per_epochs)
    yard_seconds = YARDSTICK_EPOCHS_TO_TARGET * per_epoch
    reached = ours["reached"]
    report: dict[str, object] = {
        "threads": args.threads,
        "target_recall@20": args.target,
        "yardstick_seconds_per_epoch": per_epochs,
        "yardstick_seconds_to_target": round(yard_seconds, 1),
        "ours_seconds_to_target": round(reached["seconds"], 2) if reached else None,
        "ours_epoch_at_target": reached.get("epoch") if reached else None,
        "ours_dataset_load_seconds": round(load_seconds, 2),
        "ours_best": ours["metrics"],
        "ours_best_epoch": ours["best_epoch"],
        "ours_epochs_run": ours["epochs_run"],
        "ours_total_seconds": round(float(ours["total_seconds"]), 1),
    }
    if reached:
        ratio = reached["seconds"] / yard_seconds
        report["time_ratio_ours_over_yardstick"] = round(ratio, 4)
        report["speedup"] = round(1 / ratio, 1)
        report["meets_5x_target"] = ratio <= 0.2
    else:
        report["meets_5x_target"] = False
    return report


def lcrec_inter_dataset(directory: Path) -> Dataset:
    """A Dataset from ``X.inter.json`` alone (users and items as in the file, placeholder item text)."""
    inter_path = next(directory.glob("*.inter.json"))
    inter = json.loads(inter_path.read_text())
    item_ids = sorted({str(i) for seq in inter.values() for i in seq}, key=lambda s: (len(s), s))
    items = {iid: {"title": f"item {iid}"} for iid in item_ids}
    sequences = {str(u): [str(i) for i in inter[u]] for u in sorted(inter, key=lambda s: (len(s), s))}
    return Dataset(items, sequences, {"source": str(inter_path)}, directory)


def scale_benchmark(args: argparse.Namespace, cfg: GcnConfig) -> dict[str, object]:
    t0 = time.perf_counter()
    ds = lcrec_inter_dataset(Path(args.scale))
    load_seconds = time.perf_counter() - t0
    print(f"scale: {len(ds.user_ids)} users, {len(ds.item_ids)} items, {ds.num_interactions} interactions",
          flush=True)
    ours = train_ours(ds, cfg, target=float("inf"))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"threads": args.threads, "users": len(ds.user_ids), "items": len(ds.item_ids),
            "interactions": ds.num_interactions, "load_seconds": round(load_seconds, 1),
            "train_seconds": round(float(ours["total_seconds"]), 1), "best": ours["metrics"],
            "best_epoch": ours["best_epoch"], "epochs_run": ours["epochs_run"],
            "peak_rss_mib": round(peak_mib, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, default=OFFICE, help="LC-Rec directory of the speed benchmark")
    p.add_argument("--dataset-dir", type=Path, default=None, help="prepared dataset dir (else prepared to a temp dir)")
    p.add_argument("--yardstick", type=Path, default=YARDSTICK, help="the PyG LightGCN reference script")
    p.add_argument("--yardstick-epochs", type=int, default=20)
    p.add_argument("--no-bracket", dest="bracket", action="store_false", help="run the yardstick only before ours")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--target", type=float, default=0.0773)
    p.add_argument("--scale", type=Path, default=None, help="LC-Rec dir with only *.inter.json: scale run")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override GcnConfig fields")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    base = GcnConfig(device="cpu")
    cfg = GcnConfig(**{**vars(base), **{k: type(getattr(base, k))(v) for k, v in overrides.items()}})
    report = scale_benchmark(args, cfg) if args.scale else office_benchmark(args, cfg)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
