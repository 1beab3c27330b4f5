"""LETTER-style quantizer: the loss terms, the planted collaborative lift, CLI wiring, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.core.runtime import configure
from uqf_cli.evaluation.inspect_sids import cosine_consistency
from uqf_cli.files import make_provenance, read_sids, save_embeddings, sha256_file
from uqf_cli.quantize import QuantizeConfig, quantize
from uqf_cli.quantize.letter import LetterConfig, alignment_loss, diversity_loss

runner = CliRunner()


def planted(n_t: int = 6, n_c: int = 6, per: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Text = strong text-group centre + weak collaborative-group centre; collab = the collab group alone.

    Plain RQ-VAE level-1 codes follow the (stronger) text groups, which are independent of the
    collaborative groups; only a term that looks at the collab embeddings can make them follow those.
    """
    g = torch.Generator().manual_seed(seed)
    text_c, weak_c, cf_c = torch.randn(n_t, 24, generator=g) * 3, torch.randn(n_c, 24, generator=g), \
        torch.randn(n_c, 16, generator=g)
    rows, cf = [], []
    for t in range(n_t):
        for c in range(n_c):
            rows.append(text_c[t] + weak_c[c] + torch.randn(per, 24, generator=g) * 0.3)
            cf.append(cf_c[c] + torch.randn(per, 16, generator=g) * 0.3)
    return torch.cat(rows), torch.cat(cf)


def write_pair(tmp: Path, x: torch.Tensor, h: torch.Tensor, cold: int = 10, collab_fp: str = "fp",
               extra_collab_id: bool = False) -> tuple[Path, Path]:
    """Text file with every item; collab file without the last ``cold`` items (they are cold)."""
    ids = [f"i{k}" for k in range(len(x))]
    text, collab = tmp / "text.st", tmp / "collab.st"
    save_embeddings(text, x, ids, make_provenance("test", {}), "text", dataset_fingerprint="fp")
    cids = ids[: len(ids) - cold]
    rows = h[: len(cids)]
    if extra_collab_id:
        cids, rows = [*cids, "stranger"], torch.cat([rows, h[:1]])
    save_embeddings(collab, rows, cids, make_provenance("test", {}), "collab", dataset_fingerprint=collab_fp)
    return text, collab


def test_alignment_loss_ignores_cold_rows_and_has_gradients() -> None:
    g = torch.Generator().manual_seed(0)
    targets = torch.randn(8, 5, generator=g)
    warm = torch.tensor([True] * 6 + [False] * 2)
    head = torch.nn.Linear(4, 5)
    z_q = torch.randn(8, 4, generator=g, requires_grad=True)
    loss = alignment_loss(z_q, head, targets, warm, 0.1)
    assert loss.shape == () and float(loss.detach()) > 0
    loss.backward()
    assert z_q.grad is not None and float(z_q.grad[:6].abs().sum()) > 0 and float(z_q.grad[6:].abs().sum()) == 0
    assert head.weight.grad is not None and float(head.weight.grad.abs().sum()) > 0
    changed = targets.clone()
    changed[6:] = torch.randn(2, 5, generator=g)  # cold rows' targets do not matter
    assert torch.isclose(alignment_loss(z_q, head, changed, warm, 0.1), loss)
    # a head that maps z_q exactly onto its own targets scores far better than a random one
    exact = torch.nn.Linear(5, 5, bias=False)
    with torch.no_grad():
        exact.weight.copy_(torch.eye(5))
    assert float(alignment_loss(targets, exact, targets, warm, 0.1).detach()) < float(loss.detach()) / 3
    assert float(alignment_loss(z_q, head, targets, torch.tensor([True] + [False] * 7), 0.1).detach()) == 0.0


def test_diversity_loss_prefers_codes_grouped_by_cluster() -> None:
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(2, 6, generator=g) * 5
    cluster = torch.tensor([0, 0, 0, 1, 1, 1])
    grouped = (centres[cluster] + torch.randn(6, 6, generator=g) * 0.1).requires_grad_(True)
    codes = torch.tensor([0, 1, 3, 4, 4])
    good = diversity_loss(grouped, codes, cluster, 0.1)
    good.backward()
    assert good.shape == () and grouped.grad is not None and float(grouped.grad.abs().sum()) > 0
    mixed = diversity_loss(grouped.detach(), codes, torch.tensor([0, 1, 0, 1, 0, 1]), 0.1)
    assert float(good.detach()) < float(mixed)


def test_alignment_raises_the_collaborative_lift_of_level1_prefixes(tmp_path: Path) -> None:
    configure(quiet=True)
    x, h = planted()
    text, collab = write_pair(tmp_path, x, h)
    cfg = QuantizeConfig(levels=2, codebook_sizes=[6, 8], code_dim=8, hidden=[32], epochs=60, warmup_epochs=10)
    plain = quantize(text, tmp_path / "plain.jsonl", cfg)
    letter = quantize(text, tmp_path / "letter.jsonl", cfg,
                      letter=LetterConfig(collab=str(collab), w_collab=1.0, w_diversity=0.0))
    lift_plain = cosine_consistency(plain.table.codes, h, 1)["lift"]
    lift_letter = cosine_consistency(letter.table.codes, h, 1)["lift"]
    assert lift_plain < 0.05 < 0.15 < lift_letter, (lift_plain, lift_letter)
    assert letter.stats["letter"]["warm_items"] == len(x) - 10 and letter.stats["letter"]["cold_items"] == 10


def _args(text: Path, out: Path, *extra: str) -> list[str]:
    return ["quantize", str(text), "-o", str(out), "--levels", "2", "--codebook-size", "12", "--code-dim", "8",
            "--hidden", "32", "--epochs", "8", "--warmup-epochs", "4", "--quiet", *extra]


def test_cli_letter_records_collab_hash_and_weights_and_applies(tmp_path: Path) -> None:
    x, h = planted(per=3)
    text, collab = write_pair(tmp_path, x, h)
    out, model = tmp_path / "s.jsonl", tmp_path / "q.st"
    r = runner.invoke(app, _args(text, out, "--collab", str(collab), "--w-collab", "0.5", "--w-diversity", "0.01",
                                 "--letter-clusters", "3", "--save-model", str(model), "--json"))
    assert r.exit_code == 0, r.output
    stats = json.loads(r.stdout)
    assert stats["letter"]["w_collab"] == 0.5 and set(stats["training"]["final_train_letter"]) == {
        "collab", "diversity"}
    prov = read_sids(out).provenance
    assert prov["inputs"]["collab"]["sha256"] == sha256_file(collab)
    assert prov["parameters"]["letter"] == {"collab": str(collab), "w_collab": 0.5, "w_diversity": 0.01,
                                            "temperature": 0.1, "clusters": 3, "recluster_every": 10}
    r = runner.invoke(app, ["quantize", "--apply", str(model), str(text), "-o", str(tmp_path / "a.jsonl"),
                            "--quiet"])
    assert r.exit_code == 0, r.output  # the saved quantizer is a plain RQ-VAE
    r2 = runner.invoke(app, _args(text, tmp_path / "s2.jsonl", "--collab", str(collab), "--w-collab", "0.5",
                                  "--w-diversity", "0.01", "--letter-clusters", "3"))
    assert r2.exit_code == 0 and (tmp_path / "s2.jsonl").read_text().split("\n", 1)[1] == \
        out.read_text().split("\n", 1)[1]  # deterministic (the header differs only by the command line)


@pytest.mark.parametrize(
    ("case", "args", "needle"),
    [
        ("other_dataset", [], "same dataset"),
        ("extra_id", [], "missing from the text file"),
        ("ok", ["--w-collab", "0.5", "--no-collab"], "need --collab"),
        ("ok", ["--method", "rqkmeans"], "--method rqvae"),
        ("ok", ["--w-diversity", "0.1", "--letter-clusters", "99"], "--letter-clusters"),
        ("swap", [], "expected collaborative"),
    ],
)
def test_bad_letter_input_one_line_exit_2(tmp_path: Path, case: str, args: list[str], needle: str) -> None:
    x, h = planted(per=2)
    text, collab = write_pair(tmp_path, x, h, collab_fp="other" if case == "other_dataset" else "fp",
                              extra_collab_id=case == "extra_id")
    if "--no-collab" in args:
        args = [a for a in args if a != "--no-collab"]
        extra = args
    else:
        extra = ["--collab", str(text if case == "swap" else collab), *args]
    out = tmp_path / "s.jsonl"
    r = runner.invoke(app, _args(text, out, *extra))
    assert r.exit_code == 2, r.output
    assert needle in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not out.exists()
