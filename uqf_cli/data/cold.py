"""The cold-start protocol: a seeded share of items whose interactions are removed from training.

As in the cold-start evaluations of LIGER (Yang et al., 2024) and TIGER, a cold item has text but no
train interaction; the question is whether a model recommends it when a user's next item is one.
Given a share (default 5%) and a seed:

* the cold items are a seeded uniform sample of the catalogue (``round(share * items)``, at least 1);
  every item, cold or not, stays in ``items.jsonl`` with its text;
* for a user with at least three interactions, the cold items are removed from the **train part**
  (every item before the valid and test ones); the valid and test items are kept as they are, so a
  test (or valid) user whose target is a cold item stays in the evaluation, with the history as observed;
* a user whose sequence would then be shorter than three items has no valid/test part left (the split
  is positional), so every cold item is removed from it too (it only trains), and an empty sequence is
  dropped: no cold item is ever in :meth:`~uqf_cli.data.dataset.Dataset.train_sequences`.

The dataset's ``dataset.json`` records ``cold_start`` (share, seed, the cold item ids, counts), which
``uqf evaluate`` reads to report cold and warm targets apart. ``train_sequences(include_valid=True)``
(a final fit with the valid item) may contain a cold valid item; no uqf backbone trains that way.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from uqf_cli.core.errors import OptionError
from uqf_cli.data.dataset import MIN_EVAL_LENGTH, Dataset
from uqf_cli.files.atomic import check_output
from uqf_cli.files.dataset_dir import write_dataset_dir

DEFAULT_SHARE = 0.05
PROTOCOL = ("cold items: a seeded share of the catalogue; their interactions are removed from every user's train "
            "part (valid and test items kept; users left with fewer than 3 items lose every cold item); their "
            "text is kept")


def check_share(share: float) -> None:
    if not 0 < share < 1:
        raise OptionError("--cold-share", f"must be in (0, 1), got {share}")


def pick_cold_items(item_ids: Sequence[str], share: float, seed: int) -> list[str]:
    """A seeded uniform ``share`` of ``item_ids`` (at least one), in catalogue order."""
    check_share(share)
    count = max(1, round(share * len(item_ids)))
    chosen = set(random.Random(seed).sample(list(item_ids), count))
    return [i for i in item_ids if i in chosen]


def remove_cold_from_train(sequences: Mapping[str, Sequence[str]], cold: set[str]) -> dict[str, list[str]]:
    """Each sequence without the cold items of its train part (rules in the module docstring)."""
    out: dict[str, list[str]] = {}
    for uid, seq in sequences.items():
        seq = list(seq)
        if len(seq) >= MIN_EVAL_LENGTH:
            kept = [i for i in seq[:-2] if i not in cold] + seq[-2:]
            if len(kept) >= MIN_EVAL_LENGTH:
                out[uid] = kept
                continue
        warm = [i for i in seq if i not in cold]
        if warm:
            out[uid] = warm
    return out


def cold_start_info(sequences: Mapping[str, Sequence[str]], new: Mapping[str, Sequence[str]], cold: list[str],
                    share: float, seed: int) -> dict[str, Any]:
    """What ``dataset.json`` records about the protocol: parameters, cold ids and what was removed."""
    cold_set = set(cold)
    test_targets = [s[-1] for s in new.values() if len(s) >= MIN_EVAL_LENGTH]
    valid_targets = [s[-2] for s in new.values() if len(s) >= MIN_EVAL_LENGTH]
    return {
        "share": share, "seed": seed, "protocol": PROTOCOL, "items": len(cold), "item_ids": cold,
        "removed_interactions": sum(len(s) for s in sequences.values()) - sum(len(s) for s in new.values()),
        "dropped_users": len(sequences) - len(new),
        "cold_test_targets": sum(1 for t in test_targets if t in cold_set),
        "cold_valid_targets": sum(1 for t in valid_targets if t in cold_set),
    }


def apply_cold_start(items: Mapping[str, Any], sequences: Mapping[str, Sequence[str]], share: float,
                     seed: int) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """(new sequences, the ``cold_start`` record) for a catalogue and its sequences."""
    cold = pick_cold_items(list(items), share, seed)
    new = remove_cold_from_train(sequences, set(cold))
    return new, cold_start_info(sequences, new, cold, share, seed)


def derive_cold_dataset(source: str | Path, output: str | Path, share: float = DEFAULT_SHARE, seed: int = 0,
                        force: bool = False) -> Dataset:
    """Write a cold-start copy of a prepared dataset directory (same items and text, cold train part removed)."""
    check_share(share)
    check_output(output, force)
    ds = Dataset.load(source)
    if "cold_start" in ds.info:
        raise OptionError("--cold-share", f"{source} is already a cold-start dataset")
    sequences, record = apply_cold_start(ds.items, ds.sequences, share, seed)
    info = {k: v for k, v in ds.info.items() if k != "fingerprint"}
    info.update({"derived_from": {"path": str(source), "fingerprint": ds.fingerprint}, "cold_start": record})
    info.update({"users": len(sequences), "interactions": sum(len(s) for s in sequences.values())})
    write_dataset_dir(output, ds.items, sequences, info, force=force)
    return Dataset.load(output)


def cold_items_of(dataset: Dataset) -> tuple[set[str], str] | None:
    """The dataset's cold items and where they come from: the ``cold_start`` record, else ``None``."""
    record = dataset.info.get("cold_start")
    if isinstance(record, dict) and isinstance(record.get("item_ids"), list):
        return {str(i) for i in record["item_ids"]}, "the dataset's cold_start record"
    return None
