"""LC-Rec on a CPU: today's float32 path against the cost levers, side by side in one invocation.

1. Training. The same ``--steps x --batch-size`` training windows (a seeded subset of the dataset's
   windows, via ``--max-samples``), one epoch over them in the same seeded random batches (every
   configuration sees exactly the same samples in the same steps; bucketed batching runs each batch as
   length-sorted micro-batches), through the real ``lcrec.train``, for: the float32
   path (``LEGACY``: fp32, full output head, random batches, Alpaca prompt), each lever alone on top
   of it, and all levers (the defaults). Per configuration: samples/s over steps 2..N (wall clock;
   the first step is warm-up), samples per CPU-second (the median step's process CPU time, all
   threads: what a shared machine distorts least), the mean training loss, and the loss after the N steps on a fixed
   seeded sample of validation windows (each model with its own prompt, float32, full head). Same
   seed for all. ``--repeats R`` runs every configuration R times in turn (float32, levers, float32,
   ...) and reports the median throughput, so load drift hits all of them alike.
2. Decoding. Constrained beam search (``--beam``) for a seeded sample of ``--users`` test users:
   today's path (the float32 model, float32, Hugging Face's per-beam KV cache, 8 users a batch in
   dataset order) against the new one (the all-levers model: bf16 body with a float32 head, 32 users a
   batch sorted by prompt length, compact prompt, the beams sharing their user's prompt keys/values
   with the head's outputs in reused buffers: ``uqf_cli/rec/lcrec/shared_prefix.py``). Equal quality:
   an all-levers model trained ``--decode-steps`` steps (not timed; a 40-step model's lists are mostly
   ties) is decoded in float32 and in bf16 and the top-10 lists compared on the same users: identical
   share, mean overlap, the share of users whose target is in both or neither, and Recall/NDCG@10 of
   both. One row decodes bf16 with Hugging Face's per-beam cache instead (``shared_prefix=False``: what
   the shared prompt adds, and its lists against the new path's); a last one runs the head in bf16 too
   (faster, coarser scores; not the default).
3. Loss noise (``--loss-seeds K``, default 0: off). The held-out loss after N steps depends on which
   random batches the windows fall into as well as on the levers, so the float32 path and all levers
   each train K more models, untimed, on the same windows with the same seed (model init, dropout) and
   K other batch orders (each shared by both); the report gives each one's held-out loss over its
   1 + K orders (mean, sd, min, max) and whether the all-levers range meets the float32 one: whether the
   difference is within the batch-order noise.

Writes ``--out`` (markdown: command, commit, machine, load average before and after) and its
``.json``. Measure on a quiet machine: contention distorts every ratio.

    UQF_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.speed.lcrec_speed --dataset runs/office/ds \\
        --sids runs/office/sids.jsonl --steps 40 --batch-size 8 --users 200 --out benchmarks/results/lcrec_speed.md

Which micro-batch setting is fastest: ``--micro-batch-sweep 1,2,4`` adds a row "all levers, micro-batches K" per
K (a fixed K passes a batch, ``--micro-batch-overhead 0`` in uqf's terms), and ``--micro-batch-overhead T``
(T > 0) a row "all levers, cost-aware" that lets every batch take the number of passes, up to the largest K
(or uqf's default), that minimises padded positions + T a pass. The "all levers" row is uqf's default (cost-aware
with its own overhead), so a T and largest K equal to the defaults add no row. Same batches and steps as the
other rows.

``--quick``: a tiny run (a few steps and users; no per-lever rows unless ``--levers``; the decoding
model is the timed all-levers one) for tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from uqf_cli.core import runtime
from uqf_cli.data.dataset import Dataset
from uqf_cli.evaluation.metrics import ndcg_at_k, recall_at_k
from uqf_cli.files import read_sids
from uqf_cli.rec import lcrec
from uqf_cli.rec.base import training_samples
from uqf_cli.rec.lcrec import training as lcrec_training
from uqf_cli.rec.lcrec.batching import Collator, RandomBatches
from uqf_cli.rec.lcrec.options import LEGACY, LcRecOptions
from uqf_cli.rec.lcrec.prompts import Encoded, sid_token_ids
from uqf_cli.rec.lcrec.recommender import CPU_EVAL_BATCH

ALL_LEVERS = {"precision": "auto", "lm_head": "response", "batching": "bucketed", "prompt_template": "compact"}
LEVER_ROWS = {  # name -> options on top of LEGACY
    "bf16 autocast": {"precision": "auto"},
    "response-only head": {"lm_head": "response"},
    "compact prompt": {"prompt_template": "compact"},
    "bucketed batches": {"batching": "bucketed"},
}
LEGACY_EVAL_BATCH = 8  # users per decoding batch on a CPU before the levers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, type=Path)
    ap.add_argument("--sids", required=True, type=Path)
    ap.add_argument("--base-model", default=None, help="default: the embedded SmolLM2-135M")
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps per configuration (one epoch)")
    defaults = LcRecOptions()  # uqf train-rec --backbone lcrec's own
    ap.add_argument("--batch-size", type=int, default=defaults.batch_size)
    ap.add_argument("--max-history", type=int, default=defaults.max_history)
    ap.add_argument("--lr", type=float, default=defaults.lr)
    ap.add_argument("--heldout", type=int, default=128, help="validation windows for the loss after N steps")
    ap.add_argument("--users", type=int, default=200, help="test users decoded")
    ap.add_argument("--beam", type=int, default=defaults.eval_beam)
    ap.add_argument("--decode-steps", type=int, default=400,
                    help="steps of the all-levers model the decoding rows use (0: the timed one)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--loss-seeds", type=int, default=0,
                    help="K more batch orders of the same windows for float32 and all levers (untimed): the "
                         "held-out loss's batch-order noise (default 0: none)")
    ap.add_argument("--levers", action=argparse.BooleanOptionalAction, default=None,
                    help="a row per lever alone (default: on, off with --quick)")
    ap.add_argument("--micro-batch-sweep", type=counts, default=[],
                    help="comma list of fixed micro-batch counts K: an 'all levers, micro-batches K' row each "
                         "(default: none)")
    ap.add_argument("--micro-batch-overhead", type=int, default=0,
                    help="T > 0: an 'all levers, cost-aware' row, the passes a batch chosen with T padded positions "
                         f"a pass (default 0: no row; the all-levers row uses uqf's {defaults.micro_batch_overhead})")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: UQF_THREADS or torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny run: 4 steps of 4, 8 users, beam 6")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lcrec_speed.md"))
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.loss_seeds < 0:
        ap.error(f"--loss-seeds must be >= 0, got {args.loss_seeds}")
    if args.micro_batch_overhead < 0:
        ap.error(f"--micro-batch-overhead must be >= 0, got {args.micro_batch_overhead}")
    if args.quick:
        args.steps, args.batch_size, args.users, args.beam, args.heldout = 4, 4, 8, 6, 8
        args.decode_steps = 0
    if args.levers is None:
        args.levers = not args.quick
    return args


def counts(text: str) -> list[int]:
    """A comma list of micro-batch counts (each >= 1), for ``--micro-batch-sweep``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"micro-batch counts must be >= 1, got {text!r}")
    return values


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def micro_batch_rows(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The all-levers rows of ``--micro-batch-sweep`` (K fixed passes a batch) and ``--micro-batch-overhead`` (the
    passes chosen per batch, up to the largest K or uqf's default); a cost-aware row equal to the defaults is the
    "all levers" row itself and is not added."""
    defaults = LcRecOptions()
    rows = {f"all levers, micro-batches {k}": {**ALL_LEVERS, "micro_batches": k, "micro_batch_overhead": 0}
            for k in args.micro_batch_sweep}
    most = max([*args.micro_batch_sweep, defaults.micro_batches])
    overhead = args.micro_batch_overhead
    if overhead and (overhead, most) != (defaults.micro_batch_overhead, defaults.micro_batches):
        rows[f"all levers, cost-aware (overhead {overhead}, up to {most} passes)"] = {
            **ALL_LEVERS, "micro_batches": most, "micro_batch_overhead": overhead}
    return rows


def train_options(args: argparse.Namespace, levers: dict[str, str], steps: int | None = None) -> dict[str, Any]:
    return {**LEGACY, **levers, "base_model": args.base_model, "batch_size": args.batch_size, "epochs": 1,
            "max_samples": (steps or args.steps) * args.batch_size, "max_history": args.max_history, "lr": args.lr,
            "seed": args.seed, "device": "cpu"}


def throughput(summary: dict[str, Any], batch_size: int) -> float:
    """Samples/s over steps 2..N (the first step is warm-up); all of them when there is one."""
    times = summary["step_seconds"][1:] or summary["step_seconds"]
    return len(times) * batch_size / sum(times)


def cpu_throughput(summary: dict[str, Any], batch_size: int) -> float:
    """Samples per CPU-second of the median step (steps 2..N; process CPU time, all threads)."""
    return batch_size / summary["cpu_seconds_per_step"]


def heldout_examples(rec: lcrec.LcRecRecommender, cases: list) -> list[Encoded]:
    """Validation windows in the model's own prompt template: the prompt, then the target's SID and EOS."""
    ids = sid_token_ids(rec.tokenizer, rec.sids)
    eos = [int(rec.tokenizer.eos_token_id)] if rec.tokenizer.eos_token_id is not None else []
    prompts = rec.prompts([c.history for c in cases])
    return [Encoded(p, ids[c.target] + eos) for p, c in zip(prompts, cases, strict=True)]


@torch.no_grad()
def heldout_loss(model_dir: Path, cases: list) -> float:
    """Mean response-token cross-entropy of a trained model on ``cases`` (float32, full head)."""
    rec = lcrec.load(model_dir, "cpu", precision="fp32")
    examples = heldout_examples(rec, cases)
    collate = Collator(int(rec.tokenizer.pad_token_id))
    total, count = 0.0, 0
    for start in range(0, len(examples), 16):
        batch = collate(examples[start:start + 16])
        n = int((batch["labels"][:, 1:] != -100).sum())
        total += float(rec.model(**batch).loss) * n
        count += n
    return total / count


def run_training(args: argparse.Namespace, ds: Dataset, sids, work: Path, heldout: list
                 ) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    configs = {"float32 (today)": {}, **(LEVER_ROWS if args.levers else {}), "all levers": ALL_LEVERS,
               **micro_batch_rows(args)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    dirs: dict[str, Path] = {}
    for r in range(args.repeats):
        for name, levers in configs.items():
            out = work / f"{slug(name)}_{r}"
            summary = lcrec.train(ds, sids, out, train_options(args, levers), force=True)
            runs[name].append(summary)
            dirs.setdefault(name, out)
            progress(f"train {name} #{r + 1}: {throughput(summary, args.batch_size):.2f} samples/s, "
                     f"{cpu_throughput(summary, args.batch_size):.2f} per CPU-s "
                     f"({summary['precision']}, padding {summary['padding_share']:.1%}, "
                     f"{summary['forwards_per_batch']:.2f} passes a batch)")
    rows = []
    for name, summaries in runs.items():
        first = summaries[0]
        rows.append({
            "config": name, "options": {**LEGACY, **configs[name]}, "precision": first["precision"],
            "steps": first["steps"], "examples": first["examples"],
            "samples_per_s": statistics.median(throughput(s, args.batch_size) for s in summaries),
            "samples_per_s_runs": [round(throughput(s, args.batch_size), 3) for s in summaries],
            "cpu_samples_per_s": statistics.median(cpu_throughput(s, args.batch_size) for s in summaries),
            "train_loss": first["train_loss"], "padding_share": first["padding_share"],
            "forwards_per_batch": first["forwards_per_batch"],
            "heldout_loss": heldout_loss(dirs[name], heldout),
        })
    return rows, dirs


def train_decoding_model(args: argparse.Namespace, ds: Dataset, sids, work: Path, dirs: dict[str, Path]
                         ) -> dict[str, Any]:
    """The all-levers model the decoding comparison uses: ``--decode-steps`` steps (not timed), or the timed one."""
    if args.decode_steps <= 0:
        dirs["decode"] = dirs["all levers"]
        return {"steps": args.steps, "trained": "the timed all-levers model"}
    dirs["decode"] = work / "decode"
    summary = lcrec.train(ds, sids, dirs["decode"], train_options(args, ALL_LEVERS, args.decode_steps), force=True)
    progress(f"decoding model: {summary['steps']} steps, train loss {summary['train_loss']:.4f}")
    return {"steps": summary["steps"], "examples": summary["examples"], "train_loss": summary["train_loss"],
            "trained": "all levers, not timed"}


def agreement(a: list[list[str]], b: list[list[str]], targets: list[str]) -> dict[str, float]:
    """How alike two top-10 lists per user are: identical share, mean overlap, same hit or miss."""
    n = len(targets)
    return {"identical": sum(x == y for x, y in zip(a, b, strict=True)) / n,
            "overlap": sum(len(set(x) & set(y)) / max(len(x), 1) for x, y in zip(a, b, strict=True)) / n,
            "same_hit": sum((t in x) == (t in y) for x, y, t in zip(a, b, targets, strict=True)) / n}


# ----------------------------------------------------------------------------------------------
# Loss noise: the same windows and seed, other batch orders (untimed)
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def batch_order(order_seed: int) -> Iterator[None]:
    """Make ``lcrec.train`` draw its batches by ``order_seed`` instead of ``seed``.

    ``lcrec.train`` draws the windows, the model init, dropout and the batches all from ``seed``; this
    changes the batches alone, here in the benchmark, so normal runs, their options and provenance stay
    as they are: every configuration's batches (random or bucketed, the same ones) are another seeded
    shuffle of the same windows, cut into batches: another composition and order."""
    original = lcrec_training._training_data
    calls: list[int] = []

    def reordered(examples: list, opts: Any, seed: int) -> RandomBatches:
        calls.append(order_seed)
        return original(examples, opts, order_seed)

    lcrec_training._training_data = reordered
    try:
        yield
    finally:
        lcrec_training._training_data = original
    if not calls:
        raise RuntimeError("lcrec.train no longer builds its batches through _training_data: update batch_order")


def loss_stats(losses: list[float]) -> dict[str, Any]:
    """Held-out losses over batch orders: count, the losses, mean, min, max and sample sd."""
    return {"orders": len(losses), "heldout_losses": losses, "mean": statistics.mean(losses), "min": min(losses),
            "max": max(losses), "sd": statistics.stdev(losses) if len(losses) > 1 else 0.0}


def run_loss_noise(args: argparse.Namespace, ds: Dataset, sids, work: Path, heldout: list,
                   training: list[dict[str, Any]]) -> dict[str, Any]:
    """Held-out losses of float32 and all levers over 1 + ``--loss-seeds`` batch orders (the first: the timed run)."""
    timed = {row["config"]: row["heldout_loss"] for row in training}
    order_seeds = [args.seed + k for k in range(1, args.loss_seeds + 1)]
    configs = {"float32 (today)": {}, "all levers": ALL_LEVERS}
    rows = []
    for name, levers in configs.items():
        losses = [timed[name]]
        for order_seed in order_seeds:
            out = work / f"noise_{slug(name)}_{order_seed}"
            with batch_order(order_seed):
                summary = lcrec.train(ds, sids, out, train_options(args, levers), force=True)
            losses.append(heldout_loss(out, heldout))
            progress(f"loss noise {name}, batch order {order_seed}: held-out loss {losses[-1]:.4f} "
                     f"(train loss {summary['train_loss']:.4f})")
        rows.append({"config": name, **loss_stats(losses)})
    verdict = noise_verdict(*rows)
    return {"loss_seeds": args.loss_seeds, "order_seeds": order_seeds, "rows": rows, **verdict,
            "verdict": noise_verdict_text(verdict, *rows)}


def noise_verdict(base: dict[str, Any], levers: dict[str, Any]) -> dict[str, Any]:
    """Is the all-levers loss within float32's batch-order noise: its mean inside float32's min-max, or the ranges
    overlapping (the mean inside implies overlap, so ``within_noise`` is the overlap)."""
    mean_in = base["min"] <= levers["mean"] <= base["max"]
    overlap = levers["min"] <= base["max"] and base["min"] <= levers["max"]
    return {"difference": levers["mean"] - base["mean"], "mean_in_float32_range": mean_in,
            "ranges_overlap": overlap, "within_noise": mean_in or overlap}


# ----------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------


def decode(model_dir: Path, cases: list, precision: str, batch: int, beam: int, sort: bool = True,
           fp32_head: bool = True, shared_prefix: bool | None = None) -> tuple[list[list[str]], float]:
    """Top-10 lists of ``cases`` and users/s (after one warm-up batch)."""
    rec = lcrec.load(model_dir, "cpu", precision=precision, eval_batch_size=batch, fp32_head=fp32_head,
                     shared_prefix=shared_prefix)
    histories = [c.history for c in cases]
    rank = rec.recommend if sort else (lambda h, k, beam_size: unsorted_recommend(rec, h, k, beam_size))
    rank(histories[:min(batch, len(histories))], k=10, beam_size=beam)  # warm-up
    t = time.perf_counter()
    ranked = rank(histories, k=10, beam_size=beam)
    return ranked, len(cases) / (time.perf_counter() - t)


def unsorted_recommend(rec: lcrec.LcRecRecommender, histories, k: int, beam_size: int) -> list[list[str]]:
    """Today's decoding loop: batches in the users' own order (no sorting by prompt length)."""
    prompts = rec.prompts(histories)
    out: list[list[str]] = []
    for start in range(0, len(prompts), rec.eval_batch_size):
        result = rec.search(prompts[start:start + rec.eval_batch_size], max(beam_size, k))
        for row in result.items.tolist():
            rows = [r for leaf in row if leaf >= 0 for r in rec.trie.rows_of(leaf)]
            out.append([rec.sids.item_ids[r] for r in rows[:k]])
    return out


def run_decoding(args: argparse.Namespace, dirs: dict[str, Path], cases: list) -> dict[str, Any]:
    targets = [c.target for c in cases]
    legacy, legacy_ups = decode(dirs["float32 (today)"], cases, "fp32", LEGACY_EVAL_BATCH, args.beam, sort=False)
    reference, ref_ups = decode(dirs["decode"], cases, "fp32", CPU_EVAL_BATCH, args.beam)
    new, new_ups = decode(dirs["decode"], cases, "auto", CPU_EVAL_BATCH, args.beam)
    per_beam, per_beam_ups = decode(dirs["decode"], cases, "auto", CPU_EVAL_BATCH, args.beam, shared_prefix=False)
    bf16_head, bf16_head_ups = decode(dirs["decode"], cases, "auto", CPU_EVAL_BATCH, args.beam, fp32_head=False)
    same, same_bf16_head = agreement(reference, new, targets), agreement(reference, bf16_head, targets)
    same_per_beam = agreement(per_beam, new, targets)
    rows = [
        {"path": "float32 (today): float32 model, fp32, 8 users/batch, Alpaca prompt", "users_per_s": legacy_ups,
         "recall@10": recall_at_k(legacy, targets, 10), "ndcg@10": ndcg_at_k(legacy, targets, 10)},
        {"path": "all-levers model, fp32, 32 users/batch sorted, compact prompt", "users_per_s": ref_ups,
         "recall@10": recall_at_k(reference, targets, 10), "ndcg@10": ndcg_at_k(reference, targets, 10)},
        {"path": "all-levers model, bf16 body + fp32 head where supported, 32 users/batch sorted, compact prompt, "
                 "beams share the prompt (the default)",
         "users_per_s": new_ups, "recall@10": recall_at_k(new, targets, 10), "ndcg@10": ndcg_at_k(new, targets, 10)},
        {"path": "all-levers model, bf16 body + fp32 head, 32 users/batch sorted, compact prompt, Hugging Face's "
                 "per-beam cache", "users_per_s": per_beam_ups, "recall@10": recall_at_k(per_beam, targets, 10),
         "ndcg@10": ndcg_at_k(per_beam, targets, 10)},
        {"path": "all-levers model, bf16 body and head, 32 users/batch sorted, compact prompt (not the default)",
         "users_per_s": bf16_head_ups, "recall@10": recall_at_k(bf16_head, targets, 10),
         "ndcg@10": ndcg_at_k(bf16_head, targets, 10)},
    ]
    return {"rows": rows, "users": len(cases), "beam": args.beam, "identical_top10": same["identical"],
            "identical_top10_bf16_head": same_bf16_head["identical"], "agreement": same,
            "agreement_bf16_head": same_bf16_head, "agreement_per_beam": same_per_beam,
            "speedup": new_ups / legacy_ups, "speedup_same_model": new_ups / ref_ups,
            "speedup_shared_prefix": new_ups / per_beam_ups, "speedup_bf16_head": bf16_head_ups / legacy_ups}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "uqf_cli", "benchmarks/speed/lcrec_speed.py"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" + uncommitted changes" if dirty else "")


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return (f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s), "
            f"bf16 kernels: {'yes' if bf16 else 'no'}, torch {torch.__version__}")


def prompt_tokens(rec_dirs: dict[str, Path], cases: list) -> dict[str, float]:
    out = {}
    for name in ("float32 (today)", "all levers"):
        rec = lcrec.load(rec_dirs[name], "cpu", precision="fp32")
        prompts = rec.prompts([c.history for c in cases])
        out[rec.template or "alpaca"] = statistics.mean(len(p) for p in prompts)
    return out


def render(args: argparse.Namespace, result: dict[str, Any]) -> str:
    train, dec = result["training"], result["decoding"]
    base, cpu_base = train[0]["samples_per_s"], train[0]["cpu_samples_per_s"]
    levers = next(row for row in train if row["config"] == "all levers")
    lines = [
        "# LC-Rec on a CPU: the float32 path against the cost levers", "",
        f"Command: `{result['command']}`", "",
        f"Code: {result['commit']}. Machine: {result['machine']}. Load average (1, 5, 15 min): before "
        f"{result['load_before']}, after {result['load_after']}.", "",
        f"Data: {args.dataset} ({result['windows']:,} training windows); base model: {result['base_model']}; "
        f"{args.steps} steps x batch {args.batch_size} = the same {train[0]['examples']} seeded windows for every "
        f"configuration (one epoch), seed {args.seed}, lr {args.lr}. Held-out loss: {len(result['heldout_users'])} "
        "seeded validation windows, each model with its own prompt, float32, full head. Bucketed batches: random "
        f"batches of {args.batch_size}, each run as up to {result['micro_batches']} length-sorted micro-batches, "
        f"as many as minimise the padded positions + {result['micro_batch_overhead']} a forward pass "
        "(gradients accumulated; passes a batch: their mean over the epoch).", "",
        "## Training", "",
        "| configuration | precision | padding | passes a batch | samples/s | x float32 | samples/CPU-s "
        "| x float32 (CPU) | train loss (mean) | held-out loss |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in train:
        lines.append(f"| {row['config']} | {row['precision']} | {row['padding_share']:.1%} | "
                     f"{row['forwards_per_batch']:.2f} | {row['samples_per_s']:.2f} | "
                     f"{row['samples_per_s'] / base:.2f}x | "
                     f"{row['cpu_samples_per_s']:.2f} | {row['cpu_samples_per_s'] / cpu_base:.2f}x | "
                     f"{row['train_loss']:.4f} | {row['heldout_loss']:.4f} |")
    tokens = ", ".join(f"{k} {v:.1f}" for k, v in result["prompt_tokens"].items())
    lines += ["", f"Mean prompt tokens of the decoded users: {tokens}.", "", *fastest_lines(train),
              *noise_lines(result),
              "## Decoding", "",
              f"{dec['users']} seeded test users, beam {dec['beam']}, top 10. The float32 row decodes the timed "
              f"float32 model; the all-levers rows decode {decode_model_text(result['decode_model'])}.", "",
              "| path | users/s | Recall@10 | NDCG@10 |", "|---|---|---|---|"]
    for row in dec["rows"]:
        lines.append(f"| {row['path']} | {row['users_per_s']:.2f} | {row['recall@10']:.4f} | {row['ndcg@10']:.4f} |")
    lines += ["", f"- decoding speed-up, new path / today's: {dec['speedup']:.2f}x "
                  f"(same model, bf16 / fp32: {dec['speedup_same_model']:.2f}x)",
              f"- bf16 vs fp32 decoding of the same model, same users: {agreement_text(dec['agreement'])}",
              f"- beams sharing the prompt vs Hugging Face's per-beam cache, both bf16 "
              f"({dec['speedup_shared_prefix']:.2f}x): {agreement_text(dec['agreement_per_beam'])}",
              f"- bf16 head too ({dec['speedup_bf16_head']:.2f}x today's): "
              f"{agreement_text(dec['agreement_bf16_head'])}",
              f"- training speed-up, all levers / float32: {levers['samples_per_s'] / base:.2f}x "
              f"(per CPU-second: {levers['cpu_samples_per_s'] / cpu_base:.2f}x)", ""]
    return "\n".join(lines)


def fastest_lines(train: list[dict[str, Any]]) -> list[str]:
    """With micro-batch rows: the fastest all-levers setting (wall clock and per CPU-second), or nothing."""
    rows = [row for row in train if row["config"].startswith("all levers")]
    if len(rows) < 2:
        return []
    wall = max(rows, key=lambda row: row["samples_per_s"])
    cpu = max(rows, key=lambda row: row["cpu_samples_per_s"])
    return [f"Fastest all-levers micro-batch setting: {wall['config']} ({wall['samples_per_s']:.2f} samples/s, "
            f"{wall['forwards_per_batch']:.2f} passes a batch); per CPU-second: {cpu['config']} "
            f"({cpu['cpu_samples_per_s']:.2f}).", ""]


def noise_lines(result: dict[str, Any]) -> list[str]:
    """The loss-noise section (``--loss-seeds``), or nothing."""
    noise = result.get("loss_noise")
    if noise is None:
        return []
    base = noise["rows"][0]
    lines = ["## Held-out loss over batch orders", "",
             f"The same {result['training'][0]['examples']} seeded windows and seed (model init, dropout), "
             f"{base['orders']} batch orders per configuration, not timed: order 0 is the timed run above, the "
             f"others draw other batches of the same windows (batch-order seeds "
             f"{', '.join(map(str, noise['order_seeds']))}: another composition and order).", "",
             "| configuration | batch orders | held-out loss (mean) | sd | min | max | per order |",
             "|---|---|---|---|---|---|---|"]
    for row in noise["rows"]:
        per_order = ", ".join(f"{x:.4f}" for x in row["heldout_losses"])
        lines.append(f"| {row['config']} | {row['orders']} | {row['mean']:.4f} | {row['sd']:.4f} | "
                     f"{row['min']:.4f} | {row['max']:.4f} | {per_order} |")
    lines += ["", f"- verdict: {noise['verdict']}", ""]
    return lines


def noise_verdict_text(noise: dict[str, Any], base: dict[str, Any], levers: dict[str, Any]) -> str:
    """The verdict in one line: the difference of the means, where it falls, within the noise or not."""
    where = "inside" if noise["mean_in_float32_range"] else "outside"
    overlap = "overlap" if noise["ranges_overlap"] else "do not overlap"
    within = ("within the batch-order noise" if noise["within_noise"]
              else f"outside the batch-order noise seen over {base['orders']} orders each")
    return (f"all levers - float32 mean held-out loss {noise['difference']:+.4f}; the all-levers mean "
            f"{levers['mean']:.4f} lies {where} the float32 range [{base['min']:.4f}, {base['max']:.4f}] and the "
            f"ranges {overlap}: the difference is {within}.")


def decode_model_text(model: dict[str, Any]) -> str:
    if "examples" not in model:
        return model["trained"]
    return (f"an all-levers model trained {model['steps']} steps ({model['examples']} seeded windows, not timed; "
            f"train loss {model['train_loss']:.4f})")


def agreement_text(a: dict[str, float]) -> str:
    return (f"identical top-10 lists {a['identical']:.1%} of users, mean top-10 overlap {a['overlap']:.1%}, "
            f"target in both lists or in neither {a['same_hit']:.1%}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    runtime.configure(quiet=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        runtime.set_threads_from_env()
    load_before = [round(x, 2) for x in os.getloadavg()]
    ds = Dataset.load(args.dataset)
    sids = read_sids(args.sids)
    valid = ds.eval_cases("valid")
    heldout = random.Random(args.seed + 7).sample(valid, min(args.heldout, len(valid)))
    test = ds.eval_cases("test")
    cases = random.Random(args.seed).sample(test, min(args.users, len(test)))
    with tempfile.TemporaryDirectory(prefix="lcrec-speed-") as tmp:
        training, dirs = run_training(args, ds, sids, Path(tmp), heldout)
        decode_model = train_decoding_model(args, ds, sids, Path(tmp), dirs)
        decoding = run_decoding(args, dirs, cases)
        tokens = prompt_tokens(dirs, cases)
        noise = run_loss_noise(args, ds, sids, Path(tmp), heldout, training) if args.loss_seeds else None
    env = f"UQF_THREADS={os.environ['UQF_THREADS']} " if os.environ.get("UQF_THREADS") else ""
    result = {
        "command": env + " ".join(["python", "-m", "benchmarks.speed.lcrec_speed", *args.argv]),
        "commit": commit(), "machine": machine(), "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()], "base_model": args.base_model or "smollm2 (embedded)",
        "windows": len(training_samples(ds, args.max_history)),
        "micro_batches": min(LcRecOptions().micro_batches, args.batch_size),
        "micro_batch_overhead": LcRecOptions().micro_batch_overhead,
        "heldout_users": [c.user_id for c in heldout], "training": training, "decode_model": decode_model,
        "decoding": decoding,
        "prompt_tokens": tokens,
    }
    if noise is not None:
        result["loss_noise"] = noise
    text = render(args, result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_md = args.out.with_name(args.out.name + ".tmp")
    tmp_md.write_text(text, encoding="utf-8")
    tmp_md.replace(args.out)
    tmp_json = args.out.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    tmp_json.replace(args.out.with_suffix(".json"))
    print(text)
    return result


if __name__ == "__main__":
    main()
