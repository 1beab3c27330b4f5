"""Cold start on Office: do new items (text only, no interactions) get SIDs near their collaborative neighbours?

Protocol (issue 7, "Cold start")

1. A seeded random 10% of the items become **cold**: every interaction with them is removed from the
   sequences (the "warm" dataset keeps all items in its catalogue, so a recommender can still
   generate them, but nothing trains on them). train-gcn, fuse and quantize see the warm data only:
   no collaborative embedding exists for a cold item and the fuser and the quantizers are fitted on
   the warm items alone.
2. The cold items are then tokenized the way a new item would be: the TEXT path of the saved fuser
   (``uqf fuse --apply fuser.st --text cold_text.st``, no collab) and the saved quantizer
   (``uqf quantize --apply quantizer.st``), library calls :func:`uqf_cli.fuse.apply_fuser` and
   :func:`uqf_cli.quantize.apply_quantizer`. Text-only SIDs: a quantizer fitted on the warm items'
   text embeddings, applied to the cold items' text embeddings.
3. **Neighbour agreement.** Each cold item's true collaborative neighbours are its top-10 co-occurrence
   neighbours (cosine-normalised co-occurrence in the FULL data's train sequences,
   :func:`uqf_cli.fuse.cooccurrence_neighbours`), restricted to warm items (the tree a new item must
   find its place in). For prefix depth 1 and 2 we report the share of (cold item, neighbour) pairs whose
   SIDs share that prefix, the share of cold items with at least one such neighbour, and the pair share
   with the cold items' SIDs shuffled among themselves (what a tokenizer unrelated to the item gets).
   The same pair share for warm items (whose SIDs did see collaborative data) is given for reference.
4. **Recommendation.** TIGER is trained on the warm data with the warm + cold SIDs in its vocabulary
   (small budget, stated in the output), then ranks the FULL data's test cases (histories as observed)
   whose target is a cold item, and a seeded sample of the other test cases. LightGCN (on the warm
   graph: a cold item has a zero vector, score 0) and popularity are shown for context.

Run (about 30-60 min on the shared 2-core CPU under load, a few minutes on a GPU)::

    UQF_THREADS=1 .venv/bin/python -m benchmarks.quality.cold_start --dataset DS --text TEXT.st \\
        --work runs/cold --out benchmarks/results/cold_start.md

``DS`` is ``uqf prepare builtin:office`` output and ``TEXT.st`` its ``uqf embed-text`` file (the text
embeddings do not depend on interactions, so the same vectors serve the warm data).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from benchmarks.tools.command import command_line
from uqf_cli.collab import GcnConfig, train_gcn
from uqf_cli.core.runtime import configure, resolve_device, set_threads_from_env
from uqf_cli.data.dataset import Dataset
from uqf_cli.evaluation.config import EvaluateConfig
from uqf_cli.evaluation.metrics import ranking_metrics
from uqf_cli.files import (
    SidTable,
    load_embeddings,
    make_provenance,
    read_sids,
    save_embeddings,
    write_dataset_dir,
    write_sids,
)
from uqf_cli.fuse import FuseOptions, apply_fuser, cooccurrence_neighbours, fuse
from uqf_cli.quantize import QuantizeConfig, apply_quantizer, quantize
from uqf_cli.quantize.config import parse_codebook_sizes, show_codebook_sizes
from uqf_cli.rec import lightgcn, pop, tiger

NEIGHBOURS = 10
SHUFFLES = 20


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def pick_cold_items(ds: Dataset, fraction: float, seed: int) -> list[str]:
    """A seeded random ``fraction`` of the catalogue, in dataset order."""
    rng = random.Random(seed)
    chosen = set(rng.sample(ds.item_ids, round(fraction * len(ds.item_ids))))
    return [i for i in ds.item_ids if i in chosen]


def write_warm_dataset(ds: Dataset, cold: set[str], out: Path) -> Dataset:
    """All items, every sequence without the cold items (users left with nothing are dropped)."""
    seqs = {u: [i for i in s if i not in cold] for u, s in ds.sequences.items()}
    seqs = {u: s for u, s in seqs.items() if s}
    write_dataset_dir(out, ds.items, seqs, {"source": f"{ds.path} without {len(cold)} cold items (cold_start.py)"},
                      force=True)
    return Dataset.load(out)


def subset_embeddings(src: str | Path, ids: list[str], out: Path, fingerprint: str | None, note: str,
                      drop_cold_list: bool = False) -> Path:
    """Rows ``ids`` of an embedding file (same vectors), re-labelled with ``fingerprint``."""
    emb = load_embeddings(src)
    extra_m = dict(emb.extra_metadata)
    if drop_cold_list:
        extra_m["cold_item_ids"] = []
    prov = make_provenance("cold-start-subset", {"note": note, "items": len(ids)}, {"source": src})
    save_embeddings(out, emb.rows_for(ids), ids, prov, emb.modality, fingerprint, emb.extra_tensors, extra_m,
                    force=True)
    return out


def merge_sids(warm: SidTable, cold: SidTable) -> SidTable:
    """One table for the recommender's vocabulary: warm rows then cold rows."""
    if warm.levels != cold.levels:
        raise ValueError(f"warm SIDs have {warm.levels} levels, cold ones {cold.levels}")
    sizes = [max(a, b) for a, b in zip(warm.codebook_sizes, cold.codebook_sizes, strict=True)]
    return SidTable(warm.item_ids + cold.item_ids, np.concatenate([warm.codes, cold.codes]), sizes,
                    {"stage": "cold-start-merge"}, {}, warm.dataset_fingerprint)


# ----------------------------------------------------------------------------------------------
# Neighbour agreement
# ----------------------------------------------------------------------------------------------


def warm_neighbours(full: Dataset, cold: set[str], k: int = NEIGHBOURS) -> dict[str, list[str]]:
    """Every item's top-k co-occurrence neighbours in the full train sequences, warm neighbours only."""
    lists = cooccurrence_neighbours(full, full.item_ids, k)
    out = {}
    for iid, nbrs in zip(full.item_ids, lists, strict=True):
        out[iid] = [full.item_ids[j] for j in nbrs.tolist() if full.item_ids[j] not in cold]
    return out


def prefix_agreement(sids: dict[str, tuple[int, ...]], items: list[str], nbrs: dict[str, list[str]],
                     depth: int) -> dict[str, float]:
    """Share of (item, neighbour) pairs sharing the depth-``depth`` SID prefix; share of items with any."""
    pairs = hits = items_with = items_any = 0
    for iid in items:
        own = sids[iid][:depth]
        found = [sids[n][:depth] == own for n in nbrs[iid]]
        if not found:
            continue
        items_with += 1
        pairs += len(found)
        hits += sum(found)
        items_any += any(found)
    return {"pair_share": hits / pairs if pairs else float("nan"),
            "item_share": items_any / items_with if items_with else float("nan"), "items": items_with, "pairs": pairs}


def shuffled_pair_share(sids: dict[str, tuple[int, ...]], items: list[str], nbrs: dict[str, list[str]],
                        depth: int, seed: int) -> float:
    """Mean pair share with the ``items``' SIDs permuted among themselves (``SHUFFLES`` seeded permutations)."""
    rng = random.Random(seed)
    values = []
    for _ in range(SHUFFLES):
        perm = items[:]
        rng.shuffle(perm)
        moved = dict(sids)
        moved.update({a: sids[b] for a, b in zip(items, perm, strict=True)})
        values.append(prefix_agreement(moved, items, nbrs, depth)["pair_share"])
    return float(np.mean(values))


# ----------------------------------------------------------------------------------------------
# Pipeline
# ----------------------------------------------------------------------------------------------


def tokenize(work: Path, name: str, warm_ds: Dataset, warm_emb: Path, cold_emb: Path, qcfg: QuantizeConfig,
             device: str) -> tuple[SidTable, SidTable, float]:
    """Fit a quantizer on the warm embeddings, apply it to the cold ones: (warm SIDs, cold SIDs, seconds)."""
    t0 = time.perf_counter()
    quantize(warm_emb, work / f"{name}_warm_sids.jsonl", qcfg, save_model=work / f"{name}_quantizer.st",
             device=device, force=True)
    apply_quantizer(work / f"{name}_quantizer.st", cold_emb, work / f"{name}_cold_sids.jsonl", device=device,
                    force=True)
    return (read_sids(work / f"{name}_warm_sids.jsonl"), read_sids(work / f"{name}_cold_sids.jsonl"),
            time.perf_counter() - t0)


def rank_cases(rec: Any, cases: list, k: int = 10, beam: int = EvaluateConfig.beam_size,
               user_ids: bool = False) -> dict[str, float]:
    hist = [list(c.history) for c in cases]
    if user_ids:
        ranked = rec.recommend(hist, k, beam, user_ids=[c.user_id for c in cases])
    else:
        ranked = rec.recommend(hist, k, beam)
    return ranking_metrics(ranked, [c.target for c in cases], (5, 10), (5, 10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, type=Path, help="uqf prepare output (Office)")
    ap.add_argument("--text", required=True, type=Path, help="uqf embed-text file of that dataset")
    ap.add_argument("--work", required=True, type=Path, help="directory for every intermediate file")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/cold_start.md"))
    ap.add_argument("--cold-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--fuse-epochs", type=int, default=FuseOptions.epochs)
    ap.add_argument("--fuse", type=json.loads, default={}, metavar="JSON",
                    help='FuseOptions overrides of the UQF variant, e.g. \'{"cold_collab": "borrow"}\'')
    ap.add_argument("--tiger-epochs", type=int, default=3)
    ap.add_argument("--tiger-preset", default="tiger", help="TIGER shape (uqf train-rec --preset): tiger | small")
    ap.add_argument("--codebook-size", default=show_codebook_sizes(QuantizeConfig.codebook_sizes),
                    help="codes per level of both tokenizers, as uqf quantize --codebook-size (default: its "
                    "default; the levels are its default too)")
    ap.add_argument("--warm-eval-users", type=int, default=1000, help="sampled warm-target test cases")
    ap.add_argument("--reuse", action="store_true", help="reuse the train-gcn, fuse and quantize files already in "
                    "--work (from an earlier run with the same options) instead of refitting them")
    ap.add_argument("--no-rec", action="store_true", help="only the SID part: skip the recommenders")
    args = ap.parse_args()
    configure(quiet=False)
    set_threads_from_env()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    started = time.perf_counter()

    full = Dataset.load(args.dataset)
    cold_list = pick_cold_items(full, args.cold_fraction, args.seed)
    cold = set(cold_list)
    warm_list = [i for i in full.item_ids if i not in cold]
    warm_ds = write_warm_dataset(full, cold, work / "warm_ds")
    fp = warm_ds.fingerprint
    text_warm = subset_embeddings(args.text, warm_list, work / "text_warm.st", fp, "warm items' text")
    text_cold = subset_embeddings(args.text, cold_list, work / "text_cold.st", fp, "cold items' text")

    def have(*names: str) -> bool:
        return args.reuse and all((work / n).exists() for n in names)

    t = time.perf_counter()
    if not have("collab_warm_all.st"):
        train_gcn(work / "warm_ds", work / "collab_warm_all.st", GcnConfig(seed=args.seed, device=args.device),
                  force=True)
        times["train-gcn (warm)"] = time.perf_counter() - t
    collab = subset_embeddings(work / "collab_warm_all.st", warm_list, work / "collab_warm.st", fp,
                               "warm rows of train-gcn on the warm data", drop_cold_list=True)

    t = time.perf_counter()
    if not have("fuser.st", "unified_warm.st"):
        fopts = FuseOptions(**{"epochs": args.fuse_epochs, **args.fuse, "seed": args.seed, "device": args.device})
        fuse(text_warm, collab, work / "warm_ds", work / "unified_warm.st", fopts, save_model=work / "fuser.st",
             force=True)
    apply_fuser(work / "fuser.st", text_cold, None, work / "unified_cold.st", args.device, force=True)
    times["fuse (warm) + apply (cold, text path)"] = time.perf_counter() - t

    qcfg = QuantizeConfig(seed=args.seed, codebook_sizes=parse_codebook_sizes(args.codebook_size,
                                                                              QuantizeConfig.levels))
    tables = {}
    for name, warm_emb, cold_emb in (("uqf", work / "unified_warm.st", work / "unified_cold.st"),
                                     ("text", text_warm, text_cold)):
        if have(f"{name}_quantizer.st", f"{name}_warm_sids.jsonl"):
            t = time.perf_counter()
            apply_quantizer(work / f"{name}_quantizer.st", cold_emb, work / f"{name}_cold_sids.jsonl",
                            device=args.device, force=True)
            w, c = read_sids(work / f"{name}_warm_sids.jsonl"), read_sids(work / f"{name}_cold_sids.jsonl")
            secs = time.perf_counter() - t
        else:
            w, c, secs = tokenize(work, name, warm_ds, warm_emb, cold_emb, qcfg, args.device)
        tables[name] = merge_sids(w, c)
        times[f"quantize + apply ({name})"] = secs
    diagnostics = cold_diagnostics(work, tables, set(cold_list))

    nbrs = warm_neighbours(full, cold)
    agreement: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        sid = table.as_dict()
        agreement[name] = {}
        for depth in (1, 2):
            cold_fig = prefix_agreement(sid, cold_list, nbrs, depth)
            cold_fig["shuffled"] = shuffled_pair_share(sid, cold_list, nbrs, depth, args.seed)
            cold_fig["warm_pair_share"] = prefix_agreement(sid, warm_list, nbrs, depth)["pair_share"]
            agreement[name][str(depth)] = cold_fig

    rec_rows: dict[str, dict[str, dict[str, float]]] = {}
    n_cold_cases = sum(1 for c in full.eval_cases("test") if c.target in cold)
    n_warm_cases = 0
    if not args.no_rec:
        rec_rows, n_warm_cases = recommendation(args, full, warm_ds, tables, cold, times)
    times["total"] = time.perf_counter() - started

    report = render(args, full, cold_list, warm_ds, agreement, diagnostics, rec_rows, n_cold_cases, n_warm_cases,
                    times)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(report)


def cold_diagnostics(work: Path, tables: dict[str, SidTable], cold: set[str]) -> dict[str, Any]:
    """Why agreement is what it is: the fuser's gate on cold vs warm items, and how spread the cold SIDs are."""
    out: dict[str, Any] = {}
    warm_gate = load_embeddings(work / "unified_warm.st").extra_tensors.get("gate")
    cold_gate = load_embeddings(work / "unified_cold.st").extra_tensors.get("gate")
    if warm_gate is not None and cold_gate is not None:
        out["gate"] = {"warm": float(warm_gate.mean()), "cold": float(cold_gate.mean())}
    for name, table in tables.items():
        rows = [k for k, iid in enumerate(table.item_ids) if iid in cold]
        out[name] = {"cold_level1_codes": len(set(table.codes[rows, 0].tolist())),
                     "cold_items": len(rows)}
    return out


def recommendation(args: argparse.Namespace, full: Dataset, warm_ds: Dataset, tables: dict[str, SidTable],
                   cold: set[str], times: dict[str, float]) -> tuple[dict[str, dict[str, dict[str, float]]], int]:
    """TIGER on the warm data (cold items only in the vocabulary), scored on full-data test cases."""
    work = args.work
    test = full.eval_cases("test")
    cold_cases = [c for c in test if c.target in cold]
    warm_cases = [c for c in test if c.target not in cold]
    rng = random.Random(args.seed)
    if len(warm_cases) > args.warm_eval_users:
        warm_cases = sorted(rng.sample(warm_cases, args.warm_eval_users), key=lambda c: c.user_id)
    rec_rows: dict[str, dict[str, dict[str, float]]] = {}
    tiger_opts = {"preset": args.tiger_preset, "epochs": args.tiger_epochs, "eval_users": 500, "patience": 2,
                  "seed": args.seed, "device": args.device}
    for name, table in tables.items():
        t = time.perf_counter()
        write_sids(work / f"{name}_all_sids.jsonl", table, force=True)
        tiger.train(warm_ds, table, work / f"tiger_{name}", tiger_opts, force=True)
        times[f"TIGER train ({name})"] = time.perf_counter() - t
        rec = tiger.load(work / f"tiger_{name}", resolve_device(args.device))
        rec_rows[f"TIGER, {name} SIDs"] = {"cold": rank_cases(rec, cold_cases), "warm": rank_cases(rec, warm_cases)}
    lightgcn.train(warm_ds, None, work / "lightgcn", {"collab": work / "collab_warm_all.st"}, force=True)
    rec = lightgcn.load(work / "lightgcn", "cpu")
    rec_rows["LightGCN (warm graph)"] = {"cold": rank_cases(rec, cold_cases, user_ids=True),
                                         "warm": rank_cases(rec, warm_cases, user_ids=True)}
    pop.train(warm_ds, None, work / "pop", {}, force=True)
    rec = pop.load(work / "pop")
    rec_rows["popularity (warm counts)"] = {"cold": rank_cases(rec, cold_cases), "warm": rank_cases(rec, warm_cases)}
    return rec_rows, len(warm_cases)


def tiger_shape(preset: str) -> str:
    shape = tiger.PRESETS.get(preset, {})
    return (f"{shape.get('num_layers')}+{shape.get('num_decoder_layers')} layers, d_model {shape.get('d_model')}, "
            f"d_ff {shape.get('d_ff')}")


def render(args: argparse.Namespace, full: Dataset, cold: list[str], warm_ds: Dataset, agreement: dict,
           diagnostics: dict, rec_rows: dict, n_cold_cases: int, n_warm_cases: int, times: dict[str, float]) -> str:
    threads = torch.get_num_threads()
    device = resolve_device(args.device)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip() or "unknown"
    cmd = command_line("benchmarks.quality.cold_start", sys.argv[1:], env=["UQF_THREADS"])
    lines = [
        "# Cold start on Office: UQF vs text-only SIDs for items without interactions",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {device} ({os.cpu_count()} CPUs), {threads} torch thread(s), load average "
        f"{os.getloadavg()[0]:.1f} at the end (wall times are upper bounds under load). Code: commit {commit}.",
        "",
        f"Data: {len(full.item_ids):,} items, {len(cold):,} cold ({args.cold_fraction:.0%}, seed {args.seed}); "
        f"the warm data keeps {warm_ds.num_interactions:,} of {full.num_interactions:,} interactions and "
        f"{len(warm_ds.user_ids):,} of {len(full.user_ids):,} users. train-gcn, fuse (epochs {args.fuse_epochs}) "
        f"and both quantizers (RQ-VAE defaults, {QuantizeConfig.levels} levels, --codebook-size "
        f"{args.codebook_size}) are fitted on warm items only; "
        "cold items are tokenized with "
        "`fuse --apply` (text path, no collab) and `quantize --apply`.",
        "",
        "## Do cold items land next to their collaborative neighbours?",
        "",
        f"Neighbours: top-{NEIGHBOURS} co-occurrence neighbours of each cold item in the FULL train sequences, "
        "warm neighbours only. *pair share*: (cold item, neighbour) pairs sharing the SID prefix; *item share*: "
        "cold items with at least one neighbour sharing it; *shuffled*: pair share with the cold SIDs permuted "
        f"among the cold items (mean of {SHUFFLES}); *warm reference*: the pair share of warm items with their "
        "own warm neighbours (SIDs that did see collaborative data).",
        "",
        "| SIDs | prefix | cold items | pairs | pair share | item share | shuffled | lift | warm reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_depth in agreement.items():
        for depth, f in by_depth.items():
            lift = f["pair_share"] / f["shuffled"] if f["shuffled"] > 0 else float("nan")
            lines.append(f"| {name} | level 1..{depth} | {f['items']} | {f['pairs']} | {f['pair_share']:.4f} | "
                         f"{f['item_share']:.4f} | {f['shuffled']:.4f} | {lift:.2f}x | {f['warm_pair_share']:.4f} |")
    u, tx = agreement["uqf"], agreement["text"]
    lines += ["", "UQF / text-only pair share: " + ", ".join(
        f"level 1..{d}: {u[d]['pair_share'] / tx[d]['pair_share']:.2f}x" for d in ("1", "2")
        if tx[d]["pair_share"] > 0) + ".", ""]
    gate = diagnostics.get("gate")
    lines += ["Diagnostics: " + (f"mean fuser gate (1 = text, 0 = collab) {gate['warm']:.3f} on warm items, "
                                 f"{gate['cold']:.3f} on cold items (text path); " if gate else "")
              + "; ".join(f"{name}: the {d['cold_items']} cold items use {d['cold_level1_codes']} distinct level-1 "
                          "codes" for name, d in diagnostics.items() if name != "gate") + ".", ""]
    if not rec_rows:
        lines += ["## Recommendation on test targets that are cold items", "",
                  f"Not run here (`--no-rec`). {n_cold_cases:,} full-data test cases have a cold target; rerun "
                  "without `--no-rec` for TIGER (warm-trained), LightGCN and popularity on them.", ""]
    lines += [] if not rec_rows else [
        "## Recommendation on test targets that are cold items",
        "",
        f"Full-data test cases (histories as observed, full ranking, beam {EvaluateConfig.beam_size}): "
        f"{n_cold_cases:,} whose target is a cold item, and a seeded sample of {n_warm_cases:,} whose target is "
        f"warm. TIGER budget: {args.tiger_epochs} "
        f"epochs, preset `{args.tiger_preset}` ({tiger_shape(args.tiger_preset)}; early stopping on 500 warm valid "
        "users, patience 2) "
        "on the warm data, with the cold items' SIDs in its vocabulary but never a training target. "
        "Baselines mask history items; TIGER does not.",
        "",
        "| model | cold R@5 | cold R@10 | cold N@5 | cold N@10 | warm R@10 | warm N@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rec_rows.items():
        c, w = r["cold"], r["warm"]
        lines.append(f"| {name} | {c['recall@5']:.4f} | {c['recall@10']:.4f} | {c['ndcg@5']:.4f} | "
                     f"{c['ndcg@10']:.4f} | {w['recall@10']:.4f} | {w['ndcg@10']:.4f} |")
    lines += ["", "## Wall time per stage (seconds)", ""]
    if args.reuse:
        lines += ["`--reuse`: train-gcn, the fuser and the quantizers were fitted by an earlier run of the same "
                  "command without `--reuse`/`--no-rec` (interrupted in its TIGER stage) and read back here; "
                  "the rows below are this run's (applying the saved fuser and quantizers to the cold items).", ""]
    lines += ["| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in times.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
