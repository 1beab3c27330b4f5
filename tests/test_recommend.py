"""``uqf recommend``: histories from users, scores from each backbone, titles, SIDs, and finding item ids."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import make_dataset
from test_evaluate import TINY_FLAGS, write_random_sids
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.core.errors import OptionError
from uqf_cli.data.dataset import Dataset
from uqf_cli.evaluation.recommend import search_items, user_history
from uqf_cli.files import read_sids, write_dataset_dir
from uqf_cli.rec import backbone_module, pop, sasrec


def _small(path: Path) -> Dataset:
    items = {"a": {"title": "Swingline Stapler, Red"}, "b": {"title": "Red stapler refill staples"},
             "c": {"title": "Paper clips"}, "d": {"title": "STAPLER remover"}, "e": {"title": "Pens"}}
    write_dataset_dir(path, items, {"u1": ["a", "b", "c", "d", "e"], "u2": ["c", "e"]}, {"source": "t"})
    return Dataset.load(path)


def test_user_history_cuts_where_evaluate_cuts(tmp_path: Path) -> None:
    ds = _small(tmp_path / "ds")
    assert user_history(ds, "u1") == (["a", "b", "c"], "d")  # the train part; valid item held out
    assert user_history(ds, "u1", "test") == (["a", "b", "c", "d"], "e")
    assert user_history(ds, "u1", "full") == (["a", "b", "c", "d", "e"], None)
    assert user_history(ds, "u2") == (["c", "e"], None)  # too short to evaluate: all train
    valid = {c.user_id: c for c in ds.eval_cases("valid")}["u1"]
    assert user_history(ds, "u1") == (list(valid.history), valid.target)
    with pytest.raises(OptionError, match="unknown user id 'nobody'"):
        user_history(ds, "nobody")
    with pytest.raises(OptionError, match="--split"):
        user_history(ds, "u1", "train")


def test_search_items_substring_first_then_words(tmp_path: Path) -> None:
    ds = _small(tmp_path / "ds")
    assert search_items(ds, "stapler") == ["a", "b", "d"]  # case-insensitive, dataset order
    assert search_items(ds, "red stapler") == ["b", "a"]  # b contains it; a has both words
    assert search_items(ds, "ink") == []
    with pytest.raises(OptionError, match="--item-search"):
        search_items(ds, "  ")


def test_pop_scores_are_train_counts(tmp_path: Path) -> None:
    from uqf_cli.evaluation.metrics import item_counts

    ds = Dataset.load(make_dataset(tmp_path / "ds"))
    backbone_module("pop").train(ds, None, tmp_path / "m", {}, False)
    rec = pop.load(tmp_path / "m")
    ranked = rec.recommend_scored([["1"]], k=4)[0]
    counts = item_counts(ds)
    assert [i for i, _ in ranked] == rec.recommend([["1"]], k=4)[0]
    assert [s for _, s in ranked] == [float(counts[i]) for i, _ in ranked]


def test_sasrec_scores_are_its_logits(tmp_path: Path) -> None:
    ds = Dataset.load(make_dataset(tmp_path / "ds"))
    opts = {"hidden": 16, "epochs": 1, "batch_size": 32, "max_history": 8, "device": "cpu", "seed": 1}
    backbone_module("sasrec").train(ds, None, tmp_path / "m", opts, False)
    rec = sasrec.load(tmp_path / "m", "cpu")
    ranked = rec.recommend_scored([["1", "2", "3"]], k=5)[0]
    assert [i for i, _ in ranked] == rec.recommend([["1", "2", "3"]], k=5)[0]
    with torch.no_grad():
        seq = torch.tensor([[0] * 5 + [rec.index[i] for i in ("1", "2", "3")]])
        logits = rec.model.scores(rec.model.hidden_states(seq)[:, -1])[0]
    for iid, score in ranked:
        assert score == pytest.approx(float(logits[rec.item_ids.index(iid)]), abs=1e-5)


@pytest.fixture(scope="module")
def tiger_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("rec")
    ds = make_dataset(tmp / "ds")
    sids = write_random_sids(ds, tmp / "s.jsonl")
    res = CliRunner().invoke(app, ["train-rec", str(ds), "--sids", str(sids), "-o", str(tmp / "m"), "--backbone",
                                   "tiger", "-q", *TINY_FLAGS])
    assert res.exit_code == 0, res.output
    return ds, sids, tmp / "m"


def test_tiger_scores_are_beam_log_probs(tiger_model: tuple[Path, Path, Path]) -> None:
    from uqf_cli.rec import tiger

    _, _, model = tiger_model
    rec = tiger.load(model, "cpu")
    ranked = rec.recommend_scored([["1", "2"]], k=12, beam_size=16)[0]
    assert [i for i, _ in ranked] == rec.recommend([["1", "2"]], k=12, beam_size=16)[0]
    scores = [s for _, s in ranked]
    assert all(s <= 0 for s in scores) and scores == sorted(scores, reverse=True)
    # distinct SIDs are disjoint events: their probabilities cannot sum past 1
    assert sum(math.exp(s) for s in scores) <= 1 + 1e-5


def test_recommend_for_a_user_shows_history_scores_and_sids(tiger_model: tuple[Path, Path, Path]) -> None:
    ds_dir, sids_path, model = tiger_model
    ds, sids = Dataset.load(ds_dir), read_sids(sids_path)
    sid_of = {iid: "".join(sids.tokens(r)) for r, iid in enumerate(sids.item_ids)}
    res = CliRunner().invoke(app, ["recommend", str(model), str(ds_dir), "--user", "u0", "-k", "5", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    history, held = user_history(ds, "u0")
    assert [h["item_id"] for h in out["history"]] == history
    assert all(h["title"] == ds.title(h["item_id"]) and h["sid"] == sid_of[h["item_id"]] for h in out["history"])
    assert out["held_out"]["item_id"] == held and out["score"] == "beam log-prob" and out["user_id"] == "u0"
    recs = out["recommendations"]
    assert [r["rank"] for r in recs] == [1, 2, 3, 4, 5] and out["item_ids"] == [r["item_id"] for r in recs]
    assert all(r["sid"] == sid_of[r["item_id"]] and r["score"] <= 0 for r in recs)
    expected_rank = next((r["rank"] for r in recs if r["item_id"] == held), None)
    assert out["held_out"]["rank"] == expected_rank
    # The same history given explicitly ranks the same items with the same scores.
    res = CliRunner().invoke(app, ["recommend", str(model), str(ds_dir), "--history", ",".join(history), "-k", "5",
                                   "--json"])
    assert json.loads(res.stdout)["recommendations"] == recs
    text = CliRunner().invoke(app, ["recommend", str(model), str(ds_dir), "--user", "u0", "-k", "5"]).stdout
    assert "beam log-prob" in text and "held-out next item (valid)" in text
    assert ds.title(history[0])[:10] in text and sid_of[recs[0]["item_id"]] in text


def test_item_search_finds_ids_with_sids(tiger_model: tuple[Path, Path, Path]) -> None:
    ds_dir, sids_path, model = tiger_model
    sid_of = {iid: "".join(read_sids(sids_path).tokens(r)) for r, iid in enumerate(read_sids(sids_path).item_ids)}
    res = CliRunner().invoke(app, ["recommend", str(model), str(ds_dir), "--item-search", "PEN", "--json"])
    assert res.exit_code == 0, res.output
    found = json.loads(res.stdout)["items"]
    assert [f["item_id"] for f in found] == [str(i) for i in range(1, 12, 2)]  # odd items are the pens
    assert all(f["sid"] == sid_of[f["item_id"]] and "pen" in f["title"] for f in found)
    text = CliRunner().invoke(app, ["recommend", str(model), str(ds_dir), "--item-search", "item 3 pen"]).stdout
    assert "Item 3 pen" in text and sid_of["3"] in text


@pytest.mark.parametrize(("args", "needle"), [
    ([], "--item-search TEXT"),
    (["--history", "1", "--user", "u0"], "not both"),
    (["--user", "nobody"], "unknown user id"),
    (["--user", "u0", "--split", "train"], "--split"),
    (["--item-search", "pen", "--user", "u0"], "--item-search"),
])
def test_recommend_refuses_unclear_requests(tiger_model: tuple[Path, Path, Path], args: list[str],
                                            needle: str) -> None:
    ds_dir, _, model = tiger_model
    res = CliRunner().invoke(app, ["recommend", str(model), str(ds_dir), *args])
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output
