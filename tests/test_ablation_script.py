"""benchmarks/quality/ablation.py end to end on a tiny synthetic dataset: workers, records, budget, resume, curves."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_dataset

from benchmarks.quality import ablation
from benchmarks.quality import ablation_beside as beside_mod
from benchmarks.quality import ablation_report as report
from benchmarks.quality import ablation_units as units
from uqf_cli.collab import train_gcn
from uqf_cli.collab.config import GcnConfig
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, make_provenance, save_embeddings

ROOT = Path(__file__).resolve().parents[1]
QUALITY = ROOT / "benchmarks" / "quality"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("abl")
    ds_dir = make_dataset(root / "ds", n_users=60, n_items=40, seed=3)
    ds = Dataset.load(ds_dir)
    rng = np.random.default_rng(0)
    ids = list(ds.item_ids)
    text = rng.normal(size=(len(ids), 16)).astype(np.float32)
    save_embeddings(root / "text.st", text, ids, make_provenance("test", {}), "text", ds.fingerprint)
    train_gcn(ds_dir, root / "collab.st", GcnConfig(dim=8, epochs=2, eval_every=1, patience=0, seed=0, device="cpu"))
    return {"ds": ds_dir, "text": root / "text.st", "collab": root / "collab.st", "root": root}


def _argv(inputs: dict[str, Path], out: str, *extra: str) -> list[str]:
    return ["--dataset", str(inputs["ds"]), "--text", str(inputs["text"]), "--collab", str(inputs["collab"]),
            "--work", str(inputs["root"] / "work"), "--out", str(inputs["root"] / out), "--fuse-epochs", "1",
            "--codebook-size", "4", "--quantize", '{"epochs": 5, "warmup_epochs": 1}', "--tiger-preset", "tiny",
            "--tiger-eval-users", "10", "--tiger-patience", "1", "--device", "cpu", *extra]


def test_parallel_workers_records_resume_and_curves(inputs: dict[str, Path]) -> None:
    argv = _argv(inputs, "cmp.md", "--variants", "text,collab", "--seeds", "1", "--tiger-epochs", "2", "--jobs", "2",
                 "--baselines")
    result = ablation.main(argv)
    names = sorted(r["unit"] for r in result["records"])
    assert names == ["base_lightgcn_s0", "base_pop_s0", "base_sasrec_s0", "sid_collab_s0", "sid_text_s0"]
    collab = next(r for r in result["records"] if r["unit"] == "sid_collab_s0")
    assert collab["epoch_cap"] == 2 and 1 <= collab["epochs_run"] <= 2 and collab["curve"][0]["epoch"] == 1
    assert 0.0 <= collab["test"]["ndcg@10"] <= collab["test"]["recall@10"] <= 1.0
    assert "python -m benchmarks.quality.ablation --dataset" in collab["command"]
    assert collab["machine"].startswith("CPU")
    md = (inputs["root"] / "cmp.md").read_text(encoding="utf-8")
    assert "| collaborative-only | 1 |" in md and "| SASRec | 1 |" in md and "Command:" in md
    png = inputs["root"] / "cmp_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    # a rerun skips recorded units: no record is rewritten
    record = inputs["root"] / "cmp" / "units" / "sid_text_s0.json"
    before = record.stat().st_mtime_ns
    ablation.main(argv)
    assert record.stat().st_mtime_ns == before
    # another budget for the same table is refused, not mixed
    with pytest.raises(SystemExit, match="other settings"):
        ablation.main([*argv[:-5], "--variants", "text", "--seeds", "1", "--tiger-patience", "3"])


def test_budget_calibrates_an_equal_epoch_cap(inputs: dict[str, Path]) -> None:
    argv = _argv(inputs, "budget.md", "--variants", "text,concat", "--seeds", "1", "--tiger-epochs", "50",
                 "--budget-minutes", "3")
    result = ablation.main(argv)
    manifest = result["manifest"]
    cap = manifest["epoch_cap"]
    assert 1 <= cap <= 50 and manifest["plan"]["epoch_seconds"] > 0
    assert {r["epoch_cap"] for r in result["records"]} == {cap}
    assert json.loads((inputs["root"] / "budget" / "run.json").read_text())["epoch_cap"] == cap


def test_budget_too_small_is_one_clear_error(inputs: dict[str, Path]) -> None:
    with pytest.raises(SystemExit, match="too small"):
        ablation.main(_argv(inputs, "tiny_budget.md", "--variants", "text", "--seeds", "1",
                            "--budget-minutes", "0.01"))


def test_define_adds_a_variant_and_bad_definitions_are_refused(inputs: dict[str, Path]) -> None:
    args = ablation.parse_args(_argv(inputs, "d.md", "--define", 'uqf-w={"method": "uqf", "fuse": {"w_semantic": 1}}',
                                     "--variants", "uqf-w"))
    assert ablation.planned_units(args)[0] == ["sid_uqf-w_s0", "sid_uqf-w_s1"]
    with pytest.raises(SystemExit):
        ablation.parse_args(_argv(inputs, "d.md", "--define", 'x={"method": "uqf", "fuse": {"nope": 1}}'))
    # a variant may set its own codebook shape; the others keep --codebook-size / --levels
    shape = 'cb={"method": "uqf", "codebook_size": 4, "levels": 2}'
    args = ablation.parse_args(_argv(inputs, "d.md", "--define", shape, "--variants", "cb,uqf"))
    cb = units.tokenization_settings("cb", args)
    assert (cb["codebook_size"], cb["levels"]) == (4, 2)
    assert units.tokenization_settings("uqf", args)["codebook_size"] == args.codebook_size
    with pytest.raises(SystemExit):
        ablation.parse_args(_argv(inputs, "d.md", "--define", 'x={"method": "uqf", "codebook_size": 0}'))

    # "seeds": a screened setting runs one seed; units go seed by seed, every variant's first seed first
    one = 'letter-x={"method": "text", "letter": {"w_collab": 0.1}, "seeds": 1}'
    args = ablation.parse_args(_argv(inputs, "d.md", "--define", one, "--variants", "text,letter-x,uqf"))
    assert ablation.planned_units(args)[0] == ["sid_text_s0", "sid_letter-x_s0", "sid_uqf_s0", "sid_text_s1",
                                                "sid_uqf_s1"]
    assert "seeds" not in units.tokenization_settings("letter-x", args)  # not a tokenization setting
    with pytest.raises(SystemExit):
        ablation.parse_args(_argv(inputs, "d.md", "--define", 'y={"method": "text", "seeds": 0}'))


def test_letter_weight_is_selected_on_the_seeds_every_letter_variant_has() -> None:
    from benchmarks.quality.ablation_report import selected_letter

    def rec(seed: int, valid: float) -> dict:
        return {"seed": seed, "valid": {"ndcg@10": valid}}

    variants = {"letter-a": {"label": "A"}, "letter-b": {"label": "B"}, "uqf": {"label": "U"}}
    # B wins seed 0; A's later seeds are higher but B has no such seeds to compare with
    rows = {"A": [rec(0, 0.030), rec(1, 0.050), rec(2, 0.050)], "B": [rec(0, 0.035)], "U": [rec(0, 0.9)]}
    assert selected_letter(rows, variants) == "B"


def test_reserved_codes_are_distinct_and_outside_the_codebook(tmp_path: Path) -> None:
    ds = Dataset.load(make_dataset(tmp_path / "ds", n_items=12))
    known = ds.item_ids[:2]
    table = SidTable(known, np.array([[0, 1, 2], [1, 1, 2]]), [2, 2, 3], {}, {}, ds.fingerprint)
    full, added = units.sids_covering(table, ds)
    # 10 uncovered items need 10 distinct deeper pairs: 2 x 3 are too few, so the last codebook grows to 5
    assert added == 10 and full.codebook_sizes == [3, 2, 5]
    extra = full.codes[2:]
    assert (extra[:, 0] == 2).all() and len({tuple(r) for r in extra.tolist()}) == 10
    assert (extra[:, 1] < 2).all() and (extra[:, 2] < 5).all()
    assert full.item_ids[:2] == known and sorted(full.item_ids) == sorted(ds.item_ids)


def test_gpu_script_runs_on_cpu_at_a_tiny_budget(inputs: dict[str, Path]) -> None:
    """benchmarks/quality/gpu_office.sh end to end (what the GPU machine runs): tiny data, a tiny TIGER, the CPU."""
    out = inputs["root"] / "gpu" / "office_gpu.md"
    env = {**os.environ, "PYTHON": sys.executable, "TEXT": str(inputs["text"]), "DATASET": str(inputs["ds"]),
           "OUT": str(out), "WORK": str(inputs["root"] / "gpu_work"), "BUDGET_MINUTES": "4", "JOBS": "2",
           "DEVICE": "cpu", "UQF_THREADS": "1"}
    tiny = ["--variants", "text,uqf", "--seeds", "1", "--no-baselines", "--tiger-preset", "tiny", "--tiger-epochs", "2",
            "--tiger-eval-users", "10", "--fuse-epochs", "1", "--codebook-size", "4",
            "--quantize", '{"epochs": 5, "warmup_epochs": 1}']
    res = subprocess.run(["bash", str(QUALITY / "gpu_office.sh"), *tiny], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    md = out.read_text(encoding="utf-8")
    assert "| UQF | 1 |" in md and "| text-only RQ-VAE (TIGER/LC-Rec) | 1 |" in md and "SASRec |" not in md
    assert "preset `tiny`" in md and "s wall; table in" in res.stderr


def test_letter_variant_tokenizes_with_the_collab_file(inputs: dict[str, Path]) -> None:
    from uqf_cli.files import read_sids, sha256_file

    args = ablation.parse_args(_argv(inputs, "letter.md", "--variants", "letter", "--seeds", "1"))
    record = units.tokenize("sid_letter_s0", args)
    assert record["settings"]["letter"] == {"clusters": 4, "w_collab": 0.02, "w_diversity": 1e-4}
    assert "letter" not in units.tokenization_settings("text", args)  # other variants' settings unchanged
    prov = read_sids(record["sids"]).provenance
    assert prov["inputs"]["collab"]["sha256"] == sha256_file(inputs["collab"])
    assert prov["parameters"]["letter"]["w_collab"] == 0.02
    with pytest.raises(SystemExit):
        ablation.parse_args(_argv(inputs, "d.md", "--define", 'x={"method": "text", "letter": {"alpha": 1}}'))


def test_recipe_per_user_scores_and_paired_tests(inputs: dict[str, Path]) -> None:
    argv = _argv(inputs, "paired.md", "--variants", "uqf,text", "--seeds", "1", "--tiger-epochs", "2",
                 "--tiger-recipe", '{"lr_schedule": "cosine", "warmup_ratio": 0.05, "eval_beam": 10}')
    result = ablation.main(argv)
    uqf = next(r for r in result["records"] if r["unit"] == "sid_uqf_s0")
    assert uqf["settings"]["tiger"]["lr_schedule"] == "cosine"
    per_user = uqf["test_ndcg10_per_user"]
    assert len(per_user) == uqf["users"] and abs(np.mean(per_user) - uqf["test"]["ndcg@10"]) < 1e-4
    md = (inputs["root"] / "paired.md").read_text(encoding="utf-8")
    assert "## Paired tests" in md and "| text-only RQ-VAE (TIGER/LC-Rec) |" in md.split("## Paired tests")[1]
    same = report.paired_test(np.array([0.0, 1.0, 0.5]), np.array([0.0, 1.0, 0.5]))
    assert same["ratio"] == 1.0 and same["p"] == 1.0
    # every new record names its SIDs file by content; real records beside each other: an unchanged copy is taken, a
    # copy with another SIDs digest is refused
    from uqf_cli.files import sha256_file

    tok = uqf["tokenization"]
    assert tok["sids_sha256"] == sha256_file(tok["sids"]) and "sids_sha256" not in json.dumps(uqf["settings"])
    args = ablation.parse_args(argv)
    other = inputs["root"] / "paired_copy" / "units"
    other.mkdir(parents=True)
    shutil.copy(units.records_dir(args) / "sid_text_s0.json", other)
    units.write_json(other / "sid_uqf_s0.json", {**uqf, "tokenization": {**tok, "sids_sha256": "0" * 64}})
    beside = ablation.main([*argv, "--report-only", "--beside", str(other.parent)])["beside"]
    assert beside["units"] == ["sid_text_s0"] and beside["refused"] == [
        "sid_uqf_s0 of paired_copy.md refused, not the same SIDs: tokenization.sids_sha256 (the SIDs files): "
        f'"{tok["sids_sha256"]}" vs "{"0" * 64}"']
    md = (inputs["root"] / "paired.md").read_text(encoding="utf-8")
    assert "| TIGER on text-only RQ-VAE (TIGER/LC-Rec) (paired_copy.md) | 1 |" in md
    assert "| TIGER on text-only RQ-VAE (TIGER/LC-Rec) vs TIGER on text-only RQ-VAE (TIGER/LC-Rec) | 0 | 1.000x" in md
    # resume: a record made before the digest existed is still a finished unit of these settings
    units.write_json(units.records_dir(args) / "sid_uqf_s0.json",
                     {**uqf, "tokenization": {k: v for k, v in tok.items() if k != "sids_sha256"}})
    assert units.finished("sid_uqf_s0", args, args.tiger_epochs)
    # another run that copied this run's tok/ folder trains on these very SIDs (read from the copy), no refit
    moved = ablation.parse_args([*argv, "--work", str(inputs["root"] / "work_copy")])
    shutil.copytree(args.work / "tok" / "uqf_s0", moved.work / "tok" / "uqf_s0")
    reused = units.tokenize("sid_uqf_s0", moved)
    assert reused["sids"] == str(moved.work / "tok" / "uqf_s0" / "sids.jsonl")
    assert sha256_file(reused["sids"]) == tok["sids_sha256"] and reused["seconds"] == tok["seconds"]
    with pytest.raises(SystemExit):
        ablation.parse_args(_argv(inputs, "bad.md", "--tiger-recipe", '{"epochs": 3}'))


def test_gpu_lcrec_script_runs_on_cpu_at_a_tiny_budget_and_resumes(inputs: dict[str, Path]) -> None:
    """benchmarks/quality/gpu_lcrec.sh end to end (LC-Rec units through the runner: all windows, align tasks, early
    stopping) with a tiny causal LM on the CPU; a rerun with the same settings skips the recorded unit."""
    from test_lcrec import _tiny_llama

    from uqf_cli.rec import lcrec

    ds = Dataset.load(inputs["ds"])
    corpus = [lcrec.prompt_text(lcrec.SEQ_INSTRUCTION.format(history="x")), *(ds.title(i) for i in ds.item_ids)]
    base = _tiny_llama(inputs["root"] / "tiny-llama", corpus * 4)
    out = inputs["root"] / "gpu_lcrec" / "lcrec_gpu.md"
    env = {**os.environ, "PYTHON": sys.executable, "TEXT": str(inputs["text"]), "DATASET": str(inputs["ds"]),
           "OUT": str(out), "WORK": str(inputs["root"] / "gpu_lcrec_work"), "BASE_MODEL": str(base), "SEEDS": "1",
           "EVAL_STEPS": "2", "JOBS": "1", "DEVICE": "cpu", "UQF_THREADS": "1"}
    tiny = ["--variants", "text", "--no-baselines", "--lcrec-max-steps", "4", "--lcrec-batch-size", "4",
            "--lcrec-eval-users", "10", "--fuse-epochs", "1", "--codebook-size", "4",
            "--quantize", '{"epochs": 5, "warmup_epochs": 1}']
    res = subprocess.run(["bash", str(QUALITY / "gpu_lcrec.sh"), *tiny], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    md = out.read_text(encoding="utf-8")
    assert "LC-Rec on each tokenizer's SIDs" in md and "| text-only RQ-VAE (TIGER/LC-Rec) | 1 |" in md
    assert "windows=all" in md and "align_tasks=True" in md and "steps (best" in md
    record_path = out.parent / "lcrec_gpu" / "units" / "sid_text_s0.json"
    record = json.loads(record_path.read_text())
    assert record["backbone"] == "lcrec" and record["settings"]["lcrec"]["windows"] == "all"
    assert record["users"] == len(ds.eval_cases("test")) and record["valid"]["ndcg@10"] is None
    assert record["samples"]["title_to_sid"] > 0 and [c["step"] for c in record["curve"]] == [2, 4]
    assert record["settings"]["lcrec"]["max_steps"] == 4 and record["settings"]["lcrec"]["epochs"] == 3.0
    assert record["steps_run"] == 4 and 0.0 <= record["test"]["ndcg@10"] <= record["test"]["recall@10"] <= 1.0
    # the runner called directly with the script's settings: the unit is recorded, nothing reruns
    before = record_path.stat().st_mtime_ns
    work = inputs["root"] / "gpu_lcrec_work"
    argv = ["--dataset", str(inputs["ds"]), "--text", str(inputs["text"]), "--collab", str(work / "collab.st"),
            "--work", str(work / "run"),
            "--out", str(out), "--backbone", "lcrec", "--seeds", "1", "--lcrec-windows", "all", "--lcrec-align-tasks",
            "--lcrec-epochs", "3", "--lcrec-eval-steps", "2", "--lcrec-eval-users", "1000", "--lcrec-patience", "3",
            "--lcrec-batch-size", "32", "--lcrec-base-model", str(base), "--device", "cpu", *tiny]
    ablation.main(argv)
    assert record_path.stat().st_mtime_ns == before
    with pytest.raises(SystemExit, match="other settings"):
        ablation.main([*argv, "--lcrec-patience", "4"])
    with pytest.raises(SystemExit):
        ablation.parse_args([*argv, "--budget-minutes", "5"])


def test_budget_cell_tells_early_stops_from_schedules_that_reached_zero() -> None:
    from benchmarks.quality.ablation_report import budget_cell, schedule_ended

    def rec(run: int, best: int, stopped: bool, schedule: str = "cosine", floor: float | None = None) -> dict:
        tiger = {"epochs": 30, "lr_schedule": schedule, **({} if floor is None else {"min_lr_ratio": floor})}
        return {"kind": "sid", "epochs_run": run, "best_epoch": best, "early_stopped": stopped, "epoch_cap": 30,
                "settings": {"tiger": tiger}}

    recs = [rec(22, 17, True), rec(30, 27, False), rec(30, 28, False, "constant")]
    assert [schedule_ended(r) for r in recs] == [False, True, False]
    # a decay with a floor never reaches zero: its cap is a cap (records before the floor had none: 0)
    assert not schedule_ended(rec(30, 29, False, floor=0.05)) and schedule_ended(rec(30, 29, False, floor=0.0))
    assert budget_cell(recs) == "22/30/30 (best 17/27/28) of 30; early stop 1/3, schedule end 1/3"
    assert budget_cell(recs[:1]) == "22 (best 17) of 30; early stop 1/1"


def _stats(**changes: object) -> dict:
    """Tokenization statistics of a synthetic SID record (what ``ablation_units.tokenize`` records)."""
    return {"items": 40, "raw_collision_rate": 0.1, "collision_rate": 0.0, "utilisation": [1.0, 0.75],
            "semantic_lift": {"1": 0.4, "2": 0.6}, "collab_cosine_lift": {"1": 0.1, "2": 0.2},
            "cooc_share": {"1": 0.13, "2": 0.02}, "cooc_lift": {"1": float("nan"), "2": 12.0},
            "items_per_prefix": {"1": {"max": 9, "mean": 4.0}}, "seconds": {"fuse": 1.0, "quantize": 2.0},
            "sids": "work/tok/x/sids.jsonl", **changes}


def _record(args: argparse.Namespace, unit: str, per_user: np.ndarray, **tokenization: object) -> dict:
    """A finished unit record made with ``args``'s settings (LC-Rec or TIGER), written to its records folder."""
    kind, body, seed = units.parse_unit(unit)
    rec = {"unit": unit, "kind": "baseline" if kind == "base" else "sid", "seed": seed,
           "settings": units.unit_settings(unit, args, 60),
           "test": {"recall@10": float(per_user.mean()) * 2, "ndcg@10": float(per_user.mean())},
           "valid": {"recall@10": None, "ndcg@10": None}, "test_ndcg10_per_user": per_user.round(5).tolist(),
           "seconds": {"train": 60.0}, "machine": "CPU (test)", "code": "commit test", "command": "python -m test"}
    if kind == "base":
        rec["name"] = body
    elif args.backbone == "lcrec":
        rec.update(variant=body, backbone="lcrec", tokenization=_stats(**tokenization), steps_run=600, best_step=300,
                   early_stopped=True)
    else:
        rec.update(variant=body, tokenization=_stats(**tokenization), epochs_run=40, best_epoch=35, epoch_cap=60,
                   early_stopped=True)
    units.write_json(units.records_dir(args) / f"{unit}.json", rec)
    return rec


def test_beside_adds_the_other_backbone_on_the_same_sids_with_paired_tests(inputs: dict[str, Path]) -> None:
    """``--beside``: TIGER's records of the LC-Rec run's tokenizers and seeds become rows and paired tests when made on
    the same SIDs (the digests when both have one, else the statistics); other records are refused with the reason;
    the LC-Rec rows, its own paired tests and the reused baselines stay as they were."""
    tiger = ablation.parse_args(_argv(inputs, "tg.md", "--variants", "text,uqf", "--seeds", "3", "--baselines"))
    rng = np.random.default_rng(0)
    users = 60
    scores = {(b, v, s): rng.random(users) * (0.5 if b == "tiger" else 0.3) for b in ("tiger", "lcrec")
              for v in ("text", "uqf") for s in range(3)}
    for seed in range(3):
        _record(tiger, f"sid_text_s{seed}", scores["tiger", "text", seed])  # made before the digest existed
    _record(tiger, "sid_uqf_s0", scores["tiger", "uqf", 0], sids_sha256="a1")
    _record(tiger, "sid_uqf_s1", scores["tiger", "uqf", 1], sids_sha256="b2")
    _record(tiger, "base_sasrec_s0", rng.random(users))
    lcrec_argv = _argv(inputs, "lc.md", "--backbone", "lcrec", "--variants", "text,uqf", "--seeds", "2",
                       "--beside", str(inputs["root"] / "tg"), "--report-only")
    lc = ablation.parse_args(lcrec_argv)
    for seed in range(2):
        _record(lc, f"sid_text_s{seed}", scores["lcrec", "text", seed], sids_sha256="c3")
    _record(lc, "sid_uqf_s0", scores["lcrec", "uqf", 0], sids_sha256="a1")
    _record(lc, "sid_uqf_s1", scores["lcrec", "uqf", 1], sids_sha256="d4")  # statistics equal, SIDs not
    # the baselines do not depend on the backbone: TIGER's SASRec record counts as this run's, not rerun
    shutil.copy(units.records_dir(tiger) / "base_sasrec_s0.json", units.records_dir(lc))
    assert units.finished("base_sasrec_s0", lc, None)

    result = ablation.main(lcrec_argv)
    md = (inputs["root"] / "lc.md").read_text(encoding="utf-8")
    table = md.split("## Recommendation")[1].split("Tail:")[0]
    assert "| text-only RQ-VAE (TIGER/LC-Rec) | 2 | 600/600 steps" in table and "| UQF | 2 |" in table
    assert "| TIGER on text-only RQ-VAE (TIGER/LC-Rec) (tg.md) | 2 | 40/40 (best 35/35) of 60" in table
    assert "| TIGER on UQF (tg.md) | 1 |" in table and "| SASRec | 1 |" in table
    assert "/ SASRec:" in md  # the verdict line of the best SID model against SASRec
    own = md.split("## Paired tests (per-user")[1].split("## Paired tests beside")[0]
    assert "| text-only RQ-VAE (TIGER/LC-Rec) |" in own and "| SASRec |" in own and "TIGER on" not in own
    beside = md.split("## Paired tests beside TIGER on the same SIDs")[1].split("## SID space")[0]
    lc_text, tg_text = (np.mean([scores[b, "text", s].round(5) for s in (0, 1)], axis=0) for b in ("lcrec", "tiger"))
    want = report.paired_test(lc_text, tg_text)
    assert (f"| LC-Rec on text-only RQ-VAE (TIGER/LC-Rec) vs TIGER on text-only RQ-VAE (TIGER/LC-Rec) | 0,1 | "
            f"{want['ratio']:.3f}x | {want['low']:.3f}-{want['high']:.3f} | {want['p']:.2g} | {users} |") in beside
    assert "| LC-Rec on UQF vs TIGER on UQF | 0 |" in beside
    assert "Beside, command: `python -m test`" in beside and "Beside, code: commit test." in beside
    assert "| TIGER: UQF vs text-only RQ-VAE (TIGER/LC-Rec) | 0 |" in beside
    assert ("- sid_uqf_s1 of tg.md refused, not the same SIDs: tokenization.sids_sha256 (the SIDs files): "
            '"d4" vs "b2"') in beside
    assert result["beside"]["units"] == ["sid_text_s0", "sid_text_s1", "sid_uqf_s0"]
    assert [t["comparison"].split(" vs ")[0] for t in result["beside"]["tests"]] == [
        "LC-Rec on text-only RQ-VAE (TIGER/LC-Rec)", "LC-Rec on UQF", "LC-Rec: UQF", "TIGER: UQF"]
    with pytest.raises(SystemExit):
        ablation.parse_args([*lcrec_argv[:-1], "--beside", str(inputs["root"] / "nowhere")])


def test_beside_refuses_records_of_other_settings_or_statistics(inputs: dict[str, Path]) -> None:
    """Not the same SIDs, not beside: other tokenization settings, or (without digests on both sides) a statistic."""
    other_fuse = ablation.parse_args(_argv(inputs, "tg_fuse.md", "--variants", "text,uqf", "--seeds", "1",
                                           "--fuse-epochs", "2"))
    _record(other_fuse, "sid_text_s0", np.full(60, 0.1), sids_sha256="e5")
    same = ablation.parse_args(_argv(inputs, "tg_stats.md", "--variants", "text,uqf", "--seeds", "1"))
    _record(same, "sid_uqf_s0", np.full(60, 0.1), semantic_lift={"1": 0.41, "2": 0.6})
    argv = _argv(inputs, "lc_refused.md", "--backbone", "lcrec", "--variants", "text,uqf", "--seeds", "1",
                 "--report-only")
    lc = ablation.parse_args(argv)
    _record(lc, "sid_text_s0", np.full(60, 0.2), sids_sha256="e5")
    _record(lc, "sid_uqf_s0", np.full(60, 0.2), sids_sha256="f6")
    result = ablation.main([*argv, "--beside", str(inputs["root"] / "tg_fuse")])
    assert result["beside"]["refused"] == [
        "sid_text_s0 of tg_fuse.md refused, not the same SIDs: settings.tokenization.fuse.epochs: 1 vs 2"]
    md = (inputs["root"] / "lc_refused.md").read_text(encoding="utf-8")
    assert "(tg_fuse.md) |" not in md and "No unit of this run has a record of the same SIDs there." in md
    result = ablation.main([*argv, "--beside", str(inputs["root"] / "tg_stats")])
    assert result["beside"]["refused"] == [
        "sid_uqf_s0 of tg_stats.md refused, not the same SIDs: tokenization.semantic_lift.1: 0.4 vs 0.41"]
    assert result["beside"]["units"] == [] and "(tg_stats.md) |" not in (inputs["root"] / "lc_refused.md").read_text()
    # a record with neither a digest nor statistics (nothing says which SIDs it used) is refused, not taken on settings
    bare = _record(same, "sid_text_s0", np.full(60, 0.1))
    units.write_json(units.records_dir(same) / "sid_text_s0.json", {**bare, "tokenization": {"sids": "x.jsonl"}})
    result = ablation.main([*argv, "--beside", str(inputs["root"] / "tg_stats")])
    assert result["beside"]["refused"][0] == (
        "sid_text_s0 of tg_stats.md refused, not the same SIDs: "
        "tokenization: neither a sids_sha256 on both records nor tokenization statistics to compare")
    # a refusal stays one line of bounded length whatever the values
    why = beside_mod.first_difference({"a": "x" * 500}, {"a": "x" * 499 + "y"}, "settings")
    assert why is not None and "\n" not in why and len(why) < 200 and why.startswith("settings.a: ")


def test_workers_split_the_run_threads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--jobs N gives each worker UQF_THREADS // N threads (at least 1), never UQF_THREADS each: 2 x 2 threads on a
    2-core CPU made LC-Rec workers about 15x slower."""
    import torch

    from uqf_cli.core import env

    seen: dict = {}
    monkeypatch.setattr(ablation.workers, "run_parallel", lambda tasks, **kw: seen.update(kw))
    args = argparse.Namespace(argv=[], jobs=2, work=tmp_path)
    monkeypatch.setattr(env, "threads", lambda: 4)
    for jobs, each in ((1, "4"), (2, "2"), (3, "1"), (8, "1")):
        args.jobs = jobs
        ablation.run_parallel([["unit", "x"]], args, "t")
        assert seen["env"] == {"UQF_THREADS": each} and seen["jobs"] == jobs
    assert units.machine_line("cpu", 2).endswith(", 2 torch thread(s) per worker")
    assert units.machine_line("cpu").endswith(", 4 torch thread(s) per worker")
    monkeypatch.setattr(env, "threads", lambda: None)  # UQF_THREADS unset: torch's default is split
    monkeypatch.setattr(torch, "get_num_threads", lambda: 6)
    args.jobs = 2
    ablation.run_parallel([["unit", "x"]], args, "t")
    assert seen["env"] == {"UQF_THREADS": "3"}


def test_lcrec_decay_flags_enter_the_settings_only_when_given(inputs: dict[str, Path]) -> None:
    """--lcrec-decay-epochs/--lcrec-min-lr-ratio came after records of the LC-Rec protocol existed: at their defaults
    a unit's settings are those of before (so those records stay valid), given they are part of them."""
    from benchmarks.quality.ablation_units import lcrec_settings

    plain = lcrec_settings(ablation.parse_args(_argv(inputs, "lcd.md", "--backbone", "lcrec")))
    assert "decay_epochs" not in plain and "min_lr_ratio" not in plain and plain["epochs"] == 2.0
    given = lcrec_settings(ablation.parse_args(_argv(inputs, "lcd.md", "--backbone", "lcrec", "--lcrec-epochs", "6",
                                                     "--lcrec-decay-epochs", "2", "--lcrec-min-lr-ratio", "0.1")))
    assert given == {**plain, "epochs": 6.0, "decay_epochs": 2.0, "min_lr_ratio": 0.1}
