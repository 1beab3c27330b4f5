"""The units of the tokenizer comparison (``benchmarks/quality/ablation.py``): what each one runs and records.

A worker process runs one task: ``tokenize`` (fuse -> quantize -> SID metrics, cached under
``--work/tok``), ``calibrate`` (times TIGER training steps and a validation pass on random SIDs of
the comparison's shape) or ``unit`` (a SID unit: TIGER on the cached SIDs, then ``evaluate``; or a
baseline), which writes the unit's record.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.quality import workers
from uqf_cli.core import runtime
from uqf_cli.data.dataset import Dataset
from uqf_cli.evaluation import evaluate
from uqf_cli.evaluation.inspect_sids import load_inspection
from uqf_cli.evaluation.inspect_sids import metrics as sid_metrics
from uqf_cli.files import SidTable, read_sids, sha256_file, write_sids
from uqf_cli.fuse import FuseOptions, fuse
from uqf_cli.quantize import QuantizeConfig, quantize
from uqf_cli.quantize.letter import LetterConfig
from uqf_cli.rec import backbone_module
from uqf_cli.rec.base import read_model_meta
from uqf_cli.rec.lcrec.options import LcRecOptions
from uqf_cli.rec.tiger.options import TigerOptions
from uqf_cli.rec.tiger.training import validation_sample

DEPTHS = ("1", "2")

# variant name -> {"method", "fuse" overrides, "quantize" overrides, "label", optional "letter" (LetterConfig fields
# but collab: the LETTER terms on the --collab file)}
VARIANTS: dict[str, dict[str, Any]] = {
    "text": {"method": "text", "label": "text-only RQ-VAE (TIGER/LC-Rec)"},
    "collab": {"method": "collab", "label": "collaborative-only"},
    "concat": {"method": "concat", "label": "concatenation"},
    "uqf": {"method": "uqf", "label": "UQF"},
    "uqf-no-gate": {"method": "uqf", "fuse": {"gate": False}, "label": "UQF, no gate"},
    "uqf-no-structural": {"method": "uqf", "fuse": {"use_structural": False}, "label": "UQF, no structural InfoNCE"},
    "uqf-no-semantic": {"method": "uqf", "fuse": {"use_semantic": False}, "label": "UQF, no semantic InfoNCE"},
    "uqf-no-modality-dropout": {"method": "uqf", "fuse": {"modality_dropout": False},
                                "label": "UQF, no modality dropout"},
    # LETTER-style tokenizer: text RQ-VAE + collaborative alignment and code diversity (uqf quantize --collab)
    "letter": {"method": "text", "letter": {"w_collab": 0.02, "w_diversity": 1e-4},
               "label": "LETTER-style (text RQ-VAE + collab alignment)"},
}
MAIN_VARIANTS = ("text", "collab", "concat", "uqf")
BASELINES = {"pop": "popularity (history masked)", "lightgcn": "LightGCN (history masked)", "sasrec": "SASRec"}
# TIGER sizes: the backbone's presets ("tiger" = the paper's shape, "small") and "tiny" for smoke runs.
TIGER_PRESETS: dict[str, dict[str, Any]] = {
    "tiger": {"preset": "tiger"},
    "small": {"preset": "small"},
    "tiny": {"num_layers": 2, "num_decoder_layers": 2, "d_model": 64, "num_heads": 4, "d_kv": 32, "d_ff": 256},
}
# The LC-Rec CPU protocol (docs/lcrec.md): ablation.py's --lcrec-* defaults. Its own choices are written here; the
# rest (users and beam of a validation, batch, lr, no align tasks; None = the backbone's default) are LcRecOptions'.
_LCREC = LcRecOptions()
LCREC_PROTOCOL: dict[str, Any] = {
    "windows": "last:3", "epochs": 2.0, "max_steps": None, "eval_steps": 300, "eval_users": _LCREC.eval_users,
    "eval_beam": _LCREC.eval_beam, "patience": 3, "batch_size": _LCREC.batch_size, "lr": _LCREC.lr,
    "align_tasks": _LCREC.align_tasks, "base_model": None, "score_valid": False,
    "decay_epochs": _LCREC.decay_epochs, "min_lr_ratio": _LCREC.min_lr_ratio,
}
# Protocol keys added later: in a unit's settings only when given, so the records made before them stay valid.
LCREC_LATER = ("decay_epochs", "min_lr_ratio")
SAFETY = 0.85  # share of the remaining budget the epoch cap may plan on (load changes, stragglers)


# ----------------------------------------------------------------------------------------------
# Units and their records
# ----------------------------------------------------------------------------------------------


def sid_unit(variant: str, seed: int) -> str:
    return f"sid_{variant}_s{seed}"


def baseline_unit(name: str, seed: int) -> str:
    return f"base_{name}_s{seed}"


def variant_seeds(variant: str, args: argparse.Namespace) -> int:
    """Seeds of a variant: its definition's ``"seeds"`` (e.g. 1 for a setting only screened on validation), else
    ``--seeds`` for the main and defined variants and ``--ablation-seeds`` for the built-in ablations."""
    spec = args.defined.get(variant, {})
    if "seeds" in spec:
        return int(spec["seeds"])
    return args.seeds if variant in MAIN_VARIANTS or variant in args.defined else args.ablation_seeds


def planned_units(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(SID units, baseline units) this invocation covers, seed by seed (every variant's first seed before any
    second seed), so an interrupted table already has one row per variant."""
    seeds = {v: variant_seeds(v, args) for v in args.variant_list}
    sids = [sid_unit(v, args.seed + k) for k in range(max(seeds.values(), default=0))
            for v in args.variant_list if k < seeds[v]]
    bases: list[str] = []
    if args.baselines:
        bases = [baseline_unit("pop", args.seed), baseline_unit("lightgcn", args.seed)]
        bases += [baseline_unit("sasrec", args.seed + k) for k in range(args.seeds)]
    return sids, bases


def parse_unit(name: str) -> tuple[str, str, int]:
    kind, rest = name.split("_", 1)
    body, seed = rest.rsplit("_s", 1)
    return kind, body, int(seed)


def records_dir(args: argparse.Namespace) -> Path:
    return args.out.parent / args.out.stem / "units"


def manifest_path(args: argparse.Namespace) -> Path:
    return args.out.parent / args.out.stem / "run.json"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def digest(data: Any) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]


def variant_spec(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    return {**VARIANTS, **args.defined}[variant]


def tokenization_settings(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    spec = variant_spec(variant, args)
    out = {"method": spec["method"], "fuse": {"epochs": args.fuse_epochs, **spec.get("fuse", {})},
           "quantize": {**args.quantize, **spec.get("quantize", {})},
           "codebook_size": spec.get("codebook_size", args.codebook_size), "levels": spec.get("levels", args.levels)}
    if "letter" in spec:  # only then: the settings (and cache keys) of the other variants stay as they were
        out["letter"] = {"clusters": min(10, out["codebook_size"]), **spec["letter"]}
    return out


def tiger_settings(args: argparse.Namespace, epochs: int) -> dict[str, Any]:
    """The TIGER options of every SID unit: the preset's shape, the learning-rate decay and its floor (named so
    that records say how their runs could end), ``--tiger-recipe``, the cap and early stopping."""
    schedule = {"decay_epochs": TigerOptions.decay_epochs, "min_lr_ratio": TigerOptions.min_lr_ratio}
    return {**TIGER_PRESETS[args.tiger_preset], **schedule, **args.tiger_recipe, "epochs": epochs,
            "eval_users": args.tiger_eval_users, "patience": args.tiger_patience}


def lcrec_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The LC-Rec training options of the --lcrec-* flags (``score_valid`` is the runner's, not the backbone's)."""
    return {key: getattr(args, f"lcrec_{key}") for key in LCREC_PROTOCOL
            if key not in LCREC_LATER or getattr(args, f"lcrec_{key}") != LCREC_PROTOCOL[key]}


def unit_settings(name: str, args: argparse.Namespace, epoch_cap: int | None) -> dict[str, Any]:
    """What a record must have been made with to be reused (data, tokenizer, budget)."""
    kind, body, _ = parse_unit(name)
    common = {"data": args.data_digest, "eval_users": args.eval_users}
    if kind == "sid" and getattr(args, "backbone", "tiger") == "lcrec":
        return {**common, "tokenization": tokenization_settings(body, args), "lcrec": lcrec_settings(args)}
    if kind == "sid":
        return {**common, "tokenization": tokenization_settings(body, args),
                "tiger": tiger_settings(args, epoch_cap or args.tiger_epochs)}
    if body == "sasrec":
        return {**common, "sasrec": {"patience": args.tiger_patience}}
    return common


def finished(name: str, args: argparse.Namespace, epoch_cap: int | None) -> bool:
    """True when a record of ``name`` exists with these settings; exits when it exists with others."""
    rec = read_json(records_dir(args) / f"{name}.json")
    if rec is None:
        return False
    if rec["settings"] != unit_settings(name, args, epoch_cap):
        sys.exit(f"error: {records_dir(args) / (name + '.json')} was made with other settings; "
                 "use another --out (or delete that record)")
    return True


# ----------------------------------------------------------------------------------------------
# Worker tasks
# ----------------------------------------------------------------------------------------------


def run_worker(args: argparse.Namespace) -> None:
    runtime.configure(quiet=True)
    runtime.set_threads_from_env()
    action, name, *rest = args.worker
    if action == "tokenize":
        tokenize(name, args)
    elif action == "calibrate":
        write_json(args.work / "calibration" / f"{name}.json", calibrate(args))
    elif action == "unit":
        run_unit(name, args, int(rest[0]) or None)
    else:
        raise SystemExit(f"error: unknown worker task {action!r}")


def tokenize(unit: str, args: argparse.Namespace) -> dict[str, Any]:
    """fuse -> quantize -> SID metrics for one variant and seed (cached by settings in --work)."""
    _, variant, seed = parse_unit(unit)
    wdir = args.work / "tok" / f"{variant}_s{seed}"
    settings = {**tokenization_settings(variant, args), "data": args.data_digest}
    cached = read_json(wdir / "record.json")
    if cached is not None and cached["settings"] == settings:
        # the SIDs of this folder, wherever it was made: another run's tok/ folder copied here is reused as is
        return {**cached, "sids": str(wdir / "sids.jsonl")}
    wdir.mkdir(parents=True, exist_ok=True)
    spec = variant_spec(variant, args)
    opts = FuseOptions(**{**settings["fuse"], "method": spec["method"], "seed": seed, "device": args.device})
    t = time.perf_counter()
    fres = fuse(args.text, args.collab, args.dataset, wdir / "emb.st", opts, force=True)
    fuse_s = time.perf_counter() - t
    qcfg = QuantizeConfig(**{**settings["quantize"], "seed": seed, "levels": settings["levels"],
                             "codebook_sizes": [settings["codebook_size"]] * settings["levels"]})
    t = time.perf_counter()
    letter = LetterConfig(collab=str(args.collab), **settings["letter"]) if "letter" in settings else None
    qres = quantize(wdir / "emb.st", wdir / "sids.jsonl", qcfg, device=args.device, force=True, letter=letter)
    quant_s = time.perf_counter() - t
    m = sid_metrics(load_inspection(wdir / "sids.jsonl", args.dataset, args.text, args.collab), seed=seed)
    record = {
        "settings": settings, "variant": variant, "seed": seed, "sids": str(wdir / "sids.jsonl"),
        "items": m["items"], "fuse_omitted_items": fres.omitted_items,
        "raw_collision_rate": qres.stats.get("raw_collision_rate"), "collision_rate": m["collision_rate"],
        "utilisation": [lv["utilisation"] for lv in m["per_level"]],
        "semantic_lift": {d: m["semantic_cosine"][d]["lift"] for d in DEPTHS},
        "collab_cosine_lift": {d: m["collab_cosine"][d]["lift"] for d in DEPTHS},
        "cooc_share": {d: m["collab_adjacency"][d]["share"] for d in DEPTHS},
        "cooc_lift": {d: m["collab_adjacency"][d]["lift"] for d in DEPTHS},
        "items_per_prefix": m.get("items_per_prefix"),
        "fuse_overlap": fres.overlap, "gate": fres.gate,
        "seconds": {"fuse": round(fuse_s, 1), "quantize": round(quant_s, 1)},
    }
    write_json(wdir / "record.json", record)
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
    for row in range(len(missing)):  # distinct deeper codes: the row index in mixed radix
        rest = row
        for level in range(width - 1, 0, -1):
            extra[row, level] = rest % sizes[level]
            rest //= sizes[level]
    return (SidTable(table.item_ids + missing, np.concatenate([table.codes, extra]), sizes, table.provenance,
                     table.stats, table.dataset_fingerprint), len(missing))


def score(model_dir: Path, args: argparse.Namespace, valid_too: bool = True) -> dict[str, Any]:
    """Test and valid metrics of a model directory (full ranking, as ``uqf evaluate``), test by popularity, and
    each test user's NDCG@10 (in the dataset's test-case order) for the paired tests of the report.

    ``valid_too=False`` skips the full validation pass (LC-Rec: its training already ranked a validation
    sample; the record's ``valid`` then holds ``None``)."""
    t = time.perf_counter()
    preds = model_dir.parent / "test.predictions.jsonl"
    test = evaluate(model_dir, args.dataset, split="test", device=args.device, max_users=args.eval_users,
                    by_popularity=True, predictions=preds, force=True)
    valid = (evaluate(model_dir, args.dataset, split="valid", device=args.device, max_users=args.eval_users)["metrics"]
             if valid_too else {"ndcg@10": None, "recall@10": None})
    return {"test": test["metrics"], "valid": valid, "users": test["users"],
            "test_by_popularity": test["by_popularity"], "test_ndcg10_per_user": per_user_ndcg(preds),
            "evaluate_seconds": round(time.perf_counter() - t, 1)}


def per_user_ndcg(predictions: Path, k: int = 10) -> list[float]:
    """NDCG@k of each line of a predictions file (one target per user: 1 / log2(rank + 2) when in the top k)."""
    out = []
    with open(predictions, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            top = rec["item_ids"][:k]
            out.append(round(1.0 / float(np.log2(top.index(rec["target"]) + 2)), 5) if rec["target"] in top else 0.0)
    return out


def run_unit(name: str, args: argparse.Namespace, cap: int | None) -> dict[str, Any]:
    kind, body, seed = parse_unit(name)
    ds = Dataset.load(args.dataset)
    wdir = args.work / "rec" / name
    wdir.mkdir(parents=True, exist_ok=True)
    drop_stale_checkpoints(wdir, unit_settings(name, args, cap))
    rec = run_sid(body, seed, ds, wdir, args, cap) if kind == "sid" else run_baseline(body, seed, ds, wdir, args)
    rec.update({"unit": name, "settings": unit_settings(name, args, cap), "machine": machine_line(args.device),
                "code": code_version(), "command": command_line(args),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
    write_json(records_dir(args) / f"{name}.json", rec)
    return rec


def drop_stale_checkpoints(wdir: Path, settings: dict[str, Any]) -> None:
    """Units resume interrupted training from checkpoints in ``wdir``; those of a run with other settings (another
    recipe or cap sharing ``--work``) would be refused, so they are removed and the unit starts over."""
    stamp = wdir / "unit_settings.json"
    if read_json(stamp) != settings:
        for old in wdir.glob("model.ckpt*"):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        write_json(stamp, settings)


def run_sid(variant: str, seed: int, ds: Dataset, wdir: Path, args: argparse.Namespace, cap: int | None
            ) -> dict[str, Any]:
    tok = tokenize(sid_unit(variant, seed), args)
    # the SIDs file this unit trains on, by content, so a report can tell two runs' units used the same SIDs (not a
    # setting: records made before it stay valid for resume)
    tok = {**tok, "sids_sha256": sha256_file(tok["sids"])}
    table, reserved = sids_covering(read_sids(tok["sids"]), ds)
    if reserved:
        write_sids(wdir / "sids_with_reserved.jsonl", table, force=True)
    if getattr(args, "backbone", "tiger") == "lcrec":
        return run_lcrec(variant, seed, ds, table, wdir, args, tok, reserved)
    epochs = cap or args.tiger_epochs
    # resume: a unit interrupted mid-training (a session's end) goes on from its last epoch checkpoint
    options = {**tiger_settings(args, epochs), "seed": seed, "device": args.device, "resume": True}
    t = time.perf_counter()
    summary = backbone_module("tiger").train(ds, table, wdir / "model", options, force=True)
    train_s = summary.get("train_seconds", time.perf_counter() - t)  # adds up across a resume
    scores = score(wdir / "model", args)
    curve = [{"epoch": h["epoch"], "loss": h["loss"], "valid_ndcg10": h.get("valid_ndcg10")}
             for h in summary["history"]]
    stopped = summary["epochs_run"] < epochs or summary["epochs_run"] - summary["best_epoch"] >= args.tiger_patience
    return {"kind": "sid", "variant": variant, "seed": seed, "tokenization": tok, **scores,
            "reserved_cold_items": reserved, "epoch_cap": epochs, "epochs_run": summary["epochs_run"],
            "best_epoch": summary["best_epoch"], "early_stopped": bool(stopped), "curve": curve,
            "curve_users": summary["eval_users"], "parameters": summary["parameters"],
            "seconds": {**tok["seconds"], "train": round(train_s, 1), "evaluate": scores["evaluate_seconds"]}}


def run_lcrec(variant: str, seed: int, ds: Dataset, table: SidTable, wdir: Path, args: argparse.Namespace,
              tok: dict[str, Any], reserved: int) -> dict[str, Any]:
    """An LC-Rec SID unit: the protocol's training (early stopping on a validation sample), then test on all users."""
    settings = lcrec_settings(args)
    options = {k: v for k, v in settings.items() if k != "score_valid" and v is not None}
    options.update(seed=seed, device=args.device, resume=True)
    t = time.perf_counter()
    summary = backbone_module("lcrec").train(ds, table, wdir / "model", options, force=True)
    train_s = time.perf_counter() - t
    scores = score(wdir / "model", args, valid_too=bool(settings["score_valid"]))
    per_epoch = max(1, summary["steps_per_epoch"])
    curve = [{"epoch": round(h["step"] / per_epoch, 3), "step": h["step"], "loss": h["loss"],
              "valid_ndcg10": h["valid_ndcg10"]} for h in summary.get("history", [])]
    return {"kind": "sid", "backbone": "lcrec", "variant": variant, "seed": seed, "tokenization": tok, **scores,
            "reserved_cold_items": reserved, "steps_run": summary["steps"], "best_step": summary.get("best_step"),
            "steps_per_epoch": per_epoch, "early_stopped": bool(summary.get("stopped_early")), "curve": curve,
            "best_epoch": round((summary.get("best_step") or 0) / per_epoch, 3),
            "curve_users": summary.get("eval_users"), "samples": summary["samples"],
            "precision": summary["precision"], "parameters": summary["trainable_parameters"],
            "seconds": {**tok["seconds"], "train": round(train_s, 1), "evaluate": scores["evaluate_seconds"]}}


def run_baseline(name: str, seed: int, ds: Dataset, wdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"seed": seed, "device": args.device, "resume": True}
    if name == "lightgcn":
        options["collab"] = str(args.collab)
    elif name == "sasrec":
        options["patience"] = args.tiger_patience
    t = time.perf_counter()
    summary = backbone_module(name).train(ds, None, wdir / "model", options, force=True)
    train_s = time.perf_counter() - t
    scores = score(wdir / "model", args)
    rec: dict[str, Any] = {"kind": "baseline", "name": name, "seed": seed, **scores,
                           "seconds": {"train": round(train_s, 1), "evaluate": scores["evaluate_seconds"]}}
    if name == "sasrec":
        epochs = read_model_meta(wdir / "model").get("epochs") or []
        rec["curve"] = [{"epoch": h["epoch"], "loss": h["loss"], "valid_ndcg10": h.get("valid_ndcg@10")}
                        for h in epochs]
        rec.update(epochs_run=summary["epochs_run"], best_epoch=summary["best_epoch"],
                   early_stopped=summary["epochs_run"] - summary["best_epoch"] >= args.tiger_patience)
    return rec


# ----------------------------------------------------------------------------------------------
# Calibration
# ----------------------------------------------------------------------------------------------


def calibrate(args: argparse.Namespace, steps: int = 12) -> dict[str, float]:
    """Seconds of one TIGER epoch, one validation pass and the final scoring, on random SIDs of this shape.

    Runs the training loop's own pieces (batches, model, optimizer step) for ``steps`` timed batches
    after two warm-up batches; the epoch time is their mean times the batches per epoch.
    """
    from uqf_cli.rec import tiger

    ds = Dataset.load(args.dataset)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, args.codebook_size, size=(len(ds.item_ids), args.levels))
    table = SidTable(list(ds.item_ids), codes, [args.codebook_size] * args.levels, {}, {}, ds.fingerprint)
    opts = tiger.TigerOptions.from_dict({**tiger_settings(args, 1), "seed": 0, "device": args.device})
    device = runtime.resolve_device(opts.device)
    vocab = tiger.TigerVocab.build(table, table.item_ids, opts.user_tokens)
    input_ids, mask, labels = tiger._tensorize(ds, vocab, opts)
    lengths = mask.sum(1).clamp(min=1)
    model = tiger.build_model(vocab, opts).to(device)
    if device.type == "cpu":
        tiger.use_fast_dropout(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    amp_dtype, scaler = tiger._amp(device)
    batches = tiger._length_bucketed_batches(lengths, opts.batch_size, torch.Generator().manual_seed(0))
    timed: list[float] = []
    for n in range(steps + 2):  # cycles through the epoch's batches when it has fewer
        idx = batches[n % len(batches)]
        width = int(lengths[idx].max())
        t = time.perf_counter()
        tiger._step(model, optimizer, sched, scaler, amp_dtype, input_ids[idx, :width].to(device),
                    mask[idx, :width].to(device), labels[idx].to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        if n >= 2:
            timed.append(time.perf_counter() - t)
    valid = validation_sample(ds, opts.eval_users, 0)  # what a run validates (0 = all users)
    rec = tiger.TigerRecommender(model, vocab, opts.max_history, device)
    t = time.perf_counter()
    rec.recommend([c.history for c in valid], k=10, beam_size=opts.eval_beam)
    eval_s = time.perf_counter() - t
    scored = 2 * min(len(ds.eval_cases("test")), args.eval_users or len(ds.eval_cases("test")))
    return {"epoch_seconds": float(np.mean(timed)) * len(batches), "eval_seconds": eval_s,
            "final_eval_seconds": eval_s * scored / max(1, len(valid)), "batches_per_epoch": len(batches),
            "timed_steps": len(timed)}


# ----------------------------------------------------------------------------------------------
# Where a record came from
# ----------------------------------------------------------------------------------------------


def command_line(args: argparse.Namespace) -> str:
    env = f"UQF_THREADS={os.environ['UQF_THREADS']} " if os.environ.get("UQF_THREADS") else ""
    return env + " ".join(shlex.quote(a) for a in ["python", "-m", "benchmarks.quality.ablation", *args.argv])


def code_version() -> str:
    """The commit the unit ran on, and whether uqf_cli/ or benchmarks/ had uncommitted changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "uqf_cli", "benchmarks/quality/ablation*.py"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"commit {head}" + (" + uncommitted changes" if dirty else "")


def machine_line(device: str, jobs: int = 1) -> str:
    """The machine in words; on a CPU with each of ``jobs`` workers' threads (in a worker: its own, ``jobs`` 1)."""
    dev = runtime.resolve_device(device)
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} ({os.cpu_count()} CPU cores)"
    threads = workers.share_threads(jobs)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()}), {threads} torch thread(s) per worker"

