"""TIGER training speed on CPU: the lean engine vs the Hugging Face forward (``--engine hf``).

Two parts, one run, one machine, the paper's shape (4+4 layers, d_model 128, 6 heads x 64, d_ff
1024, batch 256; ``--preset small`` for the demo's 2+2 layers, 4 heads x 32, d_ff 512) on Office:

1. Throughput: the same ``--batches`` length-bucketed batches (the first ones of seed 0's first epoch)
   trained by both engines from the same initial weights with tiger's own step function, interleaved
   round by round (hf, lean, hf, lean, ...) so machine-load drift hits both alike. Prints samples/s of
   each round (wall clock and process CPU time) and the ratio of the totals.
2. Equal-epoch quality: ``tiger.train`` for ``--epochs`` epochs per seed and engine; validation NDCG@10
   (``--eval-users`` validation users, 0 = all) mean, min, max per engine and whether the lean
   mean lies within the hf seeds' range; also each run's whole-loop train seconds.

Without ``--dataset``/``--sids`` it makes them in ``--work``: ``uqf prepare builtin:office``,
``uqf embed-text`` and ``uqf quantize`` (defaults).

    UQF_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.speed.tiger_speed [--dataset DS --sids SIDS.jsonl]
        [--work DIR] [--batches 8] [--rounds 3] [--seeds 0,1,2] [--epochs 1] [--preset tiger|small] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from uqf_cli.core.runtime import configure, set_threads_from_env
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import read_sids
from uqf_cli.rec import tiger


def uqf(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "uqf_cli", *args, "-q"], check=True)


def ensure_inputs(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.dataset and args.sids:
        return Path(args.dataset), Path(args.sids)
    work = Path(args.work)
    ds, emb, sids = work / "ds", work / "text.st", work / "sids.jsonl"
    if not ds.exists():
        uqf("prepare", "builtin:office", "-o", str(ds))
    if not emb.exists():
        uqf("embed-text", str(ds), "-o", str(emb))
    if not sids.exists():
        uqf("quantize", str(emb), "-o", str(sids))
    return ds, sids


def throughput(ds: Dataset, sids, n_batches: int, rounds: int, preset: str = "tiger") -> list[dict[str, float]]:
    """Samples/s of tiger's training step for both engines on the same batches, interleaved."""
    base = tiger.TigerOptions.from_dict({"seed": 0, "preset": preset})
    vocab = tiger.TigerVocab.build(sids, sids.item_ids, base.user_tokens)
    input_ids, mask, labels = tiger._tensorize(ds, vocab, base)
    lengths = mask.sum(1).clamp(min=1)
    batches = tiger._length_bucketed_batches(lengths, base.batch_size, torch.Generator().manual_seed(0))[:n_batches]
    torch.manual_seed(0)
    init = tiger.build_model(vocab, base).state_dict()
    device = torch.device("cpu")
    rows = []
    for r in range(rounds):
        for engine in ("hf", "lean"):
            opts = tiger.TigerOptions.from_dict({"seed": 0, "engine": engine, "preset": preset})
            torch.manual_seed(r)
            model = tiger.build_model(vocab, opts)
            model.load_state_dict(copy.deepcopy(init))
            tiger.use_fast_dropout(model)
            model.train()
            lean = engine == "lean"
            optimizer = tiger.make_optimizer(model, opts, device, lean)
            sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
            amp_dtype, scaler = tiger._amp(device, lean)

            def step(idx: torch.Tensor, model=model, optimizer=optimizer, sched=sched, amp_dtype=amp_dtype,
                     scaler=scaler, lean=lean) -> float:
                w = int(lengths[idx].max())
                return tiger._step(model, optimizer, sched, scaler, amp_dtype, input_ids[idx, :w], mask[idx, :w],
                                   labels[idx], lean)

            step(batches[-1])  # warm-up (allocator, kernels); not timed
            wall, cpu = time.perf_counter(), time.process_time()
            samples = sum(len(b) for b in batches)
            losses = [step(b) for b in batches]
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows.append({"round": r, "engine": engine, "samples": samples, "wall_s": wall, "cpu_s": cpu,
                         "samples_per_s": samples / wall, "samples_per_cpu_s": samples / cpu,
                         "last_loss": losses[-1]})
            print(f"round {r} {engine:4s}: {samples / wall:6.1f} samples/s wall, {samples / cpu:6.1f} per CPU-s, "
                  f"last loss {losses[-1]:.3f}", flush=True)
    return rows


def quality(ds: Dataset, sids, seeds: list[int], epochs: int, eval_users: int, work: Path,
            preset: str = "tiger") -> list[dict]:
    rows = []
    for seed in seeds:
        for engine in ("hf", "lean"):
            out = work / f"model_{engine}_s{seed}"
            s = tiger.train(ds, sids, out, {"seed": seed, "engine": engine, "epochs": epochs, "patience": epochs,
                                            "eval_users": eval_users, "preset": preset}, force=True)
            ndcg = s["history"][-1]["valid_ndcg10"]
            rows.append({"seed": seed, "engine": engine, "valid_ndcg10": ndcg, "train_seconds": s["train_seconds"],
                         "loss": s["history"][-1]["loss"]})
            print(f"seed {seed} {engine:4s}: valid NDCG@10 {ndcg:.4f}, loss {s['history'][-1]['loss']:.4f}, "
                  f"{s['train_seconds']} s", flush=True)
    return rows


def report(args: argparse.Namespace, commit: str, speed: list[dict], qual: list[dict]) -> str:
    def total(engine: str, key: str) -> float:
        rs = [r for r in speed if r["engine"] == engine]
        return sum(r["samples"] for r in rs) / sum(r[key] for r in rs)

    lines = [
        "# TIGER training speed on CPU: lean engine vs Hugging Face forward", "",
        f"Command: `UQF_THREADS={os.environ.get('UQF_THREADS', '')} HF_HUB_OFFLINE=1 python "
        f"-m benchmarks.speed.tiger_speed {' '.join(sys.argv[1:])}`  ",
        f"Commit: {commit}; machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(shared), torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"bf16 kernels: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}.", "",
        f"## Throughput ({args.batches} batches of 256 per round, {args.rounds} rounds, interleaved)", "",
        "| round | engine | samples/s (wall) | samples / CPU-s | last loss |", "|---|---|---|---|---|",
    ]
    lines += [f"| {r['round']} | {r['engine']} | {r['samples_per_s']:.1f} | {r['samples_per_cpu_s']:.1f} | "
              f"{r['last_loss']:.3f} |" for r in speed]
    if speed:
        lines += ["", f"**lean / hf: {total('lean', 'wall_s') / total('hf', 'wall_s'):.2f}x samples/s (wall), "
                      f"{total('lean', 'cpu_s') / total('hf', 'cpu_s'):.2f}x per CPU-second.**"]
    if qual:
        users = f"{args.eval_users} sampled" if args.eval_users else "all"
        lines += ["", f"## Validation NDCG@10 after {args.epochs} epoch(s) ({users} valid users)", "",
                  "| seed | engine | valid NDCG@10 | train loss | train seconds |", "|---|---|---|---|---|"]
        lines += [f"| {r['seed']} | {r['engine']} | {r['valid_ndcg10']:.4f} | {r['loss']:.4f} | "
                  f"{r['train_seconds']} |" for r in qual]
        by = {e: [r["valid_ndcg10"] for r in qual if r["engine"] == e] for e in ("hf", "lean")}
        secs = {e: sum(r["train_seconds"] for r in qual if r["engine"] == e) for e in ("hf", "lean")}
        lo, hi = min(by["hf"]), max(by["hf"])
        mean_lean = statistics.mean(by["lean"])
        lines += [""] + [f"- {e}: mean {statistics.mean(v):.4f}, min {min(v):.4f}, max {max(v):.4f}"
                         for e, v in by.items()]
        lines += [f"- lean mean within hf's seed range [{lo:.4f}, {hi:.4f}]: **{lo <= mean_lean <= hi}**",
                  f"- whole training loop (incl. validation beam search): hf {secs['hf']:.0f} s, lean "
                  f"{secs['lean']:.0f} s, ratio {secs['hf'] / max(secs['lean'], 1e-9):.2f}x"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", help="dataset dir from `uqf prepare` (default: made in --work)")
    ap.add_argument("--sids", help="SID file (default: made in --work)")
    ap.add_argument("--work", default="runs/tiger_speed", help="scratch dir (inputs, models)")
    ap.add_argument("--batches", type=int, default=8, help="timed batches per engine and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the equal-epoch check ('' skips it)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--eval-users", type=int, default=tiger.TigerOptions.eval_users)
    ap.add_argument("--preset", default="tiger", help="model shape: tiger (the paper's) | small (the demo's)")
    ap.add_argument("--out", help="write the markdown report here too")
    args = ap.parse_args()
    set_threads_from_env()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    configure(quiet=True)
    ds_dir, sids_path = ensure_inputs(args)
    ds, sids = Dataset.load(ds_dir), read_sids(sids_path)
    speed = throughput(ds, sids, args.batches, args.rounds, args.preset) if args.batches > 0 else []
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    qual = quality(ds, sids, seeds, args.epochs, args.eval_users, Path(args.work), args.preset) if seeds else []
    text = report(args, commit, speed, qual)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
