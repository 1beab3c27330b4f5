"""uqf train-gcn: LightGCN learns structure, never sees valid/test edges, is deterministic, lists cold items."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.collab import (
    GcnConfig,
    ValidationSet,
    build_train_graph,
    build_validation_set,
    normalized_adjacency,
    rank_metrics,
    sample_negatives,
    train_gcn,
    train_lightgcn,
)
from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import load_embeddings, write_dataset_dir

runner = CliRunner()
FAST = {"dim": 16, "batch_size": 256, "lr": 0.05, "eval_every": 1, "device": "cpu"}


def write_ds(path: Path, sequences: dict[str, list[str]], n_items: int) -> Path:
    items = {str(i): {"title": f"item {i}"} for i in range(n_items)}
    write_dataset_dir(path, items, sequences, {"source": "synthetic"})
    return path


def community_ds(path: Path, communities: int = 3, items_per: int = 8, users_per: int = 30, seed: int = 0) -> Path:
    """Each user buys 6 distinct items, all from one community: the planted structure."""
    rng = random.Random(seed)
    seqs = {}
    for c in range(communities):
        pool = [str(c * items_per + j) for j in range(items_per)]
        for u in range(users_per):
            seqs[f"c{c}u{u}"] = rng.sample(pool, 6)
    return write_ds(path, seqs, communities * items_per)


def unique_ds(path: Path, n_users: int = 40, n_items: int = 30, seed: int = 1) -> Path:
    """Sequences without repeats, so a (user, valid item) pair can only be an edge through a leak."""
    rng = random.Random(seed)
    seqs = {f"u{u}": rng.sample([str(i) for i in range(n_items)], rng.randint(3, 9)) for u in range(n_users)}
    return write_ds(path, seqs, n_items)


# ---- learning ---------------------------------------------------------------------------------


def test_planted_communities_end_closer_together(tmp_path: Path) -> None:
    ds = Dataset.load(community_ds(tmp_path / "ds"))
    res = train_lightgcn(ds, GcnConfig(epochs=40, patience=0, **FAST))
    emb = torch.nn.functional.normalize(res.item_embeddings, dim=1)
    community = torch.tensor([int(i) // 8 for i in res.item_ids])
    sim = emb @ emb.T
    same = community[:, None] == community[None, :]
    off_diag = ~torch.eye(len(community), dtype=torch.bool)
    within = sim[same & off_diag].mean()
    across = sim[~same].mean()
    assert within > across + 0.3, (float(within), float(across))
    # every item's nearest other item is in its own community
    sim.fill_diagonal_(-2.0)
    assert bool((community[sim.argmax(1)] == community).all())
    assert res.metrics["valid_recall@20"] > 0.9  # 8 items per community: the valid item is always in the top 20


# ---- no leaks -----------------------------------------------------------------------------------


def _edge_pairs(ds: Dataset, include_valid: bool = False) -> set[tuple[str, str]]:
    graph = build_train_graph(ds, include_valid)
    adj = normalized_adjacency(graph, torch.device("cpu")).to_sparse_coo().coalesce()
    rows, cols = adj.indices()
    n_u = graph.num_users
    pairs = set()
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        if r < n_u:  # user -> item half; the other half must mirror it
            pairs.add((ds.user_ids[r], ds.item_ids[c - n_u]))
    mirrored = {(ds.user_ids[c], ds.item_ids[r - n_u]) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
                if r >= n_u}
    assert pairs == mirrored
    return pairs


def test_valid_and_test_items_are_never_edges(tmp_path: Path) -> None:
    ds = Dataset.load(unique_ds(tmp_path / "ds"))
    pairs = _edge_pairs(ds)
    valid = {(c.user_id, c.target) for c in ds.eval_cases("valid")}
    test = {(c.user_id, c.target) for c in ds.eval_cases("test")}
    assert valid and test
    assert not (pairs & valid)
    assert not (pairs & test)
    expected = {(u, i) for u, seq in ds.train_sequences().items() for i in seq}
    assert pairs == expected  # the graph is exactly the train part, nothing dropped either
    # final fit: valid items join, test items still never do
    pairs_v = _edge_pairs(ds, include_valid=True)
    assert valid <= pairs_v
    assert not (pairs_v & test)


def test_validation_masks_train_items_only(tmp_path: Path) -> None:
    ds = Dataset.load(unique_ds(tmp_path / "ds"))
    graph = build_train_graph(ds)
    val = build_validation_set(ds, graph)
    masked = {(ds.user_ids[int(val.users[r])], ds.item_ids[int(i)])
              for r, i in zip(val.mask_rows.tolist(), val.mask_items.tolist(), strict=True)}
    targets = {(ds.user_ids[int(u)], ds.item_ids[int(t)]) for u, t in zip(val.users, val.targets, strict=True)}
    assert masked and not (masked & targets)


def test_negatives_are_never_positives(tmp_path: Path) -> None:
    ds = Dataset.load(unique_ds(tmp_path / "ds", n_items=12))  # dense: many first draws collide
    graph = build_train_graph(ds)
    gen = torch.Generator().manual_seed(0)
    users = graph.users.repeat(50)
    neg = sample_negatives(users, graph, gen)
    positives = set(zip(graph.users.tolist(), graph.items.tolist(), strict=True))
    assert not any((u, n) in positives for u, n in zip(users.tolist(), neg.tolist(), strict=True))
    assert len(set(neg.tolist())) > 6  # uniform over the non-positives, not one fixed item


# ---- evaluation ---------------------------------------------------------------------------------


def test_rank_metrics_match_a_topk_reference() -> None:
    gen = torch.Generator().manual_seed(3)
    n_users, n_items, k = 50, 40, 5
    user_emb, item_emb = torch.randn(n_users, 8, generator=gen), torch.randn(n_items, 8, generator=gen)
    targets = torch.randint(0, n_items, (n_users,), generator=gen)
    mask = torch.rand(n_users, n_items, generator=gen) < 0.2
    mask[torch.arange(n_users), targets] = False
    mask[:3, :] = False
    mask[0, targets[0]] = True  # a masked target can never be a hit
    rows, items = mask.nonzero(as_tuple=True)
    val = ValidationSet(torch.arange(n_users), targets, rows, items)
    recall, ndcg = rank_metrics(user_emb, item_emb, val, k)
    scores = user_emb @ item_emb.T
    scores[mask] = -float("inf")
    top = scores.topk(k, dim=1).indices
    hit = top == targets[:, None]
    ref_recall = hit.any(1).float().mean()
    ref_ndcg = (hit.any(1).float() / torch.log2(hit.float().argmax(1).float() + 2)).mean()
    assert 0 < recall < 1
    assert recall == pytest.approx(float(ref_recall))
    assert ndcg == pytest.approx(float(ref_ndcg))


def test_best_epoch_is_kept_and_reported(tmp_path: Path) -> None:
    ds = Dataset.load(unique_ds(tmp_path / "ds"))
    res = train_lightgcn(ds, GcnConfig(epochs=12, patience=3, **FAST))
    recalls = {r.epoch: r.recall for r in res.curve}
    assert res.metrics["valid_recall@20"] == max(recalls.values())
    assert recalls[res.best_epoch] == res.metrics["valid_recall@20"]
    assert res.epochs_run == res.curve[-1].epoch


# ---- determinism, cold items, the file ------------------------------------------------------


def test_same_seed_same_file_and_other_seed_differs(tmp_path: Path) -> None:
    ds_dir = unique_ds(tmp_path / "ds")
    cfg = GcnConfig(epochs=4, **FAST)
    train_gcn(ds_dir, tmp_path / "a.st", cfg)
    train_gcn(ds_dir, tmp_path / "b.st", cfg)
    a, b = load_embeddings(tmp_path / "a.st"), load_embeddings(tmp_path / "b.st")
    # (not a byte comparison: safetensors writes its metadata keys in hash-map order)
    assert torch.equal(a.embeddings, b.embeddings)
    assert torch.equal(a.extra_tensors["user_embeddings"], b.extra_tensors["user_embeddings"])
    assert a.provenance == b.provenance and a.extra_metadata == b.extra_metadata
    train_gcn(ds_dir, tmp_path / "c.st", GcnConfig(epochs=4, **FAST, seed=1))
    c = load_embeddings(tmp_path / "c.st")
    assert not torch.equal(a.embeddings, c.embeddings)


def test_cold_items_are_listed_and_zero(tmp_path: Path) -> None:
    # item 9 is only ever a test target and item 8 only a valid target: no train edge for either
    seqs = {f"u{u}": [str((u + j) % 8) for j in range(4)] for u in range(16)}
    seqs["u0"] = ["0", "1", "8", "9"]
    ds_dir = write_ds(tmp_path / "ds", seqs, 10)
    out = tmp_path / "collab.st"
    res = train_gcn(ds_dir, out, GcnConfig(epochs=3, **FAST))
    assert res.cold_item_ids == ["8", "9"]
    f = load_embeddings(out)
    assert f.extra_metadata["cold_item_ids"] == ["8", "9"]
    assert torch.count_nonzero(f.rows_for(["8", "9"])) == 0
    assert bool((f.rows_for([str(i) for i in range(8)]).abs().sum(1) > 0).all())


def test_cli_writes_self_describing_file(tmp_path: Path, tiny_ds: Path) -> None:
    out = tmp_path / "collab.st"
    r = runner.invoke(app, ["train-gcn", str(tiny_ds), "-o", str(out), "--epochs", "3", "--dim", "8",
                            "--device", "cpu", "--json", "-q"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["epochs_run"] == 3 and "valid_recall@20" in summary and "valid_ndcg@20" in summary
    f = load_embeddings(out)
    ds = Dataset.load(tiny_ds)
    assert f.modality == "collab"
    assert f.item_ids == ds.item_ids and f.embeddings.shape == (len(ds.item_ids), 8)
    assert f.dataset_fingerprint == ds.fingerprint
    assert f.extra_metadata["user_ids"] == ds.user_ids
    assert f.extra_tensors["user_embeddings"].shape == (len(ds.user_ids), 8)
    prov = f.provenance
    assert prov["stage"] == "train-gcn" and prov["parameters"]["dim"] == 8
    assert prov["metrics"]["valid_recall@20"] == pytest.approx(summary["valid_recall@20"])
    assert [row["epoch"] for row in prov["curve"]] == [2, 3]
    assert prov["inputs"]["dataset"]["sha256"]


def test_include_valid_trains_fixed_epochs_without_validation(tmp_path: Path, tiny_ds: Path) -> None:
    res = train_gcn(tiny_ds, tmp_path / "final.st", GcnConfig(epochs=3, include_valid=True, **FAST))
    assert res.epochs_run == 3 and res.best_epoch == 3 and res.metrics == {}
    assert all(r.recall is None for r in res.curve)
    assert load_embeddings(tmp_path / "final.st").provenance["parameters"]["include_valid"] is True


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [("--dim", "0"), ("--layers", "0"), ("--epochs", "-1"), ("--batch-size", "0"), ("--lr", "0"),
     ("--eval-every", "0")],
)
def test_bad_options_fail_cleanly(tmp_path: Path, tiny_ds: Path, option: str, value: str) -> None:
    out = tmp_path / "collab.st"
    r = runner.invoke(app, ["train-gcn", str(tiny_ds), "-o", str(out), option, value])
    assert r.exit_code == 2
    assert r.output.strip().startswith(f"error: {option}:")
    assert "Traceback" not in r.output
    assert not out.exists() and list(tmp_path.iterdir()) == [tiny_ds]


def test_missing_dataset_existing_output_and_bad_device(tmp_path: Path, tiny_ds: Path) -> None:
    out = tmp_path / "collab.st"
    r = runner.invoke(app, ["train-gcn", str(tmp_path / "nope"), "-o", str(out)])
    assert r.exit_code == 2 and "nope: dataset directory not found" in r.output
    out.write_text("keep me")
    r = runner.invoke(app, ["train-gcn", str(tiny_ds), "-o", str(out)])
    assert r.exit_code == 2 and "output exists" in r.output
    assert out.read_text() == "keep me"
    r = runner.invoke(app, ["train-gcn", str(tiny_ds), "-o", str(tmp_path / "x.st"), "--device", "nonsense"])
    assert r.exit_code == 2 and "--device" in r.output
    assert not (tmp_path / "x.st").exists()


def test_dataset_without_train_interactions_is_an_input_error() -> None:
    ds = Dataset({"a": {"title": "a"}}, {}, {}, Path("empty-ds"))
    with pytest.raises(InputError, match="no train interactions"):
        train_lightgcn(ds, GcnConfig(epochs=1, **FAST))


def test_user_who_bought_every_item_is_an_input_error(tmp_path: Path) -> None:
    seqs = {"u0": ["0", "1", "2", "0", "1"], "u1": ["0", "1", "2"]}  # u0's train part is every item
    ds = Dataset.load(write_ds(tmp_path / "ds", seqs, 3))
    with pytest.raises(InputError, match="interacted with every item"):
        train_lightgcn(ds, GcnConfig(epochs=1, **FAST))


def test_config_validation_names_the_option() -> None:
    with pytest.raises(OptionError, match="--layers"):
        GcnConfig(layers=-2).validate()
    with pytest.raises(OptionError, match="--reg"):
        GcnConfig(reg=-1.0).validate()
