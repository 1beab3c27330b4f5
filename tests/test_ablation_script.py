"""benchmarks/ablation.py end to end on a tiny synthetic dataset: tables, cache/resume, cold-item SIDs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_dataset

from uqf_cli.dataset import Dataset
from uqf_cli.io import SidTable, make_provenance, save_embeddings

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("ablation_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ablation_bench"] = module
    spec.loader.exec_module(module)
    return module


ablation = _load_script()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("abl")
    ds_dir = make_dataset(root / "ds", n_users=60, n_items=40, seed=3)
    ds = Dataset.load(ds_dir)
    rng = np.random.default_rng(0)
    ids = list(ds.item_ids)
    text = rng.normal(size=(len(ids), 16)).astype(np.float32)
    save_embeddings(root / "text.st", text, ids, make_provenance("test", {}), "text", ds.fingerprint)
    # the last two items have no collab row: the collab-only tokenizer cannot place them
    warm = ids[:-2]
    collab = rng.normal(size=(len(warm), 8)).astype(np.float32)
    save_embeddings(root / "collab.st", collab, warm, make_provenance("test", {}), "collab", ds.fingerprint,
                    extra_metadata={"cold_item_ids": []})
    return {"ds": ds_dir, "text": root / "text.st", "collab": root / "collab.st", "root": root}


def _argv(inputs: dict[str, Path], *extra: str) -> list[str]:
    return ["--dataset", str(inputs["ds"]), "--text", str(inputs["text"]), "--collab", str(inputs["collab"]),
            "--work", str(inputs["root"] / "work"), "--fuse-epochs", "1", "--codebook-size", "4", *extra]


def test_tokenization_table_and_resume(inputs: dict[str, Path]) -> None:
    out = inputs["root"] / "tok.md"
    result = ablation.main(_argv(inputs, "--skip-rec", "--variants", "text,collab,uqf-no-gate", "--seeds", "2",
                                 "--out", str(out)))
    assert [len(result["tokenization"][v]) for v in ("text", "collab", "uqf-no-gate")] == [2, 2, 1]
    collab_rec = result["tokenization"]["collab"][0]
    assert collab_rec["items"] == 38 and collab_rec["fuse_omitted_items"] == 2
    text_rec = result["tokenization"]["text"][0]
    assert -1.0 <= text_rec["semantic_lift"]["1"] <= 1.0 and text_rec["cooc_lift"]["1"] >= 0
    md = out.read_text(encoding="utf-8")
    assert "| text-only RQ-VAE (TIGER/LC-Rec) | 2 |" in md and "UQF, no gate" in md and "Command:" in md
    assert json.loads(out.with_suffix(".json").read_text())["tokenization"]["text"][1]["seed"] == 1
    # a rerun resumes: the cached records are not rewritten
    record = inputs["root"] / "work" / "tok" / "text_s0" / "record.json"
    before = record.stat().st_mtime_ns
    ablation.main(_argv(inputs, "--skip-rec", "--variants", "text", "--seeds", "2", "--out", str(out)))
    assert record.stat().st_mtime_ns == before
    # other settings in the same work dir are refused, not mixed
    with pytest.raises(SystemExit, match="other settings"):
        ablation.main(_argv(inputs, "--skip-rec", "--variants", "text", "--codebook-size", "8", "--out", str(out)))


def test_tiger_rows_and_ratio(inputs: dict[str, Path]) -> None:
    out = inputs["root"] / "rec.md"
    result = ablation.main(_argv(inputs, "--variants", "text,collab", "--seeds", "1", "--tiger-preset", "tiny",
                                 "--tiger-epochs", "1", "--tiger-eval-users", "10", "--out", str(out)))
    rec = result["tiger"]["collab"][0]
    assert rec["reserved_cold_items"] == 2  # the two items without a collab row got the reserved prefix
    assert 0.0 <= rec["test"]["ndcg@10"] <= rec["test"]["recall@10"] <= 1.0
    md = out.read_text(encoding="utf-8")
    assert "## TIGER on each tokenizer" in md and "preset `tiny`" in md


def test_reserved_codes_are_distinct_and_outside_the_codebook(tmp_path: Path) -> None:
    ds = Dataset.load(make_dataset(tmp_path / "ds", n_items=12))
    known = ds.item_ids[:2]
    table = SidTable(known, np.array([[0, 1, 2], [1, 1, 2]]), [2, 2, 3], {}, {}, ds.fingerprint)
    full, added = ablation.sids_covering(table, ds)
    # 10 uncovered items need 10 distinct deeper pairs: 2 x 3 are too few, so the last codebook grows to 5
    assert added == 10 and full.codebook_sizes == [3, 2, 5]
    extra = full.codes[2:]
    assert (extra[:, 0] == 2).all() and len({tuple(r) for r in extra.tolist()}) == 10
    assert (extra[:, 1] < 2).all() and (extra[:, 2] < 5).all()
    assert full.item_ids[:2] == known and sorted(full.item_ids) == sorted(ds.item_ids)
