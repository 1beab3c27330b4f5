"""benchmarks/quality/hybrid_office.py --quick: every row, the validation-only selection (a grid with and without
--dense-item-ids), the paired test, the probes and the measured diagnosis, resuming, and --jobs 2 (worker processes)
against --jobs 1; the default grid's unit names, and records made before --dense-item-ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
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
            "--dense-losses", "cosine,softmax", "--dense-weights", "1", "--dense-item-ids", "0,1", "--alphas", "0,1",
            "--probes", "text:softmax:1:ids,uqf:softmax:0.5", "--fuse-epochs", "1",
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
    # selection: 3 (loss, weight, item ids) models (cosine has no ids variant) x (generate, dense, hybrid@0,
    # hybrid@1) per kind; the best valid NDCG@10 over all of them wins
    for kind in ("text", "uqf"):
        grid = payload["grids"][kind]
        assert [(g["loss"], g["weight"], g.get("ids")) for g in grid] == [("cosine", 1.0, None), ("softmax", 1.0, None),
                                                                          ("softmax", 1.0, True)]
        assert set(grid[0]["valid"]) == {"generate", "dense", "hybrid@0", "hybrid@1"}
        best = max(v["all"]["ndcg@10"] for g in grid for v in g["valid"].values())
        assert payload["choices"][kind]["valid_ndcg10"] == best
        assert "test" not in json.dumps(grid)  # the selection never saw the test split
        assert f"| {kind} | softmax + item ids | 1 | dense" in md and f"| {kind} | softmax | 1 | dense" in md
    assert "24 variants" in md
    units = root / "res" / "h" / "units"
    assert all((units / f"hybrid_grid_uqf_softmax_w1{tag}.json").exists() for tag in ("", "_ids"))
    meta = json.loads((root / "work" / "hybrid_uqf_softmax_w1_ids_s0" / "uqf_model.json").read_text())
    assert meta["options"]["dense_item_ids"] is True and meta["training"]["id_residual"]["cold_rows_nonzero"] == 0
    assert json.loads((root / "work" / "hybrid_uqf_softmax_w1_s0" / "uqf_model.json").read_text())["options"][
        "dense_item_ids"] is False
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


TIMING = ("wall_seconds", "train_seconds", "seconds", "threads")


def _content(value: Any, work: Path) -> Any:
    """A record without its timings and threads, its --work paths made relative."""
    if isinstance(value, dict):
        return {k: _content(v, work) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_content(v, work) for v in value]
    return value.replace(str(work), "WORK") if isinstance(value, str) else value


def _records(out_dir: Path, work: Path) -> dict[str, Any]:
    return {p.name: _content(json.loads(p.read_text()), work) for p in sorted((out_dir / "units").glob("*.json"))}


def _mtimes(*folders: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for f in folders for p in f.iterdir()}


@pytest.fixture(scope="module")
def jobs2(run: dict) -> dict:
    root = run["root"]
    argv = [*run["argv"], "--jobs", "2"]
    argv[argv.index("--work") + 1] = str(root / "work2")
    argv[argv.index("--out") + 1] = str(root / "res2" / "h.md")
    return {"argv": argv, "payload": bench.main(argv)}


def test_jobs_2_writes_the_records_and_report_of_jobs_1(run: dict, jobs2: dict) -> None:
    root = run["root"]
    one, two = _records(root / "res" / "h", root / "work"), _records(root / "res2" / "h", root / "work2")
    assert set(two) == set(one) and any(n.startswith("hybrid_final_text") for n in two)
    assert two == one  # same content, timings and threads aside
    per_worker = max(1, torch.get_num_threads() // 2)
    for name in two:
        rec = json.loads((root / "res2" / "h" / "units" / name).read_text())
        in_main = name == "inputs.json" or name.startswith("textknn_")
        assert rec["threads"] == (torch.get_num_threads() if in_main else per_worker)
    assert (root / "work2" / "logs" / "sasrec_s1.unit.log").exists()
    md1, md2 = ((root / d / "h.md").read_text().split("## Input wall times")[0] for d in ("res", "res2"))
    assert md2 == md1
    assert json.loads(json.dumps(jobs2["payload"]["rows"])) == json.loads(json.dumps(run["payload"]["rows"]))
    assert jobs2["payload"]["choices"] == run["payload"]["choices"]
    assert "jobs" not in jobs2["payload"]["args"] and "argv" not in jobs2["payload"]["args"]


def test_jobs_2_rerun_skips_finished_units_and_runs_a_missing_one(jobs2: dict, run: dict,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = run["root"]
    units, logs = root / "res2" / "h" / "units", root / "work2" / "logs"
    before = _mtimes(units, logs)
    capsys.readouterr()
    bench.main(jobs2["argv"])
    assert _mtimes(units, logs) == before  # no record rewritten, no worker started
    assert "started" not in capsys.readouterr().err
    gone = units / "hybrid_grid_uqf_softmax_w1.json"
    kept = _content(json.loads(gone.read_text()), root / "work2")
    gone.unlink()
    bench.main(jobs2["argv"])
    started = [line for line in capsys.readouterr().err.splitlines() if ": started " in line]
    assert len(started) == 1 and started[0].endswith("started hybrid_grid_uqf_softmax_w1")
    assert _content(json.loads(gone.read_text()), root / "work2") == kept
    assert {k: v for k, v in _mtimes(units).items() if k != str(gone)} == {
        k: v for k, v in before.items() if k.startswith(str(units)) and k != str(gone)}


def test_the_default_grid_keeps_its_unit_names() -> None:
    args = bench.parse_args(["--dataset", "d", "--text", "t", "--work", "w"])
    assert args.ids_list == [False]
    grid = [n for n in bench.selection_units(args, {}) if n.startswith("hybrid_grid")]
    assert grid == [f"hybrid_grid_{k}_{loss}_w{w}" for k in ("text", "uqf") for loss in ("inbatch", "softmax")
                    for w in ("0.5", "2")]
    with_ids = bench.parse_args(["--dataset", "d", "--text", "t", "--work", "w", "--dense-item-ids", "0,1",
                                 "--dense-losses", "cosine,inbatch", "--dense-weights", "2"])
    assert [n for n in bench.selection_units(with_ids, {}) if n.startswith("hybrid_grid_text")] == [
        "hybrid_grid_text_cosine_w2", "hybrid_grid_text_inbatch_w2", "hybrid_grid_text_inbatch_w2_ids"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--dataset", "d", "--text", "t", "--work", "w", "--dense-item-ids", "2"])


def test_records_without_the_ids_key_read_as_ids_off() -> None:
    names = ["generate", "dense"]
    old = {"loss": "inbatch", "weight": 2.0, "valid": {"generate": {"all": {"ndcg@10": 0.1}},
                                                       "dense": {"all": {"ndcg@10": 0.2}}}}
    with_ids = {**old, "ids": True, "valid": {"generate": {"all": {"ndcg@10": 0.1}},
                                              "dense": {"all": {"ndcg@10": 0.3}}}}
    choice = bench.select([old], names)
    assert "ids" not in choice and bench.final_name("uqf", choice, 0) == "hybrid_final_uqf_inbatch_w2_s0"
    choice = bench.select([old, with_ids], names)  # over every grid record of the kind
    assert choice["ids"] is True and choice["variant"] == "dense"
    assert bench.final_name("uqf", choice, 1) == "hybrid_final_uqf_inbatch_w2_ids_s1"
    tie = {**with_ids, "valid": old["valid"]}
    assert "ids" not in bench.select([old, tie], names)  # a tie goes to the first in grid order


def test_probes_are_shown_apart_and_never_selected(run: dict) -> None:
    root, payload = run["root"], run["payload"]
    md = (root / "res" / "h.md").read_text()
    probes = payload["probes"]
    # a probe that is a grid model is that unit's record; one outside the grid is its own model
    assert [(p["kind"], p["loss"], p["weight"], p.get("ids")) for p in probes] == [("text", "softmax", 1.0, True),
                                                                                   ("uqf", "softmax", 0.5, None)]
    assert probes[0] == payload["grids"]["text"][2]
    assert (root / "res" / "h" / "units" / "hybrid_grid_uqf_softmax_w0.5.json").exists()
    assert all(c["weight"] == 1.0 for c in payload["choices"].values())  # the selection never sees a probe
    assert "## Probes (validation only, outside the selection)" in md and "| uqf | softmax | 0.5 | dense |" in md
    d = payload["diagnosis"]
    assert d["warm_test"]["SASRec"] == payload["rows"]["SASRec"]["warm_ndcg@10"][0]
    with_base, alone = d["probes"]
    assert with_base["base"] == "hybrid_grid_text_softmax_w1" and alone["base"] is None
    dense = [v["all"]["ndcg@10"] for k, v in payload["grids"]["text"][1]["valid"].items() if k == "dense"]
    assert with_base["dense"]["base"] == dense[0]
    best_dense = max(v["dense"]["all"]["ndcg@10"] for g in payload["grids"].values() for v in (r["valid"] for r in g))
    assert d["valid"]["grid best dense"]["ndcg10"] == best_dense
    assert [len(e) for e in d["epochs"].values()] == [2, 2, 2]
    section = md.split("## What holds the hybrid back", 1)[1].split("## Input wall times", 1)[0]
    assert f"SASRec {d['warm_test']['SASRec']:.4f}" in section
    assert "Probe hybrid_grid_text_softmax_w1_ids: a free per-item vector" in section
    assert "**Probe hybrid_grid_uqf_softmax_w0.5** (validation, outside the selection)" in section
    assert "a map of the content cannot; a grid model)" in section  # the first probe is a grid model
    assert "| text | softmax + item ids (a grid model, above) | 1 | dense |" in md
    assert with_base["in_grid"] and not alone["in_grid"]
    gen = [n for n in d["generation_rows"] if n.startswith("hybrid")]
    assert len(gen) == 2 and all(payload["rows"][n]["seeds"] == 2 for n in gen)
    assert all(e["cap"] == 2 for eps in d["epochs"].values() for e in eps)  # the --quick recipes' caps
    assert "reached their cap" in section or "before its cap" in section


@pytest.mark.parametrize("bad", ["video:softmax:1", "uqf:softmax", "uqf:cosine:1:ids", "uqf:softmax:1:yes",
                                 "uqf:softmx:1", "uqf:softmax:-1", "uqf:softmax:x"])
def test_a_malformed_probe_is_refused(bad: str) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--dataset", "d", "--text", "t", "--work", "w", "--probes", bad])
