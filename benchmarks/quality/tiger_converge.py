"""TIGER to convergence on a CPU: the field's recipe (the yardstick) beside faster recipes, in one invocation.

Two lanes run side by side, one thread each (``--threads``): lane 1 trains the reference recipe, lane 2
trains the candidate recipes one after another, so both see the same machine at the same time. Every
run goes through the CLI (``uqf train-rec ... --resume``, then ``uqf evaluate`` on all valid and all
test users) and leaves one JSON record in ``<out stem>/runs/``; a rerun of the same command skips
finished runs and resumes an interrupted one from its last epoch checkpoint (its training seconds add
up across the interruption). The report says, for each candidate, whether its best model's full
validation NDCG@10 is within 2% of the reference's and how its wall time compares (target: <= 1/4).

    UQF_THREADS=1 .venv/bin/python -m benchmarks.quality.tiger_converge --dataset runs/office/ds \\
        --sids runs/office/sids.jsonl --work runs/converge --out benchmarks/results/tiger_converge.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality.ablation_report import paired_test
from benchmarks.quality.ablation_units import per_user_ndcg
from benchmarks.tools.command import command_line
from uqf_cli.rec.tiger.options import TigerOptions

# The field's TIGER recipe (APAO and LETTER on Office: AdamW 5e-4, cosine, 1% warmup, batch 1,024,
# up to 200 epochs, patience 20), validated every epoch on all users, at --preset small. The cosine spans all 200
# epochs down to zero (uqf's default decays over 30 epochs to a floor: spelled out here and below).
REFERENCE: dict[str, Any] = {"preset": "small", "lr": 5e-4, "lr_schedule": "cosine", "warmup_ratio": 0.01,
                             "batch_size": 1024, "epochs": 200, "decay_epochs": 200, "min_lr_ratio": 0.0,
                             "patience": 20, "eval_users": 1_000_000}
# Candidate CPU recipes: fewer, larger steps per sample, a short cosine horizon, a cheap validation sample.
CANDIDATES: dict[str, dict[str, Any]] = {
    "cpu-a": {"preset": "small", "lr": 2e-3, "lr_schedule": "cosine", "warmup_ratio": 0.02, "batch_size": 256,
              "epochs": 30, "decay_epochs": 30, "min_lr_ratio": 0.0, "patience": 5, "eval_users": 1000},
    "cpu-c": {"preset": "small", "lr": 3e-3, "lr_schedule": "cosine", "warmup_ratio": 0.02, "batch_size": 512,
              "epochs": 40, "decay_epochs": 40, "min_lr_ratio": 0.0, "patience": 6, "eval_users": 1000},
    "cpu-b": {"preset": "small", "lr": 1e-3, "lr_schedule": "cosine", "warmup_ratio": 0.02, "batch_size": 256,
              "epochs": 60, "decay_epochs": 60, "min_lr_ratio": 0.0, "patience": 8, "eval_users": 1000},
}
WITHIN = 0.02  # a candidate matches the reference when its best valid NDCG@10 is >= 98% of the reference's
TIME_SHARE = 0.25


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--sids", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="model directories and logs")
    p.add_argument("--out", type=Path, required=True, help="report .md (records in <stem>/runs/, .json beside)")
    p.add_argument("--candidates", default=",".join(CANDIDATES), help="comma list of candidate recipes")
    p.add_argument("--define", action="append", default=[], metavar="NAME=JSON", help="an extra candidate recipe")
    p.add_argument("--threads", type=int, default=1, help="torch threads per lane")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", default=json.dumps(REFERENCE), help="the reference recipe as JSON")
    p.add_argument("--uqf", default=str(Path(sys.executable).with_name("uqf")), help="the uqf executable")
    p.add_argument("--backfill-per-user", action="store_true",
                   help="add per-user NDCG@10 to finished records that lack it, from their predictions in --work")
    return p.parse_args(argv)


def flags(recipe: dict[str, Any]) -> list[str]:
    return [x for k, v in recipe.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def run_logged(cmd: list[str], log: Path, threads: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "UQF_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    with log.open("a", encoding="utf-8") as err:
        err.write(f"$ {' '.join(cmd)}\n")
        err.flush()
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, check=True)


def train_and_evaluate(name: str, recipe: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """One run to its early stop (or cap), then full valid and test evaluation; its record."""
    record_path = args.out.parent / args.out.stem / "runs" / f"{name}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    model, log = args.work / name, args.work / f"{name}.log"
    args.work.mkdir(parents=True, exist_ok=True)
    train = [args.uqf, "train-rec", str(args.dataset), "--sids", str(args.sids), "-o", str(model), "--seed",
             str(args.seed), "--json", "--resume", *flags(recipe)]
    load_before = os.getloadavg()
    start = time.time()
    summary = json.loads(run_logged(train, log, args.threads).stdout)
    metrics = {}
    for split in ("valid", "test"):
        preds = args.work / f"{name}.{split}.predictions.jsonl"
        cmd = [args.uqf, "evaluate", str(model), str(args.dataset), "--split", split, "--json", "--force",
               "--predictions", str(preds)]
        metrics[split] = json.loads(run_logged(cmd, log, args.threads).stdout)["metrics"]
    per_user = per_user_scores(name, args.work)
    record = {"name": name, "recipe": recipe, "seed": args.seed, "threads": args.threads,
              "train_seconds": summary["train_seconds"], "train_cpu_seconds": summary.get("train_cpu_seconds"),
              "wall_this_invocation": round(time.time() - start, 1),
              "epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"],
              "early_stopped": summary["epochs_run"] < recipe.get("epochs", TigerOptions.epochs),
              "curve": summary["history"],
              "valid": metrics["valid"], "test": metrics["test"], "load_at_start": load_before,
              "load_at_end": os.getloadavg(), "machine": platform.processor() or platform.machine(),
              "commit": git_commit(), "command": command_line("benchmarks.quality.tiger_converge", sys.argv[1:])}
    record["options"] = json.loads((model / "uqf_model.json").read_text(encoding="utf-8"))["options"]  # effective
    record["per_user_ndcg10"] = per_user
    record_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = record_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(record_path)
    return record


def per_user_scores(name: str, work: Path) -> dict[str, Any] | None:
    """Each valid and test user's NDCG@10 from the run's predictions files (users in file order, with a digest of
    that order so two runs pair user by user), or None when a file is missing."""
    out: dict[str, Any] = {}
    for split in ("valid", "test"):
        preds = work / f"{name}.{split}.predictions.jsonl"
        if not preds.exists():
            return None
        users = [json.loads(line)["user_id"] for line in preds.read_text(encoding="utf-8").splitlines()]
        out[split] = per_user_ndcg(preds)
        out[f"{split}_users_sha256"] = hashlib.sha256("\n".join(users).encode()).hexdigest()[:16]
    return out


def backfill(records_dir: Path, work: Path) -> list[str]:
    """Add ``per_user_ndcg10`` to finished records that lack it, from their runs' predictions in ``work``."""
    done = []
    for path in sorted(records_dir.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("per_user_ndcg10"):
            continue
        scores = per_user_scores(record["name"], work)
        if scores is not None and all(abs(float(np.mean(scores[split])) - record[split]["ndcg@10"]) < 1e-4
                                      for split in ("valid", "test")):  # the predictions are this record's
            record["per_user_ndcg10"] = scores
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=1))
            tmp.replace(path)
            done.append(record["name"])
    return done


def paired(ref: dict[str, Any], cand: dict[str, Any], split: str) -> dict[str, float] | None:
    """Candidate / reference NDCG@10 on ``split`` with its paired-bootstrap 95% interval over users and Wilcoxon's
    p (None without per-user scores for both, or when their users differ)."""
    a, b = cand.get("per_user_ndcg10"), ref.get("per_user_ndcg10")
    if not a or not b or a[f"{split}_users_sha256"] != b[f"{split}_users_sha256"]:
        return None
    return paired_test(np.asarray(a[split]), np.asarray(b[split]))


def paired_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """The table of every run against the reference, user by user: is a difference larger than the noise of one
    validation or test set?"""
    ref = results["reference"]
    lines = ["## Against the reference, user by user", "",
             "Ratio of NDCG@10 (run / reference) over the same users, with the paired-bootstrap 95% interval (2,000 "
             "resamples of users) and the Wilcoxon signed-rank p-value. An interval that contains 1 means the two "
             "runs differ by less than this split's noise.", "",
             "| run | valid ratio | valid 95% interval | valid p | test ratio | test 95% interval | test p |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if name == "reference":
            continue
        cells = []
        for split in ("valid", "test"):
            t = paired(ref, r, split)
            cells += ["-", "-", "-"] if t is None else [f"{t['ratio']:.3f}", f"{t['low']:.3f}-{t['high']:.3f}",
                                                         f"{t['p']:.3g}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return out.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")


def run_lanes(args: argparse.Namespace, reference: dict[str, Any], candidates: dict[str, dict[str, Any]]
              ) -> dict[str, dict[str, Any]]:
    """Lane 1: the reference; lane 2: the candidates in order; both at once."""
    results: dict[str, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def lane(items: list[tuple[str, dict[str, Any]]]) -> None:
        try:
            for name, recipe in items:
                results[name] = train_and_evaluate(name, recipe, args)
        except BaseException as e:  # reported after both lanes end
            errors.append(e)

    threads = [threading.Thread(target=lane, args=([("reference", reference)],)),
               threading.Thread(target=lane, args=(list(candidates.items()),))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def first_reach(run: dict[str, Any], level: float) -> dict[str, Any] | None:
    """The first evaluation of ``run``'s curve at or above ``level``: its epoch and cost so far (CPU and wall
    seconds of training + validation), or None if none reaches it."""
    for h in run["curve"]:
        if h.get("valid_ndcg10", -1.0) >= level:
            return {"epoch": h["epoch"], "cpu_seconds": h.get("cpu_seconds"), "seconds": h.get("seconds")}
    return None


def verdict(ref: dict[str, Any], cand: dict[str, Any]) -> dict[str, Any]:
    """Valid NDCG@10 and cost against the reference; cost in CPU seconds (one thread per lane: a quiet
    machine's wall time, and unlike wall time not inflated when other processes share the cores).

    The target: the candidate's curve reaches ``1 - WITHIN`` of the reference's best validation NDCG@10
    within ``TIME_SHARE`` of the reference's cost to its early stop (``reach_ratio``); the cost of the whole
    candidate run (to its own stop) is ``time_ratio``."""
    best_ref = ref["valid"]["ndcg@10"]
    cost = "train_cpu_seconds" if ref.get("train_cpu_seconds") and cand.get("train_cpu_seconds") else "train_seconds"
    curve_cost = "cpu_seconds" if cost == "train_cpu_seconds" else "seconds"
    reach = first_reach(cand, (1 - WITHIN) * best_ref)
    reach_ratio = reach[curve_cost] / ref[cost] if reach and reach.get(curve_cost) else None
    return {"valid_ratio": cand["valid"]["ndcg@10"] / best_ref, "time_ratio": cand[cost] / ref[cost],
            "wall_ratio": cand["train_seconds"] / ref["train_seconds"], "cost": cost, "reach": reach,
            "reach_ratio": reach_ratio, "matches": cand["valid"]["ndcg@10"] >= (1 - WITHIN) * best_ref,
            "fast_enough": reach_ratio is not None and reach_ratio <= TIME_SHARE}


def stop_cell(run: dict[str, Any]) -> str:
    """How a run ended: early stopping, its decaying learning-rate schedule reaching zero (nothing left to learn),
    or the epoch cap (a constant schedule, or a decay with a floor). Records made before the floor existed have no
    ``options``: they decayed to zero."""
    if run["early_stopped"]:
        return "yes"
    schedule = run["recipe"].get("lr_schedule", TigerOptions.lr_schedule)
    floor = (run.get("options") or {}).get("min_lr_ratio", 0.0)
    return "no (cap)" if schedule == "constant" or floor > 0 else "schedule end (lr 0)"


def _reach_cell(v: dict[str, Any]) -> str:
    r = v["reach"]
    if r is None or v["reach_ratio"] is None:
        return "never"
    return f"epoch {r['epoch']}, {r['cpu_seconds' if v['cost'] == 'train_cpu_seconds' else 'seconds']:.0f} s, " \
           f"{v['reach_ratio']:.3f}x"


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    ref = results["reference"]
    level = (1 - WITHIN) * ref["valid"]["ndcg@10"]
    lines = ["# TIGER to convergence on this CPU: the field's recipe vs CPU recipes", "",
             f"Command: `{ref['command']}` (later runs: their records' commands)  ",
             f"Rendered by: `{command_line('benchmarks.quality.tiger_converge', sys.argv[1:])}`  ",
             f"Code: {ref['commit']} (later runs: their records' commits); machine: {ref['machine']}; two lanes side "
             "by side at the threads of the table (one thread each unless stated).", "",
             "| run | threads | recipe | epochs (best) | early stop | train wall s | train CPU s | "
             "valid NDCG@10 (all users) | "
             f"test NDCG@10 | test Recall@10 | valid vs ref | first >= {level:.4f} (CPU s, x ref) | "
             "cost vs ref (CPU) | wall vs ref |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        v = verdict(ref, r)
        lines.append(f"| {name} | {r.get('threads', 1)} | `{json.dumps(r['recipe'])}` | "
                     f"{r['epochs_run']} ({r['best_epoch']}) | "
                     f"{stop_cell(r)} | {r['train_seconds']:.0f} | "
                     f"{r.get('train_cpu_seconds') or float('nan'):.0f} | "
                     f"{r['valid']['ndcg@10']:.4f} | {r['test']['ndcg@10']:.4f} | {r['test']['recall@10']:.4f} | "
                     f"{v['valid_ratio']:.3f} | {_reach_cell(v)} | {v['time_ratio']:.3f} | {v['wall_ratio']:.3f} |")
    lines += ["", "A candidate passes when its validation curve (all users, every epoch) first reaches "
              f"{1 - WITHIN:.2f} of the reference's best ({level:.4f}) within {TIME_SHARE} of the reference's cost "
              "to its early stop, "
              "and its best model's validation NDCG@10 is at least that too.", ""]
    for name, r in results.items():
        if name != "reference":
            v = verdict(ref, r)
            lines.append(f"* {name}: {'PASS' if v['matches'] and v['fast_enough'] else 'fail'} "
                         f"(best valid {v['valid_ratio']:.3f}x; first reach {_reach_cell(v)}; whole run "
                         f"{v['time_ratio']:.3f}x)")
    lines += ["", *paired_lines(results)]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, r in results.items():
        pts = [(h["cpu_seconds"] / 60, h["valid_ndcg10"]) for h in r["curve"]
               if "valid_ndcg10" in h and "cpu_seconds" in h]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=".", label=f"{name} (valid sample)")
    ax.set_xlabel("training + validation CPU minutes")
    ax.set_ylabel("validation NDCG@10")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if args.backfill_per_user:
        added = backfill(args.out.parent / args.out.stem / "runs", args.work)
        print(f"per-user NDCG@10 added to: {', '.join(added) or 'none'}", file=sys.stderr)
    extra = dict(d.split("=", 1) for d in args.define)
    pool = {**CANDIDATES, **{k: json.loads(v) for k, v in extra.items()}}
    candidates = {n: pool[n] for n in args.candidates.split(",") if n}
    results = run_lanes(args, json.loads(args.reference), candidates)
    ordered = {"reference": results["reference"], **{n: results[n] for n in candidates}}
    args.out.write_text(report(ordered, args))
    args.out.with_suffix(".json").write_text(json.dumps(ordered, indent=1))
    plot(ordered, args.out.with_name(args.out.stem + "_curves.png"))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
