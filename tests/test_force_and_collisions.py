"""``--force`` replaces only an earlier output of the same kind; every path a command writes is checked against
the others and the inputs before any work; a run locks its outputs (docs/robustness.md, "Outputs").

Each refusal runs the real CLI in-process in its own working directory and checks: exit code 2, one stderr line
``error: ...`` naming the path and the problem, no traceback, nothing created or changed in the working
directory (no output, no lock, no temporary) and the shared fixtures untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_dataset
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.core.errors import InputError
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, check_output, save_embeddings, write_sids
from uqf_cli.files.kinds import recognise
from uqf_cli.files.outputs import acquire_lock, release_lock
from uqf_cli.quantize.stage import lcrec_index_path


def run_cli(args: list[str]):
    return CliRunner().invoke(app, [str(a) for a in args])


@dataclass
class Fx:
    root: Path
    src: Path  # an LC-Rec source folder for `prepare`
    ds: Path
    text: Path
    collab: Path
    unified: Path
    sids: Path
    model: Path
    metrics: Path


def _snapshot(d: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(d)): p.read_bytes() if p.is_file() else None for p in sorted(d.rglob("*"))}


def _lcrec_source(d: Path, n_items: int = 12, n_users: int = 20) -> Path:
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    inter = {str(u): [int(i) for i in rng.choice(n_items, size=5, replace=False)] for u in range(n_users)}
    (d / "X.inter.json").write_text(json.dumps(inter), encoding="utf-8")
    (d / "X.item.json").write_text(json.dumps({str(i): {"title": f"t{i}"} for i in range(n_items)}),
                                   encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fx:
    root = tmp_path_factory.mktemp("force")
    src = _lcrec_source(root / "src")
    ds = make_dataset(root / "ds", n_users=30, n_items=12)
    data = Dataset.load(ds)
    ids = list(data.item_ids)
    g = torch.Generator().manual_seed(0)
    text = save_embeddings(root / "text.st", torch.randn(len(ids), 16, generator=g), ids, {}, "text",
                           data.fingerprint)
    collab = save_embeddings(root / "collab.st", torch.randn(len(ids), 8, generator=g), ids, {}, "collab",
                             data.fingerprint)
    unified = save_embeddings(root / "unified.st", torch.randn(len(ids), 8, generator=g), ids, {}, "unified",
                              data.fingerprint)
    sids = write_sids(root / "sids.jsonl", SidTable(ids, np.arange(len(ids))[:, None] % 4, [4]))
    model = root / "model"
    r = run_cli(["train-rec", ds, "--backbone", "sasrec", "-o", model, "--epochs", "1", "--d-model", "8",
                 "--num-layers", "1", "-q"])
    assert r.exit_code == 0, r.output
    metrics = root / "metrics.json"
    r = run_cli(["evaluate", model, ds, "-o", metrics, "-q"])
    assert r.exit_code == 0, r.output
    return Fx(root, src, ds, text, collab, unified, sids, model, metrics)


@dataclass
class Case:
    id: str
    args: Callable[[Fx, Path], list]  # (fixtures, working dir) -> argv
    names: Callable[[Fx, Path], list[str]]  # what the error line must contain
    setup: Callable[[Fx, Path], None] | None = None  # puts things into the working dir first


def _copy(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)
        meta = src.with_name(src.name + ".meta.json")
        if meta.exists():
            shutil.copyfile(meta, dst.with_name(dst.name + ".meta.json"))


def _photos(f: Fx, w: Path) -> None:
    (w / "my-photos").mkdir()
    (w / "my-photos" / "cat.jpg").write_bytes(b"\xff\xd8 not really a jpeg")


def _source_in_work(f: Fx, w: Path) -> None:
    shutil.copytree(f.src, w / "data" / "lc")


def _dataset_with_notes(f: Fx, w: Path) -> None:
    _copy(f.ds, w / "ds")
    (w / "ds" / "notes.txt").write_text("my notes\n")


def _model_with_metrics(f: Fx, w: Path) -> None:
    _copy(f.model, w / "m")
    _copy(f.metrics, w / "m" / "metrics.json")


def _gcn(f: Fx, out: Path, *extra: str) -> list:
    return ["train-gcn", f.ds, "-o", out, "--epochs", "1", "--dim", "8", *extra]


def _quantize(f: Fx, out: Path, *extra: str) -> list:
    return ["quantize", f.text, "-o", out, "--method", "rqkmeans", "--levels", "2", "--codebook-size", "4", *extra]


def _fuse(f: Fx, out: Path, *extra: str) -> list:
    return ["fuse", "--text", f.text, "--collab", f.collab, "--dataset", f.ds, "-o", out, "--epochs", "1", *extra]


REFUSED = [
    # ---- rule 1: --force replaces only an earlier output of the same kind
    Case("prepare-force-over-its-own-source", lambda f, w: ["prepare", f.src, "-o", f.src, "--force"],
         lambda f, w: [str(f.src), "input SOURCE"]),
    Case("prepare-force-over-folder-holding-its-source",
         lambda f, w: ["prepare", w / "data" / "lc", "-o", w / "data", "--force"],
         lambda f, w: [str(w / "data"), "holds the input SOURCE"], _source_in_work),
    Case("train-rec-force-over-its-own-dataset",
         lambda f, w: ["train-rec", f.ds, "--backbone", "sasrec", "-o", f.ds, "--force"],
         lambda f, w: [str(f.ds), "input DATASET"]),
    Case("prepare-force-over-a-folder-of-photos", lambda f, w: ["prepare", f.src, "-o", w / "my-photos", "--force"],
         lambda f, w: ["my-photos", "only an earlier uqf dataset directory", "not a uqf output"], _photos),
    Case("train-rec-force-over-a-folder-of-photos",
         lambda f, w: ["train-rec", f.ds, "--backbone", "sasrec", "-o", w / "my-photos", "--force"],
         lambda f, w: ["my-photos", "only an earlier uqf model directory", "not a uqf output"], _photos),
    Case("gcn-force-over-text-embeddings", lambda f, w: _gcn(f, w / "text.st", "--force"),
         lambda f, w: ["text.st", "collab embedding file", "this is a text embedding file"],
         lambda f, w: _copy(f.text, w / "text.st")),
    Case("gcn-force-over-a-user-file", lambda f, w: _gcn(f, w / "notes.st", "--force"),
         lambda f, w: ["notes.st", "not a uqf output"], lambda f, w: (w / "notes.st").write_text("mine\n")),
    Case("prepare-force-over-dataset-holding-a-user-file", lambda f, w: ["prepare", f.src, "-o", w / "ds", "--force"],
         lambda f, w: ["notes.txt", "--force would delete it"], _dataset_with_notes),
    Case("train-rec-force-over-model-holding-a-later-file",
         lambda f, w: ["train-rec", f.ds, "--backbone", "sasrec", "-o", w / "m", "--force"],
         lambda f, w: ["metrics.json", "--force would delete it"], _model_with_metrics),
    Case("evaluate-force-over-a-dataset-file",
         lambda f, w: ["evaluate", f.model, w / "ds", "-o", w / "ds" / "dataset.json", "--force"],
         lambda f, w: ["dataset.json", "metrics file"], lambda f, w: _copy(f.ds, w / "ds")),
    Case("quantize-force-over-unified-embeddings", lambda f, w: _quantize(f, w / "u.st", "--force"),
         lambda f, w: ["u.st", "SIDs file", "unified embedding file"], lambda f, w: _copy(f.unified, w / "u.st")),
    Case("quantize-force-over-its-input", lambda f, w: _quantize(f, f.text, "--force"),
         lambda f, w: ["text.st", "input EMBEDDINGS"]),
    Case("evaluate-predictions-over-its-sids-input",
         lambda f, w: ["evaluate", f.model, f.ds, "--sids", w / "s.jsonl", "--predictions", w / "s.jsonl", "--force"],
         lambda f, w: ["s.jsonl", "input --sids"], lambda f, w: _copy(f.sids, w / "s.jsonl")),
    Case("gcn-checkpoint-path-taken-by-a-user-file", lambda f, w: _gcn(f, w / "c.st"),
         lambda f, w: ["c.st.ckpt.st", "not a uqf checkpoint"], lambda f, w: (w / "c.st.ckpt.st").write_text("x")),
    Case("gcn-lock-path-taken-by-a-user-file", lambda f, w: _gcn(f, w / "c.st"),
         lambda f, w: ["c.st.lock", "not a uqf lock file"], lambda f, w: (w / "c.st.lock").write_text("mine\n")),
    # ---- rule 2: outputs that would land on one path (with or without --force)
    Case("quantize-sids-and-model-at-one-path", lambda f, w: _quantize(f, w / "s.jsonl", "--save-model", w / "s.jsonl"),
         lambda f, w: ["s.jsonl", "written twice", "--output", "--save-model"]),
    Case("quantize-force-sids-and-model-at-one-path",
         lambda f, w: _quantize(f, w / "s.jsonl", "--save-model", w / "s.jsonl", "--force"),
         lambda f, w: ["s.jsonl", "written twice"], lambda f, w: _copy(f.sids, w / "s.jsonl")),
    Case("quantize-model-at-the-lcrec-index",
         lambda f, w: _quantize(f, w / "run.jsonl", "--format", "lcrec", "--save-model", w / "run.index.json"),
         lambda f, w: ["run.index.json", "written twice", "LC-Rec index"]),
    Case("quantize-model-at-the-sids-metadata",
         lambda f, w: _quantize(f, w / "s.jsonl", "--save-model", w / "s.jsonl.meta.json"),
         lambda f, w: ["s.jsonl.meta.json", "written twice"]),
    Case("evaluate-predictions-and-metrics-at-one-path",
         lambda f, w: ["evaluate", f.model, f.ds, "--predictions", w / "p.json", "-o", w / "p.json"],
         lambda f, w: ["p.json", "written twice", "--predictions"]),
    Case("fuse-output-and-fuser-at-one-path", lambda f, w: _fuse(f, w / "u.st", "--save-model", w / "u.st"),
         lambda f, w: ["u.st", "written twice", "--save-model"]),
    Case("inspect-plot-and-html-at-one-path",
         lambda f, w: ["inspect-sids", f.sids, "--plot", w / "a.png", "--html", w / "a.png"],
         lambda f, w: ["a.png", "written twice", "--html"]),
    Case("train-rec-plot-inside-the-model-folder",
         lambda f, w: ["train-rec", f.ds, "--backbone", "sasrec", "-o", w / "m", "--plot", w / "m" / "curve.png"],
         lambda f, w: ["curve.png", "--plot is inside --output"]),
    Case("evaluate-predictions-over-a-dataset-file",
         lambda f, w: ["evaluate", f.model, f.ds, "--predictions", f.ds / "items.jsonl", "--force"],
         lambda f, w: ["items.jsonl", "predictions file", "not a uqf output"]),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_refused_before_any_work(case: Case, fx: Fx, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if case.setup:
        case.setup(fx, work)
    before_work, before_fx = _snapshot(work), _snapshot(fx.root)
    result = run_cli(case.args(fx, work))
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in case.names(fx, work):
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert _snapshot(work) == before_work, "the refused command created or changed files"
    assert _snapshot(fx.root) == before_fx, "the refused command touched its inputs"


def test_force_never_replaces_a_folder_with_a_file(tmp_path: Path) -> None:
    (tmp_path / "c.st").mkdir()  # the CLI's parser refuses this already; the library refuses it too
    with pytest.raises(InputError, match="is a folder; --output names a file here"):
        check_output(tmp_path / "c.st", True, "embeddings:collab")
    assert (tmp_path / "c.st").is_dir()


def test_force_replaces_earlier_outputs_of_their_kind(fx: Fx, tmp_path: Path) -> None:
    ds, sids = tmp_path / "ds", tmp_path / "s.jsonl"
    for args in (["prepare", fx.src, "-o", ds], _quantize(fx, sids, "--format", "lcrec")):
        first = run_cli(args)
        assert first.exit_code == 0, first.output
        again = run_cli([*args, "--force"])
        assert again.exit_code == 0, again.output
    assert recognise(ds) == "dataset" and recognise(sids) == "sids"
    assert recognise(tmp_path / "s.index.json") == "lcrec-index"
    assert json.loads((ds / "dataset.json").read_text())["uqf_kind"] == "dataset"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "s.index.json", "s.jsonl", "s.jsonl.meta.json"]


def test_force_replaces_an_earlier_model_directory(fx: Fx, tmp_path: Path) -> None:
    model = tmp_path / "m"
    _copy(fx.model, model)
    assert "files" in json.loads((model / "uqf_model.json").read_text())
    r = run_cli(["train-rec", fx.ds, "--backbone", "sasrec", "-o", model, "--epochs", "1", "--d-model", "8",
                 "--num-layers", "1", "--seed", "3", "-q", "--force"])
    assert r.exit_code == 0, r.output
    assert (model / "uqf_model.json").read_bytes() != (fx.model / "uqf_model.json").read_bytes()


def test_lcrec_index_follows_the_whole_stem(fx: Fx, tmp_path: Path) -> None:
    assert lcrec_index_path(Path("out/run.v1.jsonl")) == Path("out/run.v1.index.json")
    assert lcrec_index_path(Path("sids.jsonl")) == Path("sids.index.json")
    for version in ("v1", "v2"):
        r = run_cli(_quantize(fx, tmp_path / f"run.{version}.jsonl", "--format", "lcrec", "--seed", version[1]))
        assert r.exit_code == 0, r.output
    assert (tmp_path / "run.v1.index.json").is_file() and (tmp_path / "run.v2.index.json").is_file()
    assert not (tmp_path / "run.index.json").exists()


# ---------------------------------------------------------------------------------------------------------
# locks
# ---------------------------------------------------------------------------------------------------------


def _lock_of(pid: int) -> str:
    return json.dumps({"uqf_lock": 1, "pid": pid, "host": socket.gethostname(), "command": "uqf train-gcn"})


def test_a_second_run_on_a_locked_output_refuses_and_a_stale_lock_is_taken(fx: Fx, tmp_path: Path) -> None:
    out, lock = tmp_path / "c.st", tmp_path / "c.st.lock"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock.write_text(_lock_of(other.pid))
        r = run_cli(_gcn(fx, out))
        assert r.exit_code == 2, r.output
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and f"another uqf run (pid {other.pid}" in lines[0] and str(lock) in lines[0]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c.st.lock"]  # its lock kept, nothing written
    finally:
        other.kill()
        other.wait()
    r = run_cli([*_gcn(fx, out), "-q"])  # that run is gone: its lock is stale
    assert r.exit_code == 0, r.output
    assert "stale lock" in r.stderr and str(other.pid) in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.st"]


def test_the_lock_is_held_while_the_command_runs_and_removed_after(fx: Fx, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import uqf_cli.collab

    out, lock = tmp_path / "c.st", tmp_path / "c.st.lock"
    seen: dict = {}

    def fake_train_gcn(dataset, output, cfg, **kwargs):
        seen.update(json.loads(lock.read_text()))
        raise InputError(output, "stopped on purpose")

    monkeypatch.setattr(uqf_cli.collab, "train_gcn", fake_train_gcn)
    r = run_cli(_gcn(fx, out))
    assert r.exit_code == 2 and "stopped on purpose" in r.stderr
    assert seen["pid"] == os.getpid()
    assert not lock.exists() and list(tmp_path.iterdir()) == []


def test_locks_are_reentrant_within_a_process_and_refuse_another_live_one(tmp_path: Path) -> None:
    out, lock = tmp_path / "x.st", tmp_path / "x.st.lock"
    acquire_lock(lock, out)
    acquire_lock(lock, out)  # a nested plan of the same process
    release_lock(lock)
    assert lock.exists()
    release_lock(lock)
    assert not lock.exists()
    lock.write_text(_lock_of(os.getppid()))  # a live process that is not this one
    with pytest.raises(InputError, match="another uqf run"):
        acquire_lock(lock, out)
    assert lock.exists()
