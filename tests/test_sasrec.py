"""SASRec baseline: learns a planted sequence pattern, saves/loads, deterministic, clear errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from conftest import make_dataset

from uqf_cli.core.errors import InputError, OptionError, OutputExistsError
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import load_tensors, write_dataset_dir
from uqf_cli.rec import backbone_module, sasrec

FAST = {"hidden": 32, "epochs": 15, "batch_size": 32, "lr": 5e-3, "patience": 15, "dropout": 0.0,
        "max_history": 8, "device": "cpu", "seed": 1}


def _planted(path: Path, n_items: int = 15, n_users: int = 80) -> Path:
    """Every user walks the items in a fixed cyclic order (item i is always followed by item i+1)."""
    rng = random.Random(0)
    items = {f"i{k}": {"title": f"thing {k}"} for k in range(n_items)}
    seqs = {}
    for u in range(n_users):
        start, length = rng.randrange(n_items), rng.randint(5, 12)
        seqs[f"u{u}"] = [f"i{(start + t) % n_items}" for t in range(length)]
    write_dataset_dir(path, items, seqs, {"source": "planted"})
    return path


def test_learns_planted_pattern_and_round_trips(tmp_path: Path) -> None:
    ds = Dataset.load(_planted(tmp_path / "ds"))
    summary = backbone_module("sasrec").train(ds, None, tmp_path / "m", FAST, False)
    assert summary["valid_ndcg@10"] > 0.9
    rec = sasrec.load(tmp_path / "m", "cpu")
    histories = [[f"i{(s + t) % 15}" for t in range(4)] for s in range(15)]
    top = rec.recommend(histories, k=3)
    correct = sum(row[0] == f"i{(s + 4) % 15}" for s, row in enumerate(top))
    assert correct >= 14
    assert all(len(r) == 3 and len(set(r)) == 3 for r in top)
    # The test split (never trained on) follows the same pattern.
    cases = ds.eval_cases("test")
    hits = sum(r[0] == c.target for r, c in zip(rec.recommend([c.history for c in cases], k=1), cases, strict=True))
    assert hits / len(cases) > 0.9

    meta = json.loads((tmp_path / "m" / "uqf_model.json").read_text())
    assert meta["backbone"] == "sasrec" and meta["dataset_fingerprint"] == ds.fingerprint
    # Round trip: the saved weights are exactly the model's, so a second load ranks identically.
    again = sasrec.load(tmp_path / "m", "cpu")
    for a, b in zip(rec.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert again.recommend(histories, k=5) == rec.recommend(histories, k=5)


def test_same_seed_same_weights_and_no_overwrite(tmp_path: Path) -> None:
    ds = Dataset.load(make_dataset(tmp_path / "ds"))
    opts = {**FAST, "epochs": 3, "dropout": 0.2}
    sasrec.train(ds, None, tmp_path / "a", opts)
    sasrec.train(ds, None, tmp_path / "b", opts)
    assert _same_file_content(tmp_path / "a", tmp_path / "b")
    with pytest.raises(OutputExistsError):
        sasrec.train(ds, None, tmp_path / "a", opts)
    sasrec.train(ds, None, tmp_path / "a", {**opts, "seed": 2}, force=True)
    assert not _same_file_content(tmp_path / "a", tmp_path / "b")


def _same_file_content(a: Path, b: Path) -> bool:
    """Same tensors and metadata (safetensors may order its metadata keys differently between writes)."""
    ta, ma = load_tensors(a / "model.safetensors")
    tb, mb = load_tensors(b / "model.safetensors")
    return ma == mb and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_windows_cover_every_target_once() -> None:
    seq = list(range(1, 12))
    windows = sasrec._windows(seq, 4)
    targets = sorted(t for w in windows for t in w[1:])
    assert targets == seq[1:]
    assert all(len(w) <= 5 for w in windows)


def test_padding_does_not_change_scores(tmp_path: Path) -> None:
    """A history ranks the same alone or in a batch with longer histories (padding is masked)."""
    torch.manual_seed(0)
    model = sasrec.SasRec(10, 16, 2, 2, 0.0, 6).eval()
    short, long_ = [3, 4], [1, 2, 3, 4, 5, 6]
    with torch.no_grad():
        alone = model.hidden_states(sasrec._left_pad([short], 6))[:, -1]
        batched = model.hidden_states(sasrec._left_pad([short, long_], 6))[:1, -1]
    assert torch.allclose(alone, batched, atol=1e-6)
    assert torch.isfinite(batched).all()


def test_bad_inputs(tmp_path: Path) -> None:
    ds = Dataset.load(make_dataset(tmp_path / "ds"))
    with pytest.raises(OptionError, match="--heads"):
        sasrec.train(ds, None, tmp_path / "x", {"hidden": 30, "heads": 4})
    sasrec.train(ds, None, tmp_path / "m", {**FAST, "epochs": 1})
    rec = sasrec.load(tmp_path / "m", "cpu")
    with pytest.raises(InputError, match="does not know"):
        rec.recommend([["no-such-item"]], k=2)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(InputError):
        sasrec.load(tmp_path / "m", "cpu")


def test_cli_train_rec_and_evaluate(tmp_path: Path) -> None:
    """`uqf train-rec --backbone sasrec` (no --sids) and `uqf evaluate` through the real commands."""
    from typer.testing import CliRunner

    from uqf_cli.cli import app

    ds = _planted(tmp_path / "ds")
    runner = CliRunner()
    res = runner.invoke(app, ["train-rec", str(ds), "-o", str(tmp_path / "m"), "--backbone", "sasrec", "--epochs",
                              "12", "--d-model", "32", "--dropout", "0", "--max-history", "8", "--lr", "0.005",
                              "--batch-size", "32", "--device", "cpu", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["backbone"] == "sasrec"
    res = runner.invoke(app, ["evaluate", str(tmp_path / "m"), str(ds), "--json", "--quiet", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metrics"]["recall@10"] > 0.9
