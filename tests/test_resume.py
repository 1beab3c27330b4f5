"""--resume: an interrupted run continued from its checkpoint gives the same output as an uninterrupted run.

The interruption is the fixture ``stop_after_epoch(N)`` (conftest.py): the training loop saves its checkpoint
after epoch N and raises KeyboardInterrupt, as a Ctrl-C right after that save would. ``UQF_CHECKPOINT_EVERY=3600``
makes sure no other save happens, so the resumed run really starts from epoch N.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.core.errors import InputError
from uqf_cli.files import load_tensors
from uqf_cli.files.checkpoint import Checkpointer, Snapshot, checkpoint_path

runner = CliRunner()
StopAfter = Callable[[int | None], None]


def _content(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Every tensor and every metadata / JSON value of an output file or model directory (parsed: safetensors
    stores metadata keys in random order, so bytes are compared through their content)."""
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, object] = {}
    for f in files:
        name = str(f.relative_to(path)) if path.is_dir() else "output"
        if f.suffix in (".st", ".safetensors"):
            t, m = load_tensors(f)
            tensors.update({f"{name}:{k}": v for k, v in t.items()})
            meta.update({f"{name}:{k}": _parse(v) for k, v in m.items()})
        elif f.suffix in (".json", ".jsonl"):
            meta[name] = f.read_text()
    return tensors, meta


def _parse(value: str) -> object:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _same(a: Path, b: Path) -> None:
    (ta, ma), (tb, mb) = _content(a), _content(b)
    assert ta and ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    assert ma == mb  # includes the training curves, so every epoch after the resume point is compared


def _interrupt_then_resume(monkeypatch: pytest.MonkeyPatch, stop_after_epoch: StopAfter, args: list[str], out: Path,
                           stop_after: int) -> None:
    monkeypatch.setenv("UQF_CHECKPOINT_EVERY", "3600")
    stop_after_epoch(stop_after)
    r = runner.invoke(app, [*args, "-o", str(out)])
    assert r.exit_code == 130, r.output
    assert not out.exists()
    assert load_tensors(checkpoint_path(out))[1]["epoch"] == str(stop_after)
    stop_after_epoch(None)
    r = runner.invoke(app, [*args, "-o", str(out), "--resume"])
    assert r.exit_code == 0, r.output
    assert out.exists() and not checkpoint_path(out).exists()


def _uninterrupted(args: list[str], out: Path) -> None:
    r = runner.invoke(app, [*args, "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert not checkpoint_path(out).exists()


def test_train_gcn_resume_matches_uninterrupted(tiny_ds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                stop_after_epoch: StopAfter):
    args = ["train-gcn", str(tiny_ds), "--epochs", "6", "--dim", "8", "--eval-every", "2", "--patience", "0",
            "--batch-size", "16", "--quiet"]
    _uninterrupted(args, tmp_path / "full.st")
    _interrupt_then_resume(monkeypatch, stop_after_epoch, args, tmp_path / "resumed.st", stop_after=3)
    _same(tmp_path / "full.st", tmp_path / "resumed.st")
    assert (tmp_path / "full.st").read_bytes() != b""


@pytest.fixture
def fuse_inputs(tiny_ds: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Random text and collab embedding files for tiny_ds's items (fuse only needs ids to align)."""
    from uqf_cli.data.dataset import Dataset
    from uqf_cli.files import make_provenance, save_embeddings

    ds = Dataset.load(tiny_ds)
    g = torch.Generator().manual_seed(0)
    ids = list(ds.item_ids)
    text, collab = tmp_path / "text.st", tmp_path / "collab.st"
    save_embeddings(text, torch.randn(len(ids), 12, generator=g), ids, make_provenance("test", {}), "text",
                    ds.fingerprint)
    save_embeddings(collab, torch.randn(len(ids), 8, generator=g), ids, make_provenance("test", {}), "collab",
                    ds.fingerprint)
    return tiny_ds, text, collab


def test_fuse_resume_matches_uninterrupted(fuse_inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           stop_after_epoch: StopAfter):
    ds, text, collab = fuse_inputs
    args = ["fuse", "--text", str(text), "--collab", str(collab), "--dataset", str(ds), "--d-model", "16",
            "--queries", "2", "--layers", "1", "--heads", "2", "--out-dim", "8", "--epochs", "4",
            "--batch-size", "4", "--device", "cpu", "-q"]
    _uninterrupted([*args, "--save-model", str(tmp_path / "full_fuser.st")], tmp_path / "full.st")
    _interrupt_then_resume(monkeypatch, stop_after_epoch,
                           [*args, "--save-model", str(tmp_path / "res_fuser.st")], tmp_path / "res.st",
                           stop_after=2)
    _same(tmp_path / "full.st", tmp_path / "res.st")
    _same(tmp_path / "full_fuser.st", tmp_path / "res_fuser.st")


def test_sasrec_resume_matches_uninterrupted(tiny_ds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             stop_after_epoch: StopAfter):
    args = ["train-rec", str(tiny_ds), "--backbone", "sasrec", "--epochs", "4", "--d-model", "16",
            "--num-layers", "1", "--batch-size", "8", "--patience", "10", "--device", "cpu", "-q"]
    _uninterrupted(args, tmp_path / "full")
    _interrupt_then_resume(monkeypatch, stop_after_epoch, args, tmp_path / "res", stop_after=2)
    _same(tmp_path / "full", tmp_path / "res")


def test_resume_refuses_a_checkpoint_from_another_run(tiny_ds: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, stop_after_epoch: StopAfter):
    args = ["train-gcn", str(tiny_ds), "--epochs", "4", "--dim", "8", "--batch-size", "16", "-q"]
    out = tmp_path / "c.st"
    stop_after_epoch(1)
    assert runner.invoke(app, [*args, "-o", str(out)]).exit_code == 130
    stop_after_epoch(None)
    ckpt = checkpoint_path(out)
    before = ckpt.read_bytes()
    r = runner.invoke(app, [*args, "--lr", "0.05", "-o", str(out), "--resume"])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "different run" in lines[0] and "lr" in lines[0]
    assert "Traceback" not in r.output
    assert not out.exists() and ckpt.read_bytes() == before  # refused before touching anything


def test_without_resume_an_old_checkpoint_is_ignored_and_removed(tiny_ds: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 stop_after_epoch: StopAfter):
    args = ["train-gcn", str(tiny_ds), "--epochs", "3", "--dim", "8", "--batch-size", "16", "--patience", "0"]
    out = tmp_path / "c.st"
    stop_after_epoch(1)
    assert runner.invoke(app, [*args, "-q", "-o", str(out)]).exit_code == 130
    stop_after_epoch(None)
    r = runner.invoke(app, [*args, "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert "ignoring the checkpoint" in r.output
    assert out.exists() and not checkpoint_path(out).exists()
    _uninterrupted([*args, "-q"], tmp_path / "fresh.st")
    _same(out, tmp_path / "fresh.st")  # a fresh run, not a continuation


def test_snapshot_round_trip_adamw_lambdalr(tmp_path: Path):
    """The plain-torch-loop API (TIGER's pattern): AdamW + LambdaLR + a generator, restored exactly."""

    def build() -> tuple[torch.nn.Module, torch.optim.Optimizer, object, torch.Generator]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 2))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 3))
        return model, opt, sched, torch.Generator().manual_seed(1)

    def epoch(model, opt, sched, gen) -> None:
        for _ in range(3):
            x = torch.randn(5, 4, generator=gen)
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()

    ref = build()
    for _ in range(4):
        epoch(*ref)

    run = build()
    for _ in range(2):
        epoch(*run)
    ck = Checkpointer(tmp_path / "out.st", "test", {"a": 1}, resume=True, every_seconds=0)
    live = lambda m, o, s, g: {"modules": {"m": m}, "optimizers": {"o": o}, "schedulers": {"s": s},  # noqa: E731
                               "generators": {"g": g}}
    ck.save(Snapshot.capture(2, step=6, **live(*run), state={"note": "x"}))
    torch.manual_seed(123)  # disturb the global RNG: restore must put it back
    fresh = build()
    snap = ck.load()
    assert snap is not None and snap.epoch == 2 and snap.step == 6 and snap.state == {"note": "x"}
    snap.restore(**live(*fresh))
    for _ in range(2):
        epoch(*fresh)
    for a, b in zip(ref[0].parameters(), fresh[0].parameters(), strict=True):
        assert torch.equal(a, b)
    assert ref[2].get_last_lr() == fresh[2].get_last_lr()
    ck.finish()
    assert not checkpoint_path(tmp_path / "out.st").exists()


def test_quantize_resume_matches_uninterrupted(fuse_inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               stop_after_epoch: StopAfter):
    _, text, _ = fuse_inputs
    args = ["quantize", str(text), "--levels", "2", "--codebook-size", "4", "--code-dim", "4", "--hidden", "16",
            "--epochs", "6", "--warmup-epochs", "2", "--batch-size", "4", "--device", "cpu", "--quiet"]
    # --batch-size 4 < 12 items: several shuffled batches per epoch, so the batch generator matters
    _uninterrupted([*args, "--save-model", str(tmp_path / "full_q.st")], tmp_path / "full.jsonl")
    _interrupt_then_resume(monkeypatch, stop_after_epoch,
                           [*args, "--save-model", str(tmp_path / "res_q.st")], tmp_path / "res.jsonl",
                           stop_after=3)
    assert (tmp_path / "full.jsonl").read_text() == (tmp_path / "res.jsonl").read_text()
    _same(tmp_path / "full_q.st", tmp_path / "res_q.st")


@pytest.mark.parametrize(("windows", "stop", "extra"), [
    (None, 2, {}), (8, 3, {}),
    (8, 3, {"batch_size": 2, "grad_accum": 2, "micro_batches": 2, "micro_batch_overhead": 2}),
    (8, 3, {"decay_epochs": 1, "min_lr_ratio": 0.5}),
])
def test_lcrec_resume_through_the_trainer_matches_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                stop_after_step: StopAfter, windows: int | None,
                                                                stop: int, extra: dict):
    """LC-Rec resumes through the HF Trainer's own checkpoints (``<output>.ckpt/checkpoint-N``); the hook here
    is ``stop_after_step`` (optimizer steps). With 8 windows (2 steps an epoch) the run stops in the second
    epoch, whose batches the resumed run must draw again (bucketed batching: every epoch its own). The last case
    stops after the first step of that epoch with ``--grad-accum 2`` and batches of 2 that take 1 or 2 forward
    passes each (``--micro-batch-overhead``): the resumed run skips the 2 batches already trained, whatever
    passes they took. The case with ``--decay-epochs 1 --min-lr-ratio 0.5`` resumes on the floor after the decay
    (uqf's own scheduler, restored from the checkpoint like the Trainer's)."""
    from conftest import make_dataset
    from test_lcrec import _sids, _tiny_llama

    from uqf_cli.data.dataset import Dataset
    from uqf_cli.files.checkpoint import trainer_checkpoint_dir
    from uqf_cli.rec import lcrec
    from uqf_cli.rec.lcrec.batching import RandomBatches

    ds = Dataset.load(make_dataset(tmp_path / "ds", n_users=12, n_items=12))
    sids = _sids(ds, tmp_path / "sids.jsonl")
    corpus = [lcrec.prompt_text(lcrec.SEQ_INSTRUCTION.format(history="x")), *(ds.title(i) for i in ds.item_ids)]
    base = _tiny_llama(tmp_path / "tiny-llama", corpus * 4)
    opts = {"max_steps": 4, "batch_size": 4, "lr": 5e-3, "lora_r": 4, "lora_alpha": 8, "device": "cpu", "seed": 3,
            "base_model": str(base), "max_samples": windows, **extra}
    passes: set[int] = set()
    draw = RandomBatches.set_epoch

    def spy(self, epoch: int) -> None:
        draw(self, epoch)
        passes.update(len(s.parts) for s in self.splits)

    monkeypatch.setattr(RandomBatches, "set_epoch", spy)
    lcrec.train(ds, sids, tmp_path / "full", opts, False)
    if "micro_batch_overhead" in extra:
        assert passes == {1, 2}  # some batches run whole, some in 2 passes
    monkeypatch.setenv("UQF_CHECKPOINT_EVERY", "3600")
    stop_after_step(stop)
    with pytest.raises(KeyboardInterrupt):
        lcrec.train(ds, sids, tmp_path / "res", opts, False)
    ckdir = trainer_checkpoint_dir(tmp_path / "res")
    assert not (tmp_path / "res").exists() and (ckdir / f"checkpoint-{stop}" / "trainer_state.json").exists()
    stop_after_step(None)
    with pytest.raises(InputError, match="different run"):  # another learning rate: refused
        lcrec.train(ds, sids, tmp_path / "res", {**opts, "lr": 1e-3, "resume": True}, False)
    summary = lcrec.train(ds, sids, tmp_path / "res", {**opts, "resume": True}, False)
    assert summary["steps"] == 4 and not ckdir.exists()
    full = load_tensors(tmp_path / "full" / "adapter_model.safetensors")[0]
    res = load_tensors(tmp_path / "res" / "adapter_model.safetensors")[0]
    assert full.keys() == res.keys()
    for k in full:
        assert torch.equal(full[k], res[k]), k


def test_lcrec_resume_keeps_the_validation_history_and_best_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    stop_after_step: StopAfter):
    """With --eval-steps, an interrupted and resumed LC-Rec run has the uninterrupted run's validation history,
    best step and saved (best) weights: both are kept in the Trainer checkpoint."""
    from conftest import make_dataset
    from test_lcrec import _sids, _tiny_llama

    from uqf_cli.data.dataset import Dataset
    from uqf_cli.rec import lcrec

    ds = Dataset.load(make_dataset(tmp_path / "ds", n_users=12, n_items=12))
    sids = _sids(ds, tmp_path / "sids.jsonl")
    corpus = [lcrec.prompt_text(lcrec.SEQ_INSTRUCTION.format(history="x")), *(ds.title(i) for i in ds.item_ids)]
    base = _tiny_llama(tmp_path / "tiny-llama", corpus * 4)
    opts = {"max_steps": 4, "batch_size": 4, "lr": 2e-2, "lora_r": 4, "lora_alpha": 8, "device": "cpu", "seed": 3,
            "base_model": str(base), "eval_steps": 1, "eval_users": 6, "patience": 10, "eval_beam": 12}
    full = lcrec.train(ds, sids, tmp_path / "full", opts, False)
    monkeypatch.setenv("UQF_CHECKPOINT_EVERY", "3600")
    stop_after_step(2)
    with pytest.raises(KeyboardInterrupt):
        lcrec.train(ds, sids, tmp_path / "res", opts, False)
    stop_after_step(None)
    res = lcrec.train(ds, sids, tmp_path / "res", {**opts, "resume": True}, False)
    assert [h["step"] for h in res["history"]] == [1, 2, 3, 4]
    assert [h["valid_ndcg10"] for h in res["history"]] == [h["valid_ndcg10"] for h in full["history"]]
    assert res["best_step"] == full["best_step"]
    a = load_tensors(tmp_path / "full" / "adapter_model.safetensors")[0]
    b = load_tensors(tmp_path / "res" / "adapter_model.safetensors")[0]
    for k in a:
        assert torch.equal(a[k], b[k]), k
