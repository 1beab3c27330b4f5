"""The whole tokenization pipeline is deterministic on CPU: same seed, same commands -> byte-identical files.

prepare -> embed-text (the bundled MiniLM) -> train-gcn -> fuse -> quantize, run twice in two fresh
directories with the same (relative) command lines. The SIDs header holds the provenance of every step
(command line, parameters, sha256 of each input), so equal SIDs files also mean equal upstream files; the
intermediate files are compared too, to say *which* step broke determinism when this test fails.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from typer.testing import CliRunner

from uqf_cli.cli import app

STEPS = [
    ["prepare", "src", "-o", "ds"],
    ["embed-text", "ds", "-o", "text.st", "--device", "cpu", "--batch-size", "16"],
    ["train-gcn", "ds", "-o", "collab.st", "--dim", "16", "--epochs", "3", "--device", "cpu", "--seed", "7"],
    ["fuse", "--text", "text.st", "--collab", "collab.st", "--dataset", "ds", "-o", "fused.st", "--epochs", "2",
     "--d-model", "32", "--out-dim", "16", "--device", "cpu", "--seed", "7"],
    ["quantize", "fused.st", "-o", "sids.jsonl", "--levels", "2", "--codebook-size", "4", "--epochs", "5",
     "--device", "cpu", "--seed", "7"],
]
OUTPUTS = ["ds/items.jsonl", "ds/sequences.jsonl", "ds/dataset.json", "text.st", "collab.st", "fused.st",
           "sids.jsonl"]


def _write_source(d: Path, n_users: int = 40, n_items: int = 16) -> None:
    rng = random.Random(3)
    d.mkdir(parents=True)
    inter = {str(u): [rng.randrange(n_items) for _ in range(rng.randint(5, 8))] for u in range(n_users)}
    kinds = ["pen", "paper", "stapler", "folder"]
    items = {str(i): {"title": f"{kinds[i % 4]} model {i}", "brand": f"B{i % 3}",
                      "categories": f"Office, {kinds[i % 4].title()}s", "description": f"a {kinds[i % 4]}"}
             for i in range(n_items)}
    (d / "X.inter.json").write_text(json.dumps(inter), encoding="utf-8")
    (d / "X.item.json").write_text(json.dumps(items), encoding="utf-8")


def _run_pipeline(root: Path) -> dict[str, bytes]:
    _write_source(root / "src")
    cwd = os.getcwd()
    os.chdir(root)  # relative paths: the provenance (paths, command) is the same in both runs
    try:
        for step in STEPS:
            r = CliRunner().invoke(app, [*step, "-q"])
            assert r.exit_code == 0, f"{step[0]} failed: {r.stderr}\n{r.exception!r}"
    finally:
        os.chdir(cwd)
    return {name: (root / name).read_bytes() for name in OUTPUTS}


def test_same_seed_gives_byte_identical_sids(tmp_path: Path) -> None:
    first = _run_pipeline(tmp_path / "a")
    second = _run_pipeline(tmp_path / "b")
    differing = [name for name in OUTPUTS if first[name] != second[name]]
    assert not differing, f"not byte-identical across two identical runs: {differing}"
    header = json.loads(first["sids.jsonl"].decode().splitlines()[0])
    assert header["_uqf"] == "sids" and header["items"] == 16
    assert header["provenance"]["inputs"]  # the SIDs really carry their upstream hashes
