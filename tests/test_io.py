"""The file contracts of uqf_cli.files: round trips and atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from uqf_cli.core.errors import InputError, OutputExistsError
from uqf_cli.files import (
    SidTable,
    atomic_path,
    iter_jsonl,
    load_embeddings,
    load_model_file,
    make_provenance,
    read_dataset_dir,
    read_sids,
    save_embeddings,
    save_model_file,
    write_dataset_dir,
    write_json,
    write_lcrec_index,
    write_sids,
)


def test_embeddings_round_trip(tmp_path: Path) -> None:
    emb = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    ids = ["a", "b", "c", "d"]
    prov = make_provenance("test", {"k": 1, "path": tmp_path}, inputs={"x": None})
    p = save_embeddings(tmp_path / "e.st", emb.double(), ids, prov, modality="text", dataset_fingerprint="fp",
                        extra_tensors={"user_embeddings": torch.ones(2, 3)}, extra_metadata={"user_ids": ["u", "v"]})
    ef = load_embeddings(p)
    assert ef.embeddings.dtype == torch.float32 and torch.allclose(ef.embeddings, emb)
    assert ef.item_ids == ids and ef.modality == "text" and ef.dataset_fingerprint == "fp"
    assert ef.provenance["parameters"] == {"k": 1, "path": str(tmp_path)}
    assert torch.equal(ef.extra_tensors["user_embeddings"], torch.ones(2, 3))
    assert ef.extra_metadata["user_ids"] == ["u", "v"]
    assert torch.equal(ef.rows_for(["c", "a"]), emb[[2, 0]])
    with pytest.raises(OutputExistsError):
        save_embeddings(p, emb, ids, prov, modality="text")
    with pytest.raises(ValueError, match="item ids"):
        save_embeddings(tmp_path / "bad.st", emb, ids[:3], prov, modality="text")


def test_embeddings_validation(tmp_path: Path) -> None:
    emb = torch.zeros(2, 2)
    emb[1, 0] = float("nan")
    p = save_embeddings(tmp_path / "nan.st", emb, ["a", "b"], {}, modality="text")
    with pytest.raises(InputError, match="NaN"):
        load_embeddings(p)
    (tmp_path / "junk.st").write_bytes(b"not a safetensors file at all")
    with pytest.raises(InputError, match="safetensors"):
        load_embeddings(tmp_path / "junk.st")
    m = save_model_file(tmp_path / "m.st", "quantizer", {"w": torch.ones(1)}, {"levels": 3}, {})
    with pytest.raises(InputError, match="expected an embedding file"):
        load_embeddings(m)
    state, config, _ = load_model_file(m, "quantizer")
    assert config == {"levels": 3} and torch.equal(state["w"], torch.ones(1))
    with pytest.raises(InputError, match="expected a fuser file"):
        load_model_file(m, "fuser")


def test_sids_round_trip_and_lcrec_index(tmp_path: Path) -> None:
    table = SidTable(["x", "y", "z"], np.array([[1, 2, 0], [3, 0, 1], [1, 2, 1]]), [4, 4, 2],
                     provenance={"stage": "t"}, stats={"collisions": 0}, dataset_fingerprint="fp")
    p = write_sids(tmp_path / "s.jsonl", table)
    lines = p.read_text().splitlines()
    meta = json.loads((tmp_path / "s.jsonl.meta.json").read_text())
    assert meta["uqf_kind"] == "sids" and meta["levels"] == 3 and meta["codebook_sizes"] == [4, 4, 2]
    assert json.loads(lines[0]) == {"item_id": "x", "codes": [1, 2, 0], "tokens": "<a_1><b_2><c_0>"}
    assert len(lines) == 3
    back = read_sids(p)
    assert back.item_ids == table.item_ids and np.array_equal(back.codes, table.codes)
    assert back.codebook_sizes == [4, 4, 2] and back.dataset_fingerprint == "fp"
    assert back.content_hash() == table.content_hash()

    idx = write_lcrec_index(tmp_path / "X.index.json", table)
    assert json.loads(idx.read_text())["y"] == ["<a_3>", "<b_0>", "<c_1>"]
    from_index = read_sids(idx)
    assert from_index.as_dict() == table.as_dict()

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item_id": "x", "codes": [1, 2]}\n{"item_id": "y", "codes": [1]}\n')
    with pytest.raises(InputError, match="line 2: ragged"):
        read_sids(bad)


def test_dataset_dir_round_trip(tmp_path: Path) -> None:
    items = {"1": {"title": "a"}, "2": {"title": "b", "brand": "c"}}
    seqs = {"u": ["1", "2", "1"]}
    write_dataset_dir(tmp_path / "ds", items, seqs, {"source": "t"})
    got_items, got_seqs, info = read_dataset_dir(tmp_path / "ds")
    assert got_items == items and got_seqs == seqs and info["source"] == "t" and len(info["fingerprint"]) == 16
    (tmp_path / "ds" / "sequences.jsonl").write_text('{"user_id": "u", "item_ids": ["9"]}\n')
    with pytest.raises(InputError, match="unknown item '9'"):
        read_dataset_dir(tmp_path / "ds")


def test_iter_jsonl_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(InputError, match=r"x\.jsonl: line 3: expected a JSON object"):
        list(iter_jsonl(p))


def test_atomic_write_leaves_nothing_on_exception(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    target_dir = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt), atomic_path(target_dir, directory=True) as tmp:
        (tmp / "weights").write_bytes(b"partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []

    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target, force=True) as tmp:
        tmp.write_bytes(b"new but unfinished")
        raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"v": 1}  # the old output survives a failed overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_outputs_follow_umask(tmp_path: Path) -> None:
    p = save_embeddings(tmp_path / "e.st", torch.zeros(1, 2), ["a"], {}, modality="text")
    assert p.stat().st_mode & 0o044  # readable by others under the usual 022 umask, like any file
