"""``uqf fuse``: text + collaborative item embeddings -> one unified embedding per item (docs/fuse.md).

config (options) -> inputs (load, check, align by id) -> neighbours and memory (what the queries read)
-> model (the Unified Q-Former) -> training -> report (overlap table, gate) -> stage (``fuse``);
saved (save, load, ``--apply``). The methods: interface (``Fusion``), one module each (uqf, concat,
text_only, collab_only) and registry.
"""

from uqf_cli.fuse.ann import ANN_THRESHOLD, nearest
from uqf_cli.fuse.config import MEMORIES, STRUCTURAL_SOURCES, FuseOptions
from uqf_cli.fuse.inputs import (
    AlignedInputs,
    align_inputs,
    check_dataset,
    check_same_dataset,
    check_split_fingerprints,
    check_text_model,
    concat_embeddings,
    load_collab,
    load_text,
    text_model_of,
)
from uqf_cli.fuse.interface import Applied, Fused, FuseInputs, Fusion, SavedFuser
from uqf_cli.fuse.memory import MemoryBank, MemoryInputs, bank_from, build_memory
from uqf_cli.fuse.model import FuserConfig, UnifiedQFormer
from uqf_cli.fuse.neighbours import TOPK_BLOCK_ELEMENTS, cooccurrence_neighbours, knn_lists, topk_cosine
from uqf_cli.fuse.registry import FUSIONS, fusion, register
from uqf_cli.fuse.report import (
    OVERLAP_K,
    OVERLAP_MAX_QUERIES,
    FuseResult,
    ReferenceNeighbours,
    gate_summary,
    overlap_queries,
    overlap_row,
    overlap_score,
    overlap_table,
    reference_neighbours,
    space_neighbours,
)
from uqf_cli.fuse.saved import FUSER_KIND, apply_fuser, load_fuser, save_fuser
from uqf_cli.fuse.stage import fuse
from uqf_cli.fuse.training import TrainResult, embed_items, info_nce, modality_masks, sample_positives, train_fuser
from uqf_cli.fuse.uqf import BANK_PREFIX, MODEL_PREFIX

__all__ = [
    "ANN_THRESHOLD",
    "BANK_PREFIX",
    "FUSER_KIND",
    "FUSIONS",
    "MEMORIES",
    "MODEL_PREFIX",
    "OVERLAP_K",
    "OVERLAP_MAX_QUERIES",
    "STRUCTURAL_SOURCES",
    "TOPK_BLOCK_ELEMENTS",
    "AlignedInputs",
    "Applied",
    "FuseInputs",
    "FuseOptions",
    "FuseResult",
    "Fused",
    "FuserConfig",
    "Fusion",
    "MemoryBank",
    "MemoryInputs",
    "ReferenceNeighbours",
    "SavedFuser",
    "TrainResult",
    "UnifiedQFormer",
    "align_inputs",
    "apply_fuser",
    "bank_from",
    "build_memory",
    "check_dataset",
    "check_same_dataset",
    "check_split_fingerprints",
    "check_text_model",
    "concat_embeddings",
    "cooccurrence_neighbours",
    "embed_items",
    "fuse",
    "fusion",
    "gate_summary",
    "info_nce",
    "knn_lists",
    "load_collab",
    "load_fuser",
    "load_text",
    "modality_masks",
    "nearest",
    "overlap_queries",
    "overlap_row",
    "overlap_score",
    "overlap_table",
    "reference_neighbours",
    "register",
    "sample_positives",
    "save_fuser",
    "space_neighbours",
    "text_model_of",
    "topk_cosine",
    "train_fuser",
]
