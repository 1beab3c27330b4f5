"""Streaming preparation of Amazon dumps: the compact (interned arrays) path gives exactly what the
list-of-interactions path gives (the cleaning code every other format still uses) on a dump that hits
every cleaning step."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from uqf_cli.data.prepare import Interaction, RawDataset, clean_interactions, prepare
from uqf_cli.data.prepare.raw import CompactInteractions
from uqf_cli.data.prepare.readers import read_amazon2023
from uqf_cli.files import write_dataset_dir


def write_gz(path: Path, records: list[dict]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def make_dump(root: Path, seed: int = 0, lines: int = 3000) -> Path:
    """Reviews with equal timestamps, repeated pairs, items without title or metadata, users whose
    ids tie in natural order ("7" and "007"), light users and rare items (several k-core rounds)."""
    rng = random.Random(seed)
    root.mkdir()
    users = [str(u) for u in range(60)] + ["007", "u-a", "u-b"] + [f"light{u}" for u in range(20)]
    items = [f"P{i:03d}" for i in range(150)]
    reviews = []
    for _ in range(lines):
        u = rng.choice(users if rng.random() < 0.9 else users[:5])
        i = rng.choice(items[:20]) if rng.random() < 0.5 else rng.choice(items)
        if u.startswith("light") and rng.random() < 0.8:
            continue
        reviews.append({"user_id": u, "parent_asin": i, "asin": i + "x", "timestamp": rng.randrange(50) * 1000,
                        "rating": 4.0, "text": "fine"})
    reviews += [{"user_id": "7", "parent_asin": "NOMETA", "timestamp": 5}, {"user_id": "007", "parent_asin": "P001",
                                                                             "timestamp": 7}]
    write_gz(root / "Office_Products.jsonl.gz", reviews)
    meta = [{"parent_asin": i, "title": "" if n % 17 == 0 else f"<i>Item</i> {i}", "store": "S",
             "categories": ["Office", "Pens"], "description": ["d"]} for n, i in enumerate(items)]
    write_gz(root / "meta_Office_Products.jsonl.gz", meta)
    return root


def as_list(raw: RawDataset) -> RawDataset:
    """The same interactions as the list of events the reader returned before (the old code path)."""
    x = raw.interactions
    assert isinstance(x, CompactInteractions)
    events = [Interaction(x.users[u], x.items[i], t, n)
              for n, (u, i, t) in enumerate(zip(x.user.tolist(), x.item.tolist(), x.time.tolist(), strict=True))]
    return RawDataset(raw.items, events, raw.source, raw.format, raw.notes)


@pytest.mark.parametrize(("kcore", "dedup", "max_history"), [
    (5, True, None), (0, False, None), (3, False, 4), (10, True, 6), (1, True, 2),
])
def test_compact_cleaning_equals_the_list_path(tmp_path: Path, kcore: int, dedup: bool,
                                               max_history: int | None) -> None:
    raw = read_amazon2023(make_dump(tmp_path / "raw"))
    assert isinstance(raw.interactions, CompactInteractions)
    new = clean_interactions(raw, kcore, dedup, max_history)
    old = clean_interactions(as_list(raw), kcore, dedup, max_history)
    assert list(new[2].items()) == list(old[2].items())  # counts, in the same key order
    assert list(new[1].items()) == list(old[1].items()) and list(new[0].items()) == list(old[0].items())
    assert len(new[1]) > 10 and new[2].get("kcore_rounds", 0) >= (2 if kcore >= 5 else 0)
    a = write_dataset_dir(tmp_path / "a", *new[:2], {"counts": new[2]})
    b = write_dataset_dir(tmp_path / "b", *old[:2], {"counts": old[2]})
    for name in ("items.jsonl", "sequences.jsonl", "dataset.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_prepare_of_a_dump_matches_the_list_path(tmp_path: Path) -> None:
    src = make_dump(tmp_path / "raw", seed=1)
    ds = prepare(src, tmp_path / "ds")
    old = clean_interactions(as_list(read_amazon2023(src)), 5, True, None)
    assert ds.items == old[0] and ds.sequences == old[1]
    assert ds.info["cleaning"] == old[2] and ds.info["notes"]["reviews_read"] == old[2]["interactions_read"]
