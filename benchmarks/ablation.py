"""The Office ablation (issue 7): which tokenizer gives TIGER the best semantic IDs, and why.

Tokenizers (``--variants``, all by default)

* ``text``: RQ-VAE on the text embeddings alone (the TIGER / LC-Rec way);
* ``collab``: RQ-VAE on the LightGCN item embeddings alone;
* ``concat``: RQ-VAE on L2-normalised text ++ L2-normalised collab;
* ``uqf``: RQ-VAE on the Unified Q-Former's fused embeddings;
* ``uqf-no-gate``, ``uqf-no-structural``, ``uqf-no-semantic``, ``uqf-no-modality-dropout``: UQF with
  one part switched off (``uqf fuse --no-gate`` etc.).

Every variant goes through the same library calls as the CLI: :func:`uqf_cli.fuse.fuse` (``--method``
and ablation flags), :func:`uqf_cli.quantize.quantize` (one RQ-VAE configuration for all, 3 levels x
``--codebook-size``), the metric functions of :mod:`uqf_cli.inspect_sids`, then the same TIGER
backbone (:func:`uqf_cli.rec.tiger.train`) and :func:`uqf_cli.evaluate.evaluate` on valid and test.
Seeds: the main variants (text, collab, concat, uqf) run ``--seeds`` seeds (default 3), the ablations
``--ablation-seeds`` (default 1); a seed is used for the fuser, the quantizer and TIGER alike, so the
spread includes the tokenizer's own variance.

Tokenization metrics (definitions in :mod:`uqf_cli.inspect_sids`): raw collision rate (items sharing a
full SID before dedup; after dedup every SID is unique), utilisation per level, semantic consistency
(text-cosine lift of items sharing a depth-1 / depth-2 prefix), collaborative consistency (share of
consecutive train pairs sharing a prefix, its lift over a popularity-matched random tokenizer, and the
LightGCN-cosine lift).

The collaborative-only tokenizer has no vector for items without a train interaction (13 on Office);
its SID metrics are over the warm items, and for TIGER those cold items get a reserved level-1 code
(one extra code; distinct deeper codes), the honest "no information" placement.

Optional rows: ``--baselines`` (popularity, LightGCN from the same train-gcn file, SASRec) and
``--lcrec-steps N`` (LC-Rec with the bundled SmolLM2 on the UQF and text-only SIDs, the same N steps
each, scored on the first ``--lcrec-eval-users`` test users).

Every finished unit (a tokenization, a TIGER run, a baseline) is cached under ``--work`` as a JSON
record next to its files, so a rerun with the same ``--work`` resumes; ``--fresh`` ignores the cache.
Change any budget flag -> use another ``--work`` (the record stores its settings and a mismatch is
refused rather than mixed).

Run (the committed results state their own command)::

    UQF_THREADS=1 .venv/bin/python benchmarks/ablation.py --dataset DS --text TEXT.st --collab COLLAB.st \\
        --work /tmp/ablation --out benchmarks/results/ablation_office.md

``--skip-rec`` gives the tokenization table only (minutes); ``--tiger-epochs`` / ``--tiger-preset``
size the TIGER schedule (the expensive part on a CPU).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from uqf_cli import runtime
from uqf_cli.dataset import Dataset
from uqf_cli.evaluate import evaluate
from uqf_cli.fuse import FuseOptions, fuse
from uqf_cli.inspect_sids import load_inspection
from uqf_cli.inspect_sids import metrics as sid_metrics
from uqf_cli.io import SidTable, read_sids, write_sids
from uqf_cli.quantize import QuantizeConfig, quantize
from uqf_cli.rec import backbone_module

# variant name -> (fuse --method, FuseOptions overrides, label)
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "text": ("text", {}, "text-only RQ-VAE (TIGER/LC-Rec)"),
    "collab": ("collab", {}, "collaborative-only"),
    "concat": ("concat", {}, "concatenation"),
    "uqf": ("uqf", {}, "UQF"),
    "uqf-no-gate": ("uqf", {"gate": False}, "UQF, no gate"),
    "uqf-no-structural": ("uqf", {"use_structural": False}, "UQF, no structural InfoNCE"),
    "uqf-no-semantic": ("uqf", {"use_semantic": False}, "UQF, no semantic InfoNCE"),
    "uqf-no-modality-dropout": ("uqf", {"modality_dropout": False}, "UQF, no modality dropout"),
}
MAIN_VARIANTS = ("text", "collab", "concat", "uqf")
TARGET_RATIO = 1.10
# TIGER sizes: "tiger" (the paper's shape, the backbone's default) and "small" are the backbone's own presets
# (uqf_cli.rec.tiger.PRESETS); "tiny" (d_model 64) is this script's smallest CPU shape for reduced-budget rows.
TIGER_PRESETS: dict[str, dict[str, Any]] = {
    "tiger": {"preset": "tiger"},
    "small": {"preset": "small"},
    "tiny": {"num_layers": 2, "num_decoder_layers": 2, "d_model": 64, "num_heads": 4, "d_kv": 32, "d_ff": 256},
}
DEPTHS = ("1", "2")


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def seeds_for(variant: str, args: argparse.Namespace) -> list[int]:
    n = args.seeds if variant in MAIN_VARIANTS else args.ablation_seeds
    return [args.seed + k for k in range(n)]


def load_record(path: Path, settings: dict[str, Any], fresh: bool) -> dict[str, Any] | None:
    """A cached record if it exists and was made with the same settings (a mismatch is refused)."""
    if fresh or not path.exists():
        return None
    rec = json.loads(path.read_text(encoding="utf-8"))
    if rec.get("settings") != settings:
        sys.exit(f"error: {path} was made with other settings ({rec.get('settings')}); use another --work or --fresh")
    return rec


def save_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def settings_digest(settings: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def mean_std(values: list[float]) -> tuple[float, float, int]:
    vals = [v for v in values if v is not None and not np.isnan(v)]
    if not vals:
        return float("nan"), float("nan"), 0
    return float(np.mean(vals)), (statistics.stdev(vals) if len(vals) > 1 else 0.0), len(vals)


def fmt(values: list[float], digits: int = 4, pct: bool = False) -> str:
    m, s, n = mean_std(values)
    if n == 0:
        return "-"
    scale, unit = (100.0, "%") if pct else (1.0, "")
    d = 1 if pct else digits
    return f"{m * scale:.{d}f}{unit}" if n == 1 else f"{m * scale:.{d}f} ± {s * scale:.{d}f}{unit}"


# ----------------------------------------------------------------------------------------------
# Tokenization
# ----------------------------------------------------------------------------------------------


def tokenization_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings = {"fuse_epochs": args.fuse_epochs, "codebook_size": args.codebook_size, "levels": 3}
    if args.quantize:  # only when set, so records cached before the option existed still match
        settings["quantize"] = args.quantize
    return settings


def tokenize(variant: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """fuse -> quantize -> SID metrics for one variant and seed (cached)."""
    wdir = args.work / "tok" / f"{variant}_s{seed}"
    settings = tokenization_settings(args)
    cached = load_record(wdir / "record.json", settings, args.fresh)
    if cached is not None:
        return cached
    wdir.mkdir(parents=True, exist_ok=True)
    method, overrides, _ = VARIANTS[variant]
    opts = FuseOptions(method=method, epochs=args.fuse_epochs, seed=seed, device=args.device, **overrides)
    t = time.perf_counter()
    fres = fuse(args.text, args.collab, args.dataset, wdir / "emb.st", opts, force=True)
    fuse_s = time.perf_counter() - t
    qcfg = QuantizeConfig(**{**args.quantize, "seed": seed, "codebook_sizes": [args.codebook_size] * 3})
    t = time.perf_counter()
    qres = quantize(wdir / "emb.st", wdir / "sids.jsonl", qcfg, device=args.device, force=True)
    quant_s = time.perf_counter() - t
    t = time.perf_counter()
    m = sid_metrics(load_inspection(wdir / "sids.jsonl", args.dataset, args.text, args.collab), seed=seed)
    metric_s = time.perf_counter() - t
    record = {
        "settings": settings, "variant": variant, "seed": seed, "sids": str(wdir / "sids.jsonl"),
        "items": m["items"], "fuse_omitted_items": fres.omitted_items,
        "raw_collision_rate": qres.stats.get("raw_collision_rate"), "collision_rate": m["collision_rate"],
        "utilisation": [lv["utilisation"] for lv in m["per_level"]],
        "semantic_lift": {d: m["semantic_cosine"][d]["lift"] for d in DEPTHS},
        "collab_cosine_lift": {d: m["collab_cosine"][d]["lift"] for d in DEPTHS},
        "cooc_share": {d: m["collab_adjacency"][d]["share"] for d in DEPTHS},
        "cooc_lift": {d: m["collab_adjacency"][d]["lift"] for d in DEPTHS},
        "category_purity": {d: m["category_purity"][d]["purity"] for d in DEPTHS} if "category_purity" in m else None,
        "fuse_overlap": fres.overlap, "gate": fres.gate,
        "seconds": {"fuse": round(fuse_s, 1), "quantize": round(quant_s, 1), "sid_metrics": round(metric_s, 1)},
    }
    save_record(wdir / "record.json", record)
    return record


def sids_covering(table: SidTable, ds: Dataset) -> tuple[SidTable, int]:
    """``table`` plus a reserved level-1 code for dataset items it lacks (collab-only: no train interaction)."""
    have = set(table.item_ids)
    missing = [i for i in ds.item_ids if i not in have]
    if not missing:
        return table, 0
    sizes = list(table.codebook_sizes)
    reserved = sizes[0]
    sizes[0] += 1
    width = table.codes.shape[1]
    if width > 1:  # enough deeper combinations for every missing item (grow the last codebook if not)
        inner = int(np.prod(sizes[1:-1])) if width > 2 else 1
        sizes[-1] = max(sizes[-1], -(-len(missing) // inner))
    elif len(missing) > 1:
        raise ValueError("one-level SIDs cannot give several uncovered items distinct codes")
    extra = np.zeros((len(missing), width), dtype=table.codes.dtype)
    extra[:, 0] = reserved
    # distinct deeper codes: the index written in mixed radix over the deeper codebooks
    for row in range(len(missing)):
        rest = row
        for level in range(width - 1, 0, -1):
            extra[row, level] = rest % sizes[level]
            rest //= sizes[level]
    return (SidTable(table.item_ids + missing, np.concatenate([table.codes, extra]), sizes, table.provenance,
                     table.stats, table.dataset_fingerprint), len(missing))


# ----------------------------------------------------------------------------------------------
# Recommenders
# ----------------------------------------------------------------------------------------------


def tiger_options(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    preset = TIGER_PRESETS[args.tiger_preset].get("preset")
    if preset is not None and preset not in getattr(backbone_module("tiger"), "PRESETS", {}):
        sys.exit(f"error: this uqf's TIGER backbone has no preset {preset!r}; use --tiger-preset tiny")
    return {**TIGER_PRESETS[args.tiger_preset], "epochs": args.tiger_epochs, "eval_users": args.tiger_eval_users,
            "patience": args.tiger_patience, "seed": seed, "device": args.device}


def score(model_dir: Path, args: argparse.Namespace, max_users: int | None) -> tuple[dict[str, Any], float]:
    """Test and valid metrics of a model directory (full ranking, ``uqf evaluate``), and the seconds."""
    t = time.perf_counter()
    test = evaluate(model_dir, args.dataset, "test", device=args.device, max_users=max_users)
    valid = evaluate(model_dir, args.dataset, "valid", device=args.device, max_users=max_users)
    return {"test": test["metrics"], "valid": valid["metrics"], "users": test["users"]}, time.perf_counter() - t


def run_tiger(variant: str, seed: int, tok: dict[str, Any], ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    settings = {**tokenization_settings(args), "tiger": tiger_options(args, seed), "eval_users": args.eval_users}
    wdir = args.work / "rec" / f"tiger_{variant}_s{seed}_{settings_digest(settings)}"  # budgets side by side
    cached = load_record(wdir / "record.json", settings, args.fresh)
    if cached is not None:
        return cached
    wdir.mkdir(parents=True, exist_ok=True)
    table, reserved = sids_covering(read_sids(tok["sids"]), ds)
    if reserved:
        write_sids(wdir / "sids_with_reserved.jsonl", table, force=True)
    t = time.perf_counter()
    summary = backbone_module("tiger").train(ds, table, wdir / "model", settings["tiger"], force=True)
    train_s = time.perf_counter() - t
    scores, eval_s = score(wdir / "model", args, args.eval_users)
    record = {"settings": settings, "variant": variant, "seed": seed, **scores, "reserved_cold_items": reserved,
              "best_epoch": summary["best_epoch"], "epochs_run": summary["epochs_run"],
              "parameters": summary["parameters"],
              "seconds": {"train": round(train_s, 1), "evaluate": round(eval_s, 1)}}
    save_record(wdir / "record.json", record)
    return record


def run_baseline(name: str, ds: Dataset, args: argparse.Namespace, sids: SidTable | None = None,
                 tag: str | None = None) -> dict[str, Any]:
    """pop / lightgcn / sasrec / lcrec through ``train`` + ``evaluate`` (cached)."""
    tag = tag or name
    wdir = args.work / "rec" / tag
    options: dict[str, Any] = {"seed": args.seed, "device": args.device}
    max_users = args.eval_users
    if name == "lightgcn":
        options = {"collab": str(args.collab)}
    elif name == "lcrec":
        options["max_steps"] = args.lcrec_steps
        max_users = args.lcrec_eval_users
    settings = {"options": options, "eval_users": max_users, "sids": tag}
    cached = load_record(wdir / "record.json", settings, args.fresh)
    if cached is not None:
        return cached
    wdir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    backbone_module(name).train(ds, sids, wdir / "model", options, force=True)
    train_s = time.perf_counter() - t
    scores, eval_s = score(wdir / "model", args, max_users)
    record = {"settings": settings, "name": tag, **scores,
              "seconds": {"train": round(train_s, 1), "evaluate": round(eval_s, 1)}}
    save_record(wdir / "record.json", record)
    return record


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def command_line() -> str:
    env = f"UQF_THREADS={os.environ['UQF_THREADS']} " if os.environ.get("UQF_THREADS") else ""
    return env + " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv])


def code_version() -> str:
    """The commit the run used, and whether the package had uncommitted changes (several people edit it)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "uqf_cli"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"commit {head}" + (" + uncommitted changes in uqf_cli/" if dirty else "")


def machine_line(args: argparse.Namespace) -> str:
    dev = runtime.resolve_device(args.device)
    cpu = f"CPU ({os.cpu_count()} cores, {platform.machine()})"
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{where}, {torch.get_num_threads()} torch thread(s), load average {load:.1f} at the end of the run"


def unit_seconds(toks: dict, tigers: dict, others: dict) -> float:
    """Sum of the stage seconds recorded in every record (cache-independent cost of the whole table)."""
    recs = [r for rs in toks.values() for r in rs] + [r for rs in tigers.values() for r in rs] + list(others.values())
    return float(sum(sum(r["seconds"].values()) for r in recs))


def tokenization_table(toks: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [
        "| tokenizer | seeds | raw collisions | utilisation L1/L2/L3 | semantic lift d1 | semantic lift d2 | "
        "co-occ. pair share d1 | co-occ. lift d1 | co-occ. lift d2 | collab-cos lift d1 | collab-cos lift d2 | "
        "fuse s | quantize s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, recs in toks.items():
        util = "/".join(f"{100 * mean_std([r['utilisation'][lv] for r in recs])[0]:.0f}%" for lv in range(3))
        lines.append(
            f"| {VARIANTS[variant][2]} | {len(recs)} | {fmt([r['raw_collision_rate'] for r in recs], pct=True)} | "
            f"{util} | {fmt([r['semantic_lift']['1'] for r in recs], 3)} | "
            f"{fmt([r['semantic_lift']['2'] for r in recs], 3)} | {fmt([r['cooc_share']['1'] for r in recs], 3)} | "
            f"{fmt([r['cooc_lift']['1'] for r in recs], 2)} | {fmt([r['cooc_lift']['2'] for r in recs], 2)} | "
            f"{fmt([r['collab_cosine_lift']['1'] for r in recs], 3)} | "
            f"{fmt([r['collab_cosine_lift']['2'] for r in recs], 3)} | "
            f"{fmt([r['seconds']['fuse'] for r in recs], 0)} | {fmt([r['seconds']['quantize'] for r in recs], 0)} |")
    return lines


def rec_table(rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["| model | seeds | test R@5 | test R@10 | test N@5 | test N@10 | valid N@10 | train s | eval s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, recs in rows.items():
        te = [r["test"] for r in recs]
        lines.append(
            f"| {label} | {len(recs)} | {fmt([m['recall@5'] for m in te])} | {fmt([m['recall@10'] for m in te])} | "
            f"{fmt([m['ndcg@5'] for m in te])} | {fmt([m['ndcg@10'] for m in te])} | "
            f"{fmt([r['valid']['ndcg@10'] for r in recs])} | {fmt([r['seconds']['train'] for r in recs], 0)} | "
            f"{fmt([r['seconds']['evaluate'] for r in recs], 0)} |")
    return lines


def ratio_lines(tigers: dict[str, list[dict[str, Any]]]) -> list[str]:
    if "uqf" not in tigers or "text" not in tigers:
        return []
    u = mean_std([r["test"]["ndcg@10"] for r in tigers["uqf"]])
    tx = mean_std([r["test"]["ndcg@10"] for r in tigers["text"]])
    if not tx[0] > 0:
        return ["", "UQF / text-only test NDCG@10: undefined (text-only NDCG@10 is 0)."]
    ratio = u[0] / tx[0]
    verdict = "meets" if ratio >= TARGET_RATIO else "falls short of"
    return ["", f"**UQF / text-only test NDCG@10 = {u[0]:.4f} / {tx[0]:.4f} = {ratio:.3f}** ({u[2]} and {tx[2]} "
                f"seed(s)); this {verdict} the {TARGET_RATIO:.2f} target at this budget."]


def render(args: argparse.Namespace, ds: Dataset, toks: dict, tigers: dict, others: dict, wall: float) -> str:
    rq = ("RQ-VAE defaults" if not args.quantize
          else "RQ-VAE defaults except " + ", ".join(f"{k}={v}" for k, v in args.quantize.items()))
    budget = (f"fuse {args.fuse_epochs} epochs (other fuse options at their defaults); {rq}, 3 x "
              f"{args.codebook_size} codes; seeds {args.seeds} (main) / {args.ablation_seeds} (ablations)")
    if not args.skip_rec:
        size = TIGER_PRESETS[args.tiger_preset]
        budget += (f"; TIGER preset `{args.tiger_preset}` ({size}), at most {args.tiger_epochs} epochs, "
                   f"early stopping on {args.tiger_eval_users} valid users (patience {args.tiger_patience}); "
                   f"evaluation on {'all' if args.eval_users is None else f'the first {args.eval_users}'} users, "
                   "beam 20")
    lines = [
        "# Ablation on Amazon Office: tokenizers for generative recommendation"
        + (" (tokenization only)" if args.skip_rec else ""),
        "",
        f"Command: `{command_line()}`",
        "",
        f"Code: {code_version()} (at the end of the run).",
        "",
        f"Machine: {machine_line(args)}. Time: {unit_seconds(toks, tigers, others) / 60:.1f} min summed over "
        f"every unit's recorded stage times (this invocation's wall time: {wall / 60:.1f} min; units cached by an "
        "earlier invocation with the same `--work` cost it nothing).",
        "",
        f"Data: {args.dataset} ({len(ds.user_ids):,} users, {len(ds.item_ids):,} items, "
        f"{ds.num_interactions:,} interactions, fingerprint {ds.fingerprint}); text {args.text}; collab {args.collab}.",
        "",
        f"Budget: {budget}.",
        "",
        "## SID space (tokenization metrics, mean ± std over seeds)",
        "",
        "Raw collisions: items sharing a full SID before dedup (after dedup all SIDs are unique). Semantic lift: "
        "text-cosine lift of items sharing a depth-d prefix (0 random, 1 identical). Co-occurrence: share of "
        "consecutive TRAIN pairs sharing the level-1 prefix, and its lift over a popularity-matched random "
        "tokenizer. Collab-cos lift: the cosine lift on the LightGCN embeddings. Collaborative-only SIDs cover the "
        "warm items only.",
        "",
        *tokenization_table(toks),
    ]
    if tigers:
        lines += ["", "## TIGER on each tokenizer (full ranking, mean ± std over seeds)", ""]
        lines += rec_table({VARIANTS[v][2]: recs for v, recs in tigers.items()})
        lines += ratio_lines(tigers)
    if others:
        lines += ["", "## Baselines and other backbones", ""]
        lines += rec_table({k: [v] for k, v in others.items()})
        if any(k.startswith("LC-Rec") for k in others):
            lines += ["", f"LC-Rec rows: bundled SmolLM2 + LoRA, {args.lcrec_steps} steps each, scored on the first "
                          f"{args.lcrec_eval_users} users of each split."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, type=Path, help="uqf prepare output (Office)")
    ap.add_argument("--text", required=True, type=Path, help="uqf embed-text file of that dataset")
    ap.add_argument("--collab", required=True, type=Path, help="uqf train-gcn file of that dataset")
    ap.add_argument("--work", required=True, type=Path, help="cache directory (a rerun resumes from it)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation_office.md"))
    ap.add_argument("--json", type=Path, default=None, help="every number (default: --out with .json)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}")
    ap.add_argument("--seeds", type=int, default=3, help="seeds for text, collab, concat, uqf")
    ap.add_argument("--ablation-seeds", type=int, default=1, help="seeds for the uqf-no-* variants")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--fuse-epochs", type=int, default=FuseOptions.epochs)
    ap.add_argument("--codebook-size", type=int, default=256)
    ap.add_argument("--quantize", type=json.loads, default={},
                    help='QuantizeConfig overrides as JSON, e.g. \'{"code_dim": 4, "epochs": 300}\' (default: none)')
    ap.add_argument("--skip-rec", action="store_true", help="tokenization metrics only (no TIGER)")
    ap.add_argument("--tiger-variants", default=None, help="train TIGER only on these variants (default: all)")
    ap.add_argument("--tiger-epochs", type=int, default=20)
    ap.add_argument("--tiger-preset", choices=list(TIGER_PRESETS), default="tiger")
    ap.add_argument("--tiger-eval-users", type=int, default=1000, help="valid users for early stopping")
    ap.add_argument("--tiger-patience", type=int, default=3)
    ap.add_argument("--eval-users", type=int, default=None, help="score only the first N users (default: all)")
    ap.add_argument("--baselines", action="store_true", help="popularity, LightGCN, SASRec rows")
    ap.add_argument("--lcrec-steps", type=int, default=0, help="LC-Rec rows (UQF and text SIDs) with N steps each")
    ap.add_argument("--lcrec-eval-users", type=int, default=200)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--fresh", action="store_true", help="ignore cached records in --work")
    args = ap.parse_args(argv)
    args.variant_list = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variant_list if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    tv = args.tiger_variants
    args.tiger_list = args.variant_list if tv is None else [v.strip() for v in tv.split(",") if v.strip()]
    if args.lcrec_steps and not {"uqf", "text"} <= set(args.variant_list):
        ap.error("--lcrec-steps needs the uqf and text variants")
    check_quantize_overrides(ap, args.quantize)
    return args


def check_quantize_overrides(ap: argparse.ArgumentParser, overrides: Any) -> None:
    """``--quantize`` may change any RQ-VAE knob except those the ablation fixes (seed, 3 levels, sizes)."""
    if not isinstance(overrides, dict):
        ap.error("--quantize must be a JSON object, e.g. '{\"code_dim\": 4}'")
    fixed = sorted({"seed", "levels", "codebook_sizes"} & set(overrides))
    if fixed:
        ap.error(f"--quantize cannot set {', '.join(fixed)} (use --seed / --seeds and --codebook-size)")
    known = set(QuantizeConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        ap.error(f"--quantize: unknown QuantizeConfig field(s) {', '.join(unknown)}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    runtime.configure(quiet=not sys.stderr.isatty())
    runtime.set_threads_from_env()
    started = time.perf_counter()
    ds = Dataset.load(args.dataset)
    toks: dict[str, list[dict[str, Any]]] = {}
    for variant in args.variant_list:
        for seed in seeds_for(variant, args):
            print(f"[ablation] tokenize {variant} seed {seed}", file=sys.stderr, flush=True)
            toks.setdefault(variant, []).append(tokenize(variant, seed, args))
    tigers: dict[str, list[dict[str, Any]]] = {}
    others: dict[str, dict[str, Any]] = {}
    if not args.skip_rec:
        for variant in args.tiger_list:
            for tok in toks.get(variant, []):
                print(f"[ablation] TIGER {variant} seed {tok['seed']}", file=sys.stderr, flush=True)
                tigers.setdefault(variant, []).append(run_tiger(variant, tok["seed"], tok, ds, args))
        if args.baselines:
            for name, label in (("pop", "popularity (history masked)"), ("lightgcn", "LightGCN (history masked)"),
                                ("sasrec", "SASRec")):
                print(f"[ablation] baseline {name}", file=sys.stderr, flush=True)
                others[label] = run_baseline(name, ds, args)
        if args.lcrec_steps:
            for variant in ("text", "uqf"):
                table = read_sids(toks[variant][0]["sids"])
                label = f"LC-Rec, {VARIANTS[variant][2]} SIDs"
                others[label] = run_baseline("lcrec", ds, args, table, tag=f"lcrec_{variant}")
    wall = time.perf_counter() - started
    report = render(args, ds, toks, tigers, others, wall)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    everything = {"command": command_line(), "machine": machine_line(args), "code": code_version(),
                  "wall_seconds": round(wall, 1),
                  "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  "tiger_presets": TIGER_PRESETS, "quantize_config": asdict(QuantizeConfig(**args.quantize)),
                  "tokenization": toks, "tiger": tigers, "others": others}
    json_path = args.json or args.out.with_suffix(".json")
    json_path.write_text(json.dumps(everything, indent=1, sort_keys=True, default=str), encoding="utf-8")
    print(report)
    return everything


if __name__ == "__main__":
    main()
