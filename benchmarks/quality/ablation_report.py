"""The tokenizer comparison's report: a markdown table, a JSON of every record and the validation curves.

Everything is rendered from the unit records under ``<out stem>/units/`` (whichever invocation or
machine wrote them), so a report can be re-rendered at any time (``ablation.py --report-only``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality.ablation_beside import Beside, backbone_name, match
from benchmarks.quality.ablation_units import manifest_path, read_json, records_dir, write_json
from benchmarks.quality.paired import paired_bootstrap, wilcoxon_p
from uqf_cli.data.dataset import Dataset
from uqf_cli.evaluation import EvaluateConfig
from uqf_cli.rec.tiger.options import TigerOptions

TAIL_RULE = ("test targets in the tail of the train popularity (items sorted by train interactions; the items "
             "after the first 80% of interactions, cold items included; `uqf evaluate --by-popularity`)")
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")


def load_records(args: argparse.Namespace) -> list[dict[str, Any]]:
    folder = records_dir(args)
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))] if folder.exists() else []


def mean_std(values: list[float | None]) -> tuple[float, float, int]:
    vals = [float(v) for v in values if v is not None and not np.isnan(v)]
    if not vals:
        return float("nan"), float("nan"), 0
    return float(np.mean(vals)), (statistics.stdev(vals) if len(vals) > 1 else 0.0), len(vals)


def fmt(values: list[float | None], digits: int = 4, pct: bool = False) -> str:
    m, s, n = mean_std(values)
    if n == 0:
        return "-"
    scale, unit, d = (100.0, "%", 1) if pct else (1.0, "", digits)
    return f"{m * scale:.{d}f}{unit}" if n == 1 else f"{m * scale:.{d}f} ± {s * scale:.{d}f}{unit}"


def grouped(records: list[dict[str, Any]], variants: dict[str, dict[str, Any]], baselines: dict[str, str]
            ) -> dict[str, list[dict[str, Any]]]:
    """Rows in a fixed order: SID variants as defined, then baselines; each a list of seeds' records."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for variant, spec in variants.items():
        recs = sorted((r for r in records if r["kind"] == "sid" and r["variant"] == variant), key=lambda r: r["seed"])
        if recs:
            rows[spec["label"]] = recs
    for name, label in baselines.items():
        recs = sorted((r for r in records if r["kind"] == "baseline" and r["name"] == name), key=lambda r: r["seed"])
        if recs:
            rows[label] = recs
    return rows


def tokenization_table(rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["| tokenizer | seeds | raw collisions | semantic lift d1 | co-occ. lift d1 | collab-cos lift d1 | "
             "fuse s | quantize s |", "|---|---|---|---|---|---|---|---|"]
    for label, recs in rows.items():
        toks = [r["tokenization"] for r in recs if r["kind"] == "sid"]
        if not toks:
            continue
        lines.append(
            f"| {label} | {len(toks)} | {fmt([t['raw_collision_rate'] for t in toks], pct=True)} | "
            f"{fmt([t['semantic_lift']['1'] for t in toks], 3)} | {fmt([t['cooc_lift']['1'] for t in toks], 2)} | "
            f"{fmt([t['collab_cosine_lift']['1'] for t in toks], 3)} | "
            f"{fmt([t['seconds']['fuse'] for t in toks], 0)} | {fmt([t['seconds']['quantize'] for t in toks], 0)} |")
    return lines


def budget_cell(recs: list[dict[str, Any]]) -> str:
    if "steps_run" in recs[0]:  # LC-Rec: optimizer steps
        runs = "/".join(str(r["steps_run"]) for r in recs)
        best = "/".join(str(r["best_step"]) for r in recs)
        stopped = sum(bool(r.get("early_stopped")) for r in recs)
        return f"{runs} steps (best {best}); early stop {stopped}/{len(recs)}"
    if "epochs_run" not in recs[0]:
        return "-"
    runs = "/".join(str(r["epochs_run"]) for r in recs)
    best = "/".join(str(r["best_epoch"]) for r in recs)
    stopped = sum(bool(r.get("early_stopped")) for r in recs)
    cap = recs[0].get("epoch_cap")
    ended = sum(schedule_ended(r) for r in recs)
    return (f"{runs} (best {best}){'' if cap is None else f' of {cap}'}; early stop {stopped}/{len(recs)}"
            + (f", schedule end {ended}/{len(recs)}" if ended else ""))


def schedule_ended(rec: dict[str, Any]) -> bool:
    """A TIGER run that trained its planned epochs without early stopping, on a schedule decaying to zero: its
    learning rate reached 0, so training had nothing left to change (not a budget cut of a climbing curve). With
    a floor (``min_lr_ratio`` > 0; records made before it existed have none) the cap is a cap."""
    tiger = (rec.get("settings") or {}).get("tiger") or {}
    planned = tiger.get("epochs", rec.get("epoch_cap"))
    return (rec.get("kind") == "sid" and not rec.get("early_stopped") and planned is not None
            and rec.get("epochs_run") == planned and tiger.get("lr_schedule", "cosine") != "constant"
            and not tiger.get("min_lr_ratio", 0.0))


def group_metric(rec: dict[str, Any], group: str, metric: str) -> float | None:
    """Test ``metric`` on targets of one popularity ``group`` (records made before it existed: None)."""
    by_pop = rec.get("test_by_popularity") or {}
    return ((by_pop.get("groups") or {}).get(group) or {}).get("metrics", {}).get(metric)


def rec_table(rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["| model | seeds | epochs run (best) of cap; early stop | test R@10 | test N@10 | valid N@10 | "
             "tail test R@10 | tail test N@10 | train min | machine |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, recs in rows.items():
        lines.append(
            f"| {label} | {len(recs)} | {budget_cell(recs)} | {fmt([r['test']['recall@10'] for r in recs])} | "
            f"{fmt([r['test']['ndcg@10'] for r in recs])} | {fmt([r['valid']['ndcg@10'] for r in recs])} | "
            f"{fmt([group_metric(r, 'tail', 'recall@10') for r in recs])} | "
            f"{fmt([group_metric(r, 'tail', 'ndcg@10') for r in recs])} | "
            f"{fmt([r['seconds']['train'] / 60 for r in recs], 1)} | "
            f"{'; '.join(sorted({r['machine'] for r in recs}))} |")
    return lines


def verdict(rows: dict[str, list[dict[str, Any]]], variants: dict[str, dict[str, Any]]) -> list[str]:
    """Plain ratios of test NDCG@10 means: UQF against each other tokenizer, the best SID model against SASRec."""
    def mean(label: str) -> float:
        return mean_std([r["test"]["ndcg@10"] for r in rows.get(label, [])])[0]

    labels = {v: variants[v]["label"] for v in ("uqf", "text", "concat", "collab") if v in variants}
    out = []
    uqf = mean(labels.get("uqf", ""))
    for other in ("text", "concat", "collab"):
        if other in labels and labels[other] in rows and labels["uqf"] in rows and mean(labels[other]) > 0:
            out.append(f"- UQF / {labels[other]}: {uqf / mean(labels[other]):.2f}x test NDCG@10")
    sid_rows = {lab: mean(lab) for lab, recs in rows.items() if recs[0]["kind"] == "sid"}
    if sid_rows and "SASRec" in rows and mean("SASRec") > 0:
        best = max(sid_rows, key=lambda k: sid_rows[k])
        out.append(f"- best SID model ({best}) / SASRec: {sid_rows[best] / mean('SASRec'):.2f}x test NDCG@10")
    return out


def per_user_mean(recs: list[dict[str, Any]]) -> np.ndarray | None:
    """Each test user's NDCG@10 averaged over the row's seeds (None when a record predates per-user scores)."""
    lists = [r.get("test_ndcg10_per_user") for r in recs]
    if not lists or any(v is None for v in lists) or len({len(v) for v in lists}) != 1:
        return None
    return np.mean(np.asarray(lists, dtype=float), axis=0)


def paired_test(a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Ratio of mean NDCG@10 (a / b), its paired-bootstrap 95% interval over users, and Wilcoxon's p-value."""
    ratios = paired_bootstrap(a, b, lambda x, y: x.mean(1) / np.maximum(y.mean(1), 1e-12), resamples, seed)
    return {"ratio": float(a.mean() / max(b.mean(), 1e-12)), "low": float(np.percentile(ratios, 2.5)),
            "high": float(np.percentile(ratios, 97.5)), "p": wilcoxon_p(a - b), "users": len(a)}


def selected_letter(rows: dict[str, list[dict[str, Any]]], variants: dict[str, dict[str, Any]]) -> str | None:
    """Of the LETTER-style variants (names starting with ``letter``), the label with the best mean valid NDCG@10
    over the seeds all of them have (a weight screened on one seed and the winner run on more compare alike)."""
    labels = [spec["label"] for name, spec in variants.items() if name.startswith("letter") and spec["label"] in rows]
    if not labels:
        return None
    common = set.intersection(*({r["seed"] for r in rows[lab]} for lab in labels)) or {
        r["seed"] for lab in labels for r in rows[lab]}  # no seed in common: every seed
    return max(labels, key=lambda lab: mean_std([r["valid"]["ndcg@10"] for r in rows[lab] if r["seed"] in common]
                                                or [float("-inf")])[0])


def paired_table(rows: dict[str, list[dict[str, Any]]], variants: dict[str, dict[str, Any]]) -> list[str]:
    """UQF against every other row: ratio of test NDCG@10 with a paired bootstrap interval and Wilcoxon's p."""
    uqf_label = variants.get("uqf", {}).get("label")
    base = per_user_mean(rows.get(uqf_label, [])) if uqf_label else None
    if base is None:
        return []
    chosen = selected_letter(rows, variants)
    letters = {spec["label"] for name, spec in variants.items() if name.startswith("letter")}
    lines = ["| UQF vs | UQF / it, test NDCG@10 | 95% interval (paired bootstrap over users) | Wilcoxon p | users |",
             "|---|---|---|---|---|"]
    for label, recs in rows.items():
        other = per_user_mean(recs)
        if label == uqf_label or other is None or len(other) != len(base) or (label in letters and label != chosen):
            continue
        t = paired_test(base, other)
        note = " (selected on validation)" if label == chosen else ""
        lines.append(f"| {label}{note} | {t['ratio']:.3f}x | {t['low']:.3f}-{t['high']:.3f} | {t['p']:.2g} | "
                     f"{t['users']} |")
    return ["## Paired tests (per-user NDCG@10, mean over seeds)", "", *lines, "",
            "A difference is real at the 5% level when the interval excludes 1 and p < 0.05.", ""]


def with_beside(rows: dict[str, list[dict[str, Any]]], beside: Beside | None) -> dict[str, list[dict[str, Any]]]:
    """The rows with, after each tokenizer's, the other run's row of the same SIDs and seeds (``--beside``)."""
    if beside is None:
        return rows
    out: dict[str, list[dict[str, Any]]] = {}
    for label, recs in rows.items():
        out[label] = recs
        theirs = beside.records(recs[0]["variant"]) if recs[0]["kind"] == "sid" else []
        if theirs:
            out[f"{backbone_name(theirs[0])} on {label} ({beside.source})"] = theirs
    return out


def beside_tests(beside: Beside, variants: dict[str, dict[str, Any]], mine: str) -> list[dict[str, Any]]:
    """Paired tests over the same users: this run's backbone against the other on each tokenizer's SIDs, then UQF
    against each other tokenizer within each backbone, on the seeds accepted beside for both tokenizers."""
    tests = []
    for variant in (v for v in variants if v in beside.pairs):
        pairs = beside.pairs[variant]
        other, label = backbone_name(pairs[0][1]), variants[variant]["label"]
        tests.append(_test(f"{mine} on {label} vs {other} on {label}", [m for m, _ in pairs], [t for _, t in pairs]))
    uqf = beside.pairs.get("uqf", [])
    for variant in (v for v in variants if v in beside.pairs and v != "uqf"):
        seeds = {m["seed"] for m, _ in uqf} & {m["seed"] for m, _ in beside.pairs[variant]}
        for side, name in ((0, mine), (1, beside.backbone)):
            a = [p[side] for p in uqf if p[0]["seed"] in seeds]
            b = [p[side] for p in beside.pairs[variant] if p[0]["seed"] in seeds]
            if a:
                tests.append(_test(f"{name}: {variants['uqf']['label']} vs {variants[variant]['label']}", a, b))
    return tests


def _test(comparison: str, a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """One paired test of two rows' per-user NDCG@10 (each averaged over its seeds); None values where it cannot
    be run (records without per-user scores, or other test users)."""
    x, y = per_user_mean(a), per_user_mean(b)
    seeds = ",".join(str(r["seed"]) for r in a)
    # same data and test users (checked by ablation_beside.same_sids): the lists are in the same test-case order
    if x is None or y is None or len(x) != len(y):
        return {"comparison": comparison, "seeds": seeds, "ratio": None}
    return {"comparison": comparison, "seeds": seeds, **paired_test(x, y)}


def beside_provenance(beside: Beside) -> list[str]:
    """The other run's commands and code versions, as the header names this run's (of its records read)."""
    if not beside.commands and not beside.codes:
        return []
    return [*(f"Beside, command: `{c}`" for c in sorted(beside.commands)), "",
            f"Beside, code: {', '.join(sorted(beside.codes)) or 'not recorded'}.", ""]


def beside_section(beside: Beside, tests: list[dict[str, Any]]) -> list[str]:
    lines = [f"## Paired tests beside {beside.backbone} on the same SIDs (`{beside.folder}`)", "",
             f"Records of `{beside.folder}/units` for this run's tokenizers and seeds, each accepted only when it was "
             "made on the same SIDs (the same data, tokenization settings and test users, and the same SIDs file by "
             "its `sids_sha256`, or where a record was made before that digest the same tokenization statistics, "
             "exactly). Paired user by user (the same test cases in the same order); each side's per-user NDCG@10 is "
             "averaged over the seeds listed.", "", *beside_provenance(beside)]
    if tests:
        lines += ["| comparison | seeds | ratio, test NDCG@10 | 95% interval (paired bootstrap over users) | "
                  "Wilcoxon p | users |", "|---|---|---|---|---|---|"]
        for t in tests:
            cells = (f"{t['ratio']:.3f}x | {t['low']:.3f}-{t['high']:.3f} | {t['p']:.2g} | {t['users']}"
                     if t["ratio"] is not None else "- | no per-user scores for the same users | - | -")
            lines.append(f"| {t['comparison']} | {t['seeds']} | {cells} |")
        lines.append("")
    else:
        lines += ["No unit of this run has a record of the same SIDs there." if beside.looked else
                  "No SID unit of this run is recorded yet.", ""]
    return lines + [f"- {why}" for why in beside.refused] + ([""] if beside.refused else [])


def draw_curves(rows: dict[str, list[dict[str, Any]]], path: Path, title: str) -> bool:
    """Validation NDCG@10 per evaluation for every run with a curve; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    colours = plt.get_cmap("tab10")
    for n, (label, recs) in enumerate(rows.items()):
        for k, rec in enumerate(r for r in recs if r.get("curve")):
            pts = [(c["epoch"], c["valid_ndcg10"]) for c in rec["curve"] if c.get("valid_ndcg10") is not None]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, color=colours(n % 10), linestyle=("-", "--", ":")[k % 3], linewidth=1.4,
                    label=label if k == 0 else None)
            best = rec.get("best_epoch")
            if best in xs:
                ax.plot([best], [ys[xs.index(best)]], marker="o", color=colours(n % 10), markersize=4)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@10 (early-stopping sample)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return True


def header(args: argparse.Namespace, records: list[dict[str, Any]]) -> list[str]:
    ds = Dataset.load(args.dataset)
    manifest = read_json(manifest_path(args)) or {}
    commands = sorted({r["command"] for r in records})
    codes = sorted({r["code"] for r in records})
    machines = sorted({r["machine"] for r in records})
    cap = manifest.get("epoch_cap")
    plan = manifest.get("plan")
    lcrec = getattr(args, "backbone", "tiger") == "lcrec"
    lcrec_budget = (f"LC-Rec CPU protocol {lcrec_protocol(args)}; early stopping on validation NDCG@10 of the "
                    "seeded user sample, the best weights kept")
    fitted = (f", the equal cap that fits --budget-minutes {manifest['budget_minutes']} with --jobs "
              f"{manifest['jobs']} (calibration: {plan})") if plan else ""
    recipe = {"decay_epochs": TigerOptions.decay_epochs, "min_lr_ratio": TigerOptions.min_lr_ratio,
              "lr_schedule": TigerOptions.lr_schedule, **args.tiger_recipe}
    decay = ("a constant learning rate after warmup" if recipe["lr_schedule"] == "constant" else
             f"{recipe['lr_schedule']} decay over {recipe['decay_epochs']} epochs to {recipe['min_lr_ratio']:g} of "
             "the peak, then that floor")
    tiger_budget = (f"every TIGER at most {cap} epochs{fitted} ({decay})"
                    + f"; early stopping after {args.tiger_patience} evaluations without improvement on "
                    + (f"{args.tiger_eval_users} seeded" if args.tiger_eval_users else "all") + " validation users; "
                    f"TIGER preset `{args.tiger_preset}`")
    budget = ((lcrec_budget if lcrec else tiger_budget) + f"; fuse {args.fuse_epochs} epochs; RQ-VAE {args.levels} x "
              f"{args.codebook_size}" + (f" with {args.quantize}" if args.quantize else "")
              + "; SASRec trains to its own early stopping (same patience, full validation set)")
    return [
        f"# Tokenizers for generative recommendation: {'LC-Rec' if lcrec else 'TIGER'} on each tokenizer's SIDs",
        "",
        *(f"Command: `{c}`" for c in commands), "",
        f"Code: {', '.join(codes)}. Machine: {'; '.join(machines)}.", "",
        f"Data: {args.dataset} ({len(ds.user_ids):,} users, {len(ds.item_ids):,} items, "
        f"{ds.num_interactions:,} interactions); full ranking over all items, "
        f"{'all' if args.eval_users is None else f'the first {args.eval_users}'} users, "
        f"beam {EvaluateConfig.beam_size}.", "",
        f"Budget: {budget}.", "",
    ]


def lcrec_protocol(args: argparse.Namespace) -> str:
    from benchmarks.quality.ablation_units import lcrec_settings

    return ", ".join(f"{k}={v}" for k, v in lcrec_settings(args).items())


def write(args: argparse.Namespace, variants: dict[str, dict[str, Any]], baselines: dict[str, str],
          presets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Render ``--out``, its JSON and the curves PNG from the records; return the JSON's content."""
    records = load_records(args)
    rows = grouped(records, variants, baselines)
    beside = match(args.beside, records) if getattr(args, "beside", None) else None
    mine = "LC-Rec" if getattr(args, "backbone", "tiger") == "lcrec" else "TIGER"
    tests = beside_tests(beside, variants, mine) if beside else []
    curves = args.out.with_name(args.out.stem + "_curves.png")
    lines = header(args, records) if records else ["# Tokenizer comparison", "", "No unit has finished yet.", ""]
    if rows:
        lines += ["## Recommendation (mean ± std over seeds)", "", *rec_table(with_beside(rows, beside)), "",
                  f"Tail: {TAIL_RULE}.", "", *verdict(rows, variants), "", *paired_table(rows, variants)]
        lines += beside_section(beside, tests) if beside else []
        drawn = draw_curves(rows, curves, f"{args.out.stem}: validation NDCG@10 per epoch (dot: best epoch)")
        lines += ["", f"Curves: `{curves.name}`" if drawn else "Curves: not drawn (install the plot extra)."]
        lines += ["", "## SID space", "", *tokenization_table(rows)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)
    everything = {"tiger_presets": presets, "manifest": read_json(manifest_path(args)), "records": records}
    if beside:
        everything["beside"] = {"folder": str(beside.folder), "backbone": beside.backbone, "tests": tests,
                                "commands": sorted(beside.commands), "codes": sorted(beside.codes),
                                "units": sorted(m["unit"] for pairs in beside.pairs.values() for m, _ in pairs),
                                "refused": beside.refused}
    write_json(args.out.with_suffix(".json"), everything)
    print(text)
    return everything
