"""Ctrl-C (SIGINT) and kill (SIGTERM) during a stage: exit 130 / 143, one line on stderr, no partial output,
no temporary file left behind, and an existing output that --force was about to replace is left unchanged.

Each case runs ``python -m uqf_cli`` as a real subprocess and sends a real signal. To hit the worst moment
reliably, those subprocesses start the CLI through a small bootstrap (``PAUSED``) that makes the atomic writer
wait with its complete temporary file in place; the signal is sent as soon as that file appears. One case
interrupts the training loop itself instead (after its first checkpoint), and checks that the message points
to --resume.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, make_provenance, save_embeddings, write_sids
from uqf_cli.files.checkpoint import checkpoint_path

WAIT_S = 120
CLI = ["-m", "uqf_cli"]
# `python -m uqf_cli`, except that every atomic writer sleeps just before renaming its complete temporary output
PAUSED = ["-c", """
import runpy, time
import uqf_cli.files.atomic as atomic
commit = atomic.commit
def paused(*args, **kwargs):
    time.sleep(60)
    return commit(*args, **kwargs)
atomic.commit = paused
runpy.run_module("uqf_cli", run_name="__main__", alter_sys=True)
"""]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "UQF_THREADS": "1", **extra}


def _temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


class Run:
    """``uqf ARGS`` as a subprocess that gets ``sig`` as soon as ``ready()`` is true."""

    def __init__(self, args: list[str], sig: signal.Signals, ready: Callable[[], bool], env: dict[str, str],
                 start: list[str] = CLI) -> None:
        self.sig, self.ready, self.signalled = sig, ready, False
        self.proc = subprocess.Popen([sys.executable, *start, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)

    def poke(self) -> bool:
        """Send the signal if the moment has come; True once sent. Fails if uqf exited before it."""
        if not self.signalled and self.ready():
            self.proc.send_signal(self.sig)
            self.signalled = True
        elif not self.signalled and self.proc.poll() is not None:
            pytest.fail(f"uqf exited ({self.proc.returncode}) before the signal:\n{self.proc.communicate()[1]}")
        return self.signalled


def _run_all(runs: list[Run]) -> list[subprocess.CompletedProcess]:
    """Run the cases side by side (each subprocess spends most of its time importing torch), signal each at its
    moment, and collect the results."""
    deadline = time.monotonic() + WAIT_S
    try:
        while not all([r.poke() for r in runs]):
            if time.monotonic() > deadline:
                pytest.fail("a stage never reached the point to interrupt")
            time.sleep(0.02)
        results = []
        for r in runs:
            out, err = r.proc.communicate(timeout=WAIT_S)
            results.append(subprocess.CompletedProcess(r.proc.args, r.proc.returncode, out, err))
        return results
    finally:
        for r in runs:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait()


def _assert_clean_stop(r: subprocess.CompletedProcess, sig: signal.Signals, folder: Path) -> str:
    assert r.returncode == (143 if sig == signal.SIGTERM else 130), r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and "no partial output" in lines[0]
    assert ("terminated" if sig == signal.SIGTERM else "interrupted") in lines[0]
    assert _temporaries(folder) == []
    return lines[0]


@pytest.fixture
def inputs(tiny_ds: Path, tmp_path: Path) -> dict[str, Path]:
    ds = Dataset.load(tiny_ds)
    g = torch.Generator().manual_seed(0)
    ids = list(ds.item_ids)
    paths = {"ds": tiny_ds, "text": tmp_path / "text.st", "collab": tmp_path / "collab.st"}
    save_embeddings(paths["text"], torch.randn(len(ids), 12, generator=g), ids, make_provenance("t", {}), "text",
                    ds.fingerprint)
    save_embeddings(paths["collab"], torch.randn(len(ids), 8, generator=g), ids, make_provenance("t", {}), "collab",
                    ds.fingerprint)
    return paths


def _stage_args(stage: str, p: dict[str, Path], out: Path) -> list[str]:
    if stage == "train-gcn":
        return ["train-gcn", str(p["ds"]), "-o", str(out), "--epochs", "2", "--dim", "8", "--device", "cpu"]
    if stage == "fuse":
        return ["fuse", "--text", str(p["text"]), "--collab", str(p["collab"]), "--dataset", str(p["ds"]),
                "-o", str(out), "--d-model", "16", "--queries", "2", "--layers", "1", "--heads", "2",
                "--out-dim", "8", "--epochs", "1", "--device", "cpu"]
    if stage == "quantize":
        return ["quantize", str(p["text"]), "-o", str(out), "--levels", "2", "--codebook-size", "4",
                "--code-dim", "4", "--hidden", "16", "--epochs", "2", "--warmup-epochs", "1", "--device", "cpu"]
    if stage == "train-rec":
        return ["train-rec", str(p["ds"]), "-o", str(out), "--backbone", "sasrec", "--epochs", "1",
                "--d-model", "16", "--num-layers", "1", "--device", "cpu"]
    raise AssertionError(stage)


# (stage, signal, output name): a file output for each writer kind, and a model directory
WRITE_CASES = [
    ("train-gcn", signal.SIGTERM, "collab.st"),
    ("fuse", signal.SIGINT, "unified.st"),
    ("quantize", signal.SIGTERM, "sids.jsonl"),
    ("train-rec", signal.SIGINT, "model"),
]


def _earlier_output(out: Path, ids: list[str]) -> dict[str, bytes]:
    """An earlier output of the kind the stage writes (--force replaces nothing else)."""
    if out.suffix == "":  # a directory output: an earlier model directory
        out.mkdir()
        (out / "uqf_model.json").write_text('{"backbone": "sasrec", "earlier": true}\n')
    elif out.suffix == ".jsonl":
        write_sids(out, SidTable(ids, np.arange(len(ids))[:, None] % 4, [4], {"earlier": True}))
    else:
        modality = "collab" if out.name == "collab.st" else "unified"
        save_embeddings(out, torch.ones(len(ids), 4), ids, {"earlier": True}, modality)
    return _snapshot(out)


def _snapshot(out: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in out.iterdir()} if out.is_dir() else {out.name: out.read_bytes()}


def test_signals_leave_no_partial_output_and_earlier_outputs_intact(inputs: dict[str, Path], tmp_path: Path) -> None:
    runs, checks = [], []
    for stage, sig, output in WRITE_CASES:  # signal while the complete temporary output waits to be renamed
        folder = tmp_path / stage
        folder.mkdir()
        out = folder / output
        before = _earlier_output(out, list(Dataset.load(inputs["ds"]).item_ids))
        names = sorted(p.name for p in folder.iterdir())
        args = [*_stage_args(stage, inputs, out), "--force", "--quiet"]
        ready = functools.partial(lambda f: bool(_temporaries(f)), folder)
        runs.append(Run(args, sig, ready, _env(), start=PAUSED))
        checks.append((stage, sig, folder, out, before, names))

    folder = tmp_path / "training"  # signal inside the training loop, once the first checkpoint exists
    folder.mkdir()
    out = folder / "collab.st"
    ckpt = checkpoint_path(out)
    args = ["train-gcn", str(inputs["ds"]), "-o", str(out), "--epochs", "100000", "--patience", "0", "--dim", "8",
            "--device", "cpu", "--quiet"]
    runs.append(Run(args, signal.SIGINT, ckpt.exists, _env(UQF_CHECKPOINT_EVERY="0")))

    results = _run_all(runs)
    for (stage, sig, folder, out, before, names), r in zip(checks, results[:-1], strict=True):
        _assert_clean_stop(r, sig, folder)
        assert _snapshot(out) == before, stage
        assert sorted(p.name for p in folder.iterdir()) == names, stage  # no partial file, checkpoint or lock

    line = _assert_clean_stop(results[-1], signal.SIGINT, tmp_path / "training")
    assert "--resume" in line and str(ckpt) in line
    assert sorted(p.name for p in (tmp_path / "training").iterdir()) == [ckpt.name]  # no output, a checkpoint
