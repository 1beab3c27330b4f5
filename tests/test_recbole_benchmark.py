"""RecBole benchmark files (UniSRec's layout): the rebuilt split equals the files' own, bad files are
refused in one line, and a folder in this layout runs through the pipeline's commands."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.data.dataset import Dataset
from uqf_cli.data.prepare import prepare
from uqf_cli.files import load_embeddings, read_sids

runner = CliRunner()
HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token"


def make_sequences(n_users: int = 12, n_items: int = 14, seed: int = 0) -> dict[str, list[str]]:
    """Users with 3-9 items (ASIN-like ids); one user repeats an item, as real sequences may."""
    rng = random.Random(seed)
    items = [f"B{k:03d}X" for k in range(n_items)]
    seqs = {f"A{u}Z": rng.sample(items, rng.randint(3, 9)) for u in range(n_users)}
    seqs["A0Z"] = [items[0], items[1], items[0], items[2], items[3], items[4], items[5]]
    return seqs


def split_rows(seq: list[str], cap: int) -> dict[str, list[tuple[list[str], str]]]:
    """(history, target) rows as UniSRec's preprocessing writes them: train rows newest target first,
    histories cut to their last ``cap`` items."""
    train = seq[:-2]
    return {
        "train": [(train[:-k][-cap:], train[-k]) for k in range(1, len(train))],
        "valid": [(train[-cap:], seq[-2])],
        "test": [([*train, seq[-2]][-cap:], seq[-1])],
    }


def write_benchmark(d: Path, seqs: dict[str, list[str]], cap: int = 4, base: int = 0, stem: str = "Sci") -> Path:
    """A folder in the benchmark-file layout: three split files, text, and both index maps."""
    d.mkdir(parents=True)
    items = sorted({i for s in seqs.values() for i in s})
    item2index = {iid: str(k + base) for k, iid in enumerate(items)}
    user2index = {uid: str(k) for k, uid in enumerate(seqs)}
    lines: dict[str, list[str]] = {s: [HEADER] for s in ("train", "valid", "test")}
    for uid, seq in seqs.items():
        for split, rows in split_rows([item2index[i] for i in seq], cap).items():
            lines[split] += [f"{user2index[uid]}\t{' '.join(h)}\t{t}" for h, t in rows]
    for split, content in lines.items():
        (d / f"{stem}.{split}.inter").write_text("\n".join(content) + "\n", encoding="utf-8")
    text = ["item_id:token\ttext:token_seq"] + [f"{iid}\tGel pen {iid} <b>blue</b> ink" for iid in items]
    (d / f"{stem}.text").write_text("\n".join(text) + "\n", encoding="utf-8")
    (d / f"{stem}.item2index").write_text("".join(f"{i}\t{k}\n" for i, k in item2index.items()), encoding="utf-8")
    (d / f"{stem}.user2index").write_text("".join(f"{u}\t{k}\n" for u, k in user2index.items()), encoding="utf-8")
    return d


def write_feat(d: Path, n_items: int, dim: int = 8, stem: str = "Sci", seed: int = 0) -> tuple[Path, np.ndarray]:
    arr = np.random.default_rng(seed).standard_normal((n_items, dim)).astype("<f4")
    path = d / f"{stem}.feat1CLS"
    arr.tofile(path)
    return path, arr


def file_rows(d: Path, split: str, stem: str = "Sci") -> dict[str, list[tuple[list[str], str]]]:
    """A split file's rows per original user id, with original item ids."""
    items = {k: i for i, k in (ln.split("\t") for ln in (d / f"{stem}.item2index").read_text().split("\n") if ln)}
    users = {k: u for u, k in (ln.split("\t") for ln in (d / f"{stem}.user2index").read_text().split("\n") if ln)}
    out: dict[str, list[tuple[list[str], str]]] = {}
    for line in (d / f"{stem}.{split}.inter").read_text().splitlines()[1:]:
        u, h, t = line.split("\t")
        out.setdefault(users[u], []).append(([items[i] for i in h.split()], items[t]))
    return out


@pytest.mark.parametrize("cap", [4, 50])
def test_rebuilt_split_equals_the_files_split(tmp_path: Path, cap: int) -> None:
    seqs = make_sequences()
    src = write_benchmark(tmp_path / "Sci", seqs, cap=cap)
    ds = prepare(src, tmp_path / "ds")
    assert ds.info["format"] == "recbole-benchmark"
    assert ds.info["notes"]["history_cap"] == (4 if cap == 4 else max(len(s) for s in seqs.values()) - 1)
    assert ds.sequences == {u: seqs[u] for u in ds.user_ids}  # original ids, whole sequences
    assert set(ds.user_ids) == set(seqs)
    assert ds.items["B000X"] == {"text": "Gel pen B000X blue ink"}
    assert ds.info["options"] == {"kcore": 0, "dedup": False, "max_history": None}
    # The uqf split, cut to the files' history length, is row for row what the files hold.
    test_rows, valid_rows, train_rows = (file_rows(src, s) for s in ("test", "valid", "train"))
    for split, rows in (("test", test_rows), ("valid", valid_rows)):
        cases = ds.eval_cases(split)
        assert len(cases) == len(seqs)
        for case in cases:
            assert rows[case.user_id] == [(list(case.history)[-cap:], case.target)]
    for uid, train in ds.train_sequences().items():
        expected = [(train[:p][-cap:], train[p]) for p in range(1, len(train))]
        assert Counter(map(str, train_rows.get(uid, []))) == Counter(map(str, expected))


def test_any_file_of_the_layout_is_a_source(tmp_path: Path) -> None:
    src = write_benchmark(tmp_path / "Sci", make_sequences())
    (src / "Other.inter").write_text("not this one\n")  # a stray atomic file does not confuse detection
    whole = prepare(src, tmp_path / "a")
    for k, name in enumerate(("Sci.test.inter", "Sci.text", "Sci.item2index")):
        assert prepare(src / name, tmp_path / f"b{k}").fingerprint == whole.fingerprint
    assert whole.info["notes"]["files"][:3] == ["Sci.train.inter", "Sci.valid.inter", "Sci.test.inter"]


def run_cli(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for frag in fragments:
        assert frag in result.output, result.output


def _edit(path: Path, lineno: int, new: str) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = new
    path.write_text("\n".join(lines) + "\n")


def test_valid_row_that_disagrees_with_the_test_row(tmp_path: Path) -> None:
    src = write_benchmark(tmp_path / "Sci", make_sequences())
    u, h, t = (src / "Sci.valid.inter").read_text().splitlines()[3].split("\t")
    _edit(src / "Sci.valid.inter", 4, f"{u}\t{h}\t{int(t) ^ 1}")  # another target
    res = run_cli("prepare", str(src), "-o", str(tmp_path / "ds"))
    assert_one_line_error(res, "Sci.valid.inter", "line 4", f"user '{u}'", "disagrees")
    assert not (tmp_path / "ds").exists()
    h2 = " ".join(reversed(h.split()))
    if h2 != h:
        _edit(src / "Sci.valid.inter", 4, f"{u}\t{h2}\t{t}")  # same target, history in another order
        assert_one_line_error(run_cli("prepare", str(src), "-o", str(tmp_path / "ds")), "line 4", "disagrees")


def test_train_row_that_is_no_prefix(tmp_path: Path) -> None:
    src = write_benchmark(tmp_path / "Sci", make_sequences(), cap=50)  # no history cut: the test row is the truth
    u, h, _ = (src / "Sci.train.inter").read_text().splitlines()[1].split("\t")
    _edit(src / "Sci.train.inter", 2, f"{u}\t{h}\t{h.split()[0]}")
    assert_one_line_error(run_cli("prepare", str(src), "-o", str(tmp_path / "ds")), "Sci.train.inter", "line 2",
                          "no prefix")
    # Histories cut at 4: user A0Z's early items come from chaining train rows, and a wrong one shows up as a
    # disagreement with the valid row rebuilt from them.
    cut = write_benchmark(tmp_path / "Cut", make_sequences(), cap=4)
    u, h, _ = (cut / "Sci.train.inter").read_text().splitlines()[1].split("\t")
    _edit(cut / "Sci.train.inter", 2, f"{u}\t{h}\t{h.split()[0]}")
    assert_one_line_error(run_cli("prepare", str(cut), "-o", str(tmp_path / "ds")), "Sci.valid.inter",
                          "chained train rows", "disagrees")
    # ... and a wrong valid target of that user is blamed on the valid file, not on the test row.
    cut2 = write_benchmark(tmp_path / "Cut2", make_sequences(), cap=4)
    u, h, _ = (cut2 / "Sci.valid.inter").read_text().splitlines()[1].split("\t")
    _edit(cut2 / "Sci.valid.inter", 2, f"{u}\t{h}\t{h.split()[0]}")
    assert_one_line_error(run_cli("prepare", str(cut2), "-o", str(tmp_path / "ds")), "Sci.valid.inter", "line 2",
                          "disagrees")


def test_index_missing_from_item2index(tmp_path: Path) -> None:
    src = write_benchmark(tmp_path / "Sci", make_sequences())
    u, h, _ = (src / "Sci.test.inter").read_text().splitlines()[2].split("\t")
    _edit(src / "Sci.test.inter", 3, f"{u}\t{h}\t999")
    assert_one_line_error(run_cli("prepare", str(src), "-o", str(tmp_path / "ds")), "Sci.test.inter", "line 3",
                          "'999'", "Sci.item2index")


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        (lambda d: (d / "Sci.text").write_text("item_id:token\ttext:token_seq\nB000X\tonly one\n"),
         ["Sci.text", "no text"]),
        (lambda d: (d / "Sci.test.inter").write_text(HEADER + "\n"), ["has no row in the test file"]),
        (lambda d: (d / "Sci.item2index").unlink(), ["Sci.item2index", "not found"]),
        (lambda d: (d / "Sci.valid.inter").write_text("user_id:token\titem_id:token\n"), ["item_id_list"]),
    ],
)
def test_other_bad_files(tmp_path: Path, mutate, fragments: list[str]) -> None:
    src = write_benchmark(tmp_path / "Sci", make_sequences())
    mutate(src)
    assert_one_line_error(run_cli("prepare", str(src), "-o", str(tmp_path / "ds")), *fragments)


# ---- embed-text --from-array -----------------------------------------------------------------


@pytest.mark.parametrize("base", [0, 1])
def test_from_array_aligns_rows_by_item_id(tmp_path: Path, base: int) -> None:
    seqs = make_sequences()
    src = write_benchmark(tmp_path / "Sci", seqs, base=base)
    n_items = len({i for s in seqs.values() for i in s})
    feat, arr = write_feat(src, n_items, dim=6)
    prepare(src, tmp_path / "ds")
    out = tmp_path / "text.st"
    res = run_cli("embed-text", str(tmp_path / "ds"), "-o", str(out), "--from-array", str(feat), "--no-normalize",
                  "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["dim"] == 6
    ef = load_embeddings(out)
    ds = Dataset.load(tmp_path / "ds")
    assert ef.item_ids == ds.item_ids and ef.modality == "text" and ef.dataset_fingerprint == ds.fingerprint
    index = dict(ln.split("\t") for ln in (src / "Sci.item2index").read_text().splitlines())
    for k, iid in enumerate(ds.item_ids):
        assert torch.equal(ef.embeddings[k], torch.from_numpy(arr[int(index[iid]) - base]))
    params = ef.provenance["parameters"]
    assert (params["rows"], params["dim"], params["index_base"], params["normalize"]) == (n_items, 6, base, False)
    assert set(ef.provenance["inputs"]) == {"array", "index_map", "items"}


def test_from_array_bad_inputs(tmp_path: Path) -> None:
    seqs = make_sequences()
    src = write_benchmark(tmp_path / "Sci", seqs)
    n_items = len({i for s in seqs.values() for i in s})
    prepare(src, tmp_path / "ds")
    out = tmp_path / "t.st"
    bad = src / "Sci.feat1CLS"
    bad.write_bytes(b"\0" * (4 * n_items * 3 + 4))  # not N x D float32
    args = ["embed-text", str(tmp_path / "ds"), "-o", str(out), "--from-array"]
    assert_one_line_error(run_cli(*args, str(bad)), "Sci.feat1CLS", f"not {n_items} rows")
    assert_one_line_error(run_cli(*args, str(bad), "--template", "{text}"), "--template")
    lonely = tmp_path / "Other.feat1CLS"
    lonely.write_bytes(b"\0" * 16)
    assert_one_line_error(run_cli(*args, str(lonely)), "Other.item2index", "not found")
    assert not out.exists()


# ---- the pipeline's commands on a folder in this layout ----------------------------------------


def test_benchmark_folder_runs_through_the_pipeline(tmp_path: Path) -> None:
    seqs = make_sequences(n_users=40, n_items=16, seed=1)
    src = write_benchmark(tmp_path / "Sci", seqs, cap=5)
    feat, _ = write_feat(src, 16, dim=16)
    w = tmp_path / "w"
    w.mkdir()
    steps = [
        ["prepare", str(src / "Sci.test.inter"), "-o", f"{w}/ds"],
        ["embed-text", f"{w}/ds", "-o", f"{w}/text.st", "--from-array", str(feat)],
        ["train-gcn", f"{w}/ds", "-o", f"{w}/collab.st", "--epochs", "2", "--eval-every", "1", "--dim", "8"],
        ["fuse", "--text", f"{w}/text.st", "--collab", f"{w}/collab.st", "--dataset", f"{w}/ds", "-o",
         f"{w}/unified.st", "--epochs", "1", "--d-model", "16", "--queries", "2", "--layers", "1", "--heads", "2",
         "--out-dim", "8"],
        ["quantize", f"{w}/unified.st", "-o", f"{w}/sids.jsonl", "--codebook-size", "4,4,4", "--code-dim", "4",
         "--hidden", "16", "--epochs", "3", "--warmup-epochs", "1"],
        ["train-rec", f"{w}/ds", "--sids", f"{w}/sids.jsonl", "--backbone", "tiger", "-o", f"{w}/tiger", "--epochs",
         "1", "--d-model", "32", "--num-layers", "1", "--num-decoder-layers", "1", "--eval-users", "10"],
        ["evaluate", f"{w}/tiger", f"{w}/ds", "--split", "test", "--sids", f"{w}/sids.jsonl", "--beam-size", "10",
         "--recall-k", "5,10", "--ndcg-k", "5,10", "-o", f"{w}/test_metrics.json"],
        ["inspect-sids", f"{w}/sids.jsonl", "--dataset", f"{w}/ds", "--text", f"{w}/text.st", "--collab",
         f"{w}/collab.st", "--json"],
    ]
    for args in steps:
        res = runner.invoke(app, [*args, "--quiet"])
        assert res.exit_code == 0, (args[0], res.output)
    ds = Dataset.load(w / "ds")
    assert len(read_sids(w / "sids.jsonl").item_ids) == len(ds.item_ids) == 16
    metrics = json.loads((w / "test_metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["users"] == len(seqs)
    assert 0.0 <= metrics["metrics"]["recall@10"] <= 1.0
    assert json.loads(res.stdout)["metrics"]["items"] == 16  # inspect-sids's figures
