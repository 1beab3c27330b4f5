"""benchmarks/quality/tiger_converge.py's report: first reach of 0.98x the reference, the pass rule, how a run
ended, per-user scores from predictions (backfill) and the paired table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.quality import tiger_converge as tc


def _run(name: str, curve: list[tuple[float, float]], valid: float, cpu: float, recipe: dict | None = None,
         early: bool = False) -> dict:
    return {"name": name, "recipe": recipe or {"lr_schedule": "cosine", "epochs": len(curve)}, "threads": 1,
            "epochs_run": len(curve), "best_epoch": 1, "early_stopped": early, "train_seconds": cpu,
            "train_cpu_seconds": cpu, "valid": {"ndcg@10": valid}, "test": {"ndcg@10": valid, "recall@10": valid},
            "curve": [{"epoch": e + 1, "valid_ndcg10": v, "cpu_seconds": c} for e, (v, c) in enumerate(curve)],
            "commit": "abc", "command": "python -m benchmarks.quality.tiger_converge", "machine": "x86_64"}


def test_first_reach_and_the_pass_rule() -> None:
    ref = _run("reference", [(0.02, 100.0), (0.05, 200.0)], 0.05, 1000.0, early=True)
    fast = _run("fast", [(0.040, 50.0), (0.049, 240.0), (0.051, 400.0)], 0.051, 400.0)
    slow = _run("slow", [(0.040, 100.0), (0.049, 300.0)], 0.049, 300.0)
    short = _run("short", [(0.045, 100.0)], 0.045, 100.0)
    assert tc.first_reach(fast, 0.049) == {"epoch": 2, "cpu_seconds": 240.0, "seconds": None}
    v = tc.verdict(ref, fast)
    assert v["reach_ratio"] == 0.24 and v["matches"] and v["fast_enough"]
    assert not tc.verdict(ref, slow)["fast_enough"]  # reaches 0.98x at 0.30x of the reference's cost
    assert tc.verdict(ref, short)["reach"] is None and not tc.verdict(ref, short)["matches"]
    assert tc.stop_cell(ref) == "yes" and tc.stop_cell(fast) == "schedule end (lr 0)"
    assert tc.stop_cell(_run("c", [(0.1, 1.0)], 0.1, 1.0, {"lr_schedule": "constant", "epochs": 1})) == "no (cap)"
    floored = {**fast, "options": {"min_lr_ratio": 0.05}}  # the effective options of a run with the decay's floor
    assert tc.stop_cell(floored) == "no (cap)"


def test_backfill_reads_predictions_and_the_paired_table_pairs_users(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    users = [str(u) for u in range(300)]
    records, work = tmp_path / "runs", tmp_path / "work"
    records.mkdir()
    work.mkdir()
    for name, hit in (("reference", 0.3), ("same", 0.3), ("better", 0.8)):
        for split in ("valid", "test"):
            with open(work / f"{name}.{split}.predictions.jsonl", "w", encoding="utf-8") as f:
                for u in users:  # the target is first (NDCG 1) or absent (0)
                    top = ["t", "x"] if rng.random() < hit else ["x", "y"]
                    f.write(json.dumps({"user_id": u, "item_ids": top, "target": "t"}) + "\n")
        record = _run(name, [(0.1, 1.0)], 0.1, 1.0)
        for split in ("valid", "test"):  # the record's metrics are those of its predictions
            record[split]["ndcg@10"] = float(np.mean(tc.per_user_ndcg(work / f"{name}.{split}.predictions.jsonl")))
        (records / f"{name}.json").write_text(json.dumps(record))
    (records / "stranger.json").write_text(json.dumps(_run("same", [(0.1, 1.0)], 0.5, 1.0) | {"name": "stranger"}))
    (work / "stranger.valid.predictions.jsonl").write_text((work / "same.valid.predictions.jsonl").read_text())
    (work / "stranger.test.predictions.jsonl").write_text((work / "same.test.predictions.jsonl").read_text())
    assert tc.backfill(records, work) == ["better", "reference", "same"]  # not predictions of another run
    assert tc.backfill(records, work) == []  # nothing left to add
    runs = {n: json.loads((records / f"{n}.json").read_text()) for n in ("reference", "same", "better")}
    assert set(runs["same"]["per_user_ndcg10"]["valid"]) <= {0.0, 1.0}
    better = tc.paired(runs["reference"], runs["better"], "valid")
    assert better["low"] > 1.0 and better["p"] < 0.01  # a real difference: the interval excludes 1
    same = tc.paired(runs["reference"], runs["same"], "valid")
    assert same["low"] < 1.0 < same["high"]  # same hit rate: within the noise
    runs["same"]["per_user_ndcg10"]["valid_users_sha256"] = "other users"
    assert tc.paired(runs["reference"], runs["same"], "valid") is None  # never paired across different users
    table = "\n".join(tc.paired_lines(runs))
    assert "| better |" in table and "| same | - | - | - |" in table
