"""Provenance is checked, not only written: incompatible upstream files are refused or warned about.

The policy (docs/robustness.md, "Provenance checks"): refuse when the result would be wrong (another
dataset's items, a model trained on other SIDs, a dimension that cannot fit); warn when it is probably
fine but worth knowing (the same items under a newer dataset fingerprint, another text model of the same
dimension, another modality given to a quantizer).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import make_dataset
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.files import read_dataset_dir, save_embeddings


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(r, *needles: str) -> str:
    assert r.exit_code == 2, f"exit {r.exit_code}: {r.stdout}\n{r.stderr}\n{r.exception!r}"
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for n in needles:
        assert n in line, line
    return line


def warned(r, *needles: str) -> str:
    assert r.exit_code == 0, f"exit {r.exit_code}: {r.stdout}\n{r.stderr}\n{r.exception!r}"
    text = " ".join(r.stderr.split())  # rich may wrap long warnings
    assert "warning:" in text, r.stderr
    for n in needles:
        assert n in text, text
    return text


@dataclass
class Up:
    root: Path
    ds: Path
    ds_same: Path  # same catalogue, other interactions: another fingerprint, every item covered
    ds_more: Path  # a catalogue with items the embeddings/SIDs lack
    text: Path
    collab: Path
    fuser: Path
    quantizer: Path
    sids: Path
    model: Path


def _emb(path: Path, ds: Path, dim: int, modality: str, seed: int, model_name: str | None = None) -> Path:
    items, _, info = read_dataset_dir(ds)
    g = torch.Generator().manual_seed(seed)
    prov = {"stage": "embed-text", "parameters": {"model": {"name": model_name}}} if model_name else {}
    return save_embeddings(path, torch.randn(len(items), dim, generator=g), list(items), prov, modality,
                           info["fingerprint"])


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Up:
    root = tmp_path_factory.mktemp("prov")
    ds = make_dataset(root / "ds", n_items=12, seed=0)
    ds_same = make_dataset(root / "ds_same", n_items=12, seed=1)
    ds_more = make_dataset(root / "ds_more", n_items=14, seed=2)
    text = _emb(root / "text.st", ds, 16, "text", 0, "minilm")
    collab = _emb(root / "collab.st", ds, 8, "collab", 1)
    fused, fuser = root / "fused.st", root / "fuser.st"
    r = cli("fuse", "--text", text, "--collab", collab, "--dataset", ds, "-o", fused, "--epochs", "1",
            "--d-model", "16", "--out-dim", "8", "--save-model", fuser, "-q")
    assert r.exit_code == 0, r.output
    sids, quantizer = root / "sids.jsonl", root / "q.st"
    r = cli("quantize", fused, "-o", sids, "--levels", "2", "--codebook-size", "4", "--epochs", "2",
            "--save-model", quantizer, "-q")
    assert r.exit_code == 0, r.output
    model = root / "tiger"
    r = cli("train-rec", ds, "--sids", sids, "-o", model, "--epochs", "1", "--d-model", "16", "-q")
    assert r.exit_code == 0, r.output
    return Up(root, ds, ds_same, ds_more, text, collab, fuser, quantizer, sids, model)


def _other_sids(up: Up, tmp: Path) -> Path:
    """The same items with two SIDs swapped: a different SID hash."""
    lines = up.sids.read_text().splitlines()
    a, b = json.loads(lines[1]), json.loads(lines[2])
    a["codes"], b["codes"] = b["codes"], a["codes"]
    a.pop("tokens"), b.pop("tokens")
    out = tmp / "other.jsonl"
    out.write_text("\n".join([lines[0], json.dumps(a), json.dumps(b), *lines[3:]]) + "\n")
    return out


def test_evaluate_refuses_sids_other_than_the_models(up: Up, tmp_path: Path) -> None:
    refused(cli("evaluate", up.model, up.ds, "--sids", _other_sids(up, tmp_path), "--max-users", "3"), "other.jsonl")
    r = cli("evaluate", up.model, up.ds, "--sids", up.sids, "--max-users", "3", "--json")
    assert r.exit_code == 0, r.stderr


def test_evaluate_refuses_a_model_of_another_dataset(up: Up) -> None:
    refused(cli("evaluate", up.model, up.ds_same, "--max-users", "3"), "another dataset")


def test_recommend_refuses_a_model_whose_sids_copy_changed(up: Up, tmp_path: Path) -> None:
    model = tmp_path / "tiger"
    shutil.copytree(up.model, model)
    shutil.copy(_other_sids(up, tmp_path), model / "sids.jsonl")
    refused(cli("recommend", model, up.ds, "--history", "1,2"), "sids.jsonl", "hash")
    assert cli("recommend", up.model, up.ds, "--history", "1,2", "--json").exit_code == 0


def test_fuse_refuses_text_and_collab_from_different_datasets(up: Up, tmp_path: Path) -> None:
    other_collab = _emb(tmp_path / "c.st", up.ds_same, 8, "collab", 3)
    refused(cli("fuse", "--text", up.text, "--collab", other_collab, "--dataset", up.ds, "-o", tmp_path / "u.st"),
            "c.st", "same dataset")
    assert not (tmp_path / "u.st").exists()


def test_fuse_dataset_fingerprint_warns_when_covered_refuses_when_not(up: Up, tmp_path: Path) -> None:
    base = ["fuse", "--text", up.text, "--collab", up.collab, "--method", "concat"]
    warned(cli(*base, "--dataset", up.ds_same, "-o", tmp_path / "a.st"), "every item is covered")
    refused(cli(*base, "--dataset", up.ds_more, "-o", tmp_path / "b.st"), "ds_more", "have no embedding")
    assert not (tmp_path / "b.st").exists()


def test_train_rec_sids_fingerprint_warns_when_covered_refuses_when_not(up: Up, tmp_path: Path) -> None:
    warned(cli("train-rec", up.ds_same, "--sids", up.sids, "-o", tmp_path / "m", "--epochs", "1", "--d-model", "16"),
           "every item is covered")
    refused(cli("train-rec", up.ds_more, "--sids", up.sids, "-o", tmp_path / "n"), "sids.jsonl", "no SID")
    assert not (tmp_path / "n").exists()


def test_inspect_sids_fingerprint_warns_when_covered_refuses_when_not(up: Up) -> None:
    warned(cli("inspect-sids", up.sids, "--dataset", up.ds_same, "--no-tree"), "made from dataset")
    refused(cli("inspect-sids", up.sids, "--dataset", up.ds_more, "--no-tree"), "sids.jsonl", "have no SID")


def test_fuse_apply_checks_the_text_model(up: Up, tmp_path: Path) -> None:
    small = _emb(tmp_path / "small.st", up.ds, 10, "text", 4, "minilm")
    refused(cli("fuse", "--apply", up.fuser, "--text", small, "-o", tmp_path / "a.st"), "10-d", "expects 16-d")
    other = _emb(tmp_path / "e5.st", up.ds, 16, "text", 5, "e5-small")
    warned(cli("fuse", "--apply", up.fuser, "--text", other, "-o", tmp_path / "b.st"), "'e5-small'", "'minilm'")
    same = _emb(tmp_path / "mini.st", up.ds, 16, "text", 6, "minilm")
    r = cli("fuse", "--apply", up.fuser, "--text", same, "--collab", up.collab, "-o", tmp_path / "c.st")
    assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr


def test_quantize_apply_warns_on_another_modality(up: Up, tmp_path: Path) -> None:
    collab8 = _emb(tmp_path / "collab8.st", up.ds, 8, "collab", 7)
    warned(cli("quantize", collab8, "--apply", up.quantizer, "-o", tmp_path / "s.jsonl"), "'collab'", "'unified'")
    unified = _emb(tmp_path / "u8.st", up.ds, 8, "unified", 8)
    r = cli("quantize", unified, "--apply", up.quantizer, "-o", tmp_path / "t.jsonl")
    assert r.exit_code == 0 and "modality" not in r.stderr, r.stderr
