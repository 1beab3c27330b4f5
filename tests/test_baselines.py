"""Baselines: popularity ranks by train counts; LightGCN as a recommender ranks a planted user's items first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from uqf_cli.collab import GcnConfig, train_gcn
from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.data.dataset import Dataset
from uqf_cli.evaluation import evaluate
from uqf_cli.evaluation.metrics import popularity_order, top_k_from_scores
from uqf_cli.files import write_dataset_dir
from uqf_cli.rec import backbone_module, lightgcn, pop


def _counted(path: Path) -> Path:
    """Train counts: c x5, b x3, a x2, d x1, e x0 (e only appears as valid/test targets)."""
    items = {i: {"title": f"item {i}"} for i in "abcde"}
    seqs = {
        "u1": ["c", "c", "b", "a", "e", "d"],  # train c c b a | valid e | test d
        "u2": ["c", "b", "c", "e", "b"],  # train c b c | valid e | test b
        "u3": ["b", "c", "a", "d", "e", "c"],  # train b c a d | valid e | test c
    }
    write_dataset_dir(path, items, seqs, {"source": "counted"})
    return path


def test_popularity_order_counts_train_only(tmp_path: Path) -> None:
    ds = Dataset.load(_counted(tmp_path / "ds"))
    assert popularity_order(ds) == ["c", "b", "a", "d", "e"]  # e: 0 train counts, valid/test never count


def test_pop_backbone_ranks_and_masks_history(tmp_path: Path) -> None:
    ds = Dataset.load(_counted(tmp_path / "ds"))
    summary = backbone_module("pop").train(ds, None, tmp_path / "pop", {}, False)
    assert summary["top_item"] == "c" and summary["top_count"] == 5 and summary["exclude_history"] is True
    rec = pop.load(tmp_path / "pop")
    assert rec.recommend([["c", "a"], []], k=3) == [["b", "d", "e"], ["c", "b", "a"]]
    # Through uqf evaluate: test histories u1 [c c b a e] -> [d]: hit at 1; u2 [c b c e] -> [a, d]: miss (b);
    # u3 [b c a d e] -> []: miss (c is in the history, masked).
    r = evaluate(tmp_path / "pop", tmp_path / "ds", split="test", recall_ks=[1, 2], ndcg_ks=[2], beam_size=2,
                 device="cpu")
    assert r["metrics"]["recall@1"] == pytest.approx(1 / 3)
    assert r["metrics"]["recall@2"] == pytest.approx(1 / 3)
    # Unmasked variant: everyone gets [c, b]: u2 (b) at rank 2, u3 (c) at rank 1.
    backbone_module("pop").train(ds, None, tmp_path / "pop_all", {"exclude_history": False}, False)
    r = evaluate(tmp_path / "pop_all", tmp_path / "ds", split="test", recall_ks=[1, 2], ndcg_ks=[2], beam_size=2,
                 device="cpu")
    assert r["metrics"]["recall@1"] == pytest.approx(1 / 3)
    assert r["metrics"]["recall@2"] == pytest.approx(2 / 3)


def test_top_k_from_scores_masks_and_breaks_ties_by_order() -> None:
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.1], [1.0, 1.0, 1.0, 1.0]])
    top = top_k_from_scores(scores, 3, [[1], []])
    assert top.tolist() == [[0, 2, 3], [0, 1, 2]]


def _planted(path: Path) -> Path:
    """Two disjoint taste groups: users 0-19 buy only A-items, users 20-39 only B-items."""
    items = {f"{g}{k}": {"title": f"{g} thing {k}"} for g in "AB" for k in range(6)}
    seqs = {}
    for u in range(40):
        g = "A" if u < 20 else "B"
        seqs[f"u{u}"] = [f"{g}{(u + t) % 6}" for t in range(5)]
    write_dataset_dir(path, items, seqs, {"source": "planted groups"})
    return path


FAST_GCN = {"epochs": 40, "d_model": 16, "lr": 0.05, "batch_size": 256, "eval_every": 5, "patience": 0,
            "seed": 3, "device": "cpu"}


def test_lightgcn_ranks_planted_users_items_first(tmp_path: Path) -> None:
    ds = Dataset.load(_planted(tmp_path / "ds"))
    summary = backbone_module("lightgcn").train(ds, None, tmp_path / "m", FAST_GCN, False)
    assert summary["source"] == "trained" and summary["dim"] == 16
    rec = lightgcn.load(tmp_path / "m", "cpu")
    cases = ds.eval_cases("test")
    top = rec.recommend([c.history for c in cases], k=3, user_ids=[c.user_id for c in cases])
    for c, row in zip(cases, top, strict=True):
        group = c.target[0]  # a test history holds 4 of the group's 6 items: 2 unseen ones are left
        assert [i[0] for i in row] == [group, group, "AB".replace(group, "")], (c.user_id, row)
        assert not set(row) & set(c.history)  # history masked
    # Without user ids (uqf recommend with a bare history): the fold-in user ranks the same group first.
    assert all(i[0] == "B" for i in rec.recommend([["B0", "B1"]], k=4)[0])
    # Through uqf evaluate (which passes user ids): every user's target is one of the 2 unseen group items.
    r = evaluate(tmp_path / "m", tmp_path / "ds", split="test", recall_ks=[2], ndcg_ks=[2], beam_size=2, device="cpu")
    assert r["metrics"]["recall@2"] == 1.0
    meta = json.loads((tmp_path / "m" / "uqf_model.json").read_text())
    assert meta["backbone"] == "lightgcn" and meta["options"]["exclude_history"] is True


def test_lightgcn_from_collab_file_matches_train_gcn(tmp_path: Path) -> None:
    ds_dir = _planted(tmp_path / "ds")
    cfg = GcnConfig(epochs=10, dim=8, eval_every=5, patience=0, seed=1, device="cpu")
    res = train_gcn(ds_dir, tmp_path / "collab.st", cfg)
    ds = Dataset.load(ds_dir)
    lightgcn.train(ds, None, tmp_path / "m", {"collab": tmp_path / "collab.st"}, False)
    rec = lightgcn.load(tmp_path / "m", "cpu")
    u = ds.user_ids.index("u3")
    expected = (res.user_embeddings[u] @ res.item_embeddings.T)
    hist = set(ds.train_sequences()["u3"])
    order = [ds.item_ids[j] for j in torch.sort(expected, descending=True, stable=True).indices.tolist()
             if ds.item_ids[j] not in hist]
    assert rec.recommend([ds.train_sequences()["u3"]], k=3, user_ids=["u3"])[0] == order[:3]
    # uqf recommend's scores are those dot products, for the same items
    scored = rec.recommend_scored([ds.train_sequences()["u3"]], k=3, user_ids=["u3"])[0]
    assert [i for i, _ in scored] == order[:3] and rec.score_name == "dot product"
    for iid, score in scored:
        assert score == pytest.approx(float(expected[ds.item_ids.index(iid)]), abs=1e-5)


def test_baseline_errors(tmp_path: Path) -> None:
    ds = Dataset.load(_planted(tmp_path / "ds"))
    other = Dataset.load(_counted(tmp_path / "other"))
    backbone_module("pop").train(other, None, tmp_path / "pop", {}, False)
    with pytest.raises(InputError, match="not a lightgcn"):
        lightgcn.load(tmp_path / "pop")
    with pytest.raises(InputError, match="dataset"):  # a pop model of another dataset
        evaluate(tmp_path / "pop", tmp_path / "ds", device="cpu")
    cfg = GcnConfig(epochs=2, dim=4, eval_every=1, patience=0, device="cpu")
    train_gcn(tmp_path / "other", tmp_path / "other_collab.st", cfg)
    with pytest.raises(InputError, match="comes from dataset"):
        lightgcn.train(ds, None, tmp_path / "m", {"collab": tmp_path / "other_collab.st"}, False)
    with pytest.raises(OptionError, match="--epochs"):
        lightgcn.train(ds, None, tmp_path / "m", {"epochs": 0}, False)
    assert not (tmp_path / "m").exists()
