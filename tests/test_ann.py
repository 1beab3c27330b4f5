"""Approximate neighbours (faiss IVF above a size threshold): recall against exact search, determinism,
and the exact path left untouched below the threshold."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from uqf_cli.files import load_embeddings
from uqf_cli.fuse import FuseOptions, ann, fuse, topk_cosine
from uqf_cli.fuse.ann import nearest

torch.set_num_threads(1)


def clustered(n: int, d: int, clusters: int, noise: float, seed: int = 0) -> torch.Tensor:
    """Unit rows around ``clusters`` random centres (embeddings of real catalogues are clustered)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g)
    x = centres[torch.randint(0, clusters, (n,), generator=g)] + noise * torch.randn(n, d, generator=g)
    return F.normalize(x, dim=1)


def recall_at_k(found: torch.Tensor, exact: torch.Tensor) -> float:
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, exact, strict=True))
    return hits / exact.numel()


@pytest.fixture(scope="module")
def faiss_installed() -> None:
    pytest.importorskip("faiss")


def test_ann_recall_against_exact_search(faiss_installed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    x = clustered(8000, 48, 400, 1.0)  # neighbours often straddle cells: a few probes would miss them
    self_ex = torch.arange(len(x))
    calls = []
    real = ann.ivf_topk
    monkeypatch.setattr(ann, "ivf_topk", lambda *a: calls.append(1) or real(*a))
    found = nearest(x, x, 10, self_ex, ann_threshold=1000)
    exact = topk_cosine(x, x, 10, self_ex)
    assert calls, "the approximate index was not used above the threshold"
    assert not (found == self_ex[:, None]).any()  # the excluded row (the item itself) never comes back
    assert recall_at_k(found, exact) >= 0.95


def test_ann_is_deterministic_given_the_seed(faiss_installed: None) -> None:
    x = clustered(5000, 32, 100, 1.0, seed=1)
    assert not ann.exact_is_cheaper(len(x), len(x))
    a = nearest(x, x, 10, torch.arange(len(x)), ann_threshold=1000, seed=7)
    b = nearest(x, x, 10, torch.arange(len(x)), ann_threshold=1000, seed=7)
    assert torch.equal(a, b)


def test_a_few_queries_are_searched_exactly(faiss_installed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the index costs more than scanning the bank for a small sample of queries (the overlap
    report's): such a search is exact even above the threshold; a whole-catalogue search is not."""
    assert ann.exact_is_cheaper(20_000, 1_000_000) and not ann.exact_is_cheaper(1_000_000, 1_000_000)
    assert ann.exact_is_cheaper(20_000, 200_000) and not ann.exact_is_cheaper(200_000, 200_000)
    x = clustered(5000, 32, 100, 1.0, seed=4)

    def refuse(*_a: object) -> None:
        raise AssertionError("an index was built for 50 queries")

    monkeypatch.setattr(ann, "ivf_topk", refuse)
    q = torch.arange(0, 5000, 100)
    assert torch.equal(nearest(x[q], x, 10, q, ann_threshold=1000), topk_cosine(x[q], x, 10, q))


def test_cells_grow_with_the_square_root_of_the_catalogue() -> None:
    assert ann.ivf_shape(1_000_000) == (8000, 250)
    assert ann.ivf_shape(200_000) == (3577, 111)
    assert ann.ivf_shape(3000) == (76, 48)  # small banks: >= 39 points per cell, >= ANN_NPROBE probes


def test_below_the_threshold_the_exact_search_runs_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    x = clustered(600, 16, 20, 1.0)

    def refuse(*_a: object) -> None:
        raise AssertionError("approximate search used below the threshold")

    monkeypatch.setattr(ann, "ivf_topk", refuse)
    ex = torch.arange(600)
    assert torch.equal(nearest(x, x, 10, ex, ann_threshold=601), topk_cosine(x, x, 10, ex))
    assert torch.equal(nearest(x, x, 10, None, ann_threshold=0), topk_cosine(x, x, 10))


def test_without_faiss_large_banks_fall_back_to_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    x = clustered(300, 16, 10, 1.0)
    monkeypatch.setattr(ann, "faiss_module", lambda: None)
    assert torch.equal(nearest(x, x, 5, None, ann_threshold=10), topk_cosine(x, x, 5))


def test_fuse_through_the_approximate_path(faiss_installed: None, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_fuse import FAST, Synthetic

    syn = Synthetic(tmp_path)
    monkeypatch.setattr(ann, "exact_is_cheaper", lambda *_a: False)  # tiny catalogue: force the index
    calls = []
    real = ann.ivf_topk
    monkeypatch.setattr(ann, "ivf_topk", lambda *a: calls.append(1) or real(*a))
    small = {**FAST, "epochs": 1}
    a = fuse(syn.text_path, syn.collab_path, syn.ds, tmp_path / "a.st", FuseOptions(**small, ann_threshold=50))
    b = fuse(syn.text_path, syn.collab_path, syn.ds, tmp_path / "b.st", FuseOptions(**small, ann_threshold=50))
    assert calls
    assert torch.equal(load_embeddings(a.output).embeddings, load_embeddings(b.output).embeddings)
    assert a.overlap["text"]["text"] is not None and a.overlap["text"]["text"] >= 0.95


def test_chunked_search_gives_the_same_neighbours(faiss_installed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Queries go to faiss in chunks (bounded scratch memory); the answer must not depend on the chunk size."""
    x = clustered(3000, 32, 60, 1.0, seed=2)
    whole = nearest(x, x, 10, torch.arange(len(x)), ann_threshold=1000, seed=3)
    sizes = []
    real = ann.search_in_chunks
    monkeypatch.setattr(ann, "search_in_chunks", lambda index, q, k: sizes.append(len(q)) or real(index, q, k, 700))
    chunked = nearest(x, x, 10, torch.arange(len(x)), ann_threshold=1000, seed=3)
    assert sizes == [len(x)] and torch.equal(whole, chunked)
