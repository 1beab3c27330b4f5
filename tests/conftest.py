"""Shared fixtures: small synthetic datasets written through the real io module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("NO_COLOR", "1")

from uqf_cli.io import write_dataset_dir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_dataset(path: Path, n_users: int = 30, n_items: int = 12, seed: int = 0) -> Path:
    """A small dataset with text and sequences of length 4-8, written with the real writer."""
    import random

    rng = random.Random(seed)
    items = {
        str(i): {"title": f"Item {i} {'pen' if i % 2 else 'paper'}", "brand": f"B{i % 3}",
                 "categories": "Office, " + ("Pens" if i % 2 else "Paper"), "description": f"desc {i}"}
        for i in range(n_items)
    }
    seqs = {f"u{u}": [str(rng.randrange(n_items)) for _ in range(rng.randint(4, 8))] for u in range(n_users)}
    write_dataset_dir(path, items, seqs, {"source": "synthetic"})
    return path


@pytest.fixture
def tiny_ds(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "ds")
