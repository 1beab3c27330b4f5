"""Hybrid backbone (TIGER + dense head), textknn, the cold-start protocol and cold/warm evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_dataset
from test_tiger import TINY, write_random_sids
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.data.cold import derive_cold_dataset, pick_cold_items
from uqf_cli.data.dataset import Dataset
from uqf_cli.evaluation import evaluate
from uqf_cli.evaluation.metrics import ranking_metrics
from uqf_cli.files import load_embeddings, make_provenance, read_sids, save_embeddings
from uqf_cli.rec import hybrid, sasrec, textknn

runner = CliRunner()


def _embeddings(ds_dir: Path, path: Path, dim: int = 8, seed: int = 0) -> Path:
    ds = Dataset.load(ds_dir)
    emb = np.random.default_rng(seed).normal(size=(len(ds.item_ids), dim)).astype(np.float32)
    save_embeddings(path, emb, ds.item_ids, make_provenance("test", {}), "text", ds.fingerprint)
    return path


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A source dataset, its cold-start copy (25% cold items), SIDs and item embeddings of every item."""
    root = tmp_path_factory.mktemp("hybrid")
    src = make_dataset(root / "ds", n_users=40, n_items=16, seed=2)
    derive_cold_dataset(src, root / "cold_ds", share=0.25, seed=1)
    sids = write_random_sids(src, root / "sids.jsonl")
    return {"root": root, "src": src, "ds": root / "cold_ds", "sids": sids, "emb": _embeddings(src, root / "e.st")}


def _train_hybrid(cold: dict[str, Path], name: str, **extra) -> Path:
    ds = Dataset.load(cold["ds"])
    out = cold["root"] / name
    hybrid.train(ds, read_sids(cold["sids"]), out, {**TINY, "item_emb": str(cold["emb"]), **extra})
    return out


def test_cold_protocol_drops_exactly_the_chosen_items_train_interactions(cold: dict[str, Path]) -> None:
    src, new = Dataset.load(cold["src"]), Dataset.load(cold["ds"])
    record = new.info["cold_start"]
    chosen = pick_cold_items(src.item_ids, 0.25, 1)
    assert record["item_ids"] == chosen and len(chosen) == 4 and set(new.items) == set(src.items)
    cold_set = set(chosen)
    assert not any(i in cold_set for s in new.train_sequences().values() for i in s)  # never trained on
    removed = 0
    for uid, seq in src.sequences.items():
        kept = [i for i in seq[:-2] if i not in cold_set] + seq[-2:]
        assert len(kept) >= 3  # every user of this dataset keeps its valid and test items
        assert new.sequences[uid] == kept  # only the cold items of the train part are gone
        removed += len(seq) - len(kept)
    assert record["removed_interactions"] == removed > 0
    cold_targets = [c for c in new.eval_cases("test") if c.target in cold_set]
    assert len(cold_targets) == record["cold_test_targets"] > 0  # test users with a cold target are kept
    again = derive_cold_dataset(cold["src"], cold["root"] / "again", share=0.25, seed=1)
    assert again.fingerprint == new.fingerprint  # seeded
    other = derive_cold_dataset(cold["src"], cold["root"] / "seed2", share=0.25, seed=2)
    assert other.info["cold_start"]["item_ids"] != chosen


def test_cold_protocol_users_too_short_lose_every_cold_item(tmp_path: Path) -> None:
    from uqf_cli.data.cold import remove_cold_from_train

    seqs = {"a": ["c", "x", "y"], "b": ["x", "c"], "d": ["c"], "e": ["x", "c", "y", "c"]}
    out = remove_cold_from_train(seqs, {"c"})
    # a: the train part was only "c" -> too short to evaluate -> every cold item goes; d: nothing left
    assert out == {"a": ["x", "y"], "b": ["x"], "e": ["x", "y", "c"]}


def test_prepare_cold_share_on_a_dataset_dir_and_bad_share(tmp_path: Path) -> None:
    src = make_dataset(tmp_path / "ds")
    res = runner.invoke(app, ["prepare", str(src), "-o", str(tmp_path / "c"), "--cold-share", "0.2", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "c" / "dataset.json").read_text())
    assert info["cold_start"]["share"] == 0.2 and info["derived_from"]["path"] == str(src)
    res = runner.invoke(app, ["prepare", str(src), "-o", str(tmp_path / "bad"), "--cold-share", "1.5"])
    assert res.exit_code == 2 and "--cold-share" in res.output and not (tmp_path / "bad").exists()


def test_hybrid_trains_saves_and_ranks_in_three_modes(cold: dict[str, Path]) -> None:
    out = _train_hybrid(cold, "h1")
    again = _train_hybrid(cold, "h2")
    meta = json.loads((out / "uqf_model.json").read_text())
    assert meta["backbone"] == "hybrid" and meta["item_emb"]["sha256"]
    assert meta["training"]["parameters_sha256"] == json.loads((again / "uqf_model.json").read_text())[
        "training"]["parameters_sha256"]  # deterministic on CPU
    assert set(meta["cold_item_ids"]) == set(Dataset.load(cold["ds"]).info["cold_start"]["item_ids"])
    record = meta["training"]["history"][0]
    assert {"generation_loss", "dense_loss", "valid_ndcg10_generate", "valid_ndcg10_hybrid",
            "valid_ndcg10_dense"} <= set(record)
    rec = hybrid.load(out, "cpu")
    hist = [["1", "2"], ["3"], []]
    ranked = rec.rank_modes(hist, 5, 8)
    assert set(ranked) == {"generate", "hybrid", "dense"}
    for lists in ranked.values():
        assert [len(x) for x in lists] == [5, 5, 5] and all(len(set(x)) == 5 for x in lists)
    with torch.no_grad():  # dense = every item by cosine
        ids, mask = hybrid.recommender.encode_histories(rec.vocab, [[rec.row[i] for i in h] for h in hist], 20)
        cos = rec.cosines(ids, mask)
    expect = [[rec.vocab.item_ids[j] for j in row] for row in torch.topk(cos, 5, dim=1).indices.tolist()]
    assert ranked["dense"] == expect
    rec.set_ranking("generate")
    assert rec.recommend(hist, 5, 8) == ranked["generate"]
    with pytest.raises(Exception, match="beam"):
        rec.recommend(hist, 10, 8)


def test_model_dir_keeps_its_own_item_vectors(cold: dict[str, Path], tmp_path: Path) -> None:
    emb = _embeddings(cold["src"], tmp_path / "moving.st")
    ds = Dataset.load(cold["ds"])
    hybrid.train(ds, read_sids(cold["sids"]), tmp_path / "m", {**TINY, "epochs": 1, "item_emb": str(emb)})
    before = hybrid.load(tmp_path / "m", "cpu").rank_modes([["1"]], 5, 8)
    emb.unlink()  # the source is gone: evaluation must not need it
    assert hybrid.load(tmp_path / "m", "cpu").rank_modes([["1"]], 5, 8) == before


def test_hybrid_mix_adds_cold_items_and_orders_by_the_documented_score() -> None:
    cos = torch.tensor([[0.1, 0.2, 0.3, 0.9, 0.8, 0.0]])  # items 3, 4 are cold
    beam_rows = torch.tensor([[0, 1, 4, -1]])  # the beam returned cold item 4 too, and one empty beam
    beam_lp = torch.tensor([[-0.1, -2.0, -3.0, float("-inf")]])
    cold_rows = torch.tensor([3, 4])
    top = lambda alpha: hybrid.hybrid_top(cos, beam_rows, beam_lp, cold_rows, alpha, 0.1, 6)[0].tolist()  # noqa: E731
    assert top(1.0) == [3, 4, 1, 0, -1, -1]  # pure dense re-ranking of beam + cold (no duplicate of 4)
    assert top(0.0) == [0, 1, 4, 3, -1, -1]  # beam order; the cold item outside the beam after it
    # alpha = 0.5 by hand: P_dense = softmax(cos / 0.1) over {0, 1, 4, 3}; P_gen = softmax over the beam
    p_dense = torch.softmax(torch.tensor([0.1, 0.2, 0.8, 0.9]) / 0.1, 0)
    p_gen = torch.cat([torch.softmax(torch.tensor([-0.1, -2.0, -3.0]), 0), torch.zeros(1)])
    mix = 0.5 * p_dense + 0.5 * p_gen
    expect = [[0, 1, 4, 3][j] for j in torch.argsort(mix, descending=True).tolist()]
    assert top(0.5)[:4] == expect


def test_cold_items_reach_the_hybrid_and_dense_rankings(cold: dict[str, Path]) -> None:
    out = _train_hybrid(cold, "h_cold", dense_loss="cosine", dense_query="encoder")
    rec = hybrid.load(out, "cpu")
    cold_ids = set(Dataset.load(cold["ds"]).info["cold_start"]["item_ids"])
    assert {rec.vocab.item_ids[r] for r in rec.cold_rows.tolist()} == cold_ids
    hist = [c.history for c in Dataset.load(cold["ds"]).eval_cases("test")]
    ranked = rec.rank_modes(hist, 5, 5, alphas=(1.0,))
    for mode in ("hybrid@1", "dense"):
        assert any(i in cold_ids for lst in ranked[mode] for i in lst), mode


def test_textknn_scores_by_cosine_to_the_history_mean(cold: dict[str, Path], tmp_path: Path) -> None:
    ds = Dataset.load(cold["ds"])
    textknn.train(ds, None, tmp_path / "tk", {"item_emb": str(cold["emb"])})
    rec = textknn.load(tmp_path / "tk")
    e = torch.nn.functional.normalize(load_embeddings(cold["emb"]).rows_for(ds.item_ids), dim=-1)
    hist = ["1", "5"]
    q = torch.nn.functional.normalize(e[[ds.item_index[i] for i in hist]].mean(0), dim=0)
    scores = (e @ q).tolist()
    order = [ds.item_ids[j] for j in sorted(range(len(scores)), key=lambda j: -scores[j]) if ds.item_ids[j]
             not in hist]
    assert rec.recommend([hist], 5) == [order[:5]]  # history masked


def test_evaluate_reports_cold_and_warm_targets_and_sasrec_is_not_excused(cold: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    ds = Dataset.load(cold["ds"])
    textknn.train(ds, None, tmp_path / "tk", {"item_emb": str(cold["emb"])})
    res = evaluate(tmp_path / "tk", cold["ds"], predictions=tmp_path / "p.jsonl")
    by = res["by_coldness"]
    cold_ids = set(ds.info["cold_start"]["item_ids"])
    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    for name, wanted in (("cold", True), ("warm", False)):
        part = [x for x in lines if (x["target"] in cold_ids) == wanted]
        assert by["groups"][name]["users"] == len(part) > 0
        assert by["groups"][name]["metrics"] == ranking_metrics([x["item_ids"] for x in part],
                                                                [x["target"] for x in part])
    sasrec.train(ds, None, tmp_path / "sas", {"epochs": 2, "hidden": 8, "device": "cpu"})
    res_s = evaluate(tmp_path / "sas", cold["ds"])
    assert res_s["by_coldness"]["groups"]["cold"]["users"] == by["groups"]["cold"]["users"]  # same users
    assert "by_coldness" not in evaluate(tmp_path / "tk", cold["ds"], by_coldness=False)
    textknn.train(Dataset.load(cold["src"]), None, tmp_path / "tk_src", {"item_emb": str(cold["emb"])})
    assert "by_coldness" not in evaluate(tmp_path / "tk_src", cold["src"])  # a dataset without cold items: off
    asked = evaluate(tmp_path / "tk_src", cold["src"], by_coldness=True)["by_coldness"]
    assert asked["rule"] == "items without a train interaction" and asked["groups"]["cold"]["users"] == 0


def test_cli_train_evaluate_recommend_and_bad_options(cold: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "m"
    res = runner.invoke(app, ["train-rec", str(cold["ds"]), "--sids", str(cold["sids"]), "-o", str(out),
                              "--backbone", "hybrid", "--item-emb", str(cold["emb"]), "--epochs", "1",
                              "--batch-size", "32", "--d-model", "16", "--num-layers", "1", "--num-decoder-layers",
                              "1", "--eval-users", "10", "--dense-loss", "softmax", "--rank", "dense", "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", str(out), str(cold["ds"]), "--rank", "hybrid", "--alpha", "0.2", "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["rank"] == "hybrid" and payload["alpha"] == 0.2 and "by_coldness" in payload
    res = runner.invoke(app, ["recommend", str(out), str(cold["ds"]), "--history", "1,2", "--rank", "generate",
                              "-k", "3", "--json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)["item_ids"]) == 3
    for argv, flag in ((["--alpha", "1.5"], "--alpha"), (["--rank", "best"], "--rank")):
        res = runner.invoke(app, ["evaluate", str(out), str(cold["ds"]), *argv])
        assert res.exit_code == 2 and flag in res.output
    res = runner.invoke(app, ["train-rec", str(cold["ds"]), "--sids", str(cold["sids"]), "-o", str(tmp_path / "x"),
                              "--backbone", "hybrid"])
    assert res.exit_code == 2 and "--item-emb" in res.output and not (tmp_path / "x").exists()
    res = runner.invoke(app, ["train-rec", str(cold["ds"]), "--sids", str(cold["sids"]), "-o", str(tmp_path / "y"),
                              "--backbone", "tiger", "--dense-weight", "0.5"])
    assert res.exit_code == 2 and "--dense-weight" in res.output


@pytest.mark.parametrize("ids", [False, True], ids=["content", "item_ids"])
def test_interrupted_then_resumed_equals_uninterrupted(cold: dict[str, Path], tmp_path: Path,
                                                       stop_after_epoch, ids: bool) -> None:
    from uqf_cli.files.checkpoint import checkpoint_path
    from uqf_cli.files.tensors import load_tensors, meta_json

    ds, sids = Dataset.load(cold["ds"]), read_sids(cold["sids"])
    opts = {**TINY, "epochs": 3, "patience": 5, "item_emb": str(cold["emb"]), **({"dense_item_ids": True} if ids
                                                                                 else {})}
    full = hybrid.train(ds, sids, tmp_path / "full", opts)
    stop_after_epoch(1)
    with pytest.raises(KeyboardInterrupt):
        hybrid.train(ds, sids, tmp_path / "cut", opts)
    assert checkpoint_path(tmp_path / "cut").exists() and not (tmp_path / "cut").exists()
    # off, the option is not in the checkpoint's identity (as one written before it existed: such a run resumes)
    path = checkpoint_path(tmp_path / "cut")
    identity = meta_json(path, load_tensors(path)[1], "identity")
    assert identity["parameters"].get("dense_item_ids") == (True if ids else None)
    stop_after_epoch(None)
    resumed = hybrid.train(ds, sids, tmp_path / "cut", {**opts, "resume": True})
    assert resumed["parameters_sha256"] == full["parameters_sha256"]
    drop = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert drop(resumed["history"]) == drop(full["history"]) and resumed["best_epoch"] == full["best_epoch"]


def test_hybrid_ema_decay_saves_the_averaged_weights(cold: dict[str, Path], tmp_path: Path) -> None:
    ds, sids = Dataset.load(cold["ds"]), read_sids(cold["sids"])
    opts = {**TINY, "epochs": 2, "item_emb": str(cold["emb"])}
    raw = hybrid.train(ds, sids, tmp_path / "raw", opts)
    avg = hybrid.train(ds, sids, tmp_path / "avg", {**opts, "ema_decay": 0.9})
    assert avg["parameters_sha256"] != raw["parameters_sha256"]
    assert json.loads((tmp_path / "avg" / "uqf_model.json").read_text())["options"]["ema_decay"] == 0.9


def _head_file(model_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from uqf_cli.files import load_model_file

    state, config, _ = load_model_file(model_dir / hybrid.recommender.HEAD_FILE, hybrid.recommender.HEAD_KIND)
    return state, config


@pytest.mark.parametrize("loss", ["inbatch", "softmax"])
def test_dense_item_ids_train_warm_rows_and_cold_rows_stay_zero(cold: dict[str, Path], tmp_path: Path,
                                                               loss: str) -> None:
    """The invariant of --dense-item-ids: no loss reads a cold item's row of b, so after training it is still
    exactly zero and the item's vector is its content vector normalize(e + A e)."""
    ds = Dataset.load(cold["ds"])
    summary = hybrid.train(ds, read_sids(cold["sids"]), tmp_path / "m",
                           {**TINY, "item_emb": str(cold["emb"]), "dense_loss": loss, "dense_item_ids": True})
    state, config = _head_file(tmp_path / "m")
    assert config["dense_item_ids"] is True
    rec = hybrid.load(tmp_path / "m", "cpu")
    b = state["id_residual.weight"]
    cold_rows = rec.cold_rows
    warm = torch.ones(len(b), dtype=torch.bool)
    warm[cold_rows] = False
    assert len(cold_rows) > 0 and torch.equal(b[cold_rows], torch.zeros_like(b[cold_rows]))
    assert (b[warm].abs().sum(1) > 0).sum() > 0  # warm rows learned something
    assert summary["id_residual"]["cold_rows_nonzero"] == 0 and summary["id_residual"]["mean_norm_warm"] > 0
    e = rec.head.item_embeddings
    content = torch.nn.functional.normalize(e + e @ state["adapter.weight"].T, dim=-1)
    assert torch.allclose(rec.item_vectors[cold_rows], content[cold_rows], atol=1e-6)
    assert not torch.allclose(rec.item_vectors[warm], content[warm], atol=1e-4)


def test_dense_item_ids_refused_with_the_cosine_loss(cold: dict[str, Path], tmp_path: Path) -> None:
    from uqf_cli.core.errors import OptionError

    with pytest.raises(OptionError, match="--dense-item-ids"):
        hybrid.HybridOptions.from_dict({"item_emb": "e.st", "dense_loss": "cosine", "dense_item_ids": True})
    base = ["train-rec", str(cold["ds"]), "--sids", str(cold["sids"]), "--item-emb", str(cold["emb"])]
    res = runner.invoke(app, [*base, "-o", str(tmp_path / "c"), "--backbone", "hybrid", "--dense-loss", "cosine",
                              "--dense-item-ids"])
    assert res.exit_code == 2 and "--dense-item-ids" in res.output and not (tmp_path / "c").exists()
    # --no-dense-item-ids is passed on as given (not dropped like an unset switch): tiger refuses it
    res = runner.invoke(app, ["train-rec", str(cold["ds"]), "--sids", str(cold["sids"]), "-o", str(tmp_path / "t"),
                              "--backbone", "tiger", "--no-dense-item-ids"])
    assert res.exit_code == 2 and "--dense-item-ids" in res.output and not (tmp_path / "t").exists()


def test_a_head_saved_before_dense_item_ids_loads_and_ranks_as_before(cold: dict[str, Path], tmp_path: Path) -> None:
    """Off, the head has today's three tensors; a head file whose config lacks the option (written before it
    existed) loads without a residual and ranks exactly as the file that records it off."""
    from uqf_cli.files import load_model_file, save_model_file

    ds = Dataset.load(cold["ds"])
    hybrid.train(ds, read_sids(cold["sids"]), tmp_path / "m", {**TINY, "epochs": 1, "item_emb": str(cold["emb"])})
    path = tmp_path / "m" / hybrid.recommender.HEAD_FILE
    state, config, meta = load_model_file(path, hybrid.recommender.HEAD_KIND)
    assert set(state) == {"query.weight", "query.bias", "adapter.weight"} and config["dense_item_ids"] is False
    hist = [c.history for c in ds.eval_cases("test")]
    before = hybrid.load(tmp_path / "m", "cpu").rank_modes(hist, 5, 8)
    old = {k: v for k, v in config.items() if k != "dense_item_ids"}
    save_model_file(path, hybrid.recommender.HEAD_KIND, state, old, meta["provenance"], force=True)
    rec = hybrid.load(tmp_path / "m", "cpu")
    assert rec.head.id_residual is None and rec.rank_modes(hist, 5, 8) == before
