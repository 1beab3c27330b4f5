"""``uqf embed-text --from-array FILE``: wrap precomputed item vectors into a uqf text embedding file.

The array is UniSRec's raw format (headerless little-endian float32, ``N x D``); its rows are named
by the ``X.item2index`` file beside it, whose indices must run contiguously from their smallest
(the format in full: docs/embed-text.md). No item text is read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.data.dataset import Dataset
from uqf_cli.data.prepare.recbole_benchmark import read_index_map
from uqf_cli.embed.models import DEFAULT_MODEL
from uqf_cli.embed.stage import TextEmbeddingResult
from uqf_cli.files import check_output, make_provenance, require_file, save_embeddings
from uqf_cli.files.fingerprints import TextSpec, text_file_fields, text_hashes

FLOAT_BYTES = 4


def index_map_for(array_path: Path) -> Path:
    """``X.item2index`` next to ``X.<suffix>`` (the array's name up to its last dot)."""
    return array_path.with_suffix(".item2index")


def array_rows(index_map: dict[str, str], path: Path) -> tuple[dict[str, int], int]:
    """Original item id -> array row, and the index base; indices must be contiguous integers."""
    try:
        indices = {orig: int(idx) for idx, orig in index_map.items()}
    except ValueError as e:
        raise InputError(path, f"indices must be integers ({e})") from e
    base = min(indices.values())
    if max(indices.values()) - base + 1 != len(indices):
        raise InputError(path, f"indices are not contiguous ({len(indices)} items, indices {base}.."
                         f"{max(indices.values())}), so they cannot name the rows of an array")
    return {orig: idx - base for orig, idx in indices.items()}, base


def read_raw_array(path: Path, rows: int) -> np.ndarray:
    """A headerless little-endian float32 file as ``[rows, D]``, D inferred from the size."""
    size = require_file(path).stat().st_size
    if size == 0 or size % (FLOAT_BYTES * rows):
        raise InputError(path, f"{size} bytes is not {rows} rows of float32 (N = items in the item2index "
                         "file; expected N x D x 4 bytes)")
    return np.fromfile(path, dtype="<f4").reshape(rows, size // (FLOAT_BYTES * rows))


def wrap_array(dataset_dir: str | Path, output: str | Path, array: str | Path, normalize: bool = True,
               force: bool = False) -> tuple[Path, int, int, float]:
    """Write the dataset's items' rows of ``array`` as a text embedding file; returns
    (output, items, dim, seconds)."""
    started = time.perf_counter()
    check_output(output, force, "embeddings:text")
    ds = Dataset.load(dataset_dir)
    array_path = require_file(array, "embedding array")
    map_path = index_map_for(array_path)
    if not map_path.is_file():
        raise InputError(map_path, "not found (the array's rows are named by the item2index file next to it)")
    rows, base = array_rows(read_index_map(map_path), map_path)
    missing = [iid for iid in ds.item_ids if iid not in rows]
    if missing:
        raise InputError(map_path, f"lacks {len(missing)} item(s) of the dataset, e.g. {missing[0]!r}")
    full = read_raw_array(array_path, len(rows))
    emb = torch.from_numpy(full[[rows[iid] for iid in ds.item_ids]].copy())
    if not torch.isfinite(emb).all():
        raise InputError(array_path, "holds NaN or Inf values")
    if normalize:
        if (emb.norm(dim=1) == 0).any():
            raise OptionError("--normalize", f"{array_path.name} has all-zero rows; pass --no-normalize")
        emb = torch.nn.functional.normalize(emb, dim=1)
    params = {"from_array": str(array_path), "rows": len(rows), "dim": int(full.shape[1]), "index_base": base,
              "dtype": "float32 little-endian", "normalize": normalize}
    inputs = {"array": array_path, "index_map": map_path, "items": ds.path / "items.jsonl" if ds.path else None}
    prov = make_provenance("embed-text", params, inputs=inputs)
    extra_t, extra_m = text_file_fields(ds.item_ids, text_hashes([""] * len(ds.item_ids)), TextSpec())
    save_embeddings(output, emb, ds.item_ids, prov, modality="text", dataset_fingerprint=ds.fingerprint,
                    extra_tensors=extra_t, extra_metadata=extra_m, force=force)
    return Path(output), len(ds.item_ids), int(emb.shape[1]), time.perf_counter() - started


def embed_from_array(dataset_dir: str | Path, output: str | Path, array: str | Path, model: str,
                     fields: Sequence[str] | None, template: str | None, devices: Sequence[str],
                     normalize: bool, force: bool) -> TextEmbeddingResult:
    """The ``--from-array`` path: no model runs, so model and text options are refused."""
    for option, given in (("--model", model != DEFAULT_MODEL), ("--fields", fields is not None),
                          ("--template", template is not None), ("--devices", bool(devices))):
        if given:
            raise OptionError(option, "does not apply with --from-array (the vectors are taken as they are)")
    out, items, dim, seconds = wrap_array(dataset_dir, output, array, normalize=normalize, force=force)
    return TextEmbeddingResult(out, items, dim, seconds, f"array {Path(array).name}", "none", "cpu",
                               {"from_array": str(array), "normalize": normalize})
