"""Checkpoints are best effort, I/O errors name their file, an early Ctrl-C says why --resume would start over,
and no run leaves files outside its outputs (docs/robustness.md, "Outputs")."""

from __future__ import annotations

import errno
import os
import pathlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import load_embeddings, make_provenance, save_embeddings
from uqf_cli.files.checkpoint import Checkpointer

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() raises on a full disk: no file name


def _gcn(ds: Path, out: Path) -> list[str]:
    return ["train-gcn", str(ds), "-o", str(out), "--epochs", "3", "--dim", "8", "--eval-every", "1", "-q"]


def _full_disk_for(monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
    """Writes of whole files (``Path.write_bytes``) whose name contains ``marker`` fail as on a full disk."""
    real = pathlib.Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        if marker in self.name:
            raise OSError(ENOSPC.errno, ENOSPC.strerror)
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_a_failed_checkpoint_warns_once_and_training_goes_on(tiny_ds: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UQF_CHECKPOINT_EVERY", "0")  # a save after every epoch: two tries in three epochs
    reference = tmp_path / "reference.st"
    assert CliRunner().invoke(app, _gcn(tiny_ds, reference)).exit_code == 0
    work = tmp_path / "work"
    work.mkdir()
    out = work / "collab.st"
    _full_disk_for(monkeypatch, ".ckpt.st.")  # the checkpoint's temporary: .collab.st.ckpt.st.XXXX.tmp
    r = CliRunner().invoke(app, _gcn(tiny_ds, out))
    assert r.exit_code == 0, r.output
    warnings = [ln for ln in _lines(r.stderr) if ln.startswith("warning:")]
    assert len(warnings) == 1, r.stderr
    assert f"{out}.ckpt.st" in warnings[0] and "No space left on device" in warnings[0]
    assert sorted(p.name for p in work.iterdir()) == ["collab.st"]  # the output; no checkpoint, no temporary
    assert torch.equal(load_embeddings(out).embeddings, load_embeddings(reference).embeddings)


def test_a_full_disk_names_the_output_that_could_not_be_written(tiny_ds: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "collab.st"
    _full_disk_for(monkeypatch, ".tmp")
    r = CliRunner().invoke(app, _gcn(tiny_ds, out))
    assert r.exit_code == 2, r.output
    assert _lines(r.stderr) == [f"error: {out}: No space left on device"]
    assert list(tmp_path.iterdir()) == [tiny_ds]  # no output, temporary, checkpoint or lock


def test_a_failed_trainer_checkpoint_warns_once_and_lcrec_goes_on(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """LC-Rec's checkpoints are the HF Trainer's; a save that fails (the disk fills while the Trainer writes the
    weights) warns once, its incomplete folder goes, and the run ends with its output."""
    import transformers
    from conftest import make_dataset
    from test_lcrec import _sids, _tiny_llama

    from uqf_cli.rec import lcrec

    ds = Dataset.load(make_dataset(tmp_path / "ds", n_users=12, n_items=12))
    sids = _sids(ds, tmp_path / "sids.jsonl")
    corpus = [lcrec.prompt_text(lcrec.SEQ_INSTRUCTION.format(history="x")), *(ds.title(i) for i in ds.item_ids)]
    base = _tiny_llama(tmp_path / "tiny-llama", corpus * 4)
    opts = {"max_steps": 3, "batch_size": 4, "lr": 5e-3, "lora_r": 4, "lora_alpha": 8, "device": "cpu", "seed": 3,
            "base_model": str(base)}
    monkeypatch.setenv("UQF_CHECKPOINT_EVERY", "0")  # a checkpoint after every step

    def full_disk(self, output_dir=None, _internal_call=False):
        raise OSError(ENOSPC.errno, ENOSPC.strerror)

    monkeypatch.setattr(transformers.Trainer, "save_model", full_disk)
    warned: list[str] = []
    monkeypatch.setattr("uqf_cli.files.checkpoint.runtime.warn", warned.append)
    summary = lcrec.train(ds, sids, tmp_path / "model", opts, False)
    assert summary["steps"] == 3
    assert len(warned) == 1 and "model.ckpt/checkpoint-" in warned[0] and "No space left" in warned[0], warned
    assert (tmp_path / "model" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "model.ckpt").exists()


def _fuse(text: Path, collab: Path, ds: Path, out: Path) -> list[str]:
    return ["fuse", "--text", str(text), "--collab", str(collab), "--dataset", str(ds), "-o", str(out),
            "--d-model", "16", "--queries", "2", "--layers", "1", "--heads", "2", "--out-dim", "8", "--epochs", "3",
            "--device", "cpu", "-q"]


def test_an_early_interrupt_says_that_no_checkpoint_exists_yet(tiny_ds: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data = Dataset.load(tiny_ds)
    ids = list(data.item_ids)
    g = torch.Generator().manual_seed(0)
    text = save_embeddings(tmp_path / "text.st", torch.randn(len(ids), 12, generator=g), ids,
                           make_provenance("t", {}), "text", data.fingerprint)
    collab = save_embeddings(tmp_path / "collab.st", torch.randn(len(ids), 8, generator=g), ids,
                             make_provenance("t", {}), "collab", data.fingerprint)
    work = tmp_path / "work"
    work.mkdir()

    def ctrl_c_in_first_epoch(self: Checkpointer, epoch: int, snapshot, last: bool = False) -> None:
        raise KeyboardInterrupt  # before the first checkpoint was due

    monkeypatch.setattr(Checkpointer, "epoch_done", ctrl_c_in_first_epoch)
    r = CliRunner().invoke(app, _fuse(text, collab, tiny_ds, work / "unified.st"))
    assert r.exit_code == 130, r.output
    lines = _lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert "interrupted; no partial output was left behind" in lines[0]
    assert "no checkpoint had been saved yet" in lines[0] and "UQF_CHECKPOINT_EVERY" in lines[0]
    assert "--resume would start from the beginning" in lines[0]
    assert list(work.iterdir()) == []


def test_train_gcn_leaves_nothing_in_the_temp_folder(tiny_ds: Path, tmp_path: Path) -> None:
    """PyG generates code for its conv classes into the temp folder; uqf points it at a private one it removes.
    A fresh interpreter: PyG generates each module once per process."""
    temp = tmp_path / "system-temp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "UQF_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "uqf_cli", *_gcn(tiny_ds, tmp_path / "collab.st")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "collab.st").is_file()
    assert sorted(temp.rglob("*")) == []
