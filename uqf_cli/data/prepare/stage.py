"""``uqf prepare``: read a source, clean it and write a validated dataset directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uqf_cli.core.config_field import configured
from uqf_cli.core.errors import InputError
from uqf_cli.data.cold import apply_cold_start, derive_cold_dataset
from uqf_cli.data.dataset import Dataset
from uqf_cli.data.prepare.cleaning import clean_interactions
from uqf_cli.data.prepare.config import PrepareConfig
from uqf_cli.data.prepare.readers import read_source
from uqf_cli.files.atomic import check_output
from uqf_cli.files.dataset_dir import SEQUENCES_FILE, write_dataset_dir

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
    cfg: PrepareConfig | None = None,
    force: bool = False,
    **settings: Any,
) -> Dataset:
    """Read ``source``, clean it as documented above and write a validated dataset directory.

    ``cfg`` defaults to ``PrepareConfig()``; ``settings`` (its field names: ``fmt="amazon2018"``,
    ``kcore_k=0``) replace single fields. ``kcore_k`` and ``dedup`` default (``None``) to the format's own
    default (see FORMAT_DEFAULTS). ``cold_share`` applies the cold-start protocol (:mod:`uqf_cli.data.cold`)
    with ``cold_seed``; ``source`` may then also be a prepared dataset directory, which is copied with the
    protocol applied.
    """
    cfg = configured(PrepareConfig, cfg, settings)
    cfg.validate()
    if cfg.cold_share is not None and (Path(source) / SEQUENCES_FILE).is_file():
        return derive_cold_dataset(source, output, cfg.cold_share, cfg.cold_seed, force)
    check_output(output, force, "dataset")
    raw = read_source(source, cfg.fmt)
    defaults = FORMAT_DEFAULTS[raw.format]
    k = defaults["kcore"] if cfg.kcore_k is None else cfg.kcore_k
    dd = defaults["dedup"] if cfg.dedup is None else cfg.dedup
    if not raw.items:
        raise InputError(raw.source, "no items")
    if not raw.interactions:
        raise InputError(raw.source, "no interactions")
    items, sequences, counts = clean_interactions(raw, k, dd, cfg.max_history)
    if not sequences:
        raise InputError(raw.source, f"no interactions left after cleaning (k-core {k}; counts: {counts})")
    info: dict[str, Any] = {
        "source": raw.source,
        "format": raw.format,
        "options": {"kcore": k, "dedup": dd, "max_history": cfg.max_history},
        "item_ids": "as in the source (Amazon: ASIN; 2023: parent_asin), not remapped",
        "split": SPLIT_PROTOCOL,
        "cleaning": counts,
        "notes": raw.notes,
    }
    if cfg.cold_share is not None:
        sequences, info["cold_start"] = apply_cold_start(items, sequences, cfg.cold_share, cfg.cold_seed)
    ds = Dataset(items, sequences, info)
    info.update({key: ds.stats()[key] for key in ("users", "items", "interactions")})
    write_dataset_dir(output, items, sequences, info, force=force)
    return Dataset.load(output)
