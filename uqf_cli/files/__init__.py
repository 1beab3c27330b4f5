"""Every file format uqf reads or writes, one module per kind (contracts in docs/formats.md).

:mod:`.atomic` (checked paths, atomic writes), :mod:`.provenance`, :mod:`.jsonio` (JSON/JSONL),
:mod:`.dataset_dir`, :mod:`.tensors` (safetensors, model files), :mod:`.embeddings`, :mod:`.sids`,
:mod:`.sidecar` (JSONL + ``.meta.json``), :mod:`.fingerprints` (catalogue / interaction checks), :mod:`.kinds`
(what kind of uqf output a path holds) and :mod:`.outputs` (``plan_outputs``: every output of a command checked
together and locked).
"""

from uqf_cli.core.errors import InputError, OutputExistsError, UqfError
from uqf_cli.files.atomic import (
    atomic_files,
    atomic_path,
    check_output,
    commit,
    require_dir,
    require_file,
    signals_deferred,
)
from uqf_cli.files.dataset_dir import (
    DATASET_INFO_FILE,
    ITEMS_FILE,
    SEQUENCES_FILE,
    dataset_fingerprint,
    read_dataset_dir,
    write_dataset_dir,
)
from uqf_cli.files.embeddings import EMBEDDINGS_KIND, EmbeddingFile, load_embeddings, save_embeddings
from uqf_cli.files.jsonio import iter_jsonl, read_json, to_json, write_json, write_jsonl
from uqf_cli.files.provenance import make_provenance, sha256_file
from uqf_cli.files.sids import (
    LEVEL_LETTERS,
    SIDS_HEADER_KEY,
    SidTable,
    depth_label,
    level_token,
    parse_token,
    read_sids,
    write_lcrec_index,
    write_sids,
)
from uqf_cli.files.tensors import (
    load_model_file,
    load_tensors,
    meta_json,
    save_model_file,
    save_tensors,
    serialize_safetensors,
)

__all__ = [
    "DATASET_INFO_FILE",
    "EMBEDDINGS_KIND",
    "ITEMS_FILE",
    "LEVEL_LETTERS",
    "SEQUENCES_FILE",
    "SIDS_HEADER_KEY",
    "EmbeddingFile",
    "InputError",
    "OutputExistsError",
    "SidTable",
    "UqfError",
    "atomic_files",
    "atomic_path",
    "check_output",
    "commit",
    "dataset_fingerprint",
    "depth_label",
    "iter_jsonl",
    "level_token",
    "load_embeddings",
    "load_model_file",
    "load_tensors",
    "make_provenance",
    "meta_json",
    "parse_token",
    "read_dataset_dir",
    "read_json",
    "read_sids",
    "require_dir",
    "require_file",
    "save_embeddings",
    "save_model_file",
    "save_tensors",
    "serialize_safetensors",
    "sha256_file",
    "signals_deferred",
    "to_json",
    "write_dataset_dir",
    "write_json",
    "write_jsonl",
    "write_lcrec_index",
    "write_sids",
]
