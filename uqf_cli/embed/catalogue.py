"""The catalogue check: does a text embedding file still fit a dataset's item texts, item by item?

It rebuilds each item's text the way embed-text would now (fields or template recorded in the file),
hashes it and compares with the hashes the file recorded (:mod:`uqf_cli.files.fingerprints`). It lives
in embed/ because building item texts is embed-text's business (files/ sits below data/ and embed/).
"""

from __future__ import annotations

from collections.abc import Mapping

from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.data.dataset import Dataset
from uqf_cli.embed.texts import build_texts
from uqf_cli.files.embeddings import EmbeddingFile
from uqf_cli.files.fingerprints import TextRecord, TextSpec, text_hash


def dataset_text_hashes(dataset: Dataset, spec: TextSpec) -> dict[str, int]:
    """Each dataset item's text hash under ``spec`` (the text embed-text would embed now)."""
    if not spec.fields and not spec.template:
        texts = [""] * len(dataset.item_ids)
    else:
        texts = build_texts(dataset, spec.fields, spec.template)
    return dict(zip(dataset.item_ids, (text_hash(t) for t in texts), strict=True))


def text_differences(record: TextRecord, current: Mapping[str, int]) -> tuple[list[str], list[str]]:
    """Dataset items the file lacks, and items whose text differs from what the file embedded."""
    missing = [iid for iid in current if iid not in record.hashes]
    changed = [iid for iid, h in current.items() if iid in record.hashes and record.hashes[iid] != h]
    return missing, changed


def check_catalogue(ef: EmbeddingFile, record: TextRecord, dataset: Dataset) -> None:
    """Refuse a text file unless every dataset item is in it with unchanged text (one line naming both)."""
    try:
        current = dataset_text_hashes(dataset, record.spec)
    except OptionError as e:  # a field the file read is gone from the dataset
        raise InputError(ef.path, f"its item text ({_describe(record.spec)}) cannot be built from "
                                  f"{dataset.path}: {e}") from e
    missing, changed = text_differences(record, current)
    if not missing and not changed:
        return
    parts = []
    if changed:
        parts.append(f"{len(changed)} item(s) of {dataset.path} have another text than this file embedded "
                     f"(e.g. {changed[0]!r})")
    if missing:
        parts.append(f"{len(missing)} of its items have no embedding (e.g. {missing[0]!r})")
    raise InputError(ef.path, "; ".join(parts) + f"; re-embed with `uqf embed-text {dataset.path} -o NEW.st "
                              f"--reuse {ef.path}` (only those items are encoded)")


def _describe(spec: TextSpec) -> str:
    return f"template {spec.template!r}" if spec.template else f"fields {', '.join(spec.fields) or 'none'}"



__all__ = ["check_catalogue", "dataset_text_hashes", "text_differences"]
