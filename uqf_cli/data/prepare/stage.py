"""``uqf prepare``: read a source, clean it and write a validated dataset directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.data.dataset import Dataset
from uqf_cli.data.prepare.cleaning import clean_interactions
from uqf_cli.data.prepare.readers import read_source
from uqf_cli.files.atomic import check_output
from uqf_cli.files.dataset_dir import write_dataset_dir

SPLIT_PROTOCOL = "leave-one-out: last item = test, second to last = valid, the rest = train"
FORMAT_DEFAULTS: dict[str, dict[str, Any]] = {
    "lcrec": {"kcore": 0, "dedup": False},
    "recbole": {"kcore": 0, "dedup": True},
    "recbole-benchmark": {"kcore": 0, "dedup": False},
    "amazon2018": {"kcore": 5, "dedup": True},
    "amazon2023": {"kcore": 5, "dedup": True},
}



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
    check_output(output, force, "dataset")
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
