"""Tests for ``uqf fuse`` on synthetic data with planted structure (fast: small model, few epochs).

The synthetic catalogue: every item has a text cluster (8) and an independent collaborative cluster (8).
Text vectors carry the text cluster strongly and a weak, noisy trace of the collab cluster (as real
descriptions weakly predict what is bought together); collab vectors carry the collab cluster; users buy
within one collab cluster, so the train co-occurrence graph carries the collab structure too. Held-out
("cold") items never occur in any sequence and are listed in the collab file's ``cold_item_ids`` with
garbage rows, which the fuser must ignore.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import load_embeddings, make_provenance, save_embeddings, write_dataset_dir
from uqf_cli.fuse import FuseOptions, apply_fuser, fuse, topk_cosine

N_ITEMS = 320
N_CLUSTERS = 8
TEXT_DIM = 48
COLLAB_DIM = 16
N_COLD = 40
# a small, fast model; w_semantic 0.5 because here the text and collab structures are independent and equally
# strong (the CLI default 0.25 favours co-purchase structure, as Office's downstream SIDs need)
FAST = {"d_model": 64, "queries": 4, "layers": 1, "heads": 2, "out_dim": 32, "epochs": 25, "batch_size": 128,
        "lr": 3e-3, "w_semantic": 0.5}
runner = CliRunner()
torch.set_num_threads(1)  # the test box is shared; one thread avoids oversubscription stalls


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Synthetic:
    """Paths and ground-truth labels of one planted-structure catalogue."""

    def __init__(self, root: Path, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.ids = [f"i{k}" for k in range(N_ITEMS)]
        self.text_cl = rng.integers(N_CLUSTERS, size=N_ITEMS)
        self.collab_cl = rng.integers(N_CLUSTERS, size=N_ITEMS)
        a = _unit(rng.normal(size=(N_CLUSTERS, TEXT_DIM)))
        b = _unit(rng.normal(size=(N_CLUSTERS, TEXT_DIM)))
        c = _unit(rng.normal(size=(N_CLUSTERS, COLLAB_DIM)))
        noise_t = rng.normal(size=(N_ITEMS, TEXT_DIM)) / math.sqrt(TEXT_DIM)
        self.text = _unit(a[self.text_cl] + 0.25 * b[self.collab_cl] + 0.5 * noise_t)
        self.collab = c[self.collab_cl] + 0.4 * rng.normal(size=(N_ITEMS, COLLAB_DIM)) / math.sqrt(COLLAB_DIM)
        self.cold = set(self.ids[-N_COLD:])
        warm_by_cluster = {k: [i for i in range(N_ITEMS - N_COLD) if self.collab_cl[i] == k] for k in range(N_CLUSTERS)}
        seqs = {}
        for u in range(400):
            pool = warm_by_cluster[u % N_CLUSTERS]
            seqs[f"u{u}"] = [self.ids[int(j)] for j in rng.choice(pool, size=int(rng.integers(4, 9)))]
        items = {iid: {"title": f"item {iid}"} for iid in self.ids}
        self.ds = write_dataset_dir(root / "ds", items, seqs, {"source": "synthetic"})
        self.fp = Dataset.load(self.ds).fingerprint
        garbage = self.collab.copy()
        garbage[-N_COLD:] = rng.normal(size=(N_COLD, COLLAB_DIM))
        self.text_path = root / "text.st"
        self.collab_path = root / "collab.st"
        save_embeddings(self.text_path, self.text, self.ids, make_provenance("test", {}), "text", self.fp)
        save_embeddings(self.collab_path, garbage, self.ids, make_provenance("test", {}), "collab", self.fp,
                        extra_metadata={"cold_item_ids": sorted(self.cold)})

    def purity(self, emb: torch.Tensor, labels: np.ndarray, rows: list[int], among: list[int], k: int = 10) -> float:
        """Mean fraction of each row's top-k neighbours (searched in ``among``) that share its label."""
        x = F.normalize(torch.as_tensor(emb, dtype=torch.float32), dim=-1)
        cand = torch.tensor(among)
        pos = {j: n for n, j in enumerate(among)}
        ex = torch.tensor([pos.get(r, -1) for r in rows])
        nb = topk_cosine(x[rows], x[cand], k, ex)
        hits = labels[cand[nb].numpy()] == labels[np.asarray(rows)][:, None]
        return float(hits.mean())


@pytest.fixture(scope="module")
def syn(tmp_path_factory: pytest.TempPathFactory) -> Synthetic:
    return Synthetic(tmp_path_factory.mktemp("fuse"))


@pytest.fixture(scope="module")
def trained(syn: Synthetic, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    out = tmp_path_factory.mktemp("out")
    opts = FuseOptions(**FAST, seed=1, device="cpu")
    result = fuse(syn.text_path, syn.collab_path, syn.ds, out / "u.st", opts, save_model=out / "fuser.st")
    return out / "u.st", out / "fuser.st", result


def test_uqf_preserves_both_planted_structures(syn: Synthetic, trained) -> None:
    unified = load_embeddings(trained[0])
    assert unified.modality == "unified"
    assert unified.item_ids == syn.ids  # cold items are fused too, ids kept in order
    assert unified.dataset_fingerprint == syn.fp
    warm = [i for i in range(N_ITEMS) if syn.ids[i] not in syn.cold]
    spaces = {"text": syn.text, "collab": syn.collab, "uqf": unified.embeddings}
    scores = {name: (syn.purity(e, syn.text_cl, warm, warm), syn.purity(e, syn.collab_cl, warm, warm))
              for name, e in spaces.items()}
    t_uqf, c_uqf = scores["uqf"]
    # UQF keeps the collab structure that text alone lacks, and the text structure that collab alone lacks ...
    assert c_uqf > scores["text"][1] + 0.2, scores
    assert t_uqf > scores["collab"][0] + 0.2, scores
    # ... and preserves both together better than either input alone.
    assert t_uqf + c_uqf > max(sum(scores["text"]), sum(scores["collab"])) + 0.05, scores


def test_cold_items_land_near_their_true_collab_neighbours(syn: Synthetic, trained) -> None:
    unified = load_embeddings(trained[0])
    warm = [i for i in range(N_ITEMS) if syn.ids[i] not in syn.cold]
    cold = [i for i in range(N_ITEMS) if syn.ids[i] in syn.cold]
    fused = syn.purity(unified.embeddings, syn.collab_cl, cold, warm)
    text_only = syn.purity(syn.text, syn.collab_cl, cold, warm)
    assert fused > text_only + 0.1, (fused, text_only)


def test_gate_moves_toward_text_without_collab(syn: Synthetic, trained, tmp_path: Path) -> None:
    _, fuser, result = trained
    assert result.gate is not None and result.gate["mean_cold"] > result.gate["mean_warm"]
    # Same warm items applied twice, with and without their collab rows: the gate must lean on text without.
    with_c = apply_fuser(fuser, syn.text_path, syn.collab_path, tmp_path / "with.st", device_spec="cpu")
    without_c = apply_fuser(fuser, syn.text_path, None, tmp_path / "without.st", device_spec="cpu")
    g_with = load_embeddings(with_c.output).extra_tensors["gate"]
    g_without = load_embeddings(without_c.output).extra_tensors["gate"]
    warm = torch.tensor([syn.ids[i] not in syn.cold for i in range(N_ITEMS)])
    assert float(g_without[warm].mean()) > float(g_with[warm].mean()) + 0.02
    assert without_c.cold_items == N_ITEMS


def test_applied_fuser_reproduces_training_output_and_handles_removed_collab(syn: Synthetic, trained,
                                                                             tmp_path: Path) -> None:
    unified_path, fuser, _ = trained
    applied = apply_fuser(fuser, syn.text_path, syn.collab_path, tmp_path / "a.st", device_spec="cpu")
    assert torch.allclose(load_embeddings(applied.output).embeddings, load_embeddings(unified_path).embeddings,
                          atol=1e-5)
    # remove the collab rows of 30 warm items: they take the text-only path and still land near their cluster
    removed = [syn.ids[i] for i in range(30)]
    keep = [i for i in range(N_ITEMS) if syn.ids[i] not in removed]
    part = tmp_path / "part_collab.st"
    save_embeddings(part, syn.collab[keep], [syn.ids[i] for i in keep], make_provenance("test", {}), "collab",
                    syn.fp, extra_metadata={"cold_item_ids": sorted(syn.cold)})
    res = apply_fuser(fuser, syn.text_path, part, tmp_path / "b.st", device_spec="cpu")
    assert res.cold_items == N_COLD + 30
    emb = load_embeddings(res.output).embeddings
    warm_rest = [i for i in range(30, N_ITEMS) if syn.ids[i] not in syn.cold]
    assert syn.purity(emb, syn.collab_cl, list(range(30)), warm_rest) > \
        syn.purity(syn.text, syn.collab_cl, list(range(30)), warm_rest) + 0.1


def test_same_seed_same_output(syn: Synthetic, tmp_path: Path) -> None:
    small = {**FAST, "epochs": 2}
    a = fuse(syn.text_path, syn.collab_path, syn.ds, tmp_path / "a.st", FuseOptions(**small, seed=3, device="cpu"))
    b = fuse(syn.text_path, syn.collab_path, syn.ds, tmp_path / "b.st", FuseOptions(**small, seed=3, device="cpu"))
    c = fuse(syn.text_path, syn.collab_path, syn.ds, tmp_path / "c.st", FuseOptions(**small, seed=4, device="cpu"))
    ea, eb = load_embeddings(a.output), load_embeddings(b.output)
    # tensors and every metadata value identical (safetensors itself orders metadata keys at random,
    # so the files' bytes are compared through their parsed content)
    assert torch.equal(ea.embeddings, eb.embeddings) and torch.equal(ea.extra_tensors["gate"], eb.extra_tensors["gate"])
    assert ea.provenance == eb.provenance and ea.extra_metadata == eb.extra_metadata
    assert not torch.equal(ea.embeddings, load_embeddings(c.output).embeddings)


def _cli(*args: str) -> object:
    return runner.invoke(app, [str(a) for a in args])


SMALL_CLI = ["--d-model", "32", "--queries", "2", "--layers", "1", "--heads", "2", "--out-dim", "16",
             "--epochs", "1", "--device", "cpu", "-q"]


@pytest.mark.parametrize("extra", [
    ["--method", "concat"], ["--method", "text"], ["--method", "collab"], ["--no-gate"], ["--no-structural"],
    ["--no-semantic"], ["--no-modality-dropout"], ["--memory", "tokens"], ["--structural", "collab"],
    ["--w-recon", "0", "--w-align", "0"], ["--cold-collab", "borrow"], ["--w-distill", "1"],
])
def test_every_method_and_ablation_runs(syn: Synthetic, tmp_path: Path, extra: list[str]) -> None:
    out = tmp_path / "u.st"
    r = _cli("fuse", "--text", syn.text_path, "--collab", syn.collab_path, "--dataset", syn.ds, "-o", out,
             *SMALL_CLI, "--json", *extra)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert {"text", "collab", "concat"} <= set(report["overlap"])
    ef = load_embeddings(out)
    assert ef.modality == "unified" and ef.dataset_fingerprint == syn.fp
    assert ef.provenance["stage"] == "fuse" and "loss_curve" in ef.provenance
    if "--method" in extra and extra[1] == "collab":
        assert len(ef.item_ids) == N_ITEMS - N_COLD and set(ef.extra_metadata["omitted_item_ids"]) == syn.cold
    else:
        assert ef.item_ids == syn.ids
    if "--method" not in extra:
        assert ef.extra_tensors["gate"].shape == (N_ITEMS,)
        assert all(math.isfinite(p["loss"]) for p in ef.provenance["loss_curve"])
    if "--w-distill" in extra:
        assert all("distill" in p for p in ef.provenance["loss_curve"])
    if "--no-gate" in extra:
        expected = torch.tensor([1.0 if i in syn.cold else 0.5 for i in syn.ids])  # cold items: text only
        assert torch.allclose(ef.extra_tensors["gate"], expected)


def test_concat_is_the_normalised_concatenation(syn: Synthetic, tmp_path: Path) -> None:
    out = tmp_path / "c.st"
    r = _cli("fuse", "--text", syn.text_path, "--collab", syn.collab_path, "--dataset", syn.ds, "-o", out,
             "--method", "concat", "-q")
    assert r.exit_code == 0, r.output
    emb = load_embeddings(out).embeddings
    assert emb.shape == (N_ITEMS, TEXT_DIM + COLLAB_DIM)
    assert torch.allclose(emb[0, :TEXT_DIM], F.normalize(torch.tensor(syn.text[0], dtype=torch.float32), dim=0),
                          atol=1e-6)
    assert torch.count_nonzero(emb[-1, TEXT_DIM:]) == 0  # a cold item: no collab half


def _write(path: Path, emb: np.ndarray, ids: list[str], modality: str, fp: str | None, **meta: object) -> Path:
    save_embeddings(path, emb, ids, make_provenance("test", {}), modality, fp, extra_metadata=meta or None)
    return path


def _assert_refused(r, *needles: str) -> None:
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    for n in needles:
        assert n in lines[0], r.output


def test_bad_inputs_are_refused_with_one_line(syn: Synthetic, tmp_path: Path, trained) -> None:
    out = tmp_path / "u.st"
    base = ["fuse", "--dataset", syn.ds, "-o", out, "-q"]
    ids = syn.ids
    other = _write(tmp_path / "other.st", syn.collab, [f"x{i}" for i in ids], "collab", syn.fp)
    _assert_refused(_cli(*base, "--text", syn.text_path, "--collab", other), "shares no item ids")
    extra = _write(tmp_path / "extra.st", np.vstack([syn.collab, syn.collab[:1]]), [*ids, "ghost"], "collab", syn.fp)
    _assert_refused(_cli(*base, "--text", syn.text_path, "--collab", extra), "missing from the text file", "ghost")
    bad = syn.text.copy()
    bad[7, 3] = np.nan
    nan = _write(tmp_path / "nan.st", bad, ids, "text", syn.fp)
    _assert_refused(_cli(*base, "--text", nan, "--collab", syn.collab_path), "NaN", "i7")
    empty = tmp_path / "empty.st"
    empty.write_bytes(b"")
    _assert_refused(_cli(*base, "--text", empty, "--collab", syn.collab_path), "empty")
    foreign = _write(tmp_path / "foreign.st", syn.collab, ids, "collab", "0123456789abcdef")
    _assert_refused(_cli(*base, "--text", syn.text_path, "--collab", foreign), "same dataset")
    # another dataset's files that miss some of this dataset's items: refused (covering files only warn)
    both_foreign = _write(tmp_path / "ft.st", syn.text[:-1], ids[:-1], "text", "0123456789abcdef")
    foreign_sub = _write(tmp_path / "fc.st", syn.collab[:-1], ids[:-1], "collab", "0123456789abcdef")
    _assert_refused(_cli(*base, "--text", both_foreign, "--collab", foreign_sub), "fingerprint")
    small = _write(tmp_path / "small.st", syn.text[:, :10], ids, "text", syn.fp)
    _assert_refused(_cli("fuse", "--apply", trained[1], "--text", small, "-o", out, "-q"), "10-d", "expects 48-d")
    _assert_refused(_cli(*base, "--text", syn.text_path, "--collab", syn.collab_path, "--no-structural",
                         "--no-semantic"), "--no-structural")
    assert not out.exists()
    assert not list(tmp_path.glob(".u.st*"))  # no temporary left behind


def test_existing_output_needs_force(syn: Synthetic, tmp_path: Path) -> None:
    out = tmp_path / "u.st"
    out.write_text("keep me")
    args = ["fuse", "--text", syn.text_path, "--collab", syn.collab_path, "--dataset", syn.ds, "-o", out,
            "--method", "text", "-q"]
    _assert_refused(_cli(*args), "--force")
    assert out.read_text() == "keep me"
    _assert_refused(_cli(*args, "--force"), "not a uqf output")  # --force replaces only an earlier unified file
    assert out.read_text() == "keep me"
    out.unlink()
    assert _cli(*args).exit_code == 0
    assert _cli(*args, "--force").exit_code == 0


def test_borrowed_collab_memory_is_the_text_neighbours_collab(syn: Synthetic, tmp_path: Path) -> None:
    """--cold-collab borrow: a cold item reads the collab vectors of its nearest warm items by text (their
    normalised mean first), the setting travels with the saved fuser, and cold items still land near
    their true collaborative neighbours."""
    opts = FuseOptions(**FAST, seed=1, device="cpu", cold_collab="borrow", w_distill=1.0)
    res = fuse(syn.text_path, syn.collab_path, syn.ds, tmp_path / "u.st", opts, save_model=tmp_path / "f.st")
    from uqf_cli.fuse.inputs import align_inputs, load_collab, load_text
    from uqf_cli.fuse.memory import bank_from, build_memory

    data = align_inputs(load_text(syn.text_path), load_collab(syn.collab_path))
    bank = bank_from(data)
    mem = build_memory(data, bank, opts.fuser_config(TEXT_DIM, COLLAB_DIM))
    cold_row = syn.ids.index(sorted(syn.cold)[0])
    warm = [i for i in range(N_ITEMS) if syn.ids[i] not in syn.cold]
    want = topk_cosine(torch.as_tensor(syn.text[[cold_row]], dtype=torch.float32),
                       torch.as_tensor(syn.text[warm], dtype=torch.float32), opts.k_memory + 1)[0]
    _, collab_seq = mem.batch(torch.tensor([cold_row]), torch.tensor([True]))
    lent = torch.as_tensor(_unit(syn.collab[warm]), dtype=torch.float32)[want]
    assert torch.allclose(collab_seq[0, 0], F.normalize(lent.mean(0), dim=0), atol=1e-5)
    assert torch.allclose(collab_seq[0, 1:], lent[:opts.k_memory], atol=1e-5)
    applied = apply_fuser(tmp_path / "f.st", syn.text_path, syn.collab_path, tmp_path / "a.st", device_spec="cpu")
    emb = load_embeddings(applied.output).embeddings
    assert torch.allclose(emb, load_embeddings(res.output).embeddings, atol=1e-5)
    cold = [i for i in range(N_ITEMS) if syn.ids[i] in syn.cold]
    assert syn.purity(emb, syn.collab_cl, cold, warm) > syn.purity(syn.text, syn.collab_cl, cold, warm) + 0.1


def test_borrow_needs_neighbour_memory(syn: Synthetic, tmp_path: Path) -> None:
    r = _cli("fuse", "--text", syn.text_path, "--collab", syn.collab_path, "--dataset", syn.ds, "-o",
             tmp_path / "u.st", "--memory", "tokens", "--cold-collab", "borrow", "-q")
    assert r.exit_code != 0 and "--cold-collab" in r.output and "Traceback" not in r.output
