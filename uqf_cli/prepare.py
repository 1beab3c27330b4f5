"""``uqf prepare``: turn a public recommendation dataset into a uqf dataset directory.

Readers (format auto-detected from the files present, or chosen with ``fmt=``):

* ``lcrec``: the LC-Rec/LETTER JSON pair ``X.inter.json`` (user -> chronological item ids) and
  ``X.item.json`` (item id -> text fields), as LC-Rec, LETTER and MiniOneRec ship their benchmarks.
* ``recbole``: RecBole atomic files, ``X.inter`` (tab-separated, typed header such as
  ``user_id:token	item_id:token	rating:float	timestamp:float``) and ``X.item`` (``item_id:token`` plus
  text columns of type ``token`` or ``token_seq``, which become the item's text fields).
* ``recbole-benchmark``: RecBole's pre-split benchmark files (``X.train.inter``, ``X.valid.inter``,
  ``X.test.inter``, ``X.text``, ``X.item2index``), as UniSRec and VQ-Rec ship Amazon 2018; read by
  :mod:`uqf_cli.recbole_benchmark`, which rebuilds and checks each user's sequence.
* ``amazon2018``: the McAuley lab's 2018 dumps, reviews ``X_5.json.gz`` (or ``X.json.gz``: one JSON
  object a line with ``reviewerID``, ``asin``, ``unixReviewTime``) and ``meta_X.json.gz`` (``asin``,
  ``title``, ``brand``, ``category`` list, ``description`` list).
* ``amazon2023``: the 2023 dumps, reviews ``X.jsonl.gz`` (``user_id``, ``parent_asin``, ``timestamp``
  in ms) and ``meta_X.jsonl.gz`` (``parent_asin``, ``title``, ``store``, ``categories``, ``description``).
  Items are parent products (``parent_asin``), as the 2023 benchmarks define them.
* ``builtin:office``: the Office Products benchmark in LC-Rec format, shipped gzip-compressed inside
  the package (``uqf_cli/data``) so the demo and tests need no download.

The same cleaning applies to every format, in this order (each step's counts land in dataset.json):

1. drop interactions with items that have no metadata, and items without a title (raw dumps): an
   item with no text cannot get a text embedding, hence no semantic ID;
2. keep each user's interactions in chronological order, ties broken by file order (a stable sort,
   so the result does not depend on hash order);
3. deduplicate (user, item) pairs keeping the first (earliest) one: a repeated review is the same
   purchase, and a model must not be asked to predict an item the user already "bought" in the same
   sequence (on by default for raw dumps and RecBole; LC-Rec files are taken as published);
4. iterative k-core: drop users and items with fewer than ``k`` interactions until none is left,
   since dropping an item can push a user below ``k`` and vice versa (default 5 for raw dumps, the
   "5-core" of the literature; off for LC-Rec and RecBole files, which are usually filtered already);
5. ``max_history``: keep each user's last N interactions (applied after the k-core, so a few items
   may then fall below ``k``; the count of such items is reported);
6. items that no sequence names any more are dropped.

Item ids stay the source's ids as strings (the ASIN for Amazon dumps, ``parent_asin`` for 2023),
not remapped to 0..N-1 as LC-Rec does: an id a person can look up on the web is worth more than a
dense integer, and every uqf stage aligns by string id anyway (rows are in items.jsonl order).
Text fields are cleaned of HTML tags, HTML entities and runs of whitespace; list fields become
strings (categories joined with ", ", description paragraphs with " ").
"""

from __future__ import annotations

import gzip
import html
import importlib.resources
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uqf_cli.dataset import Dataset
from uqf_cli.errors import InputError, OptionError
from uqf_cli.io import check_output, iter_jsonl, require_file, write_dataset_dir

TEXT_FIELDS = ("title", "brand", "categories", "description")
BUILTIN_PREFIX = "builtin:"
BUILTINS = {"office": ("Office.inter.json.gz", "Office.item.json.gz")}
UNTITLED_OK = ("lcrec", "recbole", "recbole-benchmark")  # curated files: every item with a line counts as text
SPLIT_PROTOCOL = "leave-one-out: last item = test, second to last = valid, the rest = train"
FORMAT_DEFAULTS: dict[str, dict[str, Any]] = {
    "lcrec": {"kcore": 0, "dedup": False},
    "recbole": {"kcore": 0, "dedup": True},
    "recbole-benchmark": {"kcore": 0, "dedup": False},
    "amazon2018": {"kcore": 5, "dedup": True},
    "amazon2023": {"kcore": 5, "dedup": True},
}


@dataclass(slots=True)
class Interaction:
    """One (user, item) event; ``order`` is its position in the source file (the stable tie-break)."""

    user: str
    item: str
    time: float
    order: int


@dataclass
class RawDataset:
    """What a reader returns: items (id -> text fields) and interactions in file order."""

    items: dict[str, dict[str, Any]]
    interactions: list[Interaction]
    source: str
    format: str
    notes: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Text cleaning
# --------------------------------------------------------------------------------------------

_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>", re.S)


def clean_text(value: Any) -> str:
    """HTML tags and entities removed, whitespace collapsed; lists joined with spaces."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(t for t in (clean_text(v) for v in value) if t)
    text = str(value)
    text = _TAG.sub(" ", text)
    text = html.unescape(text)
    return " ".join(text.split())


def clean_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Clean every string or list field; keep numbers and booleans as they are."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if isinstance(v, (str, list, tuple)) or v is None:
            out[k] = clean_text(v)
        else:
            out[k] = v
    return out


def join_categories(value: Any) -> str:
    """Category lists (Amazon) as one ', '-joined string, as LC-Rec stores them."""
    if isinstance(value, list):
        flat: list[str] = []
        for v in value:
            flat.extend(v if isinstance(v, list) else [v])
        return ", ".join(dict.fromkeys(t for t in (clean_text(v) for v in flat) if t))
    return clean_text(value)


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


def _find_one(directory: Path, pattern: str, exclude: str | None = None) -> Path | None:
    hits = sorted(p for p in directory.glob(pattern) if not (exclude and p.name.startswith(exclude)))
    if len(hits) > 1:
        names = ", ".join(h.name for h in hits)
        raise InputError(directory, f"several files match {pattern} ({names}); pass one of them as SOURCE")
    return hits[0] if hits else None


def _load_json(path: Path) -> Any:
    """A whole JSON document, gzip-compressed or not; errors name the file, line and column."""
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    except UnicodeDecodeError as e:
        raise InputError(path, "not UTF-8 text") from e
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot be read ({e})") from e


def _natural_key(s: str) -> tuple[int, int | str]:
    return (0, int(s)) if str(s).isdigit() else (1, str(s))


def read_lcrec_files(inter_path: Path, item_path: Path, source: str) -> RawDataset:
    """Read an LC-Rec pair; sequences are already chronological, so the position is the time."""
    inter = _load_json(require_file(inter_path))
    raw_items = _load_json(require_file(item_path))
    if not isinstance(inter, dict):
        raise InputError(inter_path, "expected a JSON object mapping user id -> list of item ids")
    if not isinstance(raw_items, dict):
        raise InputError(item_path, "expected a JSON object mapping item id -> text fields")
    items: dict[str, dict[str, Any]] = {}
    for iid in sorted(raw_items, key=_natural_key):
        fields = raw_items[iid]
        if not isinstance(fields, dict):
            raise InputError(item_path, f"item {iid!r}: expected an object of text fields")
        items[str(iid)] = clean_fields(fields)
    if not items:
        raise InputError(item_path, "no items")
    interactions: list[Interaction] = []
    for uid in sorted(inter, key=_natural_key):
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
        inter_path = _find_one(source, "*.inter.json")
        item_path = _find_one(source, "*.item.json")
        if inter_path is None or item_path is None:
            raise InputError(source, "LC-Rec format needs X.inter.json and X.item.json")
    return read_lcrec_files(inter_path, item_path, str(source))


def read_builtin(name: str) -> RawDataset:
    """A dataset shipped inside the package (gzip-compressed LC-Rec JSON)."""
    if name not in BUILTINS:
        raise InputError(None, f"unknown built-in dataset {name!r} (known: {', '.join(BUILTINS)})")
    data = importlib.resources.files("uqf_cli") / "data"
    inter_name, item_name = BUILTINS[name]
    with importlib.resources.as_file(data / inter_name) as inter, importlib.resources.as_file(data / item_name) as it:
        raw = read_lcrec_files(Path(inter), Path(it), f"{BUILTIN_PREFIX}{name}")
    raw.notes["origin"] = "Amazon review data (McAuley lab, research use), LC-Rec Office Products preprocessing"
    return raw


def _recbole_header(path: Path, line: str) -> list[tuple[str, str]]:
    columns = []
    for col in line.rstrip("\n\r").split("\t"):
        name, sep, kind = col.partition(":")
        if not sep or not name:
            raise InputError(path, f"line 1: header column {col!r} is not 'name:type' (RecBole atomic file)")
        columns.append((name, kind))
    return columns


def _iter_recbole(path: Path) -> Iterator[tuple[int, dict[str, str], list[tuple[str, str]]]]:
    """Rows of a RecBole atomic file as dicts (column name -> raw string)."""
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")) as f:
            header = _recbole_header(path, f.readline())
            for lineno, line in enumerate(f, 2):
                if not line.strip():
                    continue
                values = line.rstrip("\n\r").split("\t")
                if len(values) != len(header):
                    raise InputError(path, f"line {lineno}: {len(values)} tab-separated values, header has "
                                     f"{len(header)} columns")
                yield lineno, {name: v for (name, _), v in zip(header, values, strict=True)}, header
    except UnicodeDecodeError as e:
        raise InputError(path, "not UTF-8 text") from e


def read_recbole(source: Path) -> RawDataset:
    """``X.inter`` (+ ``X.item`` with the text) in RecBole's atomic-file format."""
    if source.is_file():
        inter_path, item_path = source, source.with_suffix(".item")
    else:
        found = _find_one(source, "*.inter")
        if found is None:
            raise InputError(source, "RecBole format needs X.inter (and X.item)")
        inter_path, item_path = found, found.with_suffix(".item")
    if not item_path.is_file():
        raise InputError(item_path, "not found (uqf needs the items' text, which RecBole keeps in X.item)")
    items: dict[str, dict[str, Any]] = {}
    for lineno, row, header in _iter_recbole(item_path):
        if "item_id" not in row:
            raise InputError(item_path, "header has no item_id column")
        iid = row["item_id"]
        if not iid:
            raise InputError(item_path, f"line {lineno}: empty item_id")
        if iid in items:
            raise InputError(item_path, f"line {lineno}: duplicate item id {iid!r}")
        text_cols = [n for n, kind in header if kind in ("token", "token_seq") and n != "item_id"]
        items[iid] = {n: clean_text(row[n]) for n in text_cols}
    interactions: list[Interaction] = []
    for lineno, row, _ in _iter_recbole(inter_path):
        missing = [c for c in ("user_id", "item_id") if c not in row]
        if missing:
            raise InputError(inter_path, f"header lacks column(s) {', '.join(missing)}")
        t = row.get("timestamp", "")
        try:
            when = float(t) if t else 0.0
        except ValueError as e:
            raise InputError(inter_path, f"line {lineno}: timestamp {t!r} is not a number") from e
        if not row["user_id"] or not row["item_id"]:
            raise InputError(inter_path, f"line {lineno}: empty user_id or item_id")
        interactions.append(Interaction(row["user_id"], row["item_id"], when, len(interactions)))
    notes = {"files": [inter_path.name, item_path.name]}
    return RawDataset(items, interactions, str(source), "recbole", notes)


def _amazon_pair(source: Path, review_pattern: str, meta_pattern: str, suffix: str) -> tuple[Path, Path]:
    """Find (reviews, meta) files: SOURCE is the reviews file, or a directory holding one pair."""
    if source.is_file():
        reviews = source
    else:
        found = _find_one(source, review_pattern, exclude="meta_")
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
    interactions: list[Interaction] = []
    for lineno, rec in iter_jsonl(reviews_path):
        user = str(_field(reviews_path, lineno, rec, user_key))
        item = str(_field(reviews_path, lineno, rec, *item_keys))
        t = _field(reviews_path, lineno, rec, time_key)
        try:
            when = float(t) / time_scale
        except (TypeError, ValueError) as e:
            raise InputError(reviews_path, f"line {lineno}: {time_key} {t!r} is not a number") from e
        interactions.append(Interaction(user, item, when, len(interactions)))
    wanted = {x.item for x in interactions}
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


def read_recbole_benchmark(source: Path) -> RawDataset:
    """RecBole benchmark files (pre-split ``X.train/valid/test.inter`` + ``X.text``); see that module."""
    from uqf_cli.recbole_benchmark import read_recbole_benchmark as read

    return read(source)


def is_recbole_benchmark(source: Path) -> bool:
    from uqf_cli.recbole_benchmark import benchmark_stem

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


# --------------------------------------------------------------------------------------------
# Cleaning pipeline
# --------------------------------------------------------------------------------------------


def chronological_sequences(interactions: Iterable[Interaction]) -> dict[str, list[Interaction]]:
    """Per user, interactions sorted by time; equal times keep file order (stable sort)."""
    by_user: dict[str, list[Interaction]] = {}
    for x in interactions:
        by_user.setdefault(x.user, []).append(x)
    return {u: sorted(xs, key=lambda x: (x.time, x.order)) for u, xs in by_user.items()}


def deduplicate(seqs: dict[str, list[Interaction]]) -> tuple[dict[str, list[Interaction]], int]:
    """Keep each (user, item) pair's first (earliest) interaction; return the number removed."""
    out, removed = {}, 0
    for u, xs in seqs.items():
        seen: set[str] = set()
        kept = []
        for x in xs:
            if x.item in seen:
                removed += 1
                continue
            seen.add(x.item)
            kept.append(x)
        out[u] = kept
    return out, removed


def kcore(seqs: dict[str, list[Interaction]], k: int) -> tuple[dict[str, list[Interaction]], int]:
    """Iterative k-core: repeat dropping users and items with < k interactions until stable.

    Returns the filtered sequences and the number of rounds taken. ``k <= 1`` only removes empty users.
    """
    current = {u: xs for u, xs in seqs.items() if xs}
    rounds = 0
    if k <= 1:
        return current, rounds
    while True:
        rounds += 1
        item_count = Counter(x.item for xs in current.values() for x in xs)
        weak_items = {i for i, c in item_count.items() if c < k}
        nxt = {}
        for u, xs in current.items():
            kept = [x for x in xs if x.item not in weak_items] if weak_items else xs
            if len(kept) >= k:
                nxt[u] = kept
        if len(nxt) == len(current) and not weak_items:
            return nxt, rounds
        current = nxt


def clean_interactions(raw: RawDataset, kcore_k: int, dedup: bool, max_history: int | None) -> tuple[
    dict[str, dict[str, Any]], dict[str, list[str]], dict[str, Any]
]:
    """Apply the documented cleaning steps; return (items, sequences, counts of each step)."""
    counts: dict[str, Any] = {"interactions_read": len(raw.interactions), "items_read": len(raw.items)}
    titled = {i for i, f in raw.items.items() if raw.format in UNTITLED_OK or f.get("title")}
    counts["items_without_title"] = len(raw.items) - len(titled)
    kept = [x for x in raw.interactions if x.item in titled]
    counts["interactions_without_item_text"] = len(raw.interactions) - len(kept)
    seqs = chronological_sequences(kept)
    if dedup:
        seqs, counts["duplicates_removed"] = deduplicate(seqs)
    seqs, counts["kcore_rounds"] = kcore(seqs, kcore_k)
    if max_history:
        counts["interactions_cut_by_max_history"] = sum(max(0, len(xs) - max_history) for xs in seqs.values())
        seqs = {u: xs[-max_history:] for u, xs in seqs.items()}
        if kcore_k > 1:
            per_item = Counter(x.item for xs in seqs.values() for x in xs)
            counts["items_below_kcore_after_max_history"] = sum(1 for c in per_item.values() if c < kcore_k)
    sequences = {u: [x.item for x in seqs[u]] for u in sorted(seqs, key=_natural_key)}
    used = {i for s in sequences.values() for i in s}
    items = {i: f for i, f in raw.items.items() if i in used}
    if raw.format != "lcrec":  # raw ids: a readable, deterministic order
        items = {i: items[i] for i in sorted(items, key=_natural_key)}
    counts["items_without_interactions"] = len(titled) - len(items)
    return items, sequences, counts


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


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


def prepare(
    source: str | Path,
    output: str | Path,
    fmt: str = "auto",
    force: bool = False,
    kcore_k: int | None = None,
    dedup: bool | None = None,
    max_history: int | None = None,
) -> Dataset:
    """Read ``source``, clean it as documented above and write a validated dataset directory.

    ``kcore_k`` and ``dedup`` default (``None``) to the format's own default (see FORMAT_DEFAULTS).
    """
    if kcore_k is not None and kcore_k < 0:
        raise OptionError("--kcore", "must be 0 (off) or more")
    if max_history is not None and max_history < 1:
        raise OptionError("--max-history", "must be at least 1")
    check_output(output, force)
    raw = read_source(source, fmt)
    defaults = FORMAT_DEFAULTS[raw.format]
    k = defaults["kcore"] if kcore_k is None else kcore_k
    dd = defaults["dedup"] if dedup is None else dedup
    if not raw.items:
        raise InputError(raw.source, "no items")
    if not raw.interactions:
        raise InputError(raw.source, "no interactions")
    items, sequences, counts = clean_interactions(raw, k, dd, max_history)
    if not sequences:
        raise InputError(raw.source, f"no interactions left after cleaning (k-core {k}; counts: {counts})")
    info: dict[str, Any] = {
        "source": raw.source,
        "format": raw.format,
        "options": {"kcore": k, "dedup": dd, "max_history": max_history},
        "item_ids": "as in the source (Amazon: ASIN; 2023: parent_asin), not remapped",
        "split": SPLIT_PROTOCOL,
        "cleaning": counts,
        "notes": raw.notes,
    }
    ds = Dataset(items, sequences, info)
    info.update({key: ds.stats()[key] for key in ("users", "items", "interactions")})
    write_dataset_dir(output, items, sequences, info, force=force)
    return Dataset.load(output)
