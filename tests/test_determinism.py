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
           "sids.jsonl", "sids.jsonl.meta.json"]


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
    header = json.loads(first["sids.jsonl.meta.json"].decode())
    assert header["uqf_kind"] == "sids" and header["items"] == 16
    assert header["provenance"]["inputs"]  # the SIDs really carry their upstream hashes


def _grad_hashes(fn, threads: int, repeats: int = 3) -> set[bytes]:
    """Run ``fn() -> (loss, leaf)`` ``repeats`` times with ``threads`` torch threads; distinct grad bytes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        seen = set()
        for _ in range(repeats):
            loss, leaf = fn()
            loss.backward()
            seen.add(leaf.grad.numpy().tobytes())
        return seen
    finally:
        torch.set_num_threads(before)


def test_gathers_with_shared_rows_have_a_run_to_run_identical_backward() -> None:
    """quantize's codebook gather and train-gcn's BPR gather, many items per row, two threads.

    Advanced indexing (``book[codes]``) accumulates the gradients of rows shared by many items in a
    thread-dependent order on a multi-threaded CPU, so identical runs differed in the last bits (and
    Office SIDs from two identical ``uqf quantize`` runs differed). Every repeat must give the same bytes.
    """
    import torch

    from uqf_cli.collab import bpr_loss
    from uqf_cli.quantize.model import gather_codes

    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 64, (20000,), generator=g)
    upstream = torch.randn(20000, 32, generator=g)
    book0 = torch.randn(64, 32, generator=g)

    def codebook_step():
        book = book0.clone().requires_grad_(True)
        return (gather_codes(book, codes) * upstream).sum(), book

    nodes0 = torch.randn(300, 16, generator=g)
    u, p, n = (torch.randint(0, 300, (20000,), generator=g) for _ in range(3))

    def bpr_step():
        nodes = nodes0.clone().requires_grad_(True)
        return bpr_loss(nodes * 1.0, nodes, u, p, n, reg=1e-4), nodes

    assert len(_grad_hashes(codebook_step, threads=2)) == 1
    assert len(_grad_hashes(bpr_step, threads=2)) == 1
