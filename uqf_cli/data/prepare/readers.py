"""The readers of ``uqf prepare``, one per source format (docs/prepare.md shows each layout), the built-in
dataset, and the format detection."""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.data.prepare.cleaning import clean_fields, clean_text, join_categories
from uqf_cli.data.prepare.raw import Interaction, InteractionLog, RawDataset, find_one, load_json, natural_key
from uqf_cli.data.prepare.recbole import read_recbole
from uqf_cli.data.prepare.recbole_benchmark import benchmark_stem, read_recbole_benchmark
from uqf_cli.files.atomic import require_file
from uqf_cli.files.jsonio import iter_jsonl

BUILTIN_PREFIX = "builtin:"
BUILTINS = {"office": ("Office.inter.json.gz", "Office.item.json.gz")}


def read_lcrec_files(inter_path: Path, item_path: Path, source: str) -> RawDataset:
    """Read an LC-Rec pair; sequences are already chronological, so the position is the time."""
    inter = load_json(require_file(inter_path))
    raw_items = load_json(require_file(item_path))
    if not isinstance(inter, dict):
        raise InputError(inter_path, "expected a JSON object mapping user id -> list of item ids")
    if not isinstance(raw_items, dict):
        raise InputError(item_path, "expected a JSON object mapping item id -> text fields")
    items: dict[str, dict[str, Any]] = {}
    for iid in sorted(raw_items, key=natural_key):
        fields = raw_items[iid]
        if not isinstance(fields, dict):
            raise InputError(item_path, f"item {iid!r}: expected an object of text fields")
        items[str(iid)] = clean_fields(fields)
    if not items:
        raise InputError(item_path, "no items")
    interactions: list[Interaction] = []
    for uid in sorted(inter, key=natural_key):
        seq = inter[uid]
        if not isinstance(seq, list):
            raise InputError(inter_path, f"user {uid!r}: expected a list of item ids")
        for pos, i in enumerate(seq):
            iid = str(i)
            if iid not in items:
                raise InputError(inter_path, f"user {uid!r} names item {iid!r}, which {item_path.name} lacks")
            interactions.append(Interaction(str(uid), iid, float(pos), len(interactions)))
    return RawDataset(items, interactions, source, "lcrec", {"files": [inter_path.name, item_path.name]})


def read_lcrec(source: Path) -> RawDataset:
    """``X.inter.json`` + ``X.item.json`` in a directory (or SOURCE naming the ``.inter.json``)."""
    if source.is_file():
        inter_path = source
        item_path = source.with_name(source.name[: -len(".inter.json")] + ".item.json")
    else:
        inter_path = find_one(source, "*.inter.json")
        item_path = find_one(source, "*.item.json")
        if inter_path is None or item_path is None:
            raise InputError(source, "LC-Rec format needs X.inter.json and X.item.json")
    return read_lcrec_files(inter_path, item_path, str(source))


def read_builtin(name: str) -> RawDataset:
    """A dataset shipped inside the package (gzip-compressed LC-Rec JSON)."""
    if name not in BUILTINS:
        raise InputError(None, f"unknown built-in dataset {name!r} (known: {', '.join(BUILTINS)})")
    data = importlib.resources.files("uqf_cli") / "data" / "builtin"
    inter_name, item_name = BUILTINS[name]
    with importlib.resources.as_file(data / inter_name) as inter, importlib.resources.as_file(data / item_name) as it:
        raw = read_lcrec_files(Path(inter), Path(it), f"{BUILTIN_PREFIX}{name}")
    raw.notes["origin"] = "Amazon review data (McAuley lab, research use), LC-Rec Office Products preprocessing"
    return raw



def _amazon_pair(source: Path, review_pattern: str, meta_pattern: str, suffix: str) -> tuple[Path, Path]:
    """Find (reviews, meta) files: SOURCE is the reviews file, or a directory holding one pair."""
    if source.is_file():
        reviews = source
    else:
        found = find_one(source, review_pattern, exclude="meta_")
        if found is None:
            raise InputError(source, f"no reviews file {review_pattern} next to the meta file")
        reviews = found
    stem = reviews.name[: -len(suffix)]
    category = stem[: -len("_5")] if stem.endswith("_5") else stem
    meta = reviews.with_name(f"meta_{category}{suffix}")
    if not meta.is_file():
        raise InputError(meta, "not found (the item metadata file that goes with " + reviews.name + ")")
    return reviews, meta


def _field(path: Path, lineno: int, rec: dict[str, Any], *names: str) -> Any:
    for n in names:
        if rec.get(n) not in (None, ""):
            return rec[n]
    raise InputError(path, f"line {lineno}: missing field {' or '.join(names)}")


def _read_amazon(source: Path, fmt: str, suffix: str, user_key: str, item_keys: tuple[str, ...], time_key: str,
                 time_scale: float, meta_map: Callable[[dict[str, Any]], dict[str, Any]]) -> RawDataset:
    review_pattern = f"*{suffix}"
    reviews_path, meta_path = _amazon_pair(source, review_pattern, f"meta_*{suffix}", suffix)
    log = InteractionLog()  # one line at a time into interned arrays: memory follows users and items
    for lineno, rec in iter_jsonl(reviews_path):
        user = str(_field(reviews_path, lineno, rec, user_key))
        item = str(_field(reviews_path, lineno, rec, *item_keys))
        t = _field(reviews_path, lineno, rec, time_key)
        try:
            when = float(t) / time_scale
        except (TypeError, ValueError) as e:
            raise InputError(reviews_path, f"line {lineno}: {time_key} {t!r} is not a number") from e
        log.add(user, item, when)
    interactions = log.build()
    wanted = set(interactions.items)
    items: dict[str, dict[str, Any]] = {}
    meta_key = item_keys[0]
    for lineno, rec in iter_jsonl(meta_path):
        iid = str(_field(meta_path, lineno, rec, meta_key))
        if iid in wanted and iid not in items:  # the 2018 meta files repeat some products: keep the first
            items[iid] = meta_map(rec)
    notes = {"files": [reviews_path.name, meta_path.name], "reviews_read": len(interactions)}
    return RawDataset(items, interactions, str(source), fmt, notes)


def _meta_2018(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": clean_text(rec.get("title")),
        "brand": clean_text(rec.get("brand")),
        "categories": join_categories(rec.get("category") or rec.get("categories")),
        "description": clean_text(rec.get("description")),
    }


def _meta_2023(rec: dict[str, Any]) -> dict[str, Any]:
    details = rec.get("details") if isinstance(rec.get("details"), dict) else {}
    return {
        "title": clean_text(rec.get("title")),
        "brand": clean_text(rec.get("store") or details.get("Brand")),
        "categories": join_categories(rec.get("categories") or rec.get("main_category")),
        "description": clean_text(rec.get("description")),
    }


def read_amazon2018(source: Path) -> RawDataset:
    """2018 dumps: ``X_5.json.gz``/``X.json.gz`` + ``meta_X.json.gz`` (times in seconds)."""
    return _read_amazon(source, "amazon2018", ".json.gz", "reviewerID", ("asin",), "unixReviewTime", 1.0, _meta_2018)


def read_amazon2023(source: Path) -> RawDataset:
    """2023 dumps: ``X.jsonl.gz`` + ``meta_X.jsonl.gz``; items are parent products, times in ms."""
    return _read_amazon(source, "amazon2023", ".jsonl.gz", "user_id", ("parent_asin", "asin"), "timestamp",
                        1000.0, _meta_2023)


def is_recbole_benchmark(source: Path) -> bool:
    return benchmark_stem(source) is not None


READERS: dict[str, Callable[[Path], RawDataset]] = {
    "lcrec": read_lcrec,
    "recbole-benchmark": read_recbole_benchmark,
    "recbole": read_recbole,
    "amazon2018": read_amazon2018,
    "amazon2023": read_amazon2023,
}


def detect_format(source: Path) -> str:
    """Guess the format from the file names present (a file SOURCE: from its own name)."""
    names = [source.name] if source.is_file() else [p.name for p in source.iterdir()]

    def has(pred: Callable[[str], bool]) -> bool:
        return any(pred(n) for n in names)

    if has(lambda n: n.endswith(".inter.json")):
        return "lcrec"
    if is_recbole_benchmark(source):
        return "recbole-benchmark"
    if has(lambda n: n.endswith(".inter")):
        return "recbole"
    if has(lambda n: n.endswith(".jsonl.gz")):
        return "amazon2023"
    if has(lambda n: n.endswith(".json.gz")):
        return "amazon2018"
    known = ", ".join(READERS)
    raise InputError(source, f"unknown dataset format: no X.inter.json, X.test.inter, X.inter, X.json.gz or X.jsonl.gz "
                     f"(pass --format; known: {known})")



def read_source(source: str | Path, fmt: str = "auto") -> RawDataset:
    """Dispatch to the reader for ``source`` (a directory, a file, or ``builtin:NAME``)."""
    text = str(source)
    if text.startswith(BUILTIN_PREFIX):
        if fmt not in ("auto", "lcrec"):
            raise OptionError("--format", f"built-in datasets are in lcrec format, not {fmt!r}")
        return read_builtin(text[len(BUILTIN_PREFIX):])
    src = Path(source)
    if not src.exists():
        raise InputError(src, "source not found (a directory, a dataset file, or builtin:office)")
    if fmt != "auto" and fmt not in READERS:
        raise OptionError("--format", f"unknown format {fmt!r} (known: auto, {', '.join(READERS)})")
    name = detect_format(src) if fmt == "auto" else fmt
    return READERS[name](src)
