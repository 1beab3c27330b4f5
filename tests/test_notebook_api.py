"""The Python API from a notebook: keyword defaults instead of config objects, one-line reprs, subpackages
reachable as attributes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_dataset

from uqf_cli.files import load_embeddings, make_provenance, read_sids, save_embeddings

REPO = Path(__file__).resolve().parents[1]


def fresh_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "UQF_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_subpackages_are_attributes_after_a_bare_import() -> None:
    res = fresh_python(
        "import uqf_cli\n"
        "assert callable(uqf_cli.data.prepare) and callable(uqf_cli.data.prepare.kcore)\n"
        "assert callable(uqf_cli.quantize.quantize) and callable(uqf_cli.rec.train_rec)\n"
        "assert uqf_cli.data.Dataset.__name__ == 'Dataset'\n"
        "import uqf_cli.data\n"
        "import uqf_cli.data.prepare as package\n"
        "from uqf_cli.data.prepare import prepare\n"
        "assert package is uqf_cli.data.prepare and prepare is package.prepare\n"
    )
    assert res.returncode == 0, res.stderr


def test_prepare_package_is_callable(tmp_path: Path) -> None:
    import uqf_cli.data

    ds = uqf_cli.data.prepare("builtin:office", tmp_path / "ds")
    assert repr(ds) == f"Dataset({tmp_path / 'ds'}: 2,420 items, 4,905 users, 53,258 interactions)"


def embeddings(path: Path, n: int = 64, modality: str = "text") -> Path:
    g = torch.Generator().manual_seed(0)
    save_embeddings(path, torch.randn(n, 16, generator=g), [f"i{k}" for k in range(n)], make_provenance("t", {}),
                    modality, dataset_fingerprint="fp")
    return path


def test_quantize_without_a_config_object(tmp_path: Path) -> None:
    from uqf_cli.quantize import QuantizeConfig, quantize

    emb = embeddings(tmp_path / "e.st")
    res = quantize(emb, tmp_path / "a.jsonl", method="rqkmeans", levels=2)
    assert res.table.semantic_levels == 2 and res.stats["method"] == "rqkmeans"
    same = quantize(emb, tmp_path / "b.jsonl", QuantizeConfig(method="rqkmeans", levels=2))  # still accepted
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert len(repr(res)) < 200 and "i63" not in repr(res) and repr(same.table).startswith("SidTable(64 items")
    with pytest.raises(TypeError, match="unknown QuantizeConfig setting 'level'"):
        quantize(emb, tmp_path / "c.jsonl", level=2)


def test_train_gcn_and_fuse_without_config_objects(tmp_path: Path) -> None:
    from uqf_cli.collab import train_gcn
    from uqf_cli.fuse import fuse

    ds = make_dataset(tmp_path / "ds", n_users=40, n_items=20)
    gcn = train_gcn(ds, tmp_path / "collab.st", epochs=2, eval_every=1)
    assert gcn.epochs_run == 2 and len(repr(gcn)) < 200 and repr(gcn).startswith("GcnResult(20 items")
    from test_catalogue import FakeEncoder

    from uqf_cli.embed import embed_text

    embedded = embed_text(ds, tmp_path / "text.st", encoder=FakeEncoder())
    assert repr(embedded).startswith(f"TextEmbeddingResult({tmp_path / 'text.st'}: [20, 8] from all-MiniLM-L6-v2")
    fused = fuse(tmp_path / "text.st", tmp_path / "collab.st", ds, tmp_path / "u.st", method="concat")
    assert fused.method == "concat" and repr(fused).startswith(f"FuseResult({tmp_path / 'u.st'}: 20 items")
    assert repr(load_embeddings(tmp_path / "u.st")).endswith("[20, 72] unified)")


def test_sid_table_repr_is_one_short_line(tmp_path: Path) -> None:
    import numpy as np

    from uqf_cli.files import SidTable, write_sids

    codes = np.array([[i // 40, i % 40, 0] for i in range(1500)])
    write_sids(tmp_path / "s.jsonl", SidTable([f"item{i}" for i in range(1500)], codes, [64, 64, 1], dedup_level=True))
    shown = repr(read_sids(tmp_path / "s.jsonl"))
    assert "\n" not in shown and len(shown) < 200 and "item1" not in shown
    assert shown.startswith("SidTable(1,500 items, 2 levels + dedup, codebook sizes [64, 64, 1]")
