"""Bad inputs across every subcommand: one clear ``error:`` line, exit code 2, nothing partial left behind.

Each case runs the real CLI in-process (Typer's runner: a fresh interpreter per case would cost seconds of
torch import each) inside its own empty working directory, then checks:

* exit code 2 and exactly one stderr line, ``error: ...``, naming the file or option and the problem;
* no traceback;
* no new file in the working directory (no output, no ``.tmp`` leftover) and the shared fixtures untouched;
* with ``--force`` over an existing output (a real earlier output of that kind: ``--force`` replaces nothing
  else, tests/test_force_and_collisions.py), that output is byte-identical afterwards.

The fixtures (a tiny dataset, synthetic text/collab embeddings, a fuser, a quantizer, SIDs and a TIGER model
dir) are built once per module through the real writers and commands.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import make_dataset
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.files import read_dataset_dir, save_embeddings, save_tensors


def run_cli(args: list[str]):
    return CliRunner().invoke(app, args)


@dataclass
class Fx:
    root: Path
    ds: Path
    text: Path
    collab: Path
    fused: Path
    fuser: Path
    quantizer: Path
    sids: Path
    model: Path
    ids: list[str]
    bad: Path  # a directory of hand-made broken files
    metrics: Path = Path()  # evaluate's metrics JSON

    def p(self, name: str) -> Path:
        return self.bad / name


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fx:
    root = tmp_path_factory.mktemp("bad_inputs")
    ds = make_dataset(root / "ds", n_users=30, n_items=12)
    items, _, info = read_dataset_dir(ds)
    ids = list(items)
    fp = info["fingerprint"]
    g = torch.Generator().manual_seed(0)
    text = save_embeddings(root / "text.st", torch.randn(len(ids), 16, generator=g), ids,
                           {"stage": "embed-text", "parameters": {"model": "synthetic"}}, "text", fp)
    collab = save_embeddings(root / "collab.st", torch.randn(len(ids), 8, generator=g), ids,
                             {"stage": "train-gcn"}, "collab", fp)
    fused, fuser = root / "fused.st", root / "fuser.st"
    r = run_cli(["fuse", "--text", str(text), "--collab", str(collab), "--dataset", str(ds), "-o", str(fused),
                 "--epochs", "1", "--d-model", "16", "--out-dim", "8", "--save-model", str(fuser), "-q"])
    assert r.exit_code == 0, r.output
    sids, quantizer = root / "sids.jsonl", root / "quantizer.st"
    r = run_cli(["quantize", str(fused), "-o", str(sids), "--levels", "2", "--codebook-size", "4", "--epochs", "2",
                 "--save-model", str(quantizer), "-q"])
    assert r.exit_code == 0, r.output
    model = root / "tiger"
    r = run_cli(["train-rec", str(ds), "--sids", str(sids), "-o", str(model), "--epochs", "1", "--d-model", "16",
                 "-q"])
    assert r.exit_code == 0, r.output

    bad = root / "bad"
    bad.mkdir()
    raw = text.read_bytes()
    (bad / "truncated.st").write_bytes(raw[: len(raw) // 2])
    (bad / "empty.st").write_bytes(b"")
    (bad / "empty.jsonl").write_bytes(b"")
    (bad / "notst.st").write_text('{"hello": "world"}\n')
    (bad / "a_dir.st").mkdir()
    nan = torch.randn(len(ids), 16, generator=g)
    nan[3, 2] = math.nan
    save_embeddings(bad / "nan.st", nan, ids, {}, "text", fp)
    inf = torch.randn(len(ids), 8, generator=g)
    inf[0, 0] = math.inf
    save_embeddings(bad / "inf_collab.st", inf, ids, {}, "collab", fp)
    save_tensors(bad / "wrong_name.st", {"vectors": torch.randn(len(ids), 16)},
                 {"uqf_kind": "embeddings", "item_ids": ids})
    save_tensors(bad / "id_count.st", {"embeddings": torch.randn(len(ids), 16)},
                 {"uqf_kind": "embeddings", "item_ids": ids[:-2], "modality": "text"})
    save_embeddings(bad / "foreign_ids.st", torch.randn(5, 8), [f"zz{i}" for i in range(5)], {}, "collab", fp)
    save_embeddings(bad / "dim3.st", torch.randn(len(ids), 3), ids, {}, "text", fp)
    save_embeddings(bad / "text_as_collab_dim.st", torch.randn(len(ids), 16), ids, {}, "text", fp)
    lines = sids.read_text().splitlines()
    rec = json.loads(lines[2])
    rec["codes"] = rec["codes"][:-1]
    rec.pop("tokens", None)
    (bad / "ragged.jsonl").write_text("\n".join([*lines[:2], json.dumps(rec), *lines[3:]]) + "\n")
    rec = json.loads(lines[1])
    rec["codes"] = ["x", 1, 2]
    (bad / "strcodes.jsonl").write_text("\n".join([lines[0], json.dumps(rec), *lines[2:]]) + "\n")
    (bad / "badjson.jsonl").write_text(lines[0] + "\n{not json\n")
    # a dataset whose sequences.jsonl is cut mid-line
    shutil.copytree(ds, bad / "ds_trunc")
    seq = (bad / "ds_trunc" / "sequences.jsonl").read_text()
    (bad / "ds_trunc" / "sequences.jsonl").write_text(seq[: len(seq) // 2 + 7])
    (bad / "empty_dir").mkdir()
    # a model dir whose weights are truncated
    shutil.copytree(model, bad / "model_trunc")
    w = bad / "model_trunc" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    (bad / "a_file").write_text("x\n")
    metrics = root / "metrics.json"
    r = run_cli(["evaluate", str(model), str(ds), "-o", str(metrics), "-q"])
    assert r.exit_code == 0, r.output
    return Fx(root, ds, text, collab, fused, fuser, quantizer, sids, model, ids, bad, metrics)


@dataclass
class Case:
    id: str
    args: Callable[[Fx, Path], list[str]]  # (fixtures, working dir) -> argv
    names: Callable[[Fx, Path], list[str]]  # strings the error line must contain (file/option, problem)
    existing: str | None = None  # an earlier output copied into the working dir that must stay byte-identical
    earlier: Callable[[Fx], Path] | None = None  # the file copied there


def s(p: Path) -> str:
    return str(p)


CASES = [
    # ---------------- prepare
    Case("prepare-missing-source", lambda f, w: ["prepare", s(f.bad / "nope"), "-o", s(w / "o")],
         lambda f, w: ["nope", "not found"]),
    Case("prepare-empty-source-dir", lambda f, w: ["prepare", s(f.p("empty_dir")), "-o", s(w / "o")],
         lambda f, w: ["empty_dir"]),
    Case("prepare-output-under-file", lambda f, w: ["prepare", s(f.ds), "-o", s(f.p("a_file") / "o")],
         lambda f, w: ["a_file", "not a directory"]),
    # ---------------- embed-text
    Case("embed-dataset-is-file", lambda f, w: ["embed-text", s(f.p("a_file")), "-o", s(w / "t.st")],
         lambda f, w: ["a_file", "expected a dataset directory"]),
    Case("embed-dataset-not-prepared", lambda f, w: ["embed-text", s(f.p("empty_dir")), "-o", s(w / "t.st")],
         lambda f, w: ["empty_dir", "items.jsonl is missing"]),
    Case("embed-batch-size-zero", lambda f, w: ["embed-text", s(f.ds), "-o", s(w / "t.st"), "--batch-size", "0"],
         lambda f, w: ["--batch-size"]),
    Case("embed-max-length-negative",
         lambda f, w: ["embed-text", s(f.ds), "-o", s(w / "t.st"), "--max-length", "-5"],
         lambda f, w: ["--max-length"]),
    Case("embed-unknown-pooling", lambda f, w: ["embed-text", s(f.ds), "-o", s(w / "t.st"), "--pooling", "banana"],
         lambda f, w: ["--pooling", "banana"]),
    # ---------------- train-gcn
    Case("gcn-dim-zero", lambda f, w: ["train-gcn", s(f.ds), "-o", s(w / "c.st"), "--dim", "0"],
         lambda f, w: ["--dim"]),
    Case("gcn-epochs-negative", lambda f, w: ["train-gcn", s(f.ds), "-o", s(w / "c.st"), "--epochs", "-1"],
         lambda f, w: ["--epochs"]),
    Case("gcn-truncated-sequences", lambda f, w: ["train-gcn", s(f.p("ds_trunc")), "-o", s(w / "c.st")],
         lambda f, w: ["sequences.jsonl", "not valid JSON"]),
    Case("gcn-output-under-file", lambda f, w: ["train-gcn", s(f.ds), "-o", s(f.p("a_file") / "c.st")],
         lambda f, w: ["a_file", "not a directory"]),
    Case("gcn-force-bad-option-keeps-output",
         lambda f, w: ["train-gcn", s(f.ds), "-o", s(w / "c.st"), "--force", "--lr", "-1"],
         lambda f, w: ["--lr"], existing="c.st", earlier=lambda f: f.collab),
    # ---------------- fuse
    Case("fuse-text-truncated", lambda f, w: ["fuse", "--text", s(f.p("truncated.st")), "--collab", s(f.collab),
                                              "--dataset", s(f.ds), "-o", s(w / "u.st")],
         lambda f, w: ["truncated.st", "not a readable safetensors file"]),
    Case("fuse-text-not-safetensors", lambda f, w: ["fuse", "--text", s(f.p("notst.st")), "--collab", s(f.collab),
                                                    "--dataset", s(f.ds), "-o", s(w / "u.st")],
         lambda f, w: ["notst.st", "looks like JSON, expected a safetensors file"]),
    Case("fuse-text-empty", lambda f, w: ["fuse", "--text", s(f.p("empty.st")), "--collab", s(f.collab),
                                          "--dataset", s(f.ds), "-o", s(w / "u.st")],
         lambda f, w: ["empty.st", "empty file"]),
    Case("fuse-text-is-directory", lambda f, w: ["fuse", "--text", s(f.p("a_dir.st")), "--collab", s(f.collab),
                                                 "--dataset", s(f.ds), "-o", s(w / "u.st")],
         lambda f, w: ["a_dir.st", "is a directory"]),
    Case("fuse-text-nan", lambda f, w: ["fuse", "--text", s(f.p("nan.st")), "--collab", s(f.collab),
                                        "--dataset", s(f.ds), "-o", s(w / "u.st")],
         lambda f, w: ["nan.st", "NaN or Inf"]),
    Case("fuse-collab-inf", lambda f, w: ["fuse", "--text", s(f.text), "--collab", s(f.p("inf_collab.st")),
                                          "--dataset", s(f.ds), "-o", s(w / "u.st")],
         lambda f, w: ["inf_collab.st", "NaN or Inf"]),
    Case("fuse-text-wrong-tensor-name", lambda f, w: ["fuse", "--text", s(f.p("wrong_name.st")), "--collab",
                                                      s(f.collab), "--dataset", s(f.ds), "-o", s(w / "u.st")],
         lambda f, w: ["wrong_name.st", "no tensor 'embeddings'"]),
    Case("fuse-text-ids-mismatch-rows", lambda f, w: ["fuse", "--text", s(f.p("id_count.st")), "--collab",
                                                      s(f.collab), "--dataset", s(f.ds), "-o", s(w / "u.st")],
         lambda f, w: ["id_count.st", "item ids for"]),
    Case("fuse-collab-foreign-ids", lambda f, w: ["fuse", "--text", s(f.text), "--collab", s(f.p("foreign_ids.st")),
                                                  "--dataset", s(f.ds), "-o", s(w / "u.st")],
         lambda f, w: ["foreign_ids.st"]),
    Case("fuse-text-is-sids-file", lambda f, w: ["fuse", "--text", s(f.sids), "--collab", s(f.collab),
                                                 "--dataset", s(f.ds), "-o", s(w / "u.st")],
         lambda f, w: ["sids.jsonl", "looks like JSON lines, expected a safetensors file"]),
    Case("fuse-collab-file-as-text", lambda f, w: ["fuse", "--text", s(f.collab), "--collab", s(f.collab),
                                                   "--dataset", s(f.ds), "-o", s(w / "u.st")],
         lambda f, w: ["collab.st", "modality"]),
    Case("fuse-text-file-as-collab", lambda f, w: ["fuse", "--text", s(f.text), "--collab", s(f.text),
                                                   "--dataset", s(f.ds), "-o", s(w / "u.st")],
         lambda f, w: ["text.st", "modality"]),
    Case("fuse-apply-quantizer-file", lambda f, w: ["fuse", "--apply", s(f.quantizer), "--text", s(f.text),
                                                    "--collab", s(f.collab), "-o", s(w / "u.st")],
         lambda f, w: ["quantizer.st", "expected a fuser file"]),
    Case("fuse-apply-text-dim-mismatch", lambda f, w: ["fuse", "--apply", s(f.fuser), "--text",
                                                       s(f.p("dim3.st")), "-o", s(w / "u.st")],
         lambda f, w: ["dim3.st", "3-d", "expects 16-d"]),
    Case("fuse-unknown-method", lambda f, w: ["fuse", "--text", s(f.text), "--collab", s(f.collab), "--dataset",
                                              s(f.ds), "-o", s(w / "u.st"), "--method", "magic"],
         lambda f, w: ["--method", "must be one of"]),
    Case("fuse-epochs-zero", lambda f, w: ["fuse", "--text", s(f.text), "--collab", s(f.collab), "--dataset",
                                           s(f.ds), "-o", s(w / "u.st"), "--epochs", "0"],
         lambda f, w: ["--epochs"]),
    Case("fuse-force-bad-input-keeps-output",
         lambda f, w: ["fuse", "--text", s(f.p("nan.st")), "--collab", s(f.collab), "--dataset", s(f.ds),
                       "-o", s(w / "u.st"), "--force"],
         lambda f, w: ["nan.st", "NaN or Inf"], existing="u.st", earlier=lambda f: f.fused),
    # ---------------- quantize
    Case("quantize-sids-as-embeddings", lambda f, w: ["quantize", s(f.sids), "-o", s(w / "s.jsonl")],
         lambda f, w: ["sids.jsonl", "looks like JSON lines, expected a safetensors file"]),
    Case("quantize-model-file-as-embeddings", lambda f, w: ["quantize", s(f.fuser), "-o", s(w / "s.jsonl")],
         lambda f, w: ["fuser.st", "expected an embedding file"]),
    Case("quantize-levels-zero", lambda f, w: ["quantize", s(f.fused), "-o", s(w / "s.jsonl"), "--levels", "0"],
         lambda f, w: ["--levels"]),
    Case("quantize-codebook-negative", lambda f, w: ["quantize", s(f.fused), "-o", s(w / "s.jsonl"),
                                                     "--codebook-size", "-4"],
         lambda f, w: ["--codebook-size"]),
    Case("quantize-unknown-method", lambda f, w: ["quantize", s(f.fused), "-o", s(w / "s.jsonl"),
                                                  "--method", "zip"],
         lambda f, w: ["--method", "zip"]),
    Case("quantize-unknown-format", lambda f, w: ["quantize", s(f.fused), "-o", s(w / "s.jsonl"),
                                                  "--format", "xml"],
         lambda f, w: ["--format", "xml"]),
    Case("quantize-apply-fuser-file", lambda f, w: ["quantize", s(f.fused), "-o", s(w / "s.jsonl"),
                                                    "--apply", s(f.fuser)],
         lambda f, w: ["fuser.st", "expected a"]),
    Case("quantize-apply-dim-mismatch", lambda f, w: ["quantize", s(f.p("dim3.st")), "-o", s(w / "s.jsonl"),
                                                      "--apply", s(f.quantizer)],
         lambda f, w: ["dim3.st"]),
    # ---------------- inspect-sids
    Case("inspect-ragged", lambda f, w: ["inspect-sids", s(f.p("ragged.jsonl"))],
         lambda f, w: ["ragged.jsonl", "ragged SIDs"]),
    Case("inspect-empty", lambda f, w: ["inspect-sids", s(f.p("empty.jsonl"))],
         lambda f, w: ["empty.jsonl", "empty file"]),
    Case("inspect-string-codes", lambda f, w: ["inspect-sids", s(f.p("strcodes.jsonl"))],
         lambda f, w: ["strcodes.jsonl", "non-negative ints"]),
    Case("inspect-bad-json", lambda f, w: ["inspect-sids", s(f.p("badjson.jsonl"))],
         lambda f, w: ["badjson.jsonl", "not valid JSON"]),
    Case("inspect-embeddings-as-sids", lambda f, w: ["inspect-sids", s(f.text)],
         lambda f, w: ["text.st"]),
    Case("inspect-depth-zero", lambda f, w: ["inspect-sids", s(f.sids), "--depth", "0"],
         lambda f, w: ["--depth"]),
    Case("inspect-unknown-item", lambda f, w: ["inspect-sids", s(f.sids), "--item", "no-such-item"],
         lambda f, w: ["no-such-item"]),
    # ---------------- train-rec
    Case("rec-unknown-backbone", lambda f, w: ["train-rec", s(f.ds), "--sids", s(f.sids), "-o", s(w / "m"),
                                               "--backbone", "gpt9"],
         lambda f, w: ["--backbone", "gpt9"]),
    Case("rec-ragged-sids", lambda f, w: ["train-rec", s(f.ds), "--sids", s(f.p("ragged.jsonl")), "-o", s(w / "m")],
         lambda f, w: ["ragged.jsonl", "ragged SIDs"]),
    Case("rec-collab-as-sids", lambda f, w: ["train-rec", s(f.ds), "--sids", s(f.collab), "-o", s(w / "m")],
         lambda f, w: ["collab.st"]),
    Case("rec-sids-missing", lambda f, w: ["train-rec", s(f.ds), "-o", s(w / "m")],
         lambda f, w: ["--sids"]),
    Case("rec-epochs-negative", lambda f, w: ["train-rec", s(f.ds), "--sids", s(f.sids), "-o", s(w / "m"),
                                              "--epochs", "-1"],
         lambda f, w: ["--epochs"]),
    Case("rec-output-under-file", lambda f, w: ["train-rec", s(f.ds), "--sids", s(f.sids), "-o",
                                                s(f.p("a_file") / "m")],
         lambda f, w: ["a_file", "not a directory"]),
    # ---------------- evaluate
    Case("eval-model-missing", lambda f, w: ["evaluate", s(f.bad / "no_model"), s(f.ds)],
         lambda f, w: ["no_model", "not found"]),
    Case("eval-model-is-file", lambda f, w: ["evaluate", s(f.p("a_file")), s(f.ds)],
         lambda f, w: ["a_file"]),
    Case("eval-model-not-a-model-dir", lambda f, w: ["evaluate", s(f.p("empty_dir")), s(f.ds)],
         lambda f, w: ["empty_dir"]),
    Case("eval-truncated-weights", lambda f, w: ["evaluate", s(f.p("model_trunc")), s(f.ds)],
         lambda f, w: ["model_trunc", "cannot load"]),
    Case("eval-unknown-split", lambda f, w: ["evaluate", s(f.model), s(f.ds), "--split", "train"],
         lambda f, w: ["--split", "train"]),
    Case("eval-beam-zero", lambda f, w: ["evaluate", s(f.model), s(f.ds), "--beam-size", "0"],
         lambda f, w: ["--beam-size"]),
    Case("eval-force-bad-k-keeps-output", lambda f, w: ["evaluate", s(f.model), s(f.ds), "--recall-k", "0,x",
                                                        "-o", s(w / "m.json"), "--force"],
         lambda f, w: ["--recall-k"], existing="m.json", earlier=lambda f: f.metrics),
    # ---------------- recommend
    Case("recommend-unknown-history-item", lambda f, w: ["recommend", s(f.model), s(f.ds), "--history", "nope-1"],
         lambda f, w: ["nope-1"]),
    Case("recommend-k-zero", lambda f, w: ["recommend", s(f.model), s(f.ds), "--history", "1", "--k", "0"],
         lambda f, w: ["--k"]),
    Case("recommend-empty-history", lambda f, w: ["recommend", s(f.model), s(f.ds), "--history", " , "],
         lambda f, w: ["--history"]),
    # ---------------- demo
    Case("demo-workdir-under-file", lambda f, w: ["demo", "--quick", "--workdir", s(f.p("a_file") / "demo")],
         lambda f, w: ["a_file"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, fx: Fx, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if case.existing:
        assert case.earlier is not None
        shutil.copyfile(case.earlier(fx), work / case.existing)
    before_work, before_fx = _snapshot(work), _snapshot(fx.root)
    result = CliRunner().invoke(app, case.args(fx, work))
    stderr = result.stderr
    assert result.exit_code == 2, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {stderr}\n" \
                                  f"exception: {result.exception!r}"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    line = lines[0]
    assert line.startswith("error:"), line
    assert "Traceback" not in stderr + result.stdout
    for needle in case.names(fx, work):
        assert needle in line, f"{needle!r} not in {line!r}"
    assert _snapshot(work) == before_work, "the failed command left files behind or changed an earlier output"
    assert _snapshot(fx.root) == before_fx, "the failed command touched its inputs or left a temporary beside them"


def test_debug_shows_traceback(fx: Fx, tmp_path: Path) -> None:
    args = ["fuse", "--text", str(fx.p("nan.st")), "--collab", str(fx.collab), "--dataset", str(fx.ds),
            "-o", str(tmp_path / "u.st")]
    plain = CliRunner().invoke(app, args)
    debug = CliRunner().invoke(app, ["--debug", *args])
    assert plain.exit_code == debug.exit_code == 2
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr and "InputError" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith("error: ")


def test_every_subcommand_has_bad_input_cases() -> None:
    x = Path("x")
    dummy = Fx(x, x, x, x, x, x, x, x, x, [], x)
    covered = {c.args(dummy, Path("w"))[0] for c in CASES}
    registered = {cmd.name for cmd in app.registered_commands}
    assert registered <= covered, f"no bad-input case for {sorted(registered - covered)}"
    assert len(CASES) >= 30
