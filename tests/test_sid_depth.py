"""One notion of SID depth everywhere: "3 levels + dedup" in summaries and metadata, older files still read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.files import SidTable, make_provenance, read_sids, save_embeddings, write_sids

runner = CliRunner()


def colliding_embeddings(path: Path) -> Path:
    """48 items in 4 tight groups: 2 levels of 2 codes cannot tell them apart, so a dedup level is needed."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=g) * 10
    x = torch.cat([c + torch.randn(12, 8, generator=g) * 0.01 for c in centres])
    save_embeddings(path, x, [f"i{k}" for k in range(len(x))], make_provenance("test", {}), "text",
                    dataset_fingerprint="fp")
    return path


def quantize_args(emb: Path, out: Path, *extra: str) -> list[str]:
    return ["quantize", str(emb), "-o", str(out), "--method", "rqkmeans", "--levels", "2", "--codebook-size", "2",
            "--quiet", *extra]


def test_quantize_reports_levels_plus_dedup_in_summary_and_metadata(tmp_path: Path) -> None:
    out = tmp_path / "sids.jsonl"
    r = runner.invoke(app, quantize_args(colliding_embeddings(tmp_path / "e.st"), out, "--format", "lcrec"))
    assert r.exit_code == 0, r.output
    assert "2 levels + dedup" in r.stdout
    assert "also wrote" in r.stdout and "sids.index.json" in r.stdout  # --format lcrec says what it wrote
    meta = json.loads((tmp_path / "sids.jsonl.meta.json").read_text())
    assert meta["levels"] == 2 and meta["dedup_level"] is True and meta["stats"]["levels"] == 2
    assert len(meta["codebook_sizes"]) == 3 and meta["stats"]["depth"] == "2 levels + dedup"
    table = read_sids(out)
    assert table.levels == 3 and table.semantic_levels == 2 and table.depth == "2 levels + dedup"
    shown = runner.invoke(app, ["inspect-sids", str(out), "--no-tree"])
    assert shown.exit_code == 0 and "2 levels + dedup" in shown.stdout, shown.output


def test_sids_without_collisions_have_no_dedup_level(tmp_path: Path) -> None:
    table = SidTable(["x", "y"], np.array([[0, 1], [1, 0]]), [2, 2])
    back = read_sids(write_sids(tmp_path / "s.jsonl", table))
    assert back.dedup_level is False and back.depth == "2 levels"
    assert json.loads((tmp_path / "s.jsonl.meta.json").read_text())["levels"] == 2


def test_files_of_earlier_versions_keep_their_dedup_level(tmp_path: Path) -> None:
    """Before ``dedup_level`` the top-level ``levels`` counted every code and ``stats.levels`` the quantizer's."""
    table = SidTable(["x", "y"], np.array([[0, 1, 0], [0, 1, 1]]), [2, 2, 2], stats={"levels": 2, "final_levels": 3})
    p = write_sids(tmp_path / "old.jsonl", table)
    meta_path = tmp_path / "old.jsonl.meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["dedup_level"]
    meta["levels"] = 3
    meta_path.write_text(json.dumps(meta))
    old = read_sids(p)
    assert old.dedup_level and old.semantic_levels == 2 and old.depth == "2 levels + dedup"


def test_tiger_summary_states_the_depth_once() -> None:
    from uqf_cli.rec.tiger.training import sid_depth
    from uqf_cli.rec.tiger.vocab import TigerVocab

    deduped = SidTable(["x", "y"], np.array([[0, 1, 0], [0, 1, 1]]), [2, 2, 2], dedup_level=True)
    assert sid_depth(deduped, TigerVocab.build(deduped, deduped.item_ids, 0)) == "2 levels + dedup"
    colliding = SidTable(["x", "y"], np.array([[0, 1], [0, 1]]), [2, 2])  # TIGER adds its own dedup code
    assert sid_depth(colliding, TigerVocab.build(colliding, colliding.item_ids, 0)) == "2 levels + dedup"
    unique = SidTable(["x", "y"], np.array([[0, 1], [1, 1]]), [2, 2])
    assert sid_depth(unique, TigerVocab.build(unique, unique.item_ids, 0)) == "2 levels"
