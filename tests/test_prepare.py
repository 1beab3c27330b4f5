"""`uqf prepare`: every reader on small files of the real shapes, the cleaning steps, and bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.data.dataset import Dataset
from uqf_cli.data.prepare import Interaction, clean_text, deduplicate, kcore, prepare

runner = CliRunner()


def write_gz_lines(path: Path, records: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def amazon_events() -> list[tuple[str, str, int]]:
    """(user, item, time in seconds): six users x five of six items, so all pass the 5-core, plus
    events the cleaning must remove."""
    items = ["B001", "B002", "B003", "B004", "B005", "B006"]
    events = []
    for u in range(6):
        for k, it in enumerate(i for i in items if i != items[u]):
            events.append((f"U{u}", it, 1000 + 10 * (5 - k)))  # written newest first: prepare must sort
    events.append(("U0", "B002", 5000))  # duplicate of an earlier pair: removed, the first one stays
    events.append(("U1", "NOMETA", 1))  # item without metadata
    events.append(("U2", "NOTITLE", 1))  # item with an empty title
    events.append(("U3", "RARE", 2))  # item with one review: falls to the 5-core
    events.extend(("WEAK", it, 3) for it in items[:3])  # user with three reviews: falls to the 5-core
    return events


def amazon_meta_items() -> dict[str, dict]:
    return {f"B00{i}": {"title": f"<b>Pen</b> {i} &amp; ink", "brand": f"Brand{i % 2}",
                        "category": ["Office Products", "Pens"], "description": ["Smooth  ", "<p>ink</p>"]}
            for i in range(1, 7)} | {"NOTITLE": {"title": "", "brand": "X"}, "RARE": {"title": "Rare thing"}}


def make_amazon2018(d: Path, five_core_name: bool = True) -> Path:
    d.mkdir()
    reviews = [{"overall": 5.0, "reviewerID": u, "asin": i, "unixReviewTime": t, "reviewText": "ok"}
               for u, i, t in amazon_events()]
    name = "Office_Products_5.json.gz" if five_core_name else "Office_Products.json.gz"
    write_gz_lines(d / name, reviews)
    meta = [{"asin": k, **v} for k, v in amazon_meta_items().items()]
    meta.append({"asin": "B001", "title": "a later duplicate meta line"})  # the real files repeat products
    write_gz_lines(d / "meta_Office_Products.json.gz", meta)
    return d


def make_amazon2023(d: Path) -> Path:
    d.mkdir()
    reviews = [{"rating": 5.0, "user_id": u, "asin": i + "-v", "parent_asin": i, "timestamp": t * 1000}
               for u, i, t in amazon_events()]
    write_gz_lines(d / "Office_Products.jsonl.gz", reviews)
    meta = [{"parent_asin": k, "title": v["title"], "store": v.get("brand"), "categories": v.get("category", []),
             "description": v.get("description", []), "main_category": "Office"}
            for k, v in amazon_meta_items().items()]
    write_gz_lines(d / "meta_Office_Products.jsonl.gz", meta)
    return d


def test_amazon2018_cleaning_steps(tmp_path: Path) -> None:
    ds = prepare(make_amazon2018(tmp_path / "raw"), tmp_path / "ds")
    assert ds.info["format"] == "amazon2018"
    assert sorted(ds.item_ids) == ["B001", "B002", "B003", "B004", "B005", "B006"]  # ids kept as ASINs
    assert sorted(ds.user_ids) == [f"U{u}" for u in range(6)]
    assert ds.num_interactions == 30
    # chronological: the file lists each user's reviews newest first
    assert ds.sequences["U0"] == ["B006", "B005", "B004", "B003", "B002"]
    item = ds.items["B001"]
    assert item["title"] == "Pen 1 & ink"  # HTML tags and entities cleaned; the first meta line wins
    assert item["categories"] == "Office Products, Pens"
    assert item["description"] == "Smooth ink"
    cleaning = ds.info["cleaning"]
    assert cleaning["duplicates_removed"] == 1
    assert cleaning["items_without_title"] == 1
    assert cleaning["interactions_without_item_text"] == 2
    assert ds.info["options"] == {"kcore": 5, "dedup": True, "max_history": None}
    assert "leave-one-out" in ds.info["split"]


def test_amazon2018_full_dump_name_and_file_source(tmp_path: Path) -> None:
    raw = make_amazon2018(tmp_path / "raw", five_core_name=False)
    ds = prepare(raw / "Office_Products.json.gz", tmp_path / "ds", fmt="amazon2018")
    assert ds.num_interactions == 30


def test_amazon2023_uses_parent_asin_and_ms_timestamps(tmp_path: Path) -> None:
    ds = prepare(make_amazon2023(tmp_path / "raw"), tmp_path / "ds")
    assert ds.info["format"] == "amazon2023"
    assert sorted(ds.item_ids) == ["B001", "B002", "B003", "B004", "B005", "B006"]
    assert ds.sequences["U0"] == ["B006", "B005", "B004", "B003", "B002"]
    assert ds.items["B002"]["brand"] == "Brand0"  # `store` is the 2023 brand


def test_kcore_option_and_max_history(tmp_path: Path) -> None:
    raw = make_amazon2018(tmp_path / "raw")
    loose = prepare(raw, tmp_path / "k1", kcore_k=0)
    assert "RARE" in loose.item_ids and "WEAK" in loose.user_ids
    short = prepare(raw, tmp_path / "short", max_history=3)
    assert all(len(s) == 3 for s in short.sequences.values())
    assert short.sequences["U0"] == ["B004", "B003", "B002"]  # the last three


def test_kcore_is_iterative() -> None:
    # i3 has two users; dropping u2 (one item after i4 goes) takes i3 below 2 in a later round
    events = [("u1", "i1"), ("u1", "i2"), ("u1", "i3"), ("u2", "i3"), ("u2", "i4"), ("u3", "i1"), ("u3", "i2")]
    seqs: dict[str, list[Interaction]] = {}
    for k, (u, i) in enumerate(events):
        seqs.setdefault(u, []).append(Interaction(u, i, float(k), k))
    out, rounds = kcore(seqs, 2)
    assert {u: [x.item for x in xs] for u, xs in out.items()} == {"u1": ["i1", "i2"], "u3": ["i1", "i2"]}
    assert rounds >= 2


def test_deduplicate_keeps_first() -> None:
    xs = [Interaction("u", i, float(t), t) for t, i in enumerate(["a", "b", "a", "c", "b"])]
    out, removed = deduplicate({"u": xs})
    assert [x.item for x in out["u"]] == ["a", "b", "c"] and removed == 2


def test_clean_text() -> None:
    assert clean_text('<a href="x">Big</a>&nbsp;pen\n\t <br/>set') == "Big pen set"
    assert clean_text("size < 5 and > 2") == "size < 5 and > 2"  # not a tag
    assert clean_text(["a", None, " b "]) == "a b"


def make_recbole(d: Path) -> Path:
    d.mkdir()
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(4):
        for k, i in enumerate(["10", "11", "12", "13"]):
            inter.append(f"{u}\t{i}\t5.0\t{100 - k}")  # newest first
    inter.append("0\t99\t5.0\t1")  # item not in X.item: dropped
    inter.append("0\t10\t4.0\t200")  # duplicate pair: dropped
    (d / "Office.inter").write_text("\n".join(inter) + "\n", encoding="utf-8")
    item = ["item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq\tprice:float"]
    item += [f"{i}\tpaper  clip {i}\tAcme\tOffice Products, Clips\t1.5" for i in ["10", "11", "12", "13"]]
    (d / "Office.item").write_text("\n".join(item) + "\n", encoding="utf-8")
    return d


def test_recbole_atomic_files(tmp_path: Path) -> None:
    ds = prepare(make_recbole(tmp_path / "rb"), tmp_path / "ds")
    assert ds.info["format"] == "recbole"
    assert ds.item_ids == ["10", "11", "12", "13"]
    assert ds.sequences["0"] == ["13", "12", "11", "10"]
    assert ds.num_interactions == 16
    assert ds.items["10"] == {"title": "paper clip 10", "brand": "Acme", "categories": "Office Products, Clips"}


def test_lcrec_and_builtin(tmp_path: Path) -> None:
    ds = prepare("builtin:office", tmp_path / "office")
    assert (len(ds.item_ids), len(ds.user_ids), ds.num_interactions) == (2420, 4905, 53258)
    assert ds.info["source"] == "builtin:office"
    assert Dataset.load(tmp_path / "office").fingerprint == ds.fingerprint


def make_lcrec(d: Path, inter: object, items: object) -> Path:
    d.mkdir()
    (d / "X.inter.json").write_text(json.dumps(inter), encoding="utf-8")
    (d / "X.item.json").write_text(json.dumps(items), encoding="utf-8")
    return d


def test_lcrec_keeps_order_and_ids(tmp_path: Path) -> None:
    src = make_lcrec(tmp_path / "lc", {"0": [2, 1, 0], "1": [0, 1]}, {str(i): {"title": f"t{i}"} for i in range(3)})
    ds = prepare(src, tmp_path / "ds")
    assert ds.sequences == {"0": ["2", "1", "0"], "1": ["0", "1"]}


# ---- bad input through the CLI ---------------------------------------------------------------


def run_cli(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for frag in fragments:
        assert frag in result.output, result.output


def test_cli_missing_source(tmp_path: Path) -> None:
    res = run_cli("prepare", str(tmp_path / "nope"), "-o", str(tmp_path / "ds"))
    assert_one_line_error(res, "nope", "not found")
    assert not (tmp_path / "ds").exists()


def test_cli_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "readme.txt").write_text("hi")
    res = run_cli("prepare", str(tmp_path / "src"), "-o", str(tmp_path / "ds"))
    assert_one_line_error(res, "unknown dataset format")
    assert_one_line_error(run_cli("prepare", str(tmp_path / "src"), "-o", str(tmp_path / "ds"), "--format", "csv"),
                          "--format", "csv")
    assert_one_line_error(run_cli("prepare", "builtin:books", "-o", str(tmp_path / "ds")), "books")
    assert not (tmp_path / "ds").exists()


def test_cli_bad_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    raw = make_amazon2018(tmp_path / "raw")
    path = raw / "Office_Products_5.json.gz"
    with gzip.open(path, "rt") as f:
        lines = f.read().splitlines()
    lines[2] = '{"reviewerID": "U9", "asin": '
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    res = run_cli("prepare", str(raw), "-o", str(tmp_path / "ds"))
    assert_one_line_error(res, "Office_Products_5.json.gz", "line 3")
    assert not (tmp_path / "ds").exists()


def test_cli_missing_review_field(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_gz_lines(raw / "X_5.json.gz", [{"reviewerID": "u", "asin": "a"}])
    write_gz_lines(raw / "meta_X.json.gz", [{"asin": "a", "title": "t"}])
    assert_one_line_error(run_cli("prepare", str(raw), "-o", str(tmp_path / "ds")), "line 1", "unixReviewTime")


def test_cli_missing_meta_file(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_gz_lines(raw / "X_5.json.gz", [{"reviewerID": "u", "asin": "a", "unixReviewTime": 1}])
    assert_one_line_error(run_cli("prepare", str(raw), "-o", str(tmp_path / "ds")), "meta_X.json.gz", "not found")


def test_cli_duplicate_item_ids(tmp_path: Path) -> None:
    src = make_recbole(tmp_path / "rb")
    with open(src / "Office.item", "a", encoding="utf-8") as f:
        f.write("10\tanother\tAcme\tOffice\t2.0\n")
    assert_one_line_error(run_cli("prepare", str(src), "-o", str(tmp_path / "ds")), "Office.item", "line 6",
                          "duplicate item id '10'")


def test_cli_unknown_item_in_lcrec(tmp_path: Path) -> None:
    src = make_lcrec(tmp_path / "lc", {"0": [0, 7]}, {"0": {"title": "a"}})
    assert_one_line_error(run_cli("prepare", str(src), "-o", str(tmp_path / "ds")), "X.inter.json", "'7'")


def test_cli_empty_items(tmp_path: Path) -> None:
    src = make_lcrec(tmp_path / "lc", {"0": []}, {})
    assert_one_line_error(run_cli("prepare", str(src), "-o", str(tmp_path / "ds")), "X.item.json", "no items")


def test_cli_malformed_json_document(tmp_path: Path) -> None:
    src = make_lcrec(tmp_path / "lc", {}, {})
    (src / "X.inter.json").write_text('{"0": [0,\n', encoding="utf-8")
    assert_one_line_error(run_cli("prepare", str(src), "-o", str(tmp_path / "ds")), "X.inter.json", "line")


def test_cli_existing_output_needs_force(tmp_path: Path) -> None:
    src = make_recbole(tmp_path / "rb")
    out = tmp_path / "ds"
    assert run_cli("prepare", str(src), "-o", str(out), "--quiet").exit_code == 0
    before = (out / "items.jsonl").read_bytes()
    (src / "Office.item").write_text((src / "Office.item").read_text().replace("Acme", "Other"))
    assert_one_line_error(run_cli("prepare", str(src), "-o", str(out)), "exists", "--force")
    assert (out / "items.jsonl").read_bytes() == before
    res = run_cli("prepare", str(src), "-o", str(out), "--force", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["items"] == 4
    assert b"Other" in (out / "items.jsonl").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "rb"]  # no temporary left behind


def test_cli_prints_stats_table(tmp_path: Path) -> None:
    res = run_cli("prepare", str(make_recbole(tmp_path / "rb")), "-o", str(tmp_path / "ds"))
    assert res.exit_code == 0, res.output
    for word in ("users", "items", "interactions", "density", "seq len median"):
        assert word in res.stdout


@pytest.mark.parametrize("opt", [["--kcore", "-1"], ["--max-history", "0"]])
def test_cli_bad_option_values(tmp_path: Path, opt: list[str]) -> None:
    res = run_cli("prepare", str(make_recbole(tmp_path / "rb")), "-o", str(tmp_path / "ds"), *opt)
    assert_one_line_error(res, opt[0])
