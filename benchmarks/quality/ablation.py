"""Which tokenizer gives a generative recommender the best semantic IDs: a parallel, budgeted runner.

Units. A *SID unit* is one tokenizer and one seed: ``fuse`` (its method and options) -> ``quantize`` ->
TIGER -> ``evaluate`` on valid and test (full ranking). A *baseline unit* is popularity, LightGCN (from
the same train-gcn file) or SASRec (one per seed). Every finished unit writes one JSON record to
``<out stem>/units/`` and a rerun skips units already recorded (a record made with other settings is
refused, never mixed), so a long run can stop and continue later, on another machine.

Parallelism. Units run as worker processes of this script (``--jobs N``), each with its own torch: on a CPU the
run's threads (``UQF_THREADS``, else torch's default) are split between the N workers, at least 1 each, as
``hybrid_office.py`` does (``UQF_THREADS=2 --jobs 2``: two 1-thread workers; more threads than cores made LC-Rec
workers about 15x slower); on a GPU the processes share the card.

Budget. Without ``--budget-minutes`` every TIGER trains to early stopping (``--tiger-patience``
evaluations on ``--tiger-eval-users`` validation users, default all), at most ``--tiger-epochs``.
With it, the runner first tokenizes and runs the baselines, then calibrates one TIGER epoch and one
validation pass on this machine with all ``--jobs`` workers running, and gives every tokenizer the
same epoch cap that finishes before the deadline (or ``--tiger-epochs`` when that fits: then early
stopping decides). The cap is stored in ``<out stem>/run.json``; a continued run reuses it, so every
row of a table has the same budget.

Output: ``--out`` (markdown table), its ``.json`` (every record), ``<stem>_curves.png`` (validation
NDCG@10 per evaluation of every run, when matplotlib is installed: ``pip install 'uqf-cli[plot]'``).
``--report-only`` re-renders them from the records.

Backbone. ``--backbone tiger`` (default) trains TIGER in every SID unit; ``--backbone lcrec`` trains
LC-Rec instead under the CPU protocol (``--lcrec-*``, defaults in ``LCREC_PROTOCOL``: the last
``--lcrec-windows`` training windows of every user, validation NDCG@10 on ``--lcrec-eval-users``
seeded users every ``--lcrec-eval-steps`` steps, early stopping after ``--lcrec-patience``
evaluations, the best weights kept; test on all users; ``--lcrec-decay-epochs E --lcrec-min-lr-ratio F``: the
learning rate decays over E epochs to the floor F, and early stopping judges only what follows). Its records
carry the backbone in their settings, so a table holds one backbone (give each its own ``--out``) and resumes
like TIGER's.
``--budget-minutes`` calibrates TIGER epochs and is refused with ``--backbone lcrec``.

Beside. ``--beside DIR`` (another run's results folder, holding ``units/``) adds, to the table and the paired tests,
that run's records of this run's tokenizers and seeds (e.g. TIGER beside LC-Rec on the same SIDs); a record is taken
only when it was made on the same SIDs (``ablation_beside.py``), else refused with the reason in the report.

Variants: ``text``, ``collab``, ``concat``, ``uqf``, UQF ablations and ``letter`` (see ``VARIANTS``);
``--define NAME=JSON`` adds one (``{"method": "uqf", "fuse": {...}, "quantize": {...}, "label": "..."}``;
optional ``"codebook_size"`` and ``"levels"`` replace ``--codebook-size``/``--levels`` for that variant, and
``"seeds"`` its number of seeds). Units run seed by seed: every variant's first seed comes before any second.

Run (the committed results state their own command)::

    UQF_THREADS=1 .venv/bin/python -m benchmarks.quality.ablation --dataset DS --text TEXT.st --collab COLLAB.st \\
        --work runs/cmp --out benchmarks/results/office_cmp.md --jobs 2 --budget-minutes 120 --baselines
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.quality import ablation_report as report
from benchmarks.quality import ablation_units, workers
from benchmarks.quality.ablation_units import (
    BASELINES,
    LCREC_PROTOCOL,
    MAIN_VARIANTS,
    SAFETY,
    TIGER_PRESETS,
    VARIANTS,
    digest,
    finished,
    manifest_path,
    planned_units,
    read_json,
    records_dir,
    write_json,
)
from benchmarks.quality.workers import progress, strip_worker
from uqf_cli.data.dataset import Dataset
from uqf_cli.fuse import FuseOptions
from uqf_cli.quantize import QuantizeConfig
from uqf_cli.quantize.config import auto_codebook_size
from uqf_cli.quantize.letter import LetterConfig
from uqf_cli.rec.tiger.options import TigerOptions

MODULE = "benchmarks.quality.ablation"

# ----------------------------------------------------------------------------------------------
# Scheduling worker processes
# ----------------------------------------------------------------------------------------------


def run_parallel(tasks: list[list[str]], args: argparse.Namespace, label: str) -> None:
    """Run ``python -m benchmarks.quality.ablation ARGV... --worker TASK`` for each task, ``--jobs`` at a time, each
    worker with its share of the threads."""
    workers.run_parallel(tasks, module=MODULE, argv=args.argv, jobs=args.jobs, logs=args.work / "logs", label=label,
                         env={"UQF_THREADS": str(workers.share_threads(args.jobs))})


def epoch_cap_for(args: argparse.Namespace, todo: int, calibration: list[dict[str, float]],
                  deadline: float) -> dict[str, Any]:
    """The largest equal epoch cap that lets ``todo`` TIGER units finish before ``deadline``."""
    epoch_s = max(c["epoch_seconds"] for c in calibration)
    eval_s = max(c["eval_seconds"] for c in calibration)
    final_eval_s = max(c["final_eval_seconds"] for c in calibration)
    rounds = math.ceil(todo / args.jobs)
    per_unit = SAFETY * (deadline - time.time()) / max(1, rounds)
    cap = math.floor((per_unit - final_eval_s - eval_s) / (epoch_s + eval_s))
    plan = {"epoch_seconds": round(epoch_s, 1), "eval_seconds": round(eval_s, 1),
            "final_eval_seconds": round(final_eval_s, 1), "rounds": rounds, "seconds_per_unit": round(per_unit),
            "cap_from_budget": cap}
    if cap < 1:
        need = (rounds * (final_eval_s + 2 * eval_s + epoch_s) / SAFETY + (time.time() - args.started)) / 60
        sys.exit(f"error: --budget-minutes {args.budget_minutes} is too small for one TIGER epoch per unit here "
                 f"(about {need:.0f} minutes needed with --jobs {args.jobs})")
    return {**plan, "epoch_cap": min(cap, args.tiger_epochs)}


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, type=Path, help="uqf prepare output")
    ap.add_argument("--text", required=True, type=Path, help="uqf embed-text file of that dataset")
    ap.add_argument("--collab", required=True, type=Path, help="uqf train-gcn file of that dataset")
    ap.add_argument("--work", required=True, type=Path, help="scratch directory (SIDs, models, logs)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/office_tokenizers.md"),
                    help="the table; records go to <stem>/units/, curves to <stem>_curves.png")
    ap.add_argument("--variants", default=",".join(MAIN_VARIANTS), help=f"subset of {', '.join(VARIANTS)} "
                    "and --define names")
    ap.add_argument("--define", action="append", default=[], metavar="NAME=JSON",
                    help='a variant: {"method": ..., "fuse": {...}, "quantize": {...}, "label": ...}')
    ap.add_argument("--seeds", type=int, default=2, help="seeds for the main and defined variants and SASRec")
    ap.add_argument("--ablation-seeds", type=int, default=1, help="seeds for the uqf-no-* variants")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--fuse-epochs", type=int, default=FuseOptions.epochs)
    ap.add_argument("--codebook-size", type=int, default=None,
                    help="codes per level (default: the library's --codebook-size auto rule for the dataset)")
    ap.add_argument("--levels", type=int, default=QuantizeConfig.levels)
    ap.add_argument("--quantize", type=json.loads, default={}, help="QuantizeConfig overrides for every variant")
    ap.add_argument("--tiger-epochs", type=int, default=TigerOptions.epochs,
                    help="TIGER's epoch cap (the learning rate decays over the recipe's decay_epochs, at most the cap, "
                         "then stays at its floor until early stopping)")
    ap.add_argument("--tiger-preset", choices=list(TIGER_PRESETS), default="small")
    ap.add_argument("--tiger-recipe", type=json.loads, default={},
                    help='TIGER training options for every SID unit, e.g. \'{"lr": 2e-3, "lr_schedule": "cosine"}\'')
    ap.add_argument("--tiger-eval-users", type=int, default=TigerOptions.eval_users,
                    help="valid users for early stopping: 0 = all (default), N = a seeded sample")
    ap.add_argument("--tiger-patience", type=int, default=TigerOptions.patience)
    ap.add_argument("--eval-users", type=int, default=None, help="score only the first N users (default: all)")
    ap.add_argument("--backbone", choices=("tiger", "lcrec"), default="tiger", help="what the SID units train")
    for key, default in LCREC_PROTOCOL.items():
        flag = "--lcrec-" + key.replace("_", "-")
        if isinstance(default, bool):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f"lcrec: {key}")
        else:
            kind = {"max_steps": int, "base_model": str, "decay_epochs": float}.get(key, type(default))
            ap.add_argument(flag, type=kind, default=default, help=f"lcrec: {key} (default {default})")
    ap.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=False,
                    help="popularity, LightGCN, SASRec rows")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes at a time")
    ap.add_argument("--budget-minutes", type=float, default=None, help="wall-clock deadline for this invocation")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--report-only", action="store_true", help="render the table and curves from the records")
    ap.add_argument("--beside", type=Path, default=None, metavar="DIR",
                    help="another run's results folder (its units/, e.g. benchmarks/results/office_converged): its "
                         "records of this run's tokenizers and seeds, checked to be on the same SIDs, become rows "
                         "and paired tests beside this run's")
    ap.add_argument("--worker", nargs="+", default=None, help=argparse.SUPPRESS)
    raw = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(raw)
    args.argv = strip_worker(raw)
    args.started = time.time()
    args.defined = parse_defines(ap, args.define)
    args.variant_list = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variant_list if v not in VARIANTS and v not in args.defined]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join([*VARIANTS, *args.defined])}")
    if args.beside is not None and not (args.beside / "units").is_dir():
        ap.error(f"--beside {args.beside}: no units/ folder of records there")
    if args.beside is not None and args.beside.resolve() == (args.out.parent / args.out.stem).resolve():
        ap.error("--beside names this run's own records")
    check_quantize_overrides(ap, args.quantize)
    check_tiger_recipe(ap, args.tiger_recipe)
    if args.codebook_size is None:
        args.codebook_size = auto_codebook_size(len(Dataset.load(args.dataset).item_ids))
    if args.backbone == "lcrec" and args.budget_minutes is not None:
        ap.error("--budget-minutes calibrates TIGER epochs; LC-Rec units run the protocol of the --lcrec-* options")
    if args.jobs < 1 or args.tiger_epochs < 1 or args.seeds < 1:
        ap.error("--jobs, --tiger-epochs and --seeds must be >= 1")
    args.data_digest = digest({"dataset": str(Dataset.load(args.dataset).fingerprint),
                               "text": file_sha(args.text), "collab": file_sha(args.collab)})
    return args


def parse_defines(ap: argparse.ArgumentParser, defines: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in defines:
        name, sep, spec = item.partition("=")
        try:
            value = json.loads(spec) if sep else None
        except json.JSONDecodeError as e:
            ap.error(f"--define {name}: not JSON ({e})")
        if not isinstance(value, dict) or "method" not in value:
            ap.error(f"--define {name}: expected NAME={{\"method\": ..., ...}}")
        bad = sorted(set(value.get("fuse", {})) - set(FuseOptions.__dataclass_fields__))
        if bad:
            ap.error(f"--define {name}: unknown fuse option(s) {', '.join(bad)}")
        check_quantize_overrides(ap, value.get("quantize", {}))
        bad = sorted(set(value.get("letter", {})) - (set(LetterConfig.__dataclass_fields__) - {"collab"}))
        if bad:
            ap.error(f"--define {name}: unknown letter option(s) {', '.join(bad)}")
        if "seeds" in value and (not isinstance(value["seeds"], int) or value["seeds"] < 1):
            ap.error(f"--define {name}: seeds must be a positive integer")
        sizes = {k: value[k] for k in ("codebook_size", "levels") if k in value}
        if any(not isinstance(v, int) or v < 1 for v in sizes.values()):
            ap.error(f"--define {name}: codebook_size and levels must be positive integers")
        out[name] = {"label": name, **value}
    return out


def check_quantize_overrides(ap: argparse.ArgumentParser, overrides: Any) -> None:
    """RQ-VAE knobs may change, except those the runner fixes (seed, levels, codebook sizes)."""
    if not isinstance(overrides, dict):
        ap.error("--quantize must be a JSON object, e.g. '{\"code_dim\": 4}'")
    fixed = sorted({"seed", "levels", "codebook_sizes"} & set(overrides))
    if fixed:
        ap.error(f"--quantize cannot set {', '.join(fixed)} (use --seed, --levels and --codebook-size)")
    unknown = sorted(set(overrides) - set(QuantizeConfig.__dataclass_fields__))
    if unknown:
        ap.error(f"--quantize: unknown QuantizeConfig field(s) {', '.join(unknown)}")


def check_tiger_recipe(ap: argparse.ArgumentParser, recipe: Any) -> None:
    """Training options only: the runner itself sets the cap, early stopping, the seed and the device."""
    if not isinstance(recipe, dict):
        ap.error("--tiger-recipe must be a JSON object")
    fixed = sorted({"epochs", "patience", "eval_users", "seed", "device", "preset"} & set(recipe))
    if fixed:
        ap.error(f"--tiger-recipe cannot set {', '.join(fixed)} (use --tiger-epochs, --tiger-patience, "
                 "--tiger-eval-users, --seed, --device, --tiger-preset)")
    unknown = sorted(set(recipe) - set(TigerOptions.__dataclass_fields__))
    if unknown:
        ap.error(f"--tiger-recipe: unknown TIGER option(s) {', '.join(unknown)}")


def file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.worker:
        ablation_units.run_worker(args)
        return {}
    if not args.report_only:
        orchestrate(args)
    return report.write(args, VARIANTS | args.defined, BASELINES, TIGER_PRESETS)


def orchestrate(args: argparse.Namespace) -> None:
    """Tokenize and run the baselines, fix the epoch cap, then train and score every SID unit."""
    deadline = args.started + 60 * args.budget_minutes if args.budget_minutes else None
    manifest = read_json(manifest_path(args))
    cap = manifest["epoch_cap"] if manifest else (None if deadline else args.tiger_epochs)
    if args.backbone == "lcrec":
        cap = 0  # no epoch cap: the LC-Rec protocol (early stopping, --lcrec-epochs) decides
    sids, bases = planned_units(args)
    todo_sids = [u for u in sids if cap is None or not finished(u, args, cap)]
    todo_bases = [u for u in bases if not finished(u, args, None)]
    progress(f"{len(sids) - len(todo_sids)} SID unit(s) and {len(bases) - len(todo_bases)} baseline(s) already "
             f"recorded in {records_dir(args)}")
    first = [["tokenize", u] for u in todo_sids] + [["unit", u, "0"] for u in todo_bases]
    run_parallel(first, args, "tokenize/baselines")
    if cap is None:
        calib = [["calibrate", f"calibrate_{k}"] for k in range(min(args.jobs, max(1, len(todo_sids))))]
        run_parallel(calib, args, "calibration")
        measured = [read_json(args.work / "calibration" / f"{t[1]}.json") for t in calib]
        plan = epoch_cap_for(args, len(todo_sids), [m for m in measured if m], deadline or 0.0)
        cap = plan["epoch_cap"]
        write_json(manifest_path(args), {"epoch_cap": cap, "budget_minutes": args.budget_minutes, "jobs": args.jobs,
                                         "plan": plan, "machine": ablation_units.machine_line(args.device, args.jobs),
                                         "created": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
        progress(f"epoch cap {cap} for every TIGER ({plan})")
    elif manifest is None:
        write_json(manifest_path(args), {"epoch_cap": cap, "budget_minutes": None, "jobs": args.jobs,
                                         "machine": ablation_units.machine_line(args.device, args.jobs),
                                         "created": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
    run_parallel([["unit", u, str(cap)] for u in todo_sids if not finished(u, args, cap)], args,
                 "LC-Rec" if args.backbone == "lcrec" else "TIGER")


if __name__ == "__main__":
    main()
