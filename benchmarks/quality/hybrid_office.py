"""Hybrid generative + dense retrieval (LIGER-style) against TIGER, SASRec and text kNN on a cold-start split.

Protocol (issue 26)

1. **Data.** ``uqf prepare --cold-share`` semantics (:mod:`uqf_cli.data.cold`): a seeded share (default 5%)
   of the items loses its interactions in every user's train part; their text stays; valid and test
   items are kept, so users whose valid or test target is a cold item are evaluated.
2. **Item representations**, all fitted on the cold-start data (a cold item's interactions are never
   seen): text = ``--text`` (interaction-free); collab = train-gcn on the cold-start data (cold items
   get zero rows and are listed as cold); UQF = fuse(text, collab) (cold items take the text path);
   SIDs = quantize (RQ-VAE) of text and of UQF.
3. **Rows** (test, leave-one-out, full ranking, cold and warm targets apart): TIGER on text SIDs,
   TIGER on UQF SIDs, hybrid on text (text SIDs + text embedding), hybrid on UQF (UQF SIDs + unified
   embedding), SASRec (it cannot rank a cold item above what it was trained on: its cold item rows only
   ever received negative gradients; scored as it is), text kNN (history masked).
4. **Validation-only selection.** For each hybrid kind, one model per ``--dense-losses`` x
   ``--dense-weights`` x ``--dense-item-ids`` combination (seed of the first ``--seeds``), each ranked on ALL
   valid users in the modes generate, dense and hybrid at every ``--alphas`` value from one beam search: the
   variant (loss, weight, item ids, mode, alpha) with the best valid NDCG@10 over all the kind's grid models
   is the kind's final row, retrained for the other seeds. Nothing of the test split is used.
   ``--dense-item-ids 0,1`` adds, beside each model of the default grid (``0``: the dense item vector is the
   content ``normalize(e + A e)``), one with a learnable per-item residual ``normalize(e + A e + b_i)``
   (``train-rec --dense-item-ids``; cold items keep ``b_i = 0``): its unit, model directory and final names
   carry ``_ids`` (``hybrid_grid_uqf_inbatch_w2_ids``), its report rows "+ item ids". The cosine loss has no
   ids variant (train-rec refuses the pair). A grid record made before the option (no ``ids`` key) is one
   without item ids, and records without item ids are written as before (no key).
5. **Paired test**: per-user test NDCG@10 (mean over seeds) of the best hybrid (by valid) vs SASRec,
   on warm targets (the issue's criterion) and on all targets: paired bootstrap (10,000 resamples of
   users, 95% interval of the mean difference) and the Wilcoxon signed-rank test.
6. **Diagnosis.** ``--probes KIND:LOSS:WEIGHT[:ids],...`` trains extra hybrid models ranked on validation only, in
   a table of their own and never selected (``uqf:softmax:0.5:ids``: does a free per-item vector close the dense
   head's gap?). The report's "What holds the hybrid back" section is computed from the records: each route of
   the best hybrid alone (generate, dense, mix) against SASRec on warm test targets, the best of every grid model
   per mode against SASRec's best validation epoch, each probe beside its grid model without item ids, the cold
   test NDCG@10 of every row, and each run's best epoch, epochs run and cap.

Every unit (inputs, each model) leaves a JSON record under ``<out stem>/units/`` (with the torch threads it
ran on); a rerun skips finished units and resumes interrupted training from its checkpoint. Writes ``--out``
(.md), the JSON beside it and ``<stem>_curves.png`` (validation NDCG@10 per epoch of every hybrid, TIGER and
SASRec run).

**Parallel units.** ``--jobs N`` runs the models in N worker processes of this script at a time (hidden
``--worker``; logs in ``--work/logs/``), each with ``UQF_THREADS // N`` torch threads (at least 1; without
``UQF_THREADS``, torch's default is split): the inputs and text kNN first, in this process; then every grid
model, TIGER and SASRec seed; each kind's final seeds as soon as its grid is recorded. The records hold what a
``--jobs 1`` run writes (wall times and threads aside; float results can move with the thread count, as
they do between two ``UQF_THREADS`` values), and the report is made from them. On a 2-core CPU two 1-thread
workers get through about 1.6x the models of one 2-thread process (a TIGER small run: ~23 min on 1 thread,
~18.5 min on 2):

    UQF_THREADS=2 .venv/bin/python -m benchmarks.quality.hybrid_office --dataset runs/office/ds \\
        --text runs/office/text.st --work runs/hybrid --out benchmarks/results/hybrid_office.md --jobs 2

``--quick`` shrinks every model, epoch count and grid to a smoke run (minutes on a CPU; tests use it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from benchmarks.quality.paired import paired_bootstrap, wilcoxon_p
from benchmarks.quality.workers import progress, run_parallel, share_threads, strip_worker
from benchmarks.tools.command import command_line
from uqf_cli.collab import GcnConfig, train_gcn
from uqf_cli.core.runtime import configure, set_threads_from_env
from uqf_cli.data.cold import DEFAULT_SHARE, derive_cold_dataset
from uqf_cli.data.dataset import Dataset, EvalCase
from uqf_cli.data.prepare import PrepareConfig
from uqf_cli.evaluation.coldness import metrics_by_coldness
from uqf_cli.evaluation.config import EvaluateConfig
from uqf_cli.evaluation.metrics import ranking_metrics, target_rank
from uqf_cli.files import load_embeddings, make_provenance, read_json, read_sids, save_embeddings
from uqf_cli.fuse import FuseOptions, fuse
from uqf_cli.quantize import QuantizeConfig, quantize
from uqf_cli.quantize.config import parse_codebook_sizes, show_codebook_sizes
from uqf_cli.rec import hybrid, sasrec, textknn, tiger
from uqf_cli.rec.hybrid.options import DENSE_LOSSES
from uqf_cli.rec.sasrec import SasRecOptions
from uqf_cli.rec.tiger.options import TigerOptions

# TIGER and the hybrid train with one recipe: train-rec's defaults, the CPU recipe of the convergence study
# (benchmarks/results/tiger_converge.md: AdamW 1e-3, cosine over 30 epochs, 2% warmup, batch 256, patience 5,
# all validation users) at --preset small.
RECIPE: dict[str, Any] = {"preset": "small"}
QUICK_RECIPE: dict[str, Any] = {"num_layers": 1, "num_decoder_layers": 1, "d_model": 16, "num_heads": 2, "d_kv": 8,
                                "d_ff": 32, "epochs": 2, "batch_size": 64, "eval_users": 50, "patience": 2,
                                "warmup_steps": 2, "lr": 5e-3}
SASREC: dict[str, Any] = {}  # SasRecOptions defaults: full-softmax CE, up to 200 epochs, patience 10
QUICK_SASREC: dict[str, Any] = {"epochs": 2, "hidden": 16}
KINDS = ("text", "uqf")
LABEL = {"text": "text", "uqf": "UQF"}
K = 10
BOOTSTRAP = 10_000
MODULE = "benchmarks.quality.hybrid_office"
# arguments the JSON's "args" leaves out: where files go and how the run is spread over processes
RUN_ONLY = ("out", "work", "jobs", "worker", "argv")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True, help="uqf prepare output (Office)")
    p.add_argument("--text", type=Path, required=True, help="uqf embed-text file of that dataset")
    p.add_argument("--work", type=Path, required=True, help="directory for every intermediate file and model")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/hybrid_office.md"))
    p.add_argument("--cold-share", type=float, default=DEFAULT_SHARE)
    p.add_argument("--cold-seed", type=int, default=PrepareConfig.cold_seed)
    p.add_argument("--seeds", default="0,1,2", help="training seeds of the final rows; the first also selects")
    p.add_argument("--dense-weights", default="0.5,2", help="hybrid --dense-weight grid (one model each)")
    p.add_argument("--alphas", default="0,0.25,0.5,0.75,1", help="hybrid --alpha grid (ranking only)")
    p.add_argument("--dense-losses", default="inbatch,softmax", help="hybrid --dense-loss grid (cosine, inbatch, "
                   "softmax; one model per loss and weight)")
    p.add_argument("--dense-item-ids", default="0", help="hybrid --dense-item-ids grid, 0 (off) and/or 1 (on; "
                   "not with the cosine loss); one model per value beside each loss and weight")
    p.add_argument("--probes", default="", help="extra hybrid models, validation only and outside the selection, "
                   "comma-separated KIND:LOSS:WEIGHT[:ids] (uqf:softmax:0.5:ids): diagnostics the report shows apart")
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--recipe", type=json.loads, default=None, metavar="JSON", help="TIGER/hybrid options (default: "
                   "the converged CPU recipe; --quick: a tiny one)")
    p.add_argument("--sasrec", type=json.loads, default=None, metavar="JSON", help="SASRec options")
    p.add_argument("--fuse-epochs", type=int, default=FuseOptions.epochs)
    p.add_argument("--codebook-size", default=show_codebook_sizes(QuantizeConfig.codebook_sizes),
                   help="codes per level of both tokenizers, as uqf quantize --codebook-size (default: its default; "
                   "the levels are its default too)")
    p.add_argument("--quantize", type=json.loads, default={}, metavar="JSON", help="QuantizeConfig overrides")
    p.add_argument("--gcn", type=json.loads, default={}, metavar="JSON", help="GcnConfig overrides")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="tiny models, epochs and grids (a smoke run)")
    p.add_argument("--jobs", type=int, default=1, help="units run at a time, each in a worker process with an equal "
                   "share of the run's threads (UQF_THREADS, else torch's default); 1: one after another here")
    p.add_argument("--worker", nargs="+", default=None, help=argparse.SUPPRESS)
    raw = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(raw)
    args.argv = strip_worker(raw)
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    if args.quick:
        args.recipe = args.recipe or QUICK_RECIPE
        args.sasrec = args.sasrec or QUICK_SASREC
        args.quantize = {"epochs": 5, "warmup_epochs": 1, **args.quantize}
        args.gcn = {"dim": 8, "epochs": 2, "eval_every": 1, "patience": 0, **args.gcn}
    args.recipe = args.recipe or RECIPE
    args.sasrec = args.sasrec if args.sasrec is not None else SASREC
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.weight_list = [float(w) for w in args.dense_weights.split(",") if w.strip()]
    args.loss_list = [x.strip() for x in args.dense_losses.split(",") if x.strip()]
    args.alpha_list = [float(a) for a in args.alphas.split(",") if a.strip()]
    ids = [x.strip() for x in args.dense_item_ids.split(",") if x.strip()]
    if not set(ids) <= {"0", "1"}:
        p.error(f"--dense-item-ids takes 0 and/or 1, got {args.dense_item_ids!r}")
    args.ids_list = [x == "1" for x in dict.fromkeys(ids)]
    try:
        args.probe_list = [parse_probe(x) for x in args.probes.split(",") if x.strip()]
    except ValueError as e:
        p.error(f"--probes: {e}")
    if not args.seed_list or not args.weight_list or not args.alpha_list or not args.loss_list or not args.ids_list:
        p.error("--seeds, --dense-losses, --dense-weights, --dense-item-ids and --alphas need at least one value each")
    return args


def parse_probe(text: str) -> tuple[str, str, float, bool]:
    """``KIND:LOSS:WEIGHT[:ids]`` as (kind, loss, weight, item ids)."""
    parts = text.strip().split(":")
    if len(parts) not in (3, 4) or parts[0] not in KINDS or (len(parts) == 4 and parts[3] != "ids"):
        raise ValueError(f"{text.strip()!r} is not KIND:LOSS:WEIGHT[:ids] with KIND one of {', '.join(KINDS)}")
    if parts[1] not in DENSE_LOSSES:
        raise ValueError(f"{text.strip()!r}: unknown dense loss {parts[1]!r} (choose from {', '.join(DENSE_LOSSES)})")
    if parts[1] == "cosine" and len(parts) == 4:
        raise ValueError(f"{text.strip()!r}: the cosine loss has no item ids")
    try:
        weight = float(parts[2])
    except ValueError:
        raise ValueError(f"{text.strip()!r}: the weight {parts[2]!r} is not a number") from None
    if not weight >= 0:
        raise ValueError(f"{text.strip()!r}: the weight must be >= 0")
    return parts[0], parts[1], weight, len(parts) == 4


# ----------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------


def units_dir(args: argparse.Namespace) -> Path:
    return args.out.parent / args.out.stem / "units"


def load_record(args: argparse.Namespace, name: str) -> dict[str, Any] | None:
    path = units_dir(args) / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def save_record(args: argparse.Namespace, name: str, record: dict[str, Any]) -> dict[str, Any]:
    path = units_dir(args) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)
    return record


def unit(args: argparse.Namespace, name: str, run) -> dict[str, Any]:
    """The unit's record: read back when it exists, else computed by ``run()`` and saved."""
    found = load_record(args, name)
    if found is not None:
        return found
    t0 = time.perf_counter()
    record = run()
    record.update({"unit": name, "wall_seconds": round(time.perf_counter() - t0, 1),
                   "threads": torch.get_num_threads()})
    return save_record(args, name, record)


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def relabel(src: Path, ds: Dataset, out: Path) -> Path:
    """The rows of ``ds``'s items of an embeddings file, labelled with ``ds``'s fingerprint."""
    if not out.exists():
        emb = load_embeddings(src)
        rows = torch.tensor([emb.index()[i] for i in ds.item_ids], dtype=torch.long)
        per_item = {k: v[rows] for k, v in emb.extra_tensors.items() if v.shape[:1] == (len(emb.item_ids),)}
        prov = make_provenance("hybrid-office-relabel", {"items": len(ds.item_ids)}, {"source": src})
        save_embeddings(out, emb.embeddings[rows], ds.item_ids, prov, emb.modality, ds.fingerprint,
                        extra_tensors=per_item, extra_metadata=emb.extra_metadata)  # text hashes kept per item
    return out


def prepare_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The cold-start dataset, the item representations and both SID maps (cached in --work)."""
    work = args.work
    work.mkdir(parents=True, exist_ok=True)

    def run() -> dict[str, Any]:
        times: dict[str, float] = {}
        t = time.perf_counter()
        ds_dir = work / "cold_ds"
        if not (ds_dir / "dataset.json").exists():
            derive_cold_dataset(args.dataset, ds_dir, args.cold_share, args.cold_seed)
        ds = Dataset.load(ds_dir)
        text = relabel(args.text, ds, work / "text.st")
        times["cold split + text"] = time.perf_counter() - t
        t = time.perf_counter()
        if not (work / "collab.st").exists():
            train_gcn(ds_dir, work / "collab.st", GcnConfig(**{"seed": args.cold_seed, "device": args.device,
                                                               **args.gcn}), force=True)
        times["train-gcn"] = time.perf_counter() - t
        t = time.perf_counter()
        if not (work / "unified.st").exists():
            fuse(text, work / "collab.st", ds_dir, work / "unified.st",
                 FuseOptions(epochs=args.fuse_epochs, seed=args.cold_seed, device=args.device), force=True)
        times["fuse"] = time.perf_counter() - t
        for kind, emb in (("text", text), ("uqf", work / "unified.st")):
            t = time.perf_counter()
            out = work / f"sids_{kind}.jsonl"
            if not out.exists():
                sizes = parse_codebook_sizes(args.codebook_size, QuantizeConfig.levels)
                cfg = QuantizeConfig(**{"seed": args.cold_seed, "codebook_sizes": sizes, **args.quantize})
                quantize(emb, out, cfg, device=args.device, force=True)
            times[f"quantize ({kind})"] = time.perf_counter() - t
        record = ds.info["cold_start"]
        return {"dataset": str(ds_dir), "text": str(text), "unified": str(work / "unified.st"),
                "sids": {k: str(work / f"sids_{k}.jsonl") for k in KINDS}, "stats": ds.stats(),
                "codebook_sizes": {k: list(read_sids(work / f"sids_{k}.jsonl").codebook_sizes) for k in KINDS},
                "cold": {k: v for k, v in record.items() if k != "item_ids"},
                "seconds": {k: round(v, 1) for k, v in times.items()}}

    return unit(args, "inputs", run)


def item_emb(inputs: dict[str, Any], kind: str) -> str:
    return inputs["text"] if kind == "text" else inputs["unified"]


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------


def per_user_ndcg(ranked: Sequence[Sequence[str]], targets: Sequence[str], k: int = K) -> list[float]:
    out = []
    for lst, t in zip(ranked, targets, strict=True):
        r = target_rank(list(lst)[:k], t)
        out.append(0.0 if r is None else float(1.0 / np.log2(r + 1)))
    return out


def scores(ds: Dataset, cases: Sequence[EvalCase], ranked: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Overall, cold and warm Recall/NDCG@10, the cold share of the top 10, and per-user NDCG@10."""
    targets = [c.target for c in cases]
    cold = set(ds.info["cold_start"]["item_ids"])
    by = metrics_by_coldness(ds, ranked, targets, (K,), (K,), K)
    return {"all": ranking_metrics(ranked, targets, (K,), (K,)),
            "cold": by["groups"]["cold"]["metrics"], "warm": by["groups"]["warm"]["metrics"],
            "cold_users": by["groups"]["cold"]["users"], "warm_users": by["groups"]["warm"]["users"],
            "cold_in_top10": by[f"cold_in_top{K}"], "per_user_ndcg10": per_user_ndcg(ranked, targets),
            "user_ids": [c.user_id for c in cases], "cold_target": [t in cold for t in targets]}


def rank(rec: Any, cases: Sequence[EvalCase], beam: int = EvaluateConfig.beam_size) -> list[list[str]]:
    hist = [list(c.history) for c in cases]
    if getattr(rec, "uses_user_ids", False):
        return rec.recommend(hist, K, beam, user_ids=[c.user_id for c in cases])
    return rec.recommend(hist, K, beam)


def trained(module: Any, ds: Dataset, sids: Any, out: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Train (resuming an interrupted run) unless the model directory is complete; its recorded training
    summary (``history``: the per-epoch records, ``best_epoch``, ``train_seconds`` where recorded)."""
    if not (out / "uqf_model.json").exists():
        module.train(ds, sids, out, {**options, "resume": True}, force=True)
    meta = read_json(out / "uqf_model.json")
    if "training" in meta:  # tiger, hybrid
        return meta["training"]
    return {"history": meta.get("epochs", []), **(meta.get("train_summary") or {})}  # sasrec (textknn: none)


def curve(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k == "epoch" or k.startswith("valid") or k.endswith("loss")}
            for r in summary.get("history", [])]


# ----------------------------------------------------------------------------------------------
# Units
# ----------------------------------------------------------------------------------------------


def tiger_unit(args: argparse.Namespace, inputs: dict[str, Any], kind: str, seed: int) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        ds = Dataset.load(inputs["dataset"])
        out = args.work / f"tiger_{kind}_s{seed}"
        summary = trained(tiger, ds, read_sids(inputs["sids"][kind]), out,
                          {**args.recipe, "seed": seed, "device": args.device})
        rec = tiger.load(out, args.device)
        cases = ds.eval_cases("test")
        return {"kind": kind, "seed": seed, "test": scores(ds, cases, rank(rec, cases)), "curve": curve(summary),
                "best_epoch": summary.get("best_epoch"), "train_seconds": summary.get("train_seconds")}

    return unit(args, tiger_name(kind, seed), run)


def sasrec_unit(args: argparse.Namespace, inputs: dict[str, Any], seed: int) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        ds = Dataset.load(inputs["dataset"])
        out = args.work / f"sasrec_s{seed}"
        summary = trained(sasrec, ds, None, out, {**args.sasrec, "seed": seed, "device": args.device})
        rec = sasrec.load(out, args.device)
        cases = ds.eval_cases("test")
        hist = [{"epoch": r["epoch"], "loss": r["loss"], "valid_ndcg10": r.get("valid_ndcg@10")}
                for r in summary.get("history", [])]
        return {"seed": seed, "test": scores(ds, cases, rank(rec, cases)), "curve": hist,
                "best_epoch": summary.get("best_epoch")}

    return unit(args, sasrec_name(seed), run)


def textknn_unit(args: argparse.Namespace, inputs: dict[str, Any], kind: str) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        ds = Dataset.load(inputs["dataset"])
        out = args.work / f"textknn_{kind}"
        trained(textknn, ds, None, out, {"item_emb": item_emb(inputs, kind)})
        rec = textknn.load(out)
        cases = ds.eval_cases("test")
        return {"kind": kind, "test": scores(ds, cases, rank(rec, cases)),
                "valid": scores(ds, ds.eval_cases("valid"), rank(rec, ds.eval_cases("valid")))["all"]}

    return unit(args, f"textknn_{kind}", run)


def hybrid_options(args: argparse.Namespace, inputs: dict[str, Any], kind: str, loss: str, weight: float,
                   seed: int, ids: bool = False) -> dict[str, Any]:
    return {**args.recipe, "item_emb": item_emb(inputs, kind), "dense_weight": weight, "dense_loss": loss,
            "temperature": args.temperature, "seed": seed, "device": args.device,
            **({"dense_item_ids": True} if ids else {})}


def config_tag(loss: str, weight: float, ids: bool = False) -> str:
    """A grid model's configuration in unit and directory names (``inbatch_w2``, ``inbatch_w2_ids``)."""
    return f"{loss}_w{weight:g}" + ("_ids" if ids else "")


def config_label(loss: str, ids: bool = False) -> str:
    """A grid model's dense loss as the report's rows name it (``inbatch``, ``inbatch + item ids``)."""
    return loss + (" + item ids" if ids else "")


def has_ids(record: dict[str, Any]) -> bool:
    """Whether a grid record or a choice has item ids (records made before the option have no key: off)."""
    return bool(record.get("ids", False))


def grid_configs(args: argparse.Namespace) -> list[tuple[str, float, bool]]:
    """The (loss, weight, item ids) of every grid model of a kind, in grid order: the default grid's, each
    followed by its ids variant where asked for (none for the cosine loss, which train-rec refuses with ids)."""
    return [(loss, w, ids) for loss in args.loss_list for w in args.weight_list for ids in args.ids_list
            if not (ids and loss == "cosine")]


def variant_name(mode: str, alpha: float | None) -> str:
    return mode if alpha is None else f"hybrid@{alpha:g}"


def variant_names(args: argparse.Namespace) -> list[str]:
    """The grid's ranking variants in the order ``rank_modes`` makes them."""
    return list(dict.fromkeys([variant_name("generate", None), variant_name("dense", None),
                               *(variant_name("hybrid", a) for a in args.alpha_list)]))


def in_order(valid: dict[str, Any], names: Sequence[str]) -> list[tuple[str, Any]]:
    """A grid record's variants in ``names``' order (others after, as stored). Selection and report follow it, so
    a record read back (its keys sorted) breaks ties and lists rows as the run that made it."""
    return sorted(valid.items(), key=lambda kv: names.index(kv[0]) if kv[0] in names else len(names))


def tiger_name(kind: str, seed: int) -> str:
    return f"tiger_{kind}_s{seed}"


def sasrec_name(seed: int) -> str:
    return f"sasrec_s{seed}"


def grid_name(kind: str, loss: str, weight: float, ids: bool = False) -> str:
    return f"hybrid_grid_{kind}_{config_tag(loss, weight, ids)}"


def final_name(kind: str, choice: dict[str, Any], seed: int) -> str:
    return f"hybrid_final_{kind}_{config_tag(choice['loss'], choice['weight'], has_ids(choice))}_s{seed}"


def model_dir(args: argparse.Namespace, kind: str, loss: str, weight: float, ids: bool, seed: int) -> Path:
    return args.work / f"hybrid_{kind}_{config_tag(loss, weight, ids)}_s{seed}"


def hybrid_grid_unit(args: argparse.Namespace, inputs: dict[str, Any], kind: str, loss: str,
                     weight: float, ids: bool = False) -> dict[str, Any]:
    """One model (first seed) with ``loss`` at ``weight`` (with item ids if ``ids``); ALL valid users ranked in
    every mode and alpha."""
    seed = args.seed_list[0]

    def run() -> dict[str, Any]:
        ds = Dataset.load(inputs["dataset"])
        out = model_dir(args, kind, loss, weight, ids, seed)
        summary = trained(hybrid, ds, read_sids(inputs["sids"][kind]), out,
                          hybrid_options(args, inputs, kind, loss, weight, seed, ids))
        rec = hybrid.load(out, args.device)
        cases = ds.eval_cases("valid")
        ranked = rec.rank_modes([list(c.history) for c in cases], K, EvaluateConfig.beam_size, None,
                                ("generate", "dense"), alphas=args.alpha_list)
        valid = {name: {k: v for k, v in scores(ds, cases, lists).items() if k not in ("per_user_ndcg10", "user_ids",
                                                                                        "cold_target")}
                 for name, lists in ranked.items()}
        return {"kind": kind, "loss": loss, "weight": weight, **({"ids": True} if ids else {}), "seed": seed,
                "valid": valid, "curve": curve(summary), "best_epoch": summary.get("best_epoch"),
                "train_seconds": summary.get("train_seconds")}

    return unit(args, grid_name(kind, loss, weight, ids), run)


def select(grid: list[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """The (loss, weight, item ids, mode, alpha) with the best valid NDCG@10 over all valid users, over every grid
    record of a kind (ties: first in grid order, then in ``names``' order). ``ids`` is in the choice only when on,
    so a choice without item ids reads as one made before the option."""
    best: dict[str, Any] | None = None
    for rec in grid:
        for name, v in in_order(rec["valid"], names):
            if best is None or v["all"]["ndcg@10"] > best["valid_ndcg10"]:
                alpha = float(name.split("@", 1)[1]) if name.startswith("hybrid@") else None
                best = {"loss": rec["loss"], "weight": rec["weight"], **({"ids": True} if has_ids(rec) else {}),
                        "alpha": alpha, "mode": "hybrid" if alpha is not None else name, "variant": name,
                        "valid_ndcg10": v["all"]["ndcg@10"]}
    assert best is not None
    return best


def hybrid_final_unit(args: argparse.Namespace, inputs: dict[str, Any], kind: str, choice: dict[str, Any],
                      seed: int) -> dict[str, Any]:
    """The selected weight at ``seed``; test in all three modes (hybrid at the selected alpha, else 0.5)."""
    loss, weight, ids = choice["loss"], choice["weight"], has_ids(choice)
    alpha = choice["alpha"] if choice["alpha"] is not None else 0.5

    def run() -> dict[str, Any]:
        ds = Dataset.load(inputs["dataset"])
        out = model_dir(args, kind, loss, weight, ids, seed)
        summary = trained(hybrid, ds, read_sids(inputs["sids"][kind]), out,
                          hybrid_options(args, inputs, kind, loss, weight, seed, ids))
        rec = hybrid.load(out, args.device)
        rec.set_ranking("hybrid", alpha)
        cases = ds.eval_cases("test")
        ranked = rec.rank_modes([list(c.history) for c in cases], K, EvaluateConfig.beam_size, None)
        return {"kind": kind, "seed": seed, "choice": choice, "alpha": alpha, "curve": curve(summary),
                "test": {mode: scores(ds, cases, lists) for mode, lists in ranked.items()},
                "best_epoch": summary.get("best_epoch"), "train_seconds": summary.get("train_seconds")}

    return unit(args, final_name(kind, choice, seed), run)


# ----------------------------------------------------------------------------------------------
# --jobs N: units in worker processes
# ----------------------------------------------------------------------------------------------

UnitRun = Callable[[], dict[str, Any]]


def selection_units(args: argparse.Namespace, inputs: dict[str, Any]) -> dict[str, UnitRun]:
    """The units that need only the inputs (text kNN aside): the hybrid grid models first (they gate the finals),
    then TIGER and SASRec for every seed, then the probes (a probe that is a grid model is that unit)."""
    units: dict[str, UnitRun] = {grid_name(kind, loss, w, ids): partial(hybrid_grid_unit, args, inputs, kind, loss, w,
                                                                        ids)
                                 for kind in KINDS for loss, w, ids in grid_configs(args)}
    units |= {tiger_name(kind, s): partial(tiger_unit, args, inputs, kind, s) for kind in KINDS for s in args.seed_list}
    units |= {sasrec_name(s): partial(sasrec_unit, args, inputs, s) for s in args.seed_list}
    units |= {grid_name(*probe): partial(hybrid_grid_unit, args, inputs, *probe) for probe in args.probe_list}
    return units


def final_units(args: argparse.Namespace, inputs: dict[str, Any], kind: str) -> dict[str, UnitRun]:
    """The kind's final seeds once every grid model of the kind is recorded (its selection needs them all);
    none before."""
    found = [load_record(args, grid_name(kind, loss, w, ids)) for loss, w, ids in grid_configs(args)]
    grid = [g for g in found if g is not None]
    if len(grid) < len(found):
        return {}
    choice = select(grid, variant_names(args))
    return {final_name(kind, choice, s): partial(hybrid_final_unit, args, inputs, kind, choice, s)
            for s in args.seed_list}


def run_worker(args: argparse.Namespace) -> None:
    """``--worker unit NAME``: that one unit, in this process, on the inputs the main process recorded."""
    inputs = load_record(args, "inputs")
    if inputs is None:
        sys.exit(f"error: no inputs record in {units_dir(args)}: run without --worker")
    units = selection_units(args, inputs)
    for kind in KINDS:
        units |= final_units(args, inputs, kind)
    units[args.worker[1]]()


def run_jobs(args: argparse.Namespace, inputs: dict[str, Any]) -> None:
    """Every unit not yet recorded, ``--jobs`` worker processes at a time, each with ``1/jobs`` of the threads: text
    kNN here (seconds), the selection units, and each kind's finals as soon as its grid is recorded."""
    for kind in KINDS:
        textknn_unit(args, inputs, kind)
    threads = share_threads(args.jobs)
    released: set[str] = set()

    def ready(_finished: list[str] | None = None) -> list[list[str]]:
        """Final units of the kinds whose grid has just been completed."""
        tasks = []
        for kind in KINDS:
            finals = {} if kind in released else final_units(args, inputs, kind)
            if finals:
                released.add(kind)
                tasks += [["unit", name] for name in finals if load_record(args, name) is None]
        return tasks

    first = ready() + [["unit", name] for name in selection_units(args, inputs) if load_record(args, name) is None]
    progress(f"{len(first)} unit(s) to run now ({args.jobs} worker(s) of {threads} thread(s)); records in "
             f"{units_dir(args)}")
    run_parallel(first, module=MODULE, argv=args.argv, jobs=args.jobs, logs=args.work / "logs", label="hybrid_office",
                 env={"UQF_THREADS": str(threads)}, then=ready)


# ----------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------


def mean_per_user(records: Sequence[dict[str, Any]]) -> np.ndarray:
    """Per-user test NDCG@10 averaged over seeds (every record ranks the same users in the same order)."""
    return np.mean([np.asarray(r["per_user_ndcg10"], dtype=float) for r in records], axis=0)


def paired_test(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Mean difference a - b with a paired bootstrap 95% interval and p-value, and the Wilcoxon signed-rank p."""
    diff = a - b
    boots = paired_bootstrap(a, b, lambda x, y: (x - y).mean(1), BOOTSTRAP, seed)
    p_boot = min(1.0, 2 * min(float((boots <= 0).mean()), float((boots >= 0).mean())))
    nonzero = diff[diff != 0]
    p_w = wilcoxon_p(nonzero)
    return {"users": len(diff), "mean_a": float(a.mean()), "mean_b": float(b.mean()), "mean_diff": float(diff.mean()),
            "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
            "p_bootstrap": p_boot, "p_wilcoxon": p_w, "users_differing": len(nonzero)}


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample sd over seeds of each reported metric."""
    out: dict[str, Any] = {"seeds": len(records)}
    for group in ("all", "warm", "cold"):
        for metric in (f"recall@{K}", f"ndcg@{K}"):
            vals = [r[group][metric] for r in records]
            out[f"{group}_{metric}"] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
    out["cold_in_top10"] = (float(np.mean([r["cold_in_top10"] for r in records])), 0.0)
    out["cold_users"], out["warm_users"] = records[0]["cold_users"], records[0]["warm_users"]
    return out


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def fmt(v: tuple[float, float], seeds: int) -> str:
    return f"{v[0]:.4f}" + (f" ± {v[1]:.4f}" if seeds > 1 else "")


def mode_row(rows: dict[str, dict[str, Any]], kind: str, chosen: str, mode: str) -> dict[str, Any]:
    """The test row of a kind's final models ranked in ``mode`` (the selected mode's row has the plain name)."""
    name = f"hybrid on {LABEL[kind]}"
    return rows[name if mode == chosen else f"{name}, {mode} mode (not selected)"]


def best_variant(records: Sequence[dict[str, Any]], mode: str) -> dict[str, Any]:
    """The best valid NDCG@10 (all users) over ``records``' variants of one mode (``hybrid``: any alpha)."""
    found = [(v["all"]["ndcg@10"], name, rec) for rec in records for name, v in rec["valid"].items()
             if name == mode or (mode == "hybrid" and name.startswith("hybrid@"))]
    value, name, rec = max(found, key=lambda t: t[0])
    return {"ndcg10": value, "model": grid_name(rec["kind"], rec["loss"], rec["weight"], has_ids(rec)),
            "variant": name}


def diagnose(args: argparse.Namespace, rows: dict[str, dict[str, Any]], choices: dict[str, dict[str, Any]],
             grids: dict[str, list[dict[str, Any]]], probes: list[dict[str, Any]],
             trained_runs: dict[str, list[dict[str, Any]]], best_kind: str) -> dict[str, Any]:
    """What separates the best hybrid from SASRec, as measurements: each route of the hybrid alone against SASRec
    (warm test), the best of every grid model per mode against SASRec's own validation score, the probes beside
    their grid model, the cold targets of every row, and where each model stopped."""
    chosen = choices[best_kind]["mode"]
    warm = {m: mode_row(rows, best_kind, chosen, m)["warm_ndcg@10"][0] for m in ("generate", "dense", "hybrid")}
    every_grid = [rec for grid in grids.values() for rec in grid]
    base = {(r["kind"], r["loss"], r["weight"]): r for r in every_grid if not has_ids(r)}
    return {
        "kind": best_kind, "selected_mode": chosen,
        "alpha": choices[best_kind]["alpha"] if choices[best_kind]["alpha"] is not None else 0.5,
        "warm_test": {"SASRec": rows["SASRec"]["warm_ndcg@10"][0],
                      f"TIGER, {LABEL[best_kind]} SIDs": rows[f"TIGER, {LABEL[best_kind]} SIDs"]["warm_ndcg@10"][0],
                      **{f"hybrid, {m}": v for m, v in warm.items()}},
        "valid": {"SASRec (best epoch, mean over seeds)": float(np.mean([best_valid(r)
                                                                         for r in trained_runs["SASRec"]])),
                  **{f"grid best {m}": best_variant(every_grid, m) for m in ("generate", "dense", "hybrid")}},
        "probes": [{"model": grid_name(p["kind"], p["loss"], p["weight"], has_ids(p)),
                    "in_grid": p in every_grid,
                    "base": grid_name(p["kind"], p["loss"], p["weight"]) if (p["kind"], p["loss"], p["weight"]) in base
                    and has_ids(p) else None,
                    **{m: {"probe": best_variant([p], m)["ndcg10"],
                           "base": best_variant([base[(p["kind"], p["loss"], p["weight"])]], m)["ndcg10"]
                           if has_ids(p) and (p["kind"], p["loss"], p["weight"]) in base else None}
                       for m in ("generate", "dense", "hybrid")}} for p in probes],
        "cold_test": {name: r["cold_ndcg@10"][0] for name, r in rows.items()},
        "generation_rows": [name for name in rows if name.startswith("TIGER")]
        + [name for kind in KINDS if kind in choices for name in rows
           if rows[name] is mode_row(rows, kind, choices[kind]["mode"], "generate")],
        "valid_to_test": valid_to_test(choices[best_kind], trained_runs),
        "epochs": {name: [{"best": r.get("best_epoch"), "run": max((p["epoch"] for p in r["curve"]), default=None),
                           "cap": epoch_cap(args, name)} for r in runs] for name, runs in trained_runs.items()},
    }


def best_valid(record: dict[str, Any]) -> float:
    """A run's best validation NDCG@10 over its epochs (its selection metric)."""
    return max(p["valid_ndcg10"] for p in record["curve"] if p.get("valid_ndcg10") is not None)


def valid_to_test(choice: dict[str, Any], trained_runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Validation and test NDCG@10 (all users) of each trained row, means over seeds: the best epoch's validation
    score against the test score. For the hybrid, the selected variant's grid score against the test score of the
    very model that was selected (the first seed's final reuses the grid model)."""
    out: dict[str, dict[str, float]] = {}
    for name, runs in trained_runs.items():
        if name == "hybrid finals":
            first = runs[0]
            out["hybrid (selected variant, first seed)"] = {
                "valid": choice["valid_ndcg10"], "test": first["test"][choice["mode"]]["all"]["ndcg@10"]}
        else:
            out[name] = {"valid": float(np.mean([best_valid(r) for r in runs])),
                         "test": float(np.mean([r["test"]["all"]["ndcg@10"] for r in runs]))}
    return out


def epoch_cap(args: argparse.Namespace, name: str) -> int:
    """The epoch cap of a trained row: SASRec's options, else the TIGER/hybrid recipe's."""
    if name == "SASRec":
        return int(args.sasrec.get("epochs", SasRecOptions.epochs))
    return int(args.recipe.get("epochs", TigerOptions.epochs))


def share(a: float, b: float) -> str:
    return f"{a / b:.0%}" if b else "n/a"


def holdback_lines(d: dict[str, Any]) -> list[str]:
    """The measured reasons the best hybrid sits where it does against SASRec, each sentence made from ``d``."""
    w, v = d["warm_test"], d["valid"]
    sas = w["SASRec"]
    tiger = next(k for k in w if k.startswith("TIGER"))
    routes = {m: w[f"hybrid, {m}"] for m in ("generate", "dense")}
    lead = max(routes, key=routes.get)
    lines = [f"* **Each route alone, warm test NDCG@10** (best hybrid: {LABEL[d['kind']]}, selected mode "
             f"{d['selected_mode']}): SASRec {sas:.4f}; the hybrid's generation {routes['generate']:.4f} "
             f"({share(routes['generate'], sas)} of SASRec), its dense head alone {routes['dense']:.4f} "
             f"({share(routes['dense'], sas)}), their mix (alpha {d['alpha']:g}) {w['hybrid, hybrid']:.4f} "
             f"({share(w['hybrid, hybrid'], sas)}; {w['hybrid, hybrid'] - routes[lead]:+.4f} over the {lead} route "
             f"alone); {tiger} {w[tiger]:.4f} ({share(w[tiger], sas)}). A re-ranking mix can only reorder what its "
             "two scorers already rank well: "
             + ("neither scorer alone reaches SASRec here." if max(routes.values()) < sas
                else "one scorer alone already reaches SASRec.")]
    sv = v["SASRec (best epoch, mean over seeds)"]
    best = {m: v[f"grid best {m}"] for m in ("generate", "dense", "hybrid")}
    lines.append("* **The whole grid on validation** (all valid users, full ranking): SASRec's best epoch "
                 f"{sv:.4f}; the best of every grid model of both kinds: generation {best['generate']['ndcg10']:.4f} "
                 f"({best['generate']['model']}, {share(best['generate']['ndcg10'], sv)}), dense head "
                 f"{best['dense']['ndcg10']:.4f} ({best['dense']['model']}, {share(best['dense']['ndcg10'], sv)}), "
                 f"mix {best['hybrid']['ndcg10']:.4f} ({best['hybrid']['model']} {best['hybrid']['variant']}, "
                 f"{share(best['hybrid']['ndcg10'], sv)}). No loss, weight, ranking mode or alpha of the grid closes "
                 "the gap, so it is not a tuning miss within this grid."
                 if max(b["ndcg10"] for b in best.values()) < sv else
                 f"* **The whole grid on validation**: SASRec {sv:.4f}; best generation "
                 f"{best['generate']['ndcg10']:.4f}, dense {best['dense']['ndcg10']:.4f}, mix "
                 f"{best['hybrid']['ndcg10']:.4f}.")
    for p in d["probes"]:
        where = "a grid model" if p["in_grid"] else "validation, outside the selection"
        if p["base"] is None:
            lines.append(f"* **Probe {p['model']}** ({where}): generation "
                         f"{p['generate']['probe']:.4f}, dense {p['dense']['probe']:.4f}, best mix "
                         f"{p['hybrid']['probe']:.4f}.")
            continue
        lines.append(f"* **Probe {p['model']}: a free per-item vector in the dense head** (what SASRec learns and "
                     f"a map of the content cannot; {where}) against the same model "
                     f"without it ({p['base']}): dense head {p['dense']['probe']:.4f} vs {p['dense']['base']:.4f} "
                     f"({p['dense']['probe'] - p['dense']['base']:+.4f}; SASRec {sv:.4f}), generation "
                     f"{p['generate']['probe']:.4f} vs {p['generate']['base']:.4f}, best mix "
                     f"{p['hybrid']['probe']:.4f} vs {p['hybrid']['base']:.4f}.")
    cold = d["cold_test"]
    gen_cold = {k: x for k, x in cold.items() if k in d["generation_rows"]}
    dense_cold = {k: x for k, x in cold.items() if k not in gen_cold and k != "SASRec"}
    top = max(dense_cold, key=dense_cold.get)
    gen_max = max(gen_cold.values())
    lines.append(("* **Generation never recommends a cold target**: every generation row (TIGER, the hybrids' "
                  "generate mode) has cold test NDCG@10 0.0000 (a cold item is never a training target, so no decoder "
                  "learns to emit its SID); cold targets are reached only by scores over content: "
                  if gen_max == 0 else
                  "* **Cold targets**: the generation rows (TIGER, the hybrids' generate mode) reach cold test NDCG@10 "
                  f"{gen_max:.4f} at most; ")
                 + f"the best cold row is {top} ({dense_cold[top]:.4f}); SASRec {cold['SASRec']:.4f}.")
    vt = d["valid_to_test"]
    hyb = next(k for k in vt if k.startswith("hybrid"))
    kept = {k: x["test"] / x["valid"] if x["valid"] else 0.0 for k, x in vt.items()}
    lines.append("* **From validation to test** (all users, NDCG@10, best validation epoch against test): "
                 + "; ".join(f"{k} {x['valid']:.4f} -> {x['test']:.4f} ({kept[k]:.0%} kept)" for k, x in vt.items())
                 + (f". The hybrid keeps less of its validation score than SASRec, so its gap to SASRec is wider on "
                    f"test ({share(vt[hyb]['test'], vt['SASRec']['test'])}) than on validation "
                    f"({share(vt[hyb]['valid'], vt['SASRec']['valid'])}): part of its validation lead over the other "
                    "variants is the luck of being picked on that split." if kept[hyb] < kept["SASRec"] else "."))
    runs = [e for eps in d["epochs"].values() for e in eps]
    capped = sum(e["run"] is not None and e["run"] >= e["cap"] for e in runs)
    lines.append("* **Where training stopped** (best epoch / epochs run / cap, per seed): "
                 + "; ".join(f"{name}: " + ", ".join(f"{e['best']}/{e['run']}/{e['cap']}" for e in eps)
                             for name, eps in d["epochs"].items())
                 + (". Every run ended by early stopping on validation before its epoch cap: no row is cut short by "
                    "the training budget." if not capped else
                    f". {capped} of {len(runs)} runs reached their cap: those rows may still be under-trained."))
    return lines


def grid_rows(args: argparse.Namespace, rec: dict[str, Any], selected: str | None = None, note: str = "") -> list[str]:
    """A grid or probe model's report rows, one per ranking variant (``selected``: the variant marked as chosen)."""
    label = config_label(rec["loss"], has_ids(rec)) + note
    return [f"| {rec['kind']} | {label} | {rec['weight']:g} | {name}{' **selected**' if name == selected else ''} | "
            f"{v['all']['ndcg@10']:.4f} | {v['cold']['ndcg@10']:.4f} | {v['warm']['ndcg@10']:.4f} |"
            for name, v in in_order(rec["valid"], variant_names(args))]


def render(args: argparse.Namespace, inputs: dict[str, Any], rows: dict[str, dict[str, Any]],
           grids: dict[str, list[dict[str, Any]]], choices: dict[str, dict[str, Any]], tests: dict[str, Any],
           best_kind: str, probes: list[dict[str, Any]] | None = None,
           diagnosis: dict[str, Any] | None = None) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip() or "unknown"
    cmd = command_line("benchmarks.quality.hybrid_office", sys.argv[1:], env=["UQF_THREADS"])
    cold = inputs["cold"]
    first = next(iter(rows.values()))
    lines = [
        "# Hybrid generative + dense retrieval on Office with cold-start items", "",
        f"Command: `{cmd}`  ", f"Code: commit {commit}; machine: {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} CPUs), device {args.device}." + (" QUICK smoke run: numbers mean nothing." if args.quick
                                                              else ""),
        "",
        f"Data: {inputs['stats']['items']:,} items, {cold['items']:,} cold ({cold['share']:.0%}, seed {cold['seed']}: "
        f"their {cold['removed_interactions']:,} train interactions removed, text kept); test users: "
        f"{first['cold_users']:,} with a cold target, {first['warm_users']:,} with a warm one. Protocol: "
        "`benchmarks/quality/hybrid_office.py` docstring; item representations and SIDs fitted on the cold-start data.",
        "",
        f"Recipe of TIGER and the hybrid: `{json.dumps(args.recipe)}` (TigerOptions defaults otherwise); "
        f"SASRec: `{json.dumps(args.sasrec)}` "
        f"(SasRecOptions defaults otherwise); hybrid dense losses `{args.dense_losses}`"
        + (f", item ids `{args.dense_item_ids}`" if any(args.ids_list) else "") + f", temperature "
        f"{args.temperature}. "
        "SIDs: RQ-VAE, codebook sizes " + ", ".join(f"{k} {'x'.join(map(str, v))}"
                                                   for k, v in inputs["codebook_sizes"].items()) + ".",
        "",
        f"## Test (mean ± sd over {len(args.seed_list)} seeds; Recall/NDCG@{K}, full ranking)", "",
        "| model | all N@10 | warm R@10 | warm N@10 | cold R@10 | cold N@10 | cold share of top 10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in rows.items():
        n = s["seeds"]
        lines.append(f"| {name} | {fmt(s['all_ndcg@10'], n)} | {fmt(s['warm_recall@10'], n)} | "
                     f"{fmt(s['warm_ndcg@10'], n)} | {fmt(s['cold_recall@10'], n)} | {fmt(s['cold_ndcg@10'], n)} | "
                     f"{s['cold_in_top10'][0]:.4f} |")
    lines += ["", "SASRec scores what it scores on cold targets: nothing is excluded or imputed (its cold item "
              "rows were only ever negatives of the softmax).", "",
              f"## Validation-only selection ({sum(len(g[0]['valid']) * len(g) for g in grids.values())} variants)",
              "", "| kind | dense loss | dense weight | variant | valid N@10 (all) | valid cold N@10 | "
              "valid warm N@10 |", "|---|---|---|---|---|---|---|"]
    for kind, grid in grids.items():
        chosen = choices[kind]
        for rec in grid:
            lines += grid_rows(args, rec, selected=chosen["variant"] if (rec["loss"], rec["weight"], has_ids(rec)) == (
                chosen["loss"], chosen["weight"], has_ids(chosen)) else None)
    lines += ["", f"## Paired test: best hybrid ({best_kind}, by valid) vs SASRec, per-user test NDCG@10", "",
              "| targets | users | hybrid | SASRec | difference | 95% bootstrap interval | p (bootstrap) | "
              "p (Wilcoxon) |", "|---|---|---|---|---|---|---|---|"]
    for group, t in tests.items():
        lines.append(f"| {group} | {t['users']:,} | {t['mean_a']:.4f} | {t['mean_b']:.4f} | {t['mean_diff']:+.4f} | "
                     f"[{t['ci95'][0]:+.4f}, {t['ci95'][1]:+.4f}] | {t['p_bootstrap']:.4f} | {t['p_wilcoxon']:.4f} |")
    h_uqf, h_text = rows.get("hybrid on UQF"), rows.get("hybrid on text")
    sas = rows["SASRec"]
    lines += ["", "## Verdict (computed from the rows above)", ""]
    best = rows[f"hybrid on {'UQF' if best_kind == 'uqf' else 'text'}"]
    lines.append(f"* Best hybrid vs SASRec, warm test NDCG@10: {best['warm_ndcg@10'][0]:.4f} vs "
                 f"{sas['warm_ndcg@10'][0]:.4f} ({'>=' if best['warm_ndcg@10'][0] >= sas['warm_ndcg@10'][0] else '<'}"
                 f" SASRec); all targets: {best['all_ndcg@10'][0]:.4f} vs {sas['all_ndcg@10'][0]:.4f}.")
    if h_uqf and h_text:
        lines.append(f"* Hybrid on UQF vs on text, cold test NDCG@10: {h_uqf['cold_ndcg@10'][0]:.4f} vs "
                     f"{h_text['cold_ndcg@10'][0]:.4f}.")
    if probes:
        lines += ["", "## Probes (validation only, outside the selection)", "",
                  "| kind | dense loss | dense weight | variant | valid N@10 (all) | valid cold N@10 | "
                  "valid warm N@10 |", "|---|---|---|---|---|---|---|"]
        for rec in probes:
            lines += grid_rows(args, rec, note=" (a grid model, above)" if rec in grids[rec["kind"]] else "")
    if diagnosis:
        lines += ["", "## What holds the hybrid back (measured; every number from the records above)", "",
                  *holdback_lines(diagnosis)]
    lines += ["", "## Input wall times (seconds)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in inputs["seconds"].items()]
    lines += ["", f"Curves: `{args.out.stem}_curves.png`; records: `{args.out.stem}/units/`.", ""]
    return "\n".join(lines)


def plot_curves(curves: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # more runs than tab10's ten colours
    for name, pts in curves.items():
        xy = [(p["epoch"], p["valid_ndcg10"]) for p in pts if p.get("valid_ndcg10") is not None]
        if xy:
            ax.plot(*zip(*xy, strict=True), marker=".", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@10 (each run's selection metric)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    configure(quiet=False)
    set_threads_from_env()
    if args.worker:
        run_worker(args)
        return {}
    inputs = prepare_inputs(args)
    if args.jobs > 1:
        run_jobs(args, inputs)  # every record made; what follows reads them back
    label = LABEL
    results: dict[str, list[dict[str, Any]]] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    tigers: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        recs = tigers[kind] = [tiger_unit(args, inputs, kind, s) for s in args.seed_list]
        results[f"TIGER, {label[kind]} SIDs"] = [r["test"] for r in recs]
        curves[f"TIGER {kind} s{recs[0]['seed']}"] = recs[0]["curve"]
    grids: dict[str, list[dict[str, Any]]] = {}
    choices: dict[str, dict[str, Any]] = {}
    finals: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        grids[kind] = [hybrid_grid_unit(args, inputs, kind, loss, w, ids) for loss, w, ids in grid_configs(args)]
        for g in grids[kind]:
            curves[f"hybrid {kind} {config_tag(g['loss'], g['weight'], has_ids(g))}"] = g["curve"]
        choices[kind] = select(grids[kind], variant_names(args))
        finals[kind] = [hybrid_final_unit(args, inputs, kind, choices[kind], s) for s in args.seed_list]
        mode = choices[kind]["mode"]
        results[f"hybrid on {label[kind]}"] = [r["test"][mode] for r in finals[kind]]
        for other in ("generate", "dense", "hybrid"):
            if other != mode:
                results[f"hybrid on {label[kind]}, {other} mode (not selected)"] = [r["test"][other]
                                                                                     for r in finals[kind]]
    sas = [sasrec_unit(args, inputs, s) for s in args.seed_list]
    results["SASRec"] = [r["test"] for r in sas]
    curves[f"SASRec s{sas[0]['seed']}"] = sas[0]["curve"]
    for kind in KINDS:
        results[f"text kNN ({label[kind]} embedding)"] = [textknn_unit(args, inputs, kind)["test"]]
    rows = {name: summarise(recs) for name, recs in results.items()}
    best_kind = max(KINDS, key=lambda k: choices[k]["valid_ndcg10"])
    probes = [hybrid_grid_unit(args, inputs, *probe) for probe in args.probe_list]
    for p in probes:
        curves[f"probe {p['kind']} {config_tag(p['loss'], p['weight'], has_ids(p))}"] = p["curve"]
    diagnosis = diagnose(args, rows, choices, grids, probes, {"hybrid finals": finals[best_kind], "SASRec": sas,
                                                             f"TIGER, {label[best_kind]} SIDs": tigers[best_kind]},
                         best_kind)
    best_recs = results[f"hybrid on {label[best_kind]}"]
    a, b = mean_per_user(best_recs), mean_per_user(results["SASRec"])
    warm = ~np.asarray(best_recs[0]["cold_target"], dtype=bool)
    tests = {"warm": paired_test(a[warm], b[warm]), "all": paired_test(a, b)}
    report = render(args, inputs, rows, grids, choices, tests, best_kind, probes, diagnosis)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    payload = {"inputs": inputs, "rows": rows, "choices": choices, "paired_tests": tests, "best_hybrid": best_kind,
               "grids": grids, "probes": probes, "diagnosis": diagnosis,
               "args": {k: v for k, v in vars(args).items() if k not in RUN_ONLY}}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    plot_curves(curves, args.out.with_name(args.out.stem + "_curves.png"))
    print(report)
    return payload


if __name__ == "__main__":
    main()
