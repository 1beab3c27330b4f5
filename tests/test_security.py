"""Security properties: no pickle, no remote code by default, no path built from data.

* The package never unpickles: no ``pickle``/``joblib``, ``np.load`` only without ``allow_pickle``, any
  ``torch.load`` with ``weights_only=True`` (checked on the source text, so a new call site fails here).
* ``trust_remote_code`` is False unless ``--trust-remote-code`` is given (embed-text and the lcrec backbone;
  the loaders are replaced by recorders that stop the run, so no model is loaded).
* Ids in a dataset never become file paths: a catalogue whose item and user ids are ``../`` paths, absolute
  paths or hold NUL characters goes through every stage, and no file appears outside the outputs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import uqf_cli
from uqf_cli.cli import app

PACKAGE = Path(uqf_cli.__file__).parent


def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))]


def _code_lines(text: str) -> list[tuple[int, str]]:
    """Source lines without comments and without docstring-only prose (a crude but strict filter)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.strip():
            out.append((n, code))
    return out


def test_no_pickle_in_the_package() -> None:
    offenders = []
    for path, text in _sources():
        for n, code in _code_lines(text):
            where = f"{path.relative_to(PACKAGE)}:{n}: {code.strip()}"
            if re.search(r"^\s*(import|from)\s+(pickle|cPickle|dill|joblib|cloudpickle)\b", code):
                offenders.append(where)
            if re.search(r"\bpickle\.(loads?|Unpickler)\b|\bjoblib\.load\b", code):
                offenders.append(where)
            if "allow_pickle=True" in code:
                offenders.append(where)
    assert not offenders, "pickle in uqf_cli:\n" + "\n".join(offenders)


def test_every_torch_load_is_weights_only() -> None:
    offenders = []
    for path, text in _sources():
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.end()) + 1]
            if "weights_only=True" not in call:
                offenders.append(f"{path.relative_to(PACKAGE)}: {call}")
    assert not offenders, "torch.load without weights_only=True:\n" + "\n".join(offenders)


class _Stop(OSError):
    pass


def _recorder(calls: list[dict[str, Any]]):
    def load(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        raise _Stop("stopped by the test after recording the loader's arguments")

    return load


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from conftest import make_dataset

    root = tmp_path_factory.mktemp("sec_small")
    ds = make_dataset(root / "ds", n_items=8)
    sids = root / "sids.jsonl"
    lines = [json.dumps({"_uqf": "sids", "levels": 2, "codebook_sizes": [4, 4]})]
    lines += [json.dumps({"item_id": str(i), "codes": [i % 4, i // 4]}) for i in range(8)]
    sids.write_text("\n".join(lines) + "\n")
    return ds, sids


@pytest.mark.parametrize("flag", [[], ["--trust-remote-code"]], ids=["default", "flag"])
@pytest.mark.parametrize("pooling", ["model", "mean"])
def test_embed_text_trust_remote_code_only_with_the_flag(flag, pooling, small, tmp_path, monkeypatch) -> None:
    import sentence_transformers
    import transformers

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", _recorder(calls))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", _recorder(calls))
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", _recorder(calls))
    r = CliRunner().invoke(app, ["embed-text", str(small[0]), "-o", str(tmp_path / "t.st"), "--pooling", pooling,
                                 "--device", "cpu", *flag])
    assert r.exit_code == 2 and "stopped by the test" in r.stderr, r.stderr
    assert calls and all(c.get("trust_remote_code") is bool(flag) for c in calls), calls
    assert not (tmp_path / "t.st").exists()


@pytest.mark.parametrize("flag", [[], ["--trust-remote-code"]], ids=["default", "flag"])
def test_lcrec_trust_remote_code_only_with_the_flag(flag, small, tmp_path, monkeypatch) -> None:
    import transformers

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", _recorder(calls))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", _recorder(calls))
    r = CliRunner().invoke(app, ["train-rec", str(small[0]), "--sids", str(small[1]), "--backbone", "lcrec",
                                 "-o", str(tmp_path / "m"), "--device", "cpu", "--max-steps", "1", *flag])
    assert r.exit_code == 2 and "stopped by the test" in r.stderr, r.stderr
    assert calls and all(c.get("trust_remote_code") is bool(flag) for c in calls), calls
    assert not (tmp_path / "m").exists()


# ---- hostile ids ------------------------------------------------------------------------------


def _hostile_source(d: Path, abs_target: Path) -> list[str]:
    """An LC-Rec source whose ids are paths: relative escapes, absolute paths, NUL, separators."""
    evil = ["../../evil_item", str(abs_target / "abs_item"), "nul\u0000item", "..", "a/../../../b", "~/home_item",
            "..\\..\\win_item", "CON", ".index.json", "sids.jsonl"]
    ids = evil + [str(i) for i in range(10)]
    rng_seq = [[(u * 7 + k * 3) % len(ids) for k in range(6)] for u in range(24)]
    users = ["../../evil_user", str(abs_target / "abs_user"), "u\u0000x", *[f"../u{u}" for u in range(21)]]
    inter = {users[u]: seq for u, seq in enumerate(rng_seq)}
    items = {iid: {"title": f"item {k} {iid}", "brand": "B", "categories": "Office, Paper", "description": iid}
             for k, iid in enumerate(ids)}
    d.mkdir(parents=True)
    # LC-Rec sources index items by position; write the id map through the item file's keys
    (d / "X.inter.json").write_text(json.dumps({u: [ids[i] for i in s] for u, s in inter.items()}), encoding="utf-8")
    (d / "X.item.json").write_text(json.dumps(items), encoding="utf-8")
    return ids


def _all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def test_hostile_ids_never_become_paths(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    work = root / "a" / "b" / "work"  # '../../x' from here (or from the outputs) stays inside root
    work.mkdir(parents=True)
    abs_target = tmp_path / "absolute"
    abs_target.mkdir()
    ids = _hostile_source(work / "src", abs_target)
    before = _all_files(root)
    steps = [
        ["prepare", "src", "-o", "ds"],
        ["embed-text", "ds", "-o", "text.st", "--device", "cpu"],
        ["train-gcn", "ds", "-o", "collab.st", "--dim", "8", "--epochs", "2", "--device", "cpu"],
        ["fuse", "--text", "text.st", "--collab", "collab.st", "--dataset", "ds", "-o", "fused.st", "--epochs", "1",
         "--d-model", "16", "--out-dim", "8", "--save-model", "fuser.st", "--device", "cpu"],
        ["quantize", "fused.st", "-o", "sids.jsonl", "--levels", "2", "--codebook-size", "4", "--epochs", "2",
         "--format", "lcrec", "--save-model", "q.st", "--device", "cpu"],
        ["inspect-sids", "sids.jsonl", "--dataset", "ds", "--item", ids[0]],
        ["train-rec", "ds", "--sids", "sids.jsonl", "-o", "tiger", "--epochs", "1", "--d-model", "16",
         "--device", "cpu"],
        ["evaluate", "tiger", "ds", "--predictions", "pred.jsonl", "-o", "metrics.json", "--device", "cpu"],
        ["recommend", "tiger", "ds", "--history", f"{ids[0]},{ids[3]}", "--json", "--device", "cpu"],
    ]
    cwd = os.getcwd()
    os.chdir(work)
    try:
        for step in steps:
            r = CliRunner().invoke(app, [*step, "-q"] if step[0] not in ("inspect-sids", "recommend") else step)
            assert r.exit_code == 0, f"{step[0]}: {r.stderr}\n{r.exception!r}"
    finally:
        os.chdir(cwd)
    outputs = {"ds", "text.st", "collab.st", "fused.st", "fuser.st", "sids.jsonl", "sids.jsonl.meta.json",
               "sids.index.json", "q.st", "tiger", "pred.jsonl", "pred.jsonl.meta.json", "metrics.json"}
    new = _all_files(root) - before
    prefix = "a/b/work/"
    stray = sorted(f for f in new if not (f.startswith(prefix) and f[len(prefix):].split("/")[0] in outputs))
    assert not stray, f"files outside the outputs: {stray}"
    assert not any(abs_target.iterdir()), "an absolute id became a path"
    assert not list(tmp_path.glob("*evil*")) and not (Path.home() / "home_item").exists()
    index = json.loads((work / "sids.index.json").read_text())
    assert set(index) == set(ids)  # the ids survive as data, unchanged
