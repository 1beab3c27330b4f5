"""Two fingerprints: text embeddings are checked against the catalogue (item by item), collaborative ones
against the train interactions; ``embed-text --reuse`` encodes only new or changed items.

A fake encoder (one vector per text, derived from the text alone) is passed to ``embed_text`` so that
encoder calls can be counted and a reused file compared with a fresh one exactly."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import make_dataset
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.embed import embed_text
from uqf_cli.files import load_embeddings, read_dataset_dir, save_embeddings, write_dataset_dir

DIM = 8


@dataclass
class FakeEncoder:
    """Deterministic per-text vectors; records every text it was asked to encode."""

    seen: list[str] = field(default_factory=list)

    def __call__(self, texts: list[str], advance: Callable[[int], None]) -> torch.Tensor:
        self.seen.extend(texts)
        advance(len(texts))
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
            rows.append(torch.randn(DIM, generator=torch.Generator().manual_seed(seed)))
        return torch.stack(rows)


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(r, *needles: str) -> str:
    assert r.exit_code == 2, f"exit {r.exit_code}: {r.stdout}\n{r.stderr}\n{r.exception!r}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def edited(src: Path, dst: Path, title: dict[str, str] | None = None, add: int = 0,
           sequences_from: Path | None = None) -> Path:
    """A copy of dataset ``src`` with some titles changed, ``add`` new items, or another interaction log."""
    items, seqs, _ = read_dataset_dir(src)
    for iid, t in (title or {}).items():
        items[iid] = {**items[iid], "title": t}
    for k in range(add):
        items[f"new{k}"] = {"title": f"New item {k}", "brand": "BN", "categories": "Office", "description": "d"}
    if sequences_from is not None:
        seqs = read_dataset_dir(sequences_from)[1]
    write_dataset_dir(dst, items, seqs, {"source": "edited"})
    return dst


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalogue")
    make_dataset(root / "ds", n_items=12, seed=0)
    make_dataset(root / "log", n_items=12, seed=1)  # the same catalogue, an updated interaction log
    edited(root / "ds", root / "retitled", title={"3": "A new title"}, sequences_from=root / "log")
    edited(root / "ds", root / "more", add=2, sequences_from=root / "log")
    embed_text(root / "ds", root / "text.st", encoder=FakeEncoder())
    for name in ("log", "retitled", "more"):
        r = cli("train-gcn", root / name, "-o", root / f"collab_{name}.st", "--epochs", "1", "--dim", "8",
                "--device", "cpu", "-q")
        assert r.exit_code == 0, r.output
    return root


def fuse_args(root: Path, text: Path, name: str, out: str, collab: str | None = None) -> list[object]:
    return ["fuse", "--text", text, "--collab", root / f"collab_{collab or name}.st", "--dataset", root / name,
            "-o", root / out, "--method", "concat", "--force"]


def test_text_of_the_same_catalogue_fuses_with_collab_of_an_updated_log(root: Path) -> None:
    r = cli(*fuse_args(root, root / "text.st", "log", "fused.st"))
    assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr
    assert load_embeddings(root / "fused.st").item_ids == load_embeddings(root / "text.st").item_ids


def test_a_changed_item_text_or_a_missing_item_is_refused(root: Path) -> None:
    line = refused(cli(*fuse_args(root, root / "text.st", "retitled", "x.st")), "text.st", "'3'", "--reuse")
    assert "1 item(s)" in line and "another text" in line
    # collab of the same interactions (the new items have none yet), but the text file lacks two items
    refused(cli(*fuse_args(root, root / "text.st", "more", "y.st", collab="log")), "text.st",
            "2 of its items have no embedding")
    assert not (root / "x.st").exists() and not (root / "y.st").exists()


def test_files_of_earlier_versions_keep_the_whole_dataset_check(root: Path, tmp_path: Path) -> None:
    """Without split fingerprints, text and collab of different datasets are refused as before."""
    old = load_embeddings(root / "text.st")
    legacy = save_embeddings(tmp_path / "legacy.st", old.embeddings, old.item_ids, old.provenance, "text",
                             old.dataset_fingerprint)
    refused(cli(*fuse_args(root, legacy, "log", "z.st")), "collab_log.st", "same dataset")


def test_collab_of_other_interactions_is_warned_about(root: Path) -> None:
    text = root / "text_log.st"
    embed_text(root / "log", text, encoder=FakeEncoder())  # catalogue of log = catalogue of ds
    r = cli("fuse", "--text", text, "--collab", root / "collab_retitled.st", "--dataset", root / "ds",
            "-o", root / "w.st", "--method", "concat")
    assert r.exit_code == 0, r.stderr
    assert "other train interactions" in " ".join(r.stderr.split())


def test_reuse_encodes_only_new_and_changed_items(root: Path, tmp_path: Path) -> None:
    ds2 = edited(root / "ds", tmp_path / "ds2", title={"3": "Renamed", "5": "Also renamed"}, add=1)
    enc = FakeEncoder()
    res = embed_text(ds2, tmp_path / "inc.st", reuse=root / "text.st", encoder=enc)
    assert len(enc.seen) == 3 and res.embedded == 3  # two changed texts and one new item, nothing else
    assert any("Renamed" in t for t in enc.seen) and any("New item 0" in t for t in enc.seen)
    inc = load_embeddings(tmp_path / "inc.st")
    assert inc.provenance["parameters"]["reuse"] == {"file": str(root / "text.st"), "copied": 10, "embedded": 3,
                                                     "new": 1, "changed": 2}
    fresh_enc = FakeEncoder()
    embed_text(ds2, tmp_path / "fresh.st", encoder=fresh_enc)
    assert len(fresh_enc.seen) == 13
    fresh = load_embeddings(tmp_path / "fresh.st")
    assert inc.item_ids == fresh.item_ids and torch.equal(inc.embeddings, fresh.embeddings)
    assert inc.extra_metadata["fingerprints"] == fresh.extra_metadata["fingerprints"]


def test_reuse_of_an_unchanged_catalogue_loads_no_model(root: Path, tmp_path: Path) -> None:
    r = cli("embed-text", root / "log", "-o", tmp_path / "same.st", "--reuse", root / "text.st", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["reuse"]["copied"] == 12 and out["reuse"]["embedded"] == 0
    assert torch.equal(load_embeddings(tmp_path / "same.st").embeddings, load_embeddings(root / "text.st").embeddings)


def test_reuse_needs_the_same_settings_and_a_file_with_text_hashes(root: Path, tmp_path: Path) -> None:
    enc = FakeEncoder()
    with pytest.raises(InputError, match=r"other settings: fields \['title', 'brand', 'categories', 'description'\]"):
        embed_text(root / "ds", tmp_path / "a.st", fields=["title"], reuse=root / "text.st", encoder=enc)
    with pytest.raises(InputError, match="max_length 128 \\(now 64\\)"):
        embed_text(root / "ds", tmp_path / "a.st", max_length=64, reuse=root / "text.st", encoder=enc)
    old = load_embeddings(root / "text.st")
    legacy = save_embeddings(tmp_path / "legacy.st", old.embeddings, old.item_ids, old.provenance, "text",
                             old.dataset_fingerprint)
    with pytest.raises(InputError, match="no per-item text hashes"):
        embed_text(root / "ds", tmp_path / "a.st", reuse=legacy, encoder=enc)
    with pytest.raises(OptionError, match="--reuse"):
        embed_text(root / "ds", tmp_path / "a.st", from_array=tmp_path / "x.feat", reuse=root / "text.st")
    assert enc.seen == [] and not (tmp_path / "a.st").exists()
    r = cli("embed-text", root / "ds", "-o", tmp_path / "b.st", "--reuse", legacy)
    refused(r, "legacy.st", "no per-item text hashes")


def test_a_model_is_checked_against_the_train_interactions_only(root: Path, tmp_path: Path) -> None:
    model = tmp_path / "sasrec"
    r = cli("train-rec", root / "log", "--backbone", "sasrec", "-o", model, "--epochs", "1", "--d-model", "16",
            "--num-layers", "1", "--device", "cpu", "-q")
    assert r.exit_code == 0, r.output
    assert json.loads((model / "uqf_model.json").read_text())["interaction_fingerprint"]
    ok = cli("evaluate", model, root / "retitled", "--max-users", "3", "--device", "cpu", "--json")
    assert ok.exit_code == 0, ok.stderr  # another item text, the same train interactions
    refused(cli("evaluate", model, root / "ds", "--max-users", "3", "--device", "cpu"), "another dataset",
            "train interactions")
