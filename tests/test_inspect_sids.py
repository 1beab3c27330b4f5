"""uqf inspect-sids: metric definitions on planted/shuffled tokenizations, tree navigation, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.evaluation.inspect_sids import (
    adjacent_pairs,
    category_purity,
    collaborative_consistency,
    cosine_consistency,
    items_per_prefix,
)
from uqf_cli.files import SidTable, read_sids, save_embeddings, write_lcrec_index, write_sids
from uqf_cli.quantize import collision_rate

runner = CliRunner()
N_GROUPS, PER = 6, 20


def planted(seed: int = 0):
    """Items in 6 tight embedding clusters; the codes name the cluster (level 1) and the item (level 2)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(N_GROUPS, 32, generator=g)
    group = np.repeat(np.arange(N_GROUPS), PER)
    emb = centres[torch.as_tensor(group)] + 0.01 * torch.randn(len(group), 32, generator=g)
    codes = np.stack([group, np.tile(np.arange(PER), N_GROUPS)], axis=1)
    return codes, emb, group


def test_cosine_consistency_planted_vs_shuffled() -> None:
    codes, emb, _ = planted()
    good = cosine_consistency(codes, emb, 1)
    assert good["lift"] > 0.99 and good["within"] > 0.99
    assert good["pairs"] == N_GROUPS * PER * (PER - 1) // 2
    # exact "random" = mean cosine over all pairs, checked by brute force
    u = emb / emb.norm(dim=1, keepdim=True)
    sim = (u @ u.T).numpy()
    iu = np.triu_indices(len(u), 1)
    assert good["random"] == pytest.approx(sim[iu].mean(), abs=1e-6)
    shuffled = codes[np.random.default_rng(0).permutation(len(codes))]
    bad = cosine_consistency(shuffled, emb, 1)
    assert abs(bad["within"] - bad["random"]) < 0.05 and abs(bad["lift"]) < 0.1


def test_category_purity_planted_vs_shuffled() -> None:
    codes, _, group = planted()
    cats = [f"Office, Cat{g}" for g in group]
    good = category_purity(codes, cats, 1)
    assert good["purity"] == 1.0 and good["random"] < 0.4
    shuffled = codes[np.random.default_rng(1).permutation(len(codes))]
    bad = category_purity(shuffled, cats, 1)
    assert abs(bad["purity"] - bad["random"]) < 0.1


def test_collaborative_consistency_planted_vs_shuffled() -> None:
    codes, _, group = planted()
    rng = np.random.default_rng(0)
    ids = [f"i{k}" for k in range(len(codes))]
    members = {g: [ids[k] for k in np.flatnonzero(group == g)] for g in range(N_GROUPS)}
    seqs = {f"u{u}": list(rng.choice(members[u % N_GROUPS], size=8)) for u in range(300)}  # users stay in a group
    pairs = adjacent_pairs(seqs, {iid: k for k, iid in enumerate(ids)})
    good = collaborative_consistency(codes, pairs, 1)
    assert good["share"] == 1.0 and good["lift"] > 4
    assert good["random"] == pytest.approx(1 / N_GROUPS, abs=0.03)
    shuffled = codes[rng.permutation(len(codes))]
    bad = collaborative_consistency(shuffled, pairs, 1)
    assert abs(bad["share"] - bad["random"]) < 0.05 and 0.7 < bad["lift"] < 1.3


def test_items_per_prefix() -> None:
    codes = np.array([[0, 0], [0, 1], [0, 1], [1, 0]])
    assert items_per_prefix(codes, 1) == {"prefixes": 2, "max": 3, "mean": 2.0, "shared": 0.75}
    assert items_per_prefix(codes, 2)["max"] == 2
    assert items_per_prefix(codes, 2)["shared"] == 0.5 == collision_rate(codes)


# ---- CLI -----------------------------------------------------------------------------------


def _write_table(path: Path, codes: np.ndarray, ids: list[str]) -> Path:
    table = SidTable(item_ids=ids, codes=codes, codebook_sizes=[int(codes[:, k].max()) + 1
                                                                   for k in range(codes.shape[1])])
    write_sids(path, table)
    return path


@pytest.fixture
def office_like(tmp_path: Path, tiny_ds: Path) -> tuple[Path, Path, Path]:
    """SIDs for the tiny dataset (pens under code 0, paper under code 1) and text embeddings."""
    from uqf_cli.data.dataset import Dataset

    ds = Dataset.load(tiny_ds)
    codes = np.array([[int(i) % 2, int(i) // 2 % 3, int(i)] for i in ds.item_ids])
    sids = _write_table(tmp_path / "s.jsonl", codes, ds.item_ids)
    emb = torch.randn(len(ds.item_ids), 8, generator=torch.Generator().manual_seed(0))
    text = tmp_path / "t.st"
    save_embeddings(text, emb, ds.item_ids, {}, "text", ds.fingerprint)
    return sids, tiny_ds, text


def test_cli_tree_summary_and_json(office_like: tuple[Path, Path, Path]) -> None:
    sids, ds, text = office_like
    r = runner.invoke(app, ["inspect-sids", str(sids), "--dataset", str(ds), "--text", str(text)])
    assert r.exit_code == 0, r.output
    assert "<a_1>" in r.output and "Pens" in r.output and "category purity depth 1" in r.output
    assert "\x1b[" not in r.output  # no colour in pipes
    assert "depth-1 prefix (max / mean / shared)" in r.output
    r = runner.invoke(app, ["inspect-sids", str(sids), "--dataset", str(ds), "--text", str(text), "--json"])
    m = json.loads(r.stdout)["metrics"]
    assert m["category_purity"]["1"]["purity"] == 1.0  # code 0 = pens, code 1 = paper
    # level 1 has two codes for all items (every item shares it); level 3 is the item id (no one does)
    assert m["items_per_prefix"]["1"]["shared"] == 1.0 and m["items_per_prefix"]["3"]["shared"] == 0.0
    assert m["per_level"][0]["used"] == 2 and "semantic_cosine" in m and "collab_adjacency" in m


def test_cli_prefix_and_item(office_like: tuple[Path, Path, Path]) -> None:
    sids, ds, _ = office_like
    r = runner.invoke(app, ["inspect-sids", str(sids), "--dataset", str(ds), "--prefix", "1,0", "--no-tree"])
    assert r.exit_code == 0
    r = runner.invoke(app, ["inspect-sids", str(sids), "--dataset", str(ds), "--prefix", "1,0"])
    assert r.exit_code == 0 and "Item 1 pen" in r.output and "Item 2 paper" not in r.output
    # the tree's own token form names the same prefix (copy-paste from the output above works)
    for form in ("<a_1><b_0>", "<a_1> <b_0>", "1 0"):
        same = runner.invoke(app, ["inspect-sids", str(sids), "--dataset", str(ds), "--prefix", form])
        assert same.exit_code == 0 and same.output == r.output, form
    assert "<a_1><b_0>" in r.output
    r = runner.invoke(app, ["inspect-sids", str(sids), "--dataset", str(ds), "--item", "3", "--json"])
    info = json.loads(r.stdout)["item"]
    assert info["codes"] == [1, 1, 3] and "1" in info["siblings"]["1"]


def test_cli_compare_and_lcrec_index(office_like: tuple[Path, Path, Path], tmp_path: Path) -> None:
    sids, _, _ = office_like
    table = read_sids(sids)
    index = tmp_path / "x.index.json"
    write_lcrec_index(index, table)
    r = runner.invoke(app, ["inspect-sids", str(index), "--compare", str(sids), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["metrics"]["items"] == out["compare"]["items"] == len(table.item_ids)
    r = runner.invoke(app, ["inspect-sids", str(index), "--compare", str(sids), "--no-tree"])
    assert "x.index.json" in r.output and "s.jsonl" in r.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--prefix", "7"], "no item has the prefix 7"), (["--item", "nope"], "unknown item"),
     (["--prefix", "a,b"], "--prefix"), (["--prefix", "<b_1>"], "starts at level a"),
     (["--prefix", "<a_1>junk"], "<a_12><b_3>"), (["--prefix", "<a_x>"], "--prefix")],
)
def test_cli_unknown_prefix_or_item(office_like: tuple[Path, Path, Path], args: list[str], needle: str) -> None:
    sids, ds, _ = office_like
    r = runner.invoke(app, ["inspect-sids", str(sids), "--dataset", str(ds), *args])
    assert r.exit_code == 2 and needle in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("lines", "needle"),
    [(['{"item_id": "a", "codes": [1, 2]}', '{"item_id": "b", "codes": [1]}'], "ragged"),
     (['{"item_id": "a", "codes": [1, 2]}', '{"item_id": "a", "codes": [1, 3]}'], "duplicate item id")],
)
def test_cli_bad_sids_file(tmp_path: Path, lines: list[str], needle: str) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(lines) + "\n")
    r = runner.invoke(app, ["inspect-sids", str(p)])
    assert r.exit_code == 2 and needle in r.output and len(r.output.strip().splitlines()) == 1


def test_adjacency_lift_floor() -> None:
    """A lift over fewer than one expected shared pair is withheld (None + a note), not a huge number."""
    n = 200
    codes = np.stack([np.arange(n) // 2, np.arange(n)], axis=1)  # depth 1: pairs of items
    rng = np.random.default_rng(0)
    spread = rng.choice(n, size=(30, 2), replace=False)  # 30 pairs over 60 distinct items
    pairs = np.concatenate([spread, [(0, 1), (2, 3)]])  # two of them inside a depth-1 prefix
    low = collaborative_consistency(codes, pairs, 1)
    assert low["share"] > 0 and low["expected_shared_pairs"] < 1
    assert low["lift"] is None and "below the floor" in low["lift_note"]
    many = np.tile(pairs, (200, 1))  # the same pairs seen often: the expectation clears the floor
    high = collaborative_consistency(codes, many, 1)
    assert high["expected_shared_pairs"] >= 1 and high["lift"] == pytest.approx(high["share"] / high["random"])
    assert "lift_note" not in high


def test_cli_lift_floor_in_table_and_json(tmp_path: Path) -> None:
    from tests.conftest import make_dataset

    ds = make_dataset(tmp_path / "ds", n_users=3, n_items=40)
    from uqf_cli.data.dataset import Dataset

    ids = Dataset.load(ds).item_ids
    codes = np.array([[k % 2, k] for k in range(len(ids))])
    sids = _write_table(tmp_path / "s.jsonl", codes, ids)
    r = runner.invoke(app, ["inspect-sids", str(sids), "--dataset", str(ds), "--no-tree", "--json"])
    adj = json.loads(r.stdout)["metrics"]["collab_adjacency"]["1"]
    assert adj["expected_shared_pairs"] >= 1 and isinstance(adj["lift"], float)  # two big prefixes: fine
    codes = np.array([[k // 2, k] for k in range(len(ids))])  # 20 prefixes of 2 items, few train pairs
    sids = _write_table(tmp_path / "s2.jsonl", codes, ids)
    r = runner.invoke(app, ["inspect-sids", str(sids), "--dataset", str(ds), "--no-tree", "--json"])
    adj = json.loads(r.stdout)["metrics"]["collab_adjacency"]["1"]
    assert adj["lift"] is None and adj["expected_shared_pairs"] < 1 and "floor" in adj["lift_note"]
    r = runner.invoke(app, ["inspect-sids", str(sids), "--dataset", str(ds), "--no-tree"], env={"COLUMNS": "250"})
    assert r.exit_code == 0 and "n/a [1]" in r.output and "[1] depth 1: n/a: the random expectation" in r.output
