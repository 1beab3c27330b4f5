"""Reader for RecBole's benchmark-file layout, a dataset shipped already split (UniSRec, VQ-Rec): each user's
sequence is rebuilt from the split rows and every row is checked against it (docs/prepare.md, "The benchmark
layout")."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uqf_cli.core.errors import InputError
from uqf_cli.data.prepare.cleaning import clean_text
from uqf_cli.data.prepare.raw import Interaction, RawDataset
from uqf_cli.data.prepare.recbole import iter_recbole
from uqf_cli.files.atomic import require_file

FORMAT = "recbole-benchmark"
SPLITS = ("train", "valid", "test")
SUFFIXES = (".train.inter", ".valid.inter", ".test.inter", ".text", ".item2index", ".user2index")
ROW_COLUMNS = ("user_id", "item_id_list", "item_id")


@dataclass(frozen=True)
class PrefixRow:
    """One row of a split file: the history (item indices, oldest first) and the target index."""

    path: Path
    lineno: int
    history: tuple[str, ...]
    target: str


@dataclass
class UserRows:
    """All rows the three split files hold for one user."""

    train: list[PrefixRow] = field(default_factory=list)
    valid: PrefixRow | None = None
    test: PrefixRow | None = None


def benchmark_stem(source: Path) -> tuple[Path, str] | None:
    """(directory, X) when ``source`` is a benchmark-layout folder or one of its files, else None."""
    if source.is_file():
        for suffix in SUFFIXES:
            if source.name.endswith(suffix) and len(source.name) > len(suffix):
                return source.parent, source.name[: -len(suffix)]
        return None
    stems = sorted(p.name[: -len(".test.inter")] for p in source.glob("*.test.inter"))
    if len(stems) > 1:
        raise InputError(source, f"several benchmark datasets ({', '.join(stems)}); pass one of their files as SOURCE")
    return (source, stems[0]) if stems else None


def read_index_map(path: Path) -> dict[str, str]:
    """``X.item2index``/``X.user2index`` as index -> original id; both sides must be unique."""
    require_file(path)
    by_index: dict[str, str] = {}
    seen: set[str] = set()
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.rstrip("\n\r").split("\t")
                if len(parts) != 2 or not parts[0] or not parts[1]:
                    raise InputError(path, f"line {lineno}: expected 'original id<TAB>index'")
                original, index = parts
                if index in by_index:
                    raise InputError(path, f"line {lineno}: index {index!r} given twice")
                if original in seen:
                    raise InputError(path, f"line {lineno}: id {original!r} given twice")
                seen.add(original)
                by_index[index] = original
    except UnicodeDecodeError as e:
        raise InputError(path, "not UTF-8 text") from e
    if not by_index:
        raise InputError(path, "empty")
    return by_index


def read_split_rows(path: Path, split: str, users: dict[str, UserRows], known_items: dict[str, str],
                    map_name: str) -> None:
    """Add one split file's rows to ``users`` (by user index); unknown item indices are an error."""
    _check_header(path)
    for lineno, row, _ in iter_recbole(path):
        history, target = tuple(row["item_id_list"].split()), row["item_id"]
        if not row["user_id"] or not target:
            raise InputError(path, f"line {lineno}: empty user_id or item_id")
        for idx in (*history, target):
            if idx not in known_items:
                raise InputError(path, f"line {lineno}: item index {idx!r} is not in {map_name}")
        rec = PrefixRow(path, lineno, history, target)
        rows = users.setdefault(row["user_id"], UserRows())
        if split == "train":
            rows.train.append(rec)
            continue
        if getattr(rows, split) is not None:
            raise InputError(path, f"line {lineno}: user {row['user_id']!r} has a second {split} row")
        setattr(rows, split, rec)


def _check_header(path: Path) -> None:
    """The split files' three columns, checked even when a file has no rows."""
    require_file(path)
    try:
        with open(path, encoding="utf-8") as f:
            names = {col.partition(":")[0] for col in f.readline().rstrip("\n\r").split("\t")}
    except UnicodeDecodeError as e:
        raise InputError(path, "not UTF-8 text") from e
    missing = [c for c in ROW_COLUMNS if c not in names]
    if missing:
        raise InputError(path, f"header lacks column(s) {', '.join(missing)} (benchmark files have "
                         "user_id, item_id_list, item_id)")


def _tail(items: tuple[str, ...] | list[str], k: int = 4) -> str:
    shown = " ".join(items[-k:])
    return f"[... {shown}]" if len(items) > k else f"[{shown}]"


def _expected_row(seq: list[str], p: int, cap: int) -> tuple[tuple[str, ...], str]:
    return tuple(seq[max(0, p - cap) : p]), seq[p]


def _follow_train_rows(user: str, rows: UserRows, cap: int) -> list[str]:
    """The train part of the sequence, chained from the shortest train history (used when histories
    were cut at ``cap`` items, so the test row alone does not hold the whole sequence)."""
    train = rows.train
    first = min(train, key=lambda r: (len(r.history), r.lineno))
    if len(first.history) != 1:
        raise InputError(first.path, f"user {user!r}: no train row with a one-item history to start the "
                         "sequence from")
    by_history: dict[tuple[str, ...], PrefixRow] = {}
    for r in train:
        by_history.setdefault(r.history, r)
    seq = [*first.history, first.target]
    del by_history[first.history]
    while (nxt := by_history.pop(tuple(seq[-cap:]), None)) is not None:
        seq.append(nxt.target)
    return seq


def rebuild_sequence(user: str, rows: UserRows, cap: int) -> list[str]:
    """The user's chronological item indices, checked against every one of the user's rows."""
    test, valid = rows.test, rows.valid
    if test is None:
        where = valid or rows.train[0]
        raise InputError(where.path, f"line {where.lineno}: user {user!r} has no row in the test file")
    if valid is None:
        raise InputError(test.path, f"line {test.lineno}: user {user!r} has no row in the valid file")
    seq = [*test.history, test.target]
    length = len(rows.train) + 3
    origin = "the test row"
    if len(seq) < length and len(test.history) == cap and rows.train:
        seq = [*_follow_train_rows(user, rows, cap), test.history[-1], test.target]
        origin = f"the test row and the chained train rows (histories cut at {cap})"
    if len(seq) != length:
        raise InputError(test.path, f"line {test.lineno}: user {user!r}: the test row's history holds "
                         f"{len(test.history)} items, but the train file has {len(rows.train)} rows for this "
                         f"user (a sequence of n items has n-3 train rows)")
    _check_row(user, valid, seq, length - 2, cap, "valid", origin)
    _check_row(user, test, seq, length - 1, cap, "test", origin)
    _check_train_rows(user, rows.train, seq, cap, origin)
    return seq


def _check_row(user: str, row: PrefixRow, seq: list[str], p: int, cap: int, split: str, origin: str) -> None:
    history, target = _expected_row(seq, p, cap)
    if (row.history, row.target) != (history, target):
        raise InputError(row.path, f"line {row.lineno}: user {user!r}: the {split} row ({_tail(row.history)} -> "
                         f"{row.target}) disagrees with the sequence rebuilt from {origin} "
                         f"(expected {_tail(history)} -> {target})")


def _check_train_rows(user: str, train: list[PrefixRow], seq: list[str], cap: int, origin: str) -> None:
    expected = Counter(_expected_row(seq, p, cap) for p in range(1, len(seq) - 2))
    for r in train:
        key = (r.history, r.target)
        if expected[key] == 0:
            raise InputError(r.path, f"line {r.lineno}: user {user!r}: train row ({_tail(r.history)} -> "
                             f"{r.target}) is no prefix of the sequence rebuilt from {origin}")
        expected[key] -= 1


def read_item_text(path: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """``X.text``: original item id -> text fields (every token/token_seq column but the id)."""
    require_file(path)
    items: dict[str, dict[str, Any]] = {}
    for lineno, row, header in iter_recbole(path):
        if "item_id" not in row:
            raise InputError(path, "header has no item_id column")
        iid = row["item_id"]
        if iid in items:
            raise InputError(path, f"line {lineno}: duplicate item id {iid!r}")
        if iid in wanted:
            cols = [n for n, kind in header if kind in ("token", "token_seq") and n != "item_id"]
            items[iid] = {n: clean_text(row[n]) for n in cols}
    return items


def read_recbole_benchmark(source: Path) -> RawDataset:
    """Read the layout (SOURCE: its folder or any of its files) into sequences of original ids."""
    found = benchmark_stem(source)
    if found is None:
        raise InputError(source, "RecBole benchmark layout needs X.train.inter, X.valid.inter, X.test.inter, "
                         "X.text and X.item2index")
    folder, stem = found
    item_file = folder / f"{stem}.item2index"
    item_map = read_index_map(item_file)
    user_file = folder / f"{stem}.user2index"
    user_map = read_index_map(user_file) if user_file.is_file() else None
    users: dict[str, UserRows] = {}
    for split in SPLITS:
        read_split_rows(folder / f"{stem}.{split}.inter", split, users, item_map, item_file.name)
    cap = max(len(r.history) for rows in users.values() for r in [*rows.train, rows.valid, rows.test] if r)
    interactions: list[Interaction] = []
    for uidx, rows in users.items():
        seq = rebuild_sequence(uidx, rows, cap)
        uid = _user_id(uidx, user_map, user_file, rows)
        base = len(interactions)
        interactions.extend(Interaction(uid, item_map[i], float(pos), base + pos) for pos, i in enumerate(seq))
    text_path = folder / f"{stem}.text"
    used = {x.item for x in interactions}
    items = read_item_text(text_path, used)
    lacking = sorted(used - set(items))
    if lacking:
        raise InputError(text_path, f"no text for {len(lacking)} item(s) the sequences name, e.g. {lacking[0]!r}")
    files = [f"{stem}{s}" for s in SUFFIXES if (folder / f"{stem}{s}").is_file()]
    notes = {"files": files, "history_cap": cap,
             "split_check": "sequences rebuilt from the test rows; every valid and train row matched",
             "user_ids": "from user2index" if user_map else "the files' user indices (no user2index)"}
    return RawDataset(items, interactions, str(source), FORMAT, notes)


def _user_id(uidx: str, user_map: dict[str, str] | None, user_file: Path, rows: UserRows) -> str:
    if user_map is None:
        return uidx
    if uidx not in user_map:
        row = rows.test or rows.valid or rows.train[0]
        raise InputError(row.path, f"line {row.lineno}: user index {uidx!r} is not in {user_file.name}")
    return user_map[uidx]
