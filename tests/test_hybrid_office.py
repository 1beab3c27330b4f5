"""benchmarks/quality/hybrid_office.py --quick: every row, the validation-only selection, the paired test, resuming."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_dataset

from benchmarks.quality import hybrid_office as bench
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import make_provenance, save_embeddings


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("hyb_office")
    ds_dir = make_dataset(root / "ds", n_users=50, n_items=30, seed=4)
    ds = Dataset.load(ds_dir)
    text = np.random.default_rng(0).normal(size=(len(ds.item_ids), 16)).astype(np.float32)
    save_embeddings(root / "text.st", text, ds.item_ids, make_provenance("test", {}), "text", ds.fingerprint)
    argv = ["--dataset", str(ds_dir), "--text", str(root / "text.st"), "--work", str(root / "work"),
            "--out", str(root / "res" / "h.md"), "--quick", "--cold-share", "0.2", "--seeds", "0,1",
            "--dense-losses", "cosine,softmax", "--dense-weights", "1", "--alphas", "0,1", "--fuse-epochs", "1",
            "--codebook-size", "4",
            "--device", "cpu"]
    payload = bench.main(argv)
    return {"root": root, "argv": argv, "payload": payload}


def test_quick_run_writes_every_row_selection_and_paired_test(run: dict) -> None:
    root, payload = run["root"], run["payload"]
    md = (root / "res" / "h.md").read_text()
    for row in ("TIGER, text SIDs", "TIGER, UQF SIDs", "hybrid on text", "hybrid on UQF", "SASRec",
                "text kNN (text embedding)"):
        assert f"| {row} |" in md
        assert row in payload["rows"]
    assert (root / "res" / "h_curves.png").stat().st_size > 0
    assert json.loads((root / "res" / "h.json").read_text())["best_hybrid"] in ("text", "uqf")
    # selection: 2 (loss, weight) models x (generate, dense, hybrid@0, hybrid@1) per kind; best valid NDCG@10 wins
    for kind in ("text", "uqf"):
        grid = payload["grids"][kind]
        assert [(g["loss"], g["weight"]) for g in grid] == [("cosine", 1.0), ("softmax", 1.0)]
        assert set(grid[0]["valid"]) == {"generate", "dense",
                                                                                       "hybrid@0", "hybrid@1"}
        best = max(v["all"]["ndcg@10"] for g in grid for v in g["valid"].values())
        assert payload["choices"][kind]["valid_ndcg10"] == best
        assert "test" not in json.dumps(grid)  # the selection never saw the test split
    assert "16 variants" in md
    warm = payload["paired_tests"]["warm"]
    assert warm["users"] == payload["rows"]["SASRec"]["warm_users"]
    assert warm["ci95"][0] <= warm["mean_diff"] <= warm["ci95"][1]
    assert payload["rows"]["hybrid on UQF"]["seeds"] == 2 and payload["rows"]["text kNN (text embedding)"]["seeds"] == 1


def test_rerun_reads_the_unit_records_back(run: dict) -> None:
    units = run["root"] / "res" / "h" / "units"
    before = {p.name: p.stat().st_mtime_ns for p in units.glob("*.json")}
    assert "inputs.json" in before and any(n.startswith("hybrid_final_uqf") for n in before)
    again = bench.main(run["argv"])
    assert {p.name: p.stat().st_mtime_ns for p in units.glob("*.json")} == before  # nothing recomputed
    assert json.loads(json.dumps(again["rows"])) == json.loads(json.dumps(run["payload"]["rows"]))
