"""uqf quantize: residual structure, k-means, dedup, LC-Rec export, apply, determinism, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.files import make_provenance, read_sids, save_embeddings
from uqf_cli.quantize import (
    QuantizeConfig,
    collision_rate,
    dedup_by_level,
    dedup_by_sinkhorn,
    fit_quantizer,
    kmeans,
    level_stats,
    sinkhorn_assign,
)

runner = CliRunner()


def hierarchical_clusters(n_top: int = 4, n_sub: int = 4, per: int = 12, dim: int = 16, seed: int = 0):
    """Items in ``n_top`` far-apart clusters, each split into ``n_sub`` closer sub-clusters.

    The sub-cluster offsets are shared by all top clusters: the structure residual quantization models
    (level 1 picks the top cluster, level 2 the offset)."""
    g = torch.Generator().manual_seed(seed)
    top = torch.randn(n_top, dim, generator=g) * 10
    offsets = torch.randn(n_sub, dim, generator=g) * 2
    rows, labels = [], []
    for t in range(n_top):
        sub = top[t] + offsets
        for s in range(n_sub):
            rows.append(sub[s] + torch.randn(per, dim, generator=g) * 0.2)
            labels += [(t, s)] * per
    return torch.cat(rows), labels


def write_emb(path: Path, emb: torch.Tensor) -> Path:
    ids = [f"i{k}" for k in range(len(emb))]
    save_embeddings(path, emb, ids, make_provenance("test", {}), "text", dataset_fingerprint="fp")
    return path


def _purity(codes: np.ndarray, labels: list[int]) -> float:
    """Share of items whose code's majority label is their own label (1 = codes recover the labels)."""
    hit = 0
    for c in np.unique(codes):
        members = [labels[i] for i in np.flatnonzero(codes == c)]
        hit += max(members.count(x) for x in set(members))
    return hit / len(labels)


def test_kmeans_is_deterministic_and_finds_clusters() -> None:
    x, labels = hierarchical_clusters()
    top = [t for t, _ in labels]
    c1, a1 = kmeans(x, 4, 30, torch.Generator().manual_seed(3))
    c2, a2 = kmeans(x, 4, 30, torch.Generator().manual_seed(3))
    assert torch.equal(c1, c2) and torch.equal(a1, a2)
    assert _purity(a1.numpy(), top) == 1.0


@pytest.mark.parametrize("method", ["rqkmeans", "rqvae"])
def test_level1_codes_recover_top_clusters(method: str) -> None:
    x, labels = hierarchical_clusters()
    cfg = QuantizeConfig(method=method, levels=2, codebook_sizes=[4, 4], code_dim=8, hidden=[32], epochs=60,
                         warmup_epochs=30, lr=3e-3)
    model, _ = fit_quantizer(x, cfg, torch.device("cpu"))
    from uqf_cli.quantize import encode

    codes, errors, _ = encode(model, x)
    top = [t for t, _ in labels]
    assert _purity(codes[:, 0], top) == 1.0  # every level-1 code holds one top cluster
    assert len(np.unique(codes[:, 0])) == 4
    fine = [t * 4 + s for t, s in labels]
    if method == "rqkmeans":  # on linear residual structure, level 2 recovers the shared sub-cluster offsets
        assert _purity(codes[:, 0] * 4 + codes[:, 1], fine) > 0.9 > _purity(codes[:, 0], fine)
    assert errors["recon_rel"] < 0.2


def test_sinkhorn_balances_assignment() -> None:
    dist = torch.zeros(40, 4)
    dist[:, 1:] = 1.0  # plain argmin would send everything to code 0
    codes = sinkhorn_assign(dist + torch.rand(40, 4, generator=torch.Generator().manual_seed(0)) * 0.01, 0.01)
    assert np.bincount(codes.numpy(), minlength=4).min() >= 5


def test_dedup_level_and_sinkhorn_make_sids_unique() -> None:
    codes = np.array([[0, 1], [0, 1], [0, 1], [2, 3], [2, 3], [1, 0]])
    assert collision_rate(codes) == pytest.approx(5 / 6)
    by_level = dedup_by_level(codes)
    assert by_level.shape == (6, 3) and collision_rate(by_level) == 0.0
    assert by_level[:, 2].tolist() == [0, 1, 2, 0, 1, 0]
    assert (by_level[:, :2] == codes).all()  # the semantic part is untouched
    res = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    book = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    cfg = QuantizeConfig(levels=2, codebook_sizes=[3, 5], max_dedup_rounds=3)
    unique, _ = dedup_by_sinkhorn(codes, res, book, cfg)
    assert collision_rate(unique) == 0.0
    assert (unique[:, :-1] == codes[:, :-1]).all()  # only the last code changes


def test_level_stats() -> None:
    codes = np.array([[0, 0], [1, 0], [2, 0], [3, 0]])
    s = level_stats(codes, [8, 4])
    assert s[0]["utilisation"] == 0.5 and s[0]["perplexity"] == pytest.approx(4.0)
    assert s[1]["used"] == 1 and s[1]["perplexity"] == pytest.approx(1.0)


def _quantize_args(emb: Path, out: Path, *extra: str) -> list[str]:
    return ["quantize", str(emb), "-o", str(out), "--levels", "2", "--codebook-size", "8", "--code-dim", "8",
            "--hidden", "32", "--epochs", "20", "--warmup-epochs", "10", "--quiet", *extra]


def test_cli_unique_sids_lcrec_roundtrip_and_determinism(tmp_path: Path) -> None:
    x, _ = hierarchical_clusters(per=6)
    emb = write_emb(tmp_path / "e.st", x)
    out = tmp_path / "sids.jsonl"
    r = runner.invoke(app, _quantize_args(emb, out, "--format", "lcrec", "--json"))
    assert r.exit_code == 0, r.output
    stats = json.loads(r.stdout)
    table = read_sids(out)
    assert collision_rate(table.codes) == 0.0 and stats["final_collision_rate"] == 0.0
    assert table.dataset_fingerprint == "fp" and table.stats["per_level"][0]["codebook_size"] == 8
    assert table.provenance["parameters"]["method"] == "rqvae"
    index = read_sids(tmp_path / "sids.index.json")
    assert index.as_dict() == table.as_dict()
    out2 = tmp_path / "sids2.jsonl"
    r = runner.invoke(app, _quantize_args(emb, out2, "--format", "lcrec"))
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == out2.read_bytes()
    out3 = tmp_path / "sids3.jsonl"
    assert runner.invoke(app, _quantize_args(emb, out3, "--seed", "7")).exit_code == 0
    assert out.read_bytes() != out3.read_bytes()


def test_cli_rqkmeans_sinkhorn_dedup(tmp_path: Path) -> None:
    x, _ = hierarchical_clusters(per=6)
    emb = write_emb(tmp_path / "e.st", x)
    out = tmp_path / "s.jsonl"
    r = runner.invoke(app, _quantize_args(emb, out, "--method", "rqkmeans", "--dedup", "sinkhorn",
                                          "--sinkhorn-eps", "0.01", "--codebook-size", "8,32", "--json"))
    assert r.exit_code == 0, r.output
    table = read_sids(out)
    assert table.levels == 2 and collision_rate(table.codes) == 0.0


def test_apply_saved_quantizer(tmp_path: Path) -> None:
    x, _ = hierarchical_clusters(per=6)
    emb = write_emb(tmp_path / "e.st", x)
    out, model = tmp_path / "s.jsonl", tmp_path / "q.st"
    assert runner.invoke(app, _quantize_args(emb, out, "--save-model", str(model))).exit_code == 0
    new = x[:5] + 0.01  # near-copies of known items: they land on known SIDs
    new_path = tmp_path / "new.st"
    save_embeddings(new_path, new, [f"n{k}" for k in range(5)], make_provenance("t", {}), "text")
    r = runner.invoke(app, ["quantize", "--apply", str(model), str(new_path), "-o", str(tmp_path / "n.jsonl"),
                            "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    stats = json.loads(r.stdout)
    assert stats["collisions_with_existing"] >= 1  # reported
    old, fresh = read_sids(out), read_sids(tmp_path / "n.jsonl")
    assert fresh.levels == old.levels
    assert not set(old.as_dict().values()) & set(fresh.as_dict().values())  # made unique against old items
    raw_old = {k: v[:2] for k, v in old.as_dict().items()}
    assert [v[:2] for v in fresh.as_dict().values()] == [raw_old[f"i{k}"] for k in range(5)]


@pytest.mark.parametrize(
    ("make", "args", "needle"),
    [
        ("nan", [], "NaN"),
        ("ok", ["--codebook-size", "64"], "try --codebook-size"),
        ("ok", ["--method", "pq"], "--method"),
        ("ok", ["--codebook-size", "4,4,4"], "--codebook-size"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path: Path, make: str, args: list[str], needle: str) -> None:
    x, _ = hierarchical_clusters(n_top=2, n_sub=2, per=5)
    if make == "nan":
        x[3, 0] = float("nan")
    emb = tmp_path / "e.st"
    save_embeddings(emb, x, [f"i{k}" for k in range(len(x))], {}, "text")
    out = tmp_path / "s.jsonl"
    r = runner.invoke(app, ["quantize", str(emb), "-o", str(out), "--levels", "2", "--quiet", *args])
    assert r.exit_code == 2, r.output
    assert needle in r.output and len(r.output.strip().splitlines()) == 1
    assert not out.exists()


def test_existing_output_needs_force(tmp_path: Path) -> None:
    x, _ = hierarchical_clusters(per=6)
    emb = write_emb(tmp_path / "e.st", x)
    out = tmp_path / "s.jsonl"
    out.write_text("keep")
    r = runner.invoke(app, _quantize_args(emb, out))
    assert r.exit_code == 2 and "--force" in r.output
    assert out.read_text() == "keep"


def _plan_argmax(dist: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """Reference: the Sinkhorn plan itself (no biases), normalised over codes then items, argmax per item."""
    d = dist.double()
    log_q = -(d - d.min()) / (d.max() - d.min()) / eps
    n, k = d.shape
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, 0, keepdim=True) - np.log(k)
        log_q = log_q - torch.logsumexp(log_q, 1, keepdim=True) - np.log(n)
    return log_q.argmax(1)


def test_code_bias_gives_the_sinkhorn_assignment_item_by_item() -> None:
    from uqf_cli.quantize import sinkhorn_code_bias

    g = torch.Generator().manual_seed(0)
    dist = torch.rand(300, 12, generator=g) + torch.linspace(0, 0.5, 12)  # later codes are farther: argmin skews
    bias = sinkhorn_code_bias(dist, 0.01, 100)
    batch = (dist - bias).argmin(1)
    assert torch.equal(batch, _plan_argmax(dist, 0.01, 100))
    one_by_one = torch.stack([(dist[i : i + 1] - bias).argmin(1)[0] for i in range(len(dist))])
    assert torch.equal(batch, one_by_one)  # no batch needed once the biases are known
    counts = np.bincount(batch.numpy(), minlength=12)
    assert counts.min() >= 15 and np.bincount(dist.argmin(1).numpy(), minlength=12).min() < 15


def test_balanced_levels_spread_hub_codes_without_costing_reconstruction() -> None:
    from uqf_cli.quantize import encode

    x = torch.randn(600, 64, generator=torch.Generator().manual_seed(0))  # no structure: residual hubs form
    out = {}
    for eps in (None, 0.001):
        cfg = QuantizeConfig(method="rqkmeans", levels=3, codebook_sizes=[16, 16, 16], sinkhorn_eps=eps)
        model, history = fit_quantizer(x, cfg, torch.device("cpu"))
        codes, errors, _ = encode(model, x)
        out[eps] = (codes, errors["recon_rel"], history)
    plain, balanced = out[None], out[0.001]
    assert balanced[2]["balanced_levels"] == [2, 3] and plain[2]["balanced_levels"] == []
    assert (plain[0][:, 0] == balanced[0][:, 0]).all()  # level 1 is not balanced by default
    for level in (1, 2):
        assert level_stats(balanced[0], [16] * 3)[level]["perplexity"] > level_stats(plain[0], [16] * 3)[level][
            "perplexity"] + 1
    assert collision_rate(balanced[0]) < collision_rate(plain[0])
    assert balanced[1] < plain[1] + 0.02


def test_apply_reproduces_the_balanced_codes_of_fitted_items(tmp_path: Path) -> None:
    x, _ = hierarchical_clusters(per=6)
    emb = write_emb(tmp_path / "e.st", x)
    out, model = tmp_path / "s.jsonl", tmp_path / "q.st"
    r = runner.invoke(app, _quantize_args(emb, out, "--save-model", str(model), "--json"))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["training"]["balanced_levels"] == [2]
    same = tmp_path / "same.st"  # the fitted vectors under new ids
    save_embeddings(same, x, [f"n{k}" for k in range(len(x))], make_provenance("t", {}), "text")
    r = runner.invoke(app, ["quantize", "--apply", str(model), str(same), "-o", str(tmp_path / "n.jsonl"), "--quiet"])
    assert r.exit_code == 0, r.output
    fitted, applied = read_sids(out), read_sids(tmp_path / "n.jsonl")
    assert (applied.codes[:, :2] == fitted.codes[:, :2]).all()


def test_fit_sample_codes_every_item_deterministically() -> None:
    from uqf_cli.quantize import encode

    x, _ = hierarchical_clusters(per=12)
    cfg = QuantizeConfig(method="rqkmeans", levels=2, codebook_sizes=[4, 4], fit_sample=64)
    m1, h1 = fit_quantizer(x, cfg, torch.device("cpu"))
    m2, _ = fit_quantizer(x, cfg, torch.device("cpu"))
    c1, _, _ = encode(m1, x, batch_size=50)  # chunked coding of all 192 items
    c2, _, _ = encode(m2, x)
    assert h1["fit_items"] == 64 and len(c1) == len(x) and (c1 == c2).all()
    assert (encode(m1, x)[0] == c1).all()  # chunking does not change codes
    assert len(np.unique(c1[:, 0])) == 4  # items outside the sample use the whole level-1 codebook too


def test_sinkhorn_levels_option() -> None:
    from uqf_cli.core.errors import OptionError
    from uqf_cli.quantize import parse_sinkhorn_levels

    assert parse_sinkhorn_levels("rest", 3) == [1, 2] and parse_sinkhorn_levels("rest", 1) == []
    assert parse_sinkhorn_levels("last", 3) == [2] and parse_sinkhorn_levels("all", 2) == [0, 1]
    assert parse_sinkhorn_levels("3,1", 3) == [0, 2]
    for bad in ("4", "0", "x", ""):
        with pytest.raises(OptionError, match="--sinkhorn-levels"):
            parse_sinkhorn_levels(bad, 3)


def test_auto_codebook_size_is_the_default_and_sized_from_the_catalogue(tmp_path: Path) -> None:
    """--codebook-size auto (the default): the smallest power of two K with K*K >= items, on every level."""
    from uqf_cli.quantize.config import auto_codebook_size, parse_codebook_sizes

    assert [auto_codebook_size(n) for n in (1, 4, 5, 2420, 4096, 4097, 1_000_000)] == [2, 2, 4, 64, 64, 128, 1024]
    assert QuantizeConfig().codebook_sizes is None and parse_codebook_sizes("auto", 3) is None
    x, _ = hierarchical_clusters(per=6)  # 96 items -> K = 16
    out = tmp_path / "sids.jsonl"
    r = runner.invoke(app, ["quantize", str(write_emb(tmp_path / "e.st", x)), "-o", str(out), "--epochs", "2",
                            "--warmup-epochs", "1", "--hidden", "16", "--code-dim", "4", "-q"])
    assert r.exit_code == 0, r.output
    table = read_sids(out)
    assert table.codebook_sizes[:3] == [16, 16, 16]
    assert table.provenance["parameters"]["codebook_sizes"] == [16, 16, 16]
