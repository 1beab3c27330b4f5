"""JSONL outputs hold one record schema on every line (metadata in a ``.meta.json`` sidecar) and load as
they are into pandas; writes of the pair are atomic and respect --force; files of earlier versions still read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from uqf_cli.core.errors import InputError, OutputExistsError
from uqf_cli.files import SidTable, read_sids, write_sids
from uqf_cli.files.sidecar import meta_path, write_jsonl_with_meta


def _table(n: int = 50) -> SidTable:
    rng = np.random.default_rng(0)
    ids = [f"{k:04d}" for k in range(n)]  # ids that look like numbers: pandas must not lose rows or values
    return SidTable(ids, rng.integers(0, 8, size=(n, 3)), [8, 8, 8], provenance={"stage": "quantize"},
                    stats={"collisions": 1}, dataset_fingerprint="abcd")


def test_pandas_reads_a_sids_file_as_one_row_per_item(tmp_path: Path) -> None:
    table = _table()
    path = write_sids(tmp_path / "sids.jsonl", table)
    df = pd.read_json(path, lines=True)
    assert len(df) == len(table.item_ids)
    assert list(df.columns) == ["item_id", "codes", "tokens"]
    assert not df["item_id"].isna().any() and not df["codes"].isna().any()
    assert all(isinstance(c, list) and len(c) == 3 for c in df["codes"])
    exact = pd.read_json(path, lines=True, dtype={"item_id": str})  # what the docs advise for string ids
    assert exact["item_id"].tolist() == table.item_ids
    assert [list(c) for c in exact["codes"]] == table.codes.tolist()
    meta = json.loads(meta_path(path).read_text())
    assert meta["uqf_kind"] == "sids" and meta["items"] == 50 and meta["provenance"] == {"stage": "quantize"}
    back = read_sids(path)
    assert back.codebook_sizes == [8, 8, 8] and back.dataset_fingerprint == "abcd" and back.stats["collisions"] == 1


def test_a_sids_file_of_an_earlier_version_still_reads(tmp_path: Path) -> None:
    old = tmp_path / "old.jsonl"
    header = {"_uqf": "sids", "levels": 2, "codebook_sizes": [16, 4], "dataset_fingerprint": "fp",
              "provenance": {"stage": "quantize"}}
    rows = [{"item_id": "a", "codes": [1, 2], "tokens": "<a_1><b_2>"}, {"item_id": "b", "codes": [3, 0]}]
    old.write_text("\n".join(json.dumps(r) for r in [header, *rows]) + "\n")
    table = read_sids(old)
    assert table.item_ids == ["a", "b"] and table.codebook_sizes == [16, 4] and table.dataset_fingerprint == "fp"
    assert table.provenance == {"stage": "quantize"}


def test_a_sidecar_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = write_sids(tmp_path / "s.jsonl", _table(3))
    meta_path(path).write_text(json.dumps({"uqf_kind": "predictions"}))
    with pytest.raises(InputError, match="expected sids"):
        read_sids(path)


def test_the_pair_is_written_together_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"

    def records():
        yield {"user_id": "u1", "item_ids": ["a"]}
        raise KeyboardInterrupt  # interrupted half way

    with pytest.raises(KeyboardInterrupt):
        write_jsonl_with_meta(path, records(), {"uqf_kind": "predictions"})
    assert list(tmp_path.iterdir()) == []  # neither file, no temporaries

    write_jsonl_with_meta(path, [{"user_id": "u1", "item_ids": ["a"]}], {"uqf_kind": "predictions", "n": 1})
    with pytest.raises(OutputExistsError):
        write_jsonl_with_meta(path, [{"user_id": "u2", "item_ids": ["b"]}], {"uqf_kind": "predictions", "n": 2})
    meta_path(path).unlink()
    (tmp_path / "q.jsonl.meta.json").write_text("{}")
    with pytest.raises(OutputExistsError, match=r"q\.jsonl\.meta\.json"):  # a sidecar alone also counts as output
        write_jsonl_with_meta(tmp_path / "q.jsonl", [], {"uqf_kind": "predictions"})
    write_jsonl_with_meta(path, [{"user_id": "u2", "item_ids": ["b"]}], {"uqf_kind": "predictions", "n": 2},
                          force=True)
    assert json.loads(path.read_text()) == {"user_id": "u2", "item_ids": ["b"]}
    assert json.loads(meta_path(path).read_text())["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl", "p.jsonl.meta.json", "q.jsonl.meta.json"]
