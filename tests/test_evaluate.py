"""Metrics, the popularity baseline, and the evaluate / recommend / train-rec commands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.data.dataset import Dataset
from uqf_cli.evaluation.metrics import ndcg_at_k, popularity_lists, popularity_order, ranking_metrics, recall_at_k


def write_random_sids(ds_dir: Path, path: Path, seed: int = 0) -> Path:
    """Unique random 2-level SIDs (4 x 4 codes) for every item of the dataset."""
    import numpy as np

    from uqf_cli.files import SidTable, write_sids

    ds = Dataset.load(ds_dir)
    pairs = np.random.default_rng(seed).permutation(16)[:len(ds.item_ids)]
    codes = np.stack([pairs // 4, pairs % 4], axis=1)
    write_sids(path, SidTable(ds.item_ids, codes, [4, 4], dataset_fingerprint=ds.fingerprint), force=True)
    return path


TINY_FLAGS = ["--epochs", "1", "--batch-size", "32", "--d-model", "16", "--num-layers", "1",
              "--num-decoder-layers", "1", "--eval-users", "20"]


def test_metrics_by_hand() -> None:
    ranked = [["a", "b", "c"], ["c", "b", "a"], ["x", "y", "z"]]
    targets = ["a", "a", "a"]
    assert recall_at_k(ranked, targets, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, targets, 3) == pytest.approx(2 / 3)
    assert ndcg_at_k(ranked, targets, 3) == pytest.approx((1 + 1 / math.log2(4)) / 3)
    assert ndcg_at_k(ranked, targets, 2) == pytest.approx(1 / 3)
    m = ranking_metrics(ranked, targets, (1, 3), (3,))
    assert list(m) == ["recall@1", "recall@3", "ndcg@3"]


def test_popularity_counts_train_items_only(tmp_path: Path) -> None:
    from uqf_cli.files import write_dataset_dir

    items = {i: {"title": i} for i in "abcd"}
    # train parts: u1 [a, a, b], u2 [c]; valid/test items (d) must not count
    write_dataset_dir(tmp_path / "ds", items, {"u1": ["a", "a", "b", "d", "d"], "u2": ["c", "d", "d"]}, {})
    ds = Dataset.load(tmp_path / "ds")
    assert popularity_order(ds) == ["a", "b", "c", "d"]
    assert popularity_lists(ds, [["a"]], 2, exclude_history=True) == [["b", "c"]]
    assert popularity_lists(ds, [["a"]], 2, exclude_history=False) == [["a", "b"]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """One tiny TIGER model shared by the command tests (training is the slow part)."""
    from conftest import make_dataset

    tmp_path = tmp_path_factory.mktemp("trained")
    tiny_ds = make_dataset(tmp_path / "ds")
    sids = write_random_sids(tiny_ds, tmp_path / "s.jsonl")
    res = CliRunner().invoke(app, ["train-rec", str(tiny_ds), "--sids", str(sids), "-o", str(tmp_path / "m"),
                                   "--backbone", "tiger", "--json", "-q", *TINY_FLAGS])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["backbone"] == "tiger"
    return tiny_ds, sids, tmp_path / "m"


def test_evaluate_json_output_and_predictions(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    ds_dir, sids, model = trained
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(model), str(ds_dir), "--json", "--split", "valid", "--sids", str(sids),
                              "-o", str(tmp_path / "metrics.json"), "--predictions", str(tmp_path / "p.jsonl"),
                              "--baseline"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out["metrics"]) == {"recall@1", "recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20"}
    assert out["users"] == len(Dataset.load(ds_dir).eval_cases("valid"))
    assert "popularity" in out and "popularity_excluding_history" in out
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"] == out["metrics"] and saved["provenance"]["stage"] == "evaluate"
    preds = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(preds) == out["users"] and all(len(p["item_ids"]) == 12 for p in preds)  # 12 items < K=20
    # the metrics follow from the predictions
    cases = {c.user_id: c.target for c in Dataset.load(ds_dir).eval_cases("valid")}
    hits = sum(cases[p["user_id"]] in p["item_ids"][:10] for p in preds)
    assert out["metrics"]["recall@10"] == pytest.approx(hits / len(preds))
    # one record schema a line, metadata beside: pandas reads it as it is
    import pandas as pd

    df = pd.read_json(tmp_path / "p.jsonl", lines=True, dtype={"user_id": str, "target": str})
    assert list(df.columns) == ["user_id", "item_ids", "target"] and len(df) == out["users"]
    assert df["target"].tolist() == [cases[u] for u in df["user_id"]]
    meta = json.loads((tmp_path / "p.jsonl.meta.json").read_text())
    assert meta["uqf_kind"] == "predictions" and meta["split"] == "valid" and meta["provenance"]["stage"] == "evaluate"
    table = runner.invoke(app, ["evaluate", str(model), str(ds_dir), "--max-users", "5"])
    assert table.exit_code == 0 and "recall@10" in table.stdout


def test_bad_inputs_exit_2(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    ds_dir, _, model = trained
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(model), str(ds_dir), "--recall-k", "1,50"])
    assert res.exit_code == 2 and "beam size" in res.output
    other = write_random_sids(ds_dir, tmp_path / "other.jsonl", seed=5)
    res = runner.invoke(app, ["evaluate", str(model), str(ds_dir), "--sids", str(other)])
    assert res.exit_code == 2 and "SID map differs" in res.output
    res = runner.invoke(app, ["recommend", str(model), str(ds_dir), "--history", "1,nope"])
    assert res.exit_code == 2 and "unknown item id 'nope'" in res.output
    res = runner.invoke(app, ["recommend", str(model), str(ds_dir), "--history", " , "])
    assert res.exit_code == 2 and "--history" in res.output
    res = runner.invoke(app, ["evaluate", str(tmp_path), str(ds_dir)])
    assert res.exit_code == 2 and "not a uqf model directory" in res.output
    for r in (res,):
        assert "Traceback" not in r.output


def test_recommend_shows_titles(trained: tuple[Path, Path, Path]) -> None:
    ds_dir, _, model = trained
    res = CliRunner().invoke(app, ["recommend", str(model), str(ds_dir), "--history", "1,2,3", "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["item_ids"]) == 3 and out["titles"][0].startswith("Item ")
    res = CliRunner().invoke(app, ["recommend", str(model), str(ds_dir), "--history", "1,2,3", "-k", "3"])
    assert res.exit_code == 0 and "Item " in res.stdout


def test_metrics_by_popularity_planted_groups(tmp_path: Path) -> None:
    from uqf_cli.evaluation.popularity import metrics_by_popularity, popularity_groups
    from uqf_cli.files import write_dataset_dir

    items = {i: {"title": i} for i in "abcde"}
    # train part a x5, b x3, c, d (10 interactions; the two last d's are valid/test); e is cold
    write_dataset_dir(tmp_path / "ds", items, {"u1": list("aaaaabbbcddd")}, {})
    ds = Dataset.load(tmp_path / "ds")
    # shares before each item: a 0 -> head, b 0.5 -> torso, c 0.8, d 0.9, e 1.0 -> tail
    assert popularity_groups(ds) == {"a": "head", "b": "torso", "c": "tail", "d": "tail", "e": "tail"}
    ranked = [["a", "b"], ["a", "b"], ["c", "a"], ["a", "b"], ["a", "b", "e"]]
    out = metrics_by_popularity(ds, ranked, ["a", "b", "c", "e", "e"], (1, 5), (5,))
    g = out["groups"]
    assert [g[n]["items"] for n in ("head", "torso", "tail")] == [1, 1, 3]
    assert [g[n]["users"] for n in ("head", "torso", "tail")] == [1, 1, 3]
    assert [g[n]["train_interactions"] for n in ("head", "torso", "tail")] == [5, 3, 2]
    assert g["head"]["metrics"] == {"recall@1": 1.0, "recall@5": 1.0, "ndcg@5": 1.0}
    assert g["torso"]["metrics"] == pytest.approx({"recall@1": 0.0, "recall@5": 1.0, "ndcg@5": 1 / math.log2(3)})
    assert g["tail"]["metrics"] == pytest.approx({"recall@1": 1 / 3, "recall@5": 2 / 3, "ndcg@5": 1.5 / 3})
    assert out["cold_items"] == 1 and out["cold_users"] == 2 and "50%" in out["rule"]


def test_evaluate_by_popularity_recomposes_the_overall_metrics(trained: tuple[Path, Path, Path]) -> None:
    ds_dir, _, model = trained
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(model), str(ds_dir), "--json", "--by-popularity", "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    groups = out["by_popularity"]["groups"]
    assert sum(g["users"] for g in groups.values()) == out["users"]
    for metric, value in out["metrics"].items():
        assert sum(g["users"] * g["metrics"][metric] for g in groups.values()) / out["users"] == pytest.approx(value)
    table = runner.invoke(app, ["evaluate", str(model), str(ds_dir), "--by-popularity", "-q"])
    assert table.exit_code == 0 and "tail (" in table.stdout and "by target popularity" in table.stdout
