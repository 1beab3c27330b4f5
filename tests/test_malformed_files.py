"""Property-based bad inputs (hypothesis): malformed SIDs files, LC-Rec index files and catalogues.

Each example starts from a valid file and breaks it in one way drawn from a list (a code beyond its
codebook, a negative, boolean, fractional or 65-bit code, ragged depths, level letters out of order,
tokens that disagree with codes, a sidecar that contradicts the lines, a key given twice ...), with
random shapes and positions. Every generated case must be refused by the real CLI (``uqf_cli.cli.run``)
with exit code 2 and one ``error:`` line naming the file, no traceback, and nothing written. A last
property: ``inspect-sids`` never reports a utilisation above 100% for a file it accepts.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import make_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uqf_cli.cli import run
from uqf_cli.files.sids import LEVEL_LETTERS

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
N_ITEMS = 12  # the dataset's items are "0" .. "11"

Pairs = list[tuple[str, Any]]  # a JSON object as key/value pairs, so that a key can be written twice


def dump(obj: Any) -> str:
    """JSON text of ``obj``, where a ``list[tuple]`` marked by :class:`Obj` becomes an object (keys may repeat)."""
    if isinstance(obj, Obj):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in obj.pairs) + "}"
    if isinstance(obj, list):
        return "[" + ", ".join(dump(v) for v in obj) + "]"
    return json.dumps(obj)


class Obj:
    """A JSON object kept as ordered pairs."""

    def __init__(self, pairs: Pairs) -> None:
        self.pairs = pairs

    def get(self, key: str) -> Any:
        return next(v for k, v in self.pairs if k == key)

    def set(self, key: str, value: Any) -> None:
        self.pairs = [(k, value if k == key else v) for k, v in self.pairs]

    def drop(self, key: str) -> None:
        self.pairs = [(k, v) for k, v in self.pairs if k != key]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("malformed") / "ds", n_items=N_ITEMS)


def refused(args: list[str], named: str, work: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``uqf ARGS`` in ``work``; assert one ``error:`` line naming ``named``, exit 2, nothing new in ``work``."""
    before = sorted(p.name for p in work.iterdir())
    code = run(args)
    out = capsys.readouterr()
    lines = [ln for ln in out.err.splitlines() if ln.strip()]
    assert code == 2, f"{args}: exit {code}\n{out.err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{args}: expected one error line, got\n{out.err}"
    assert named in lines[0], f"{named!r} not in {lines[0]!r}"
    assert "Traceback" not in out.err + out.out
    assert sorted(p.name for p in work.iterdir()) == before, "the refused command wrote something"
    return lines[0]


# ------------------------------------------------------------------ SIDs JSONL (+ .meta.json sidecar)

def token(level: int, code: Any) -> str:
    return f"<{LEVEL_LETTERS[level]}_{code}>"


@st.composite
def sids_tables(draw: st.DrawFn) -> tuple[list[Obj], Obj]:
    """A valid SIDs file: records (item_id, codes, tokens) and its sidecar."""
    levels = draw(st.integers(1, 4))
    sizes = [draw(st.integers(2, 9)) for _ in range(levels)]
    ids = draw(st.lists(st.integers(0, N_ITEMS - 1), min_size=2, max_size=N_ITEMS, unique=True))
    records = []
    for i in ids:
        codes = [draw(st.integers(0, k - 1)) for k in sizes]
        records.append(Obj([("item_id", str(i)), ("codes", codes),
                            ("tokens", "".join(token(lv, c) for lv, c in enumerate(codes)))]))
    meta = Obj([("uqf_kind", "sids"), ("levels", levels), ("codebook_sizes", sizes), ("items", len(ids))])
    return records, meta


def _set_code(rec: Obj, level: int, value: Any, keep_tokens: bool = False) -> None:
    codes = list(rec.get("codes"))
    codes[level] = value
    rec.set("codes", codes)
    if not keep_tokens:
        rec.drop("tokens")


SidsBreak = Callable[[st.DrawFn, list[Obj], Obj], None]


def _pick(draw: st.DrawFn, records: list[Obj]) -> tuple[Obj, int]:
    rec = draw(st.sampled_from(records))
    return rec, draw(st.integers(0, len(rec.get("codes")) - 1))


def beyond_codebook(draw, records, meta):
    rec, lv = _pick(draw, records)
    _set_code(rec, lv, meta.get("codebook_sizes")[lv] + draw(st.integers(0, 1000)))


def negative_code(draw, records, meta):
    rec, lv = _pick(draw, records)
    _set_code(rec, lv, draw(st.integers(-(2**70), -1)))


def non_int_code(draw, records, meta):
    rec, lv = _pick(draw, records)
    _set_code(rec, lv, draw(st.sampled_from([True, False, 1.0, 0.5, "1", None, [1], {"c": 1}])))


def huge_code(draw, records, meta):
    rec, lv = _pick(draw, records)
    meta.set("codebook_sizes", [2**70] * len(meta.get("codebook_sizes")))
    _set_code(rec, lv, draw(st.integers(2**63, 2**70)))


def ragged(draw, records, meta):
    rec = draw(st.sampled_from(records))
    codes = rec.get("codes")
    rec.set("codes", codes[:-1] if len(codes) > 1 else [*codes, 0])
    rec.drop("tokens")


def empty_codes(draw, records, meta):
    rec = draw(st.sampled_from(records))
    rec.set("codes", [])
    rec.drop("tokens")


def duplicate_item(draw, records, meta):
    a, b = draw(st.permutations(records))[:2]
    b.set("item_id", a.get("item_id"))


def tokens_disagree(draw, records, meta):
    rec, lv = _pick(draw, records)
    codes = rec.get("codes")
    other = (codes[lv] + 1) % meta.get("codebook_sizes")[lv]
    rec.set("tokens", "".join(token(k, other if k == lv else c) for k, c in enumerate(codes)))


def tokens_out_of_order(draw, records, meta):
    rec = draw(st.sampled_from([r for r in records if len(r.get("codes")) > 1] or records))
    codes = rec.get("codes")
    letters = [token(lv, c) for lv, c in enumerate(codes)]
    if len(letters) == 1:
        letters = [token(1, codes[0])]  # a first token that is not level a
    else:
        letters[0], letters[1] = letters[1], letters[0]
    rec.drop("codes")
    rec.set("tokens", "".join(letters))


def malformed_token(draw, records, meta):
    rec, lv = _pick(draw, records)
    codes = rec.get("codes")
    bad = draw(st.sampled_from(["<{l}_0{c}>", "<{l}_+{c}>", "<{l}_ {c}>", "<{L}_{c}>", "<{l}{c}>", "{l}_{c}",
                                "<{l}_{c}", "<{l}_{c}.0>", "<{l}_1_{c}>", "<{l}_٣>"]))
    toks = [token(k, c) for k, c in enumerate(codes)]
    toks[lv] = bad.format(l=LEVEL_LETTERS[lv], L=LEVEL_LETTERS[lv].upper(), c=codes[lv])
    rec.drop("codes")
    rec.set("tokens", toks if draw(st.booleans()) else "".join(toks))


def duplicate_key_in_line(draw, records, meta):
    rec = draw(st.sampled_from(records))
    key = draw(st.sampled_from(["item_id", "codes", "tokens"]))
    rec.pairs.append((key, rec.get(key)))


def too_many_levels(draw, records, meta):
    for rec in records:
        rec.set("codes", rec.get("codes") + [0] * (27 - len(rec.get("codes"))))
        rec.drop("tokens")
    meta.drop("codebook_sizes")
    meta.drop("levels")


def meta_sizes_wrong_length(draw, records, meta):
    sizes = meta.get("codebook_sizes")
    meta.set("codebook_sizes", [*sizes, 4] if draw(st.booleans()) or len(sizes) == 1 else sizes[:-1])


def meta_sizes_malformed(draw, records, meta):
    sizes = list(meta.get("codebook_sizes"))
    sizes[draw(st.integers(0, len(sizes) - 1))] = draw(st.sampled_from([0, -3, 2.5, "8", None, True]))
    meta.set("codebook_sizes", draw(st.sampled_from([sizes, "8,8", {}, []])))


def meta_levels_wrong(draw, records, meta):
    meta.set("levels", meta.get("levels") + draw(st.integers(1, 3)))


def meta_duplicate_key(draw, records, meta):
    meta.pairs.append(("codebook_sizes", [2**20] * len(meta.get("codebook_sizes"))))


SIDS_BREAKS: list[SidsBreak] = [
    beyond_codebook, negative_code, non_int_code, huge_code, ragged, empty_codes, duplicate_item, tokens_disagree,
    tokens_out_of_order, malformed_token, duplicate_key_in_line, too_many_levels, meta_sizes_wrong_length,
    meta_sizes_malformed, meta_levels_wrong, meta_duplicate_key,
]


@SETTINGS
@given(table=sids_tables(), breaking=st.sampled_from(SIDS_BREAKS), data=st.data())
def test_malformed_sids_files_are_refused_in_one_line(table, breaking, data, dataset: Path, capsys) -> None:
    records, meta = table
    breaking(data.draw, records, meta)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sids = work / "s.jsonl"
        sids.write_text("".join(dump(r) + "\n" for r in records))
        (work / "s.jsonl.meta.json").write_text(dump(meta))
        refused(["inspect-sids", str(sids), "--no-tree"], "s.jsonl", work, capsys)
        refused(["train-rec", str(dataset), "--sids", str(sids), "-o", str(work / "model"), "--epochs", "1"],
                "s.jsonl", work, capsys)


# ------------------------------------------------------------------ LC-Rec / LETTER index.json

@st.composite
def index_files(draw: st.DrawFn) -> Obj:
    levels = draw(st.integers(1, 4))
    ids = draw(st.lists(st.integers(0, N_ITEMS - 1), min_size=2, max_size=N_ITEMS, unique=True))
    return Obj([(str(i), [token(lv, draw(st.integers(0, 300))) for lv in range(levels)]) for i in ids])


def _index_item(draw, index: Obj) -> tuple[int, list[str], int]:
    k = draw(st.integers(0, len(index.pairs) - 1))
    toks = list(index.pairs[k][1])
    return k, toks, draw(st.integers(0, len(toks) - 1))


def index_negative_code(draw, index):
    k, toks, lv = _index_item(draw, index)
    toks[lv] = token(lv, draw(st.integers(-(2**70), -1)))
    index.pairs[k] = (index.pairs[k][0], toks)


def index_letters_out_of_order(draw, index):
    k, toks, lv = _index_item(draw, index)
    code = toks[lv][3:-1]
    wrong = draw(st.sampled_from([c for c in LEVEL_LETTERS if c != LEVEL_LETTERS[lv]]))
    toks[lv] = f"<{wrong}_{code}>"
    index.pairs[k] = (index.pairs[k][0], toks)


def index_reversed(draw, index):
    k, toks, _ = _index_item(draw, index)
    toks = toks[::-1] if len(toks) > 1 else [token(1, 0)]
    index.pairs[k] = (index.pairs[k][0], toks)


def index_malformed_token(draw, index):
    k, toks, lv = _index_item(draw, index)
    code = toks[lv][3:-1]
    letter = LEVEL_LETTERS[lv]
    toks[lv] = draw(st.sampled_from([f"<{letter}_0{code}>", f"<{letter}_+{code}>", f"<{letter.upper()}_{code}>",
                                     f"<{letter}_{code}e0>", f"<{letter}_{2**64}>", f"{letter}_{code}", 7, None,
                                     ["<a_1>"], f"<{letter}_{code}> "]))
    index.pairs[k] = (index.pairs[k][0], toks)


def index_duplicate_item(draw, index):
    k = draw(st.integers(0, len(index.pairs) - 1))
    index.pairs.append((index.pairs[k][0], index.pairs[k][1]))


def index_ragged(draw, index):
    k, toks, _ = _index_item(draw, index)
    index.pairs[k] = (index.pairs[k][0], toks[:-1] if len(toks) > 1 else [*toks, token(1, 0)])


def index_bad_value(draw, index):
    k = draw(st.integers(0, len(index.pairs) - 1))
    index.pairs[k] = (index.pairs[k][0], draw(st.sampled_from([[], "<a_1><b_2>", {"a": 1}, None, 3])))


def index_empty_id(draw, index):
    index.pairs[0] = ("", index.pairs[0][1])


INDEX_BREAKS = [index_negative_code, index_letters_out_of_order, index_reversed, index_malformed_token,
                index_duplicate_item, index_ragged, index_bad_value, index_empty_id]


@SETTINGS
@given(index=index_files(), breaking=st.sampled_from(INDEX_BREAKS), data=st.data())
def test_malformed_index_files_are_refused_in_one_line(index, breaking, data, dataset: Path, capsys) -> None:
    breaking(data.draw, index)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "x.index.json"
        path.write_text(dump(index))
        refused(["inspect-sids", str(path), "--no-tree"], "x.index.json", work, capsys)
        refused(["train-rec", str(dataset), "--sids", str(path), "-o", str(work / "model"), "--epochs", "1"],
                "x.index.json", work, capsys)


# ------------------------------------------------------------------ catalogues (LC-Rec X.inter.json + X.item.json)

@st.composite
def catalogues(draw: st.DrawFn) -> tuple[Obj, Obj]:
    n_items = draw(st.integers(2, 8))
    items = Obj([(str(i), Obj([("title", f"item {i}"), ("brand", f"b{i % 3}")])) for i in range(n_items)])
    users = draw(st.integers(2, 6))
    inter = Obj([(f"u{u}", [str(draw(st.integers(0, n_items - 1))) for _ in range(draw(st.integers(3, 6)))])
                 for u in range(users)])
    return inter, items


def cat_duplicate_item(draw, inter, items):
    k = draw(st.integers(0, len(items.pairs) - 1))
    items.pairs.append((items.pairs[k][0], Obj([("title", "another item under the same id")])))
    return "item.json"


def cat_duplicate_field(draw, inter, items):
    k = draw(st.integers(0, len(items.pairs) - 1))
    items.pairs[k][1].pairs.append(("title", "a second title"))
    return "item.json"


def cat_duplicate_user(draw, inter, items):
    k = draw(st.integers(0, len(inter.pairs) - 1))
    inter.pairs.append((inter.pairs[k][0], inter.pairs[k][1]))
    return "inter.json"


def cat_unknown_item(draw, inter, items):
    k = draw(st.integers(0, len(inter.pairs) - 1))
    inter.pairs[k] = (inter.pairs[k][0], inter.pairs[k][1] + ["no-such-item"])
    return "inter.json"


def cat_bad_sequence(draw, inter, items):
    k = draw(st.integers(0, len(inter.pairs) - 1))
    inter.pairs[k] = (inter.pairs[k][0], draw(st.sampled_from(["1,2,3", {"a": 1}, 7, None])))
    return "inter.json"


def cat_bad_item(draw, inter, items):
    k = draw(st.integers(0, len(items.pairs) - 1))
    items.pairs[k] = (items.pairs[k][0], draw(st.sampled_from(["a title", ["x"], 3, None])))
    return "item.json"


CATALOGUE_BREAKS = [cat_duplicate_item, cat_duplicate_field, cat_duplicate_user, cat_unknown_item, cat_bad_sequence,
                    cat_bad_item]


@SETTINGS
@given(catalogue=catalogues(), breaking=st.sampled_from(CATALOGUE_BREAKS), data=st.data())
def test_malformed_catalogues_are_refused_in_one_line(catalogue, breaking, data, capsys) -> None:
    inter, items = catalogue
    broken = breaking(data.draw, inter, items)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "src"
        source.mkdir()
        (source / "X.inter.json").write_text(dump(inter))
        (source / "X.item.json").write_text(dump(items))
        refused(["prepare", str(source), "-o", str(work / "ds")], f"X.{broken}", work, capsys)


# ------------------------------------------------------------------ what an accepted file reports

@SETTINGS
@given(table=sids_tables(), with_meta=st.booleans(), as_index=st.booleans(), data=st.data())
def test_inspect_sids_never_reports_more_than_full_utilisation(table, with_meta, as_index, data, capsys) -> None:
    """Codes drawn up to a little beyond the sidecar's sizes: refused, or reported at most 100% used."""
    records, meta = table
    sizes = meta.get("codebook_sizes")
    for rec in records:
        rec.set("codes", [data.draw(st.integers(0, k + 2)) for k in sizes])
        rec.drop("tokens")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if as_index:
            path = work / "x.index.json"
            path.write_text(json.dumps({r.get("item_id"): [token(lv, c) for lv, c in enumerate(r.get("codes"))]
                                        for r in records}))
        else:
            path = work / "s.jsonl"
            path.write_text("".join(dump(r) + "\n" for r in records))
            if with_meta:
                (work / "s.jsonl.meta.json").write_text(dump(meta))
        code = run(["inspect-sids", str(path), "--no-tree", "--json"])
        out = capsys.readouterr()
        if code == 2:
            assert "beyond its codebook" in out.err and with_meta and not as_index, out.err
            return
        assert code == 0, out.err
        levels = json.loads(out.out)["metrics"]["per_level"]
        assert levels and all(0 < lv["utilisation"] <= 1 for lv in levels), levels


# ------------------------------------------------------------------ the pieces

def test_parse_token_reads_the_canonical_form_only() -> None:
    from uqf_cli.files.sids import parse_token, tokens_to_codes

    assert parse_token("<a_0>") == (0, 0) and parse_token("<c_123>") == (2, 123)
    for bad in ("<a_01>", "<a_-1>", "<a_+1>", "<a_ 1>", "<A_1>", "<a_1_2>", "<ab_1>", "<a_1", "a_1", "<a_٣>",
                f"<a_{2**64}>", 3, None):
        with pytest.raises(ValueError):
            parse_token(bad)
    assert tokens_to_codes(["<a_3>", "<b_0>"]) == [3, 0]
    with pytest.raises(ValueError, match="in order"):
        tokens_to_codes(["<b_0>", "<a_3>"])


def test_writers_refuse_a_table_the_readers_would_refuse(tmp_path: Path) -> None:
    """A code beyond its codebook is a bug upstream: nothing is written."""
    import numpy as np

    from uqf_cli.files import SidTable, write_lcrec_index, write_sids

    table = SidTable(item_ids=["a", "b"], codes=np.array([[0, 1], [1, 4]]), codebook_sizes=[2, 4])
    for write, name in ((write_sids, "s.jsonl"), (write_lcrec_index, "s.index.json")):
        with pytest.raises(ValueError, match="beyond its codebook"):
            write(tmp_path / name, table)
    assert not list(tmp_path.iterdir())
