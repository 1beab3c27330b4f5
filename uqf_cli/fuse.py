"""``uqf fuse``: fuse text and collaborative item embeddings with the Unified Q-Former (UQF).

Inputs are a text embedding file (modality ``text``, e.g. all-MiniLM, 384-d), a collaborative file from
``uqf train-gcn`` (modality ``collab``, LightGCN item rows, metadata ``cold_item_ids``) and the dataset
directory, from which only the *train* interactions are read (``Dataset.train_sequences()``). The output
is one unit vector per item (modality ``unified``) plus a per-item gate value. The network itself is in
:mod:`uqf_cli.fuse_model`; its docstring gives the architecture. This module covers the data side, the
objective and the reports, and why each choice was made.

Alignment and cold items
    Files are joined by item id, never by row position. The item universe is the text file (every item has
    text). Items that the collab file lacks, or lists in ``cold_item_ids`` (no train interaction, so their
    LightGCN row was never learned), are *cold*: their collab input is absent and they take the text-only
    path, yet they still get a fused embedding. Collab items missing from the text file, disjoint id sets,
    files from different datasets, NaN/Inf rows and empty files are refused with one line naming the file.
    "Different datasets" means, for files that record the split fingerprints (:mod:`uqf_cli.fingerprints`),
    a dataset item the text file lacks or whose text changed since it was embedded; text embeddings of the
    same catalogue fuse with collab embeddings of a newer interaction log. Older files compare the
    whole-dataset ``dataset_fingerprint``.

    Both inputs are L2-normalised first: MiniLM vectors are unit length while LightGCN norms grow with
    popularity, and raw scale differences would otherwise decide the gate before any learning.

Memory
    ``--memory neighbours`` (default) presents each modality as the item's own vector plus its top-k
    (``--k-memory``, 4) cosine neighbours in that modality, looked up in a reference bank (the training
    catalogue; the bank is saved with the fuser so ``--apply`` finds neighbours for new items the same way).
    A single vector makes cross-attention trivial (softmax over one key is 1); with neighbours the queries
    choose between the item and the consensus of its region, which denoises sparse LightGCN rows and lets a
    cold item borrow from semantically similar items. ``--memory tokens`` (learned projection tokens) is
    kept for ablation.

Objective (each term switchable)
    * **Structural InfoNCE** (weight ``--w-structural``): anchor = an item, positive = one of its top-k
      neighbours in the *train* interaction graph, ranked by cosine-normalised co-occurrence
      ``C_ij / sqrt(C_ii C_jj)`` where ``C = XᵀX`` for the binary user x item train matrix X (items bought
      by the same users). Co-occurrence is read from the graph directly, so it does not inherit LightGCN's
      smoothing errors; ``--structural collab`` uses LightGCN cosine neighbours instead.
    * **Semantic InfoNCE** (``--w-semantic``): positive = one of the item's top-k text-cosine neighbours.
      Both use in-batch negatives, symmetric cross-entropy over cosine / ``--temperature``. The structural
      term weighs more by default because downstream SIDs must keep co-purchase structure that text alone
      lacks, while the semantic term keeps the space organised by meaning (and is all a cold item has).
    * **Reconstruction** (``--w-recon``): linear decoders from the fused vector back to both inputs (cosine
      loss). The collab target is used whenever the item has a collab row, even if it was dropped from the
      input, which teaches the text path to predict collaborative position.
    * **Cross-modal alignment** (``--w-align``, BLIP-2 ITC style): InfoNCE between the pooled text branch
      and the pooled collab branch of the last block, for rows where both are present.
    * **Asymmetric modality dropout**: per row, the collab input is dropped with ``--p-drop-collab`` (0.3)
      and otherwise the text input with ``--p-drop-text`` (0.1); never both. Dropping collab more often
      matches deployment (new items have text but no interactions) and forces the anchor's text-only view
      to land near its structural neighbours, which is what places cold items well.

Methods and ablations
    ``--method uqf`` (default) | ``concat`` (L2-normalised text ++ L2-normalised collab, zeros for cold
    items) | ``text`` | ``collab`` (warm items only; cold items are omitted and listed). ``--no-gate`` (mean
    of the branches), ``--no-structural``, ``--no-semantic``, ``--no-modality-dropout``.

Reports
    The per-epoch loss curve (total and per term) and every parameter go into provenance; the per-item gate
    (mean over layers, queries and channels; 1 = text, 0 = collab) is saved as extra tensor ``gate``. The
    neighbourhood-preservation table gives, averaged over items, the overlap of each item's top-10 cosine
    neighbours in an embedding space with its top-10 by text (all items), by collab (warm items, among warm
    items) and with its top-10 train co-occurrence neighbours, for the text and collab inputs, concat and
    the chosen method, all computed in the same run.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from uqf_cli import runtime
from uqf_cli.checkpoint import Checkpointer, Snapshot
from uqf_cli.dataset import Dataset
from uqf_cli.errors import InputError, OptionError
from uqf_cli.fingerprints import both_recorded, check_catalogue, interactions_of, text_record
from uqf_cli.fuse_model import FuserConfig, UnifiedQFormer
from uqf_cli.io import (
    EmbeddingFile,
    check_output,
    load_embeddings,
    load_model_file,
    make_provenance,
    save_embeddings,
    save_model_file,
)

METHODS = ("uqf", "concat", "text", "collab")
MEMORIES = ("neighbours", "tokens")
STRUCTURAL_SOURCES = ("cooc", "collab")
FUSER_KIND = "fuser"
OVERLAP_K = 10
BANK_PREFIX = "bank."
MODEL_PREFIX = "model."


@dataclass
class FuseOptions:
    """Every knob of ``uqf fuse`` (defaults are the CLI defaults)."""

    method: str = "uqf"
    # the fuser's shape: FuserConfig holds the defaults, so a saved fuser and the CLI cannot disagree
    d_model: int = FuserConfig.d_model
    queries: int = FuserConfig.queries
    layers: int = FuserConfig.layers
    heads: int = FuserConfig.heads
    out_dim: int = FuserConfig.out_dim
    memory: str = FuserConfig.memory
    k_memory: int = FuserConfig.k_memory
    memory_tokens: int = FuserConfig.memory_tokens
    epochs: int = 10
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.01
    temperature: float = 0.1
    k_structural: int = 10
    k_semantic: int = 10
    structural: str = "cooc"
    w_structural: float = 1.0
    w_semantic: float = 0.25
    w_recon: float = 0.1
    w_align: float = 0.1
    p_drop_collab: float = 0.3
    p_drop_text: float = 0.1
    gate: bool = True
    shortcut: bool = True
    use_structural: bool = True
    use_semantic: bool = True
    modality_dropout: bool = True
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        """Refuse out-of-range or contradictory options before any work."""
        checks: list[tuple[bool, str, str]] = [
            (self.method not in METHODS, "--method", f"must be one of {', '.join(METHODS)}"),
            (self.memory not in MEMORIES, "--memory", f"must be one of {', '.join(MEMORIES)}"),
            (self.structural not in STRUCTURAL_SOURCES, "--structural", "must be cooc or collab"),
            (self.d_model < 8, "--d-model", "must be at least 8"),
            (self.d_model % self.heads != 0, "--heads", f"must divide --d-model ({self.d_model})"),
            (self.queries < 1, "--queries", "must be at least 1"),
            (self.layers < 1, "--layers", "must be at least 1"),
            (self.out_dim < 2, "--out-dim", "must be at least 2"),
            (self.k_memory < 0, "--k-memory", "must be >= 0"),
            (self.memory_tokens < 1, "--memory-tokens", "must be at least 1"),
            (self.epochs < 1, "--epochs", "must be at least 1"),
            (self.batch_size < 2, "--batch-size", "must be at least 2 (in-batch negatives)"),
            (not self.lr > 0, "--lr", "must be > 0"),
            (not self.temperature > 0, "--temperature", "must be > 0"),
            (self.k_structural < 1, "--k-structural", "must be at least 1"),
            (self.k_semantic < 1, "--k-semantic", "must be at least 1"),
            (not 0 <= self.p_drop_collab < 1, "--p-drop-collab", "must be in [0, 1)"),
            (not 0 <= self.p_drop_text < 1, "--p-drop-text", "must be in [0, 1)"),
        ]
        for weight, name in ((self.w_structural, "--w-structural"), (self.w_semantic, "--w-semantic"),
                             (self.w_recon, "--w-recon"), (self.w_align, "--w-align")):
            checks.append((not (weight >= 0 and math.isfinite(weight)), name, "must be a finite number >= 0"))
        for bad, opt, problem in checks:
            if bad:
                raise OptionError(opt, problem)
        if self.method == "uqf" and self.contrastive_weights() == (0.0, 0.0):
            raise OptionError("--no-structural", "with --no-semantic (or zero weights) there is no contrastive "
                              "objective left to train on")

    def contrastive_weights(self) -> tuple[float, float]:
        return (self.w_structural if self.use_structural else 0.0, self.w_semantic if self.use_semantic else 0.0)

    def fuser_config(self, text_dim: int, collab_dim: int) -> FuserConfig:
        return FuserConfig(text_dim=text_dim, collab_dim=collab_dim, d_model=self.d_model, queries=self.queries,
                           layers=self.layers, heads=self.heads, out_dim=self.out_dim, memory=self.memory,
                           k_memory=self.k_memory, memory_tokens=self.memory_tokens, gate=self.gate,
                           shortcut=self.shortcut)


# --------------------------------------------------------------------------------------------
# Inputs: load, check, align by id
# --------------------------------------------------------------------------------------------


@dataclass
class AlignedInputs:
    """Text and collab rows for one item universe (the text file's ids), aligned by id."""

    item_ids: list[str]
    text: torch.Tensor  # [N, dt], L2-normalised
    collab: torch.Tensor  # [N, dc], L2-normalised, zero rows for cold items
    has_collab: torch.Tensor  # [N] bool
    fingerprint: str | None
    text_path: Path
    collab_path: Path | None

    @property
    def cold_ids(self) -> list[str]:
        return [iid for iid, warm in zip(self.item_ids, self.has_collab.tolist(), strict=True) if not warm]


def load_text(path: str | Path) -> EmbeddingFile:
    """Load the text file; NaN/Inf rows and empty files are refused by the io layer (naming the item)."""
    ef = load_embeddings(path)
    if ef.modality == "collab":  # the classic swap: refuse, the fused space would be meaningless
        raise InputError(path, "modality is 'collab' (a train-gcn file), expected text embeddings for --text")
    if ef.modality not in ("text", "unknown"):
        runtime.warn(f"{path}: modality is {ef.modality!r}, expected 'text'")
    return ef


def load_collab(path: str | Path) -> EmbeddingFile:
    ef = load_embeddings(path)
    if ef.modality == "text":
        raise InputError(path, "modality is 'text' (an embed-text file), expected collaborative embeddings (--collab)")
    if ef.modality not in ("collab", "unknown"):
        runtime.warn(f"{path}: modality is {ef.modality!r}, expected 'collab'")
    return ef


def text_model_of(text: EmbeddingFile) -> dict[str, Any]:
    """Which text encoder made ``text`` (from embed-text's provenance) and its dimension.

    Recorded in the fuser so that ``--apply`` can tell text from another encoder: a different
    dimension cannot be fused at all (refused), a different model name of the same dimension lives
    in another vector space and gives meaningless neighbours (warned: it may be a renamed copy).
    """
    model = (text.provenance.get("parameters") or {}).get("model")
    name = model.get("name") if isinstance(model, dict) else model
    return {"name": name if isinstance(name, str) else None, "dim": text.dim}


def check_text_model(fuser_path: str | Path, meta: dict[str, Any], text: EmbeddingFile) -> None:
    """Warn when ``text`` was made by another encoder than the one the fuser was trained on."""
    trained = ((meta.get("provenance") or {}).get("text_model") or {}).get("name")
    given = text_model_of(text)["name"]
    if trained and given and trained != given:
        runtime.warn(f"{text.path}: text embeddings come from model {given!r}, but the fuser {fuser_path} was "
                     f"trained on {trained!r} text; fused vectors will not match the fuser's catalogue")


def check_same_dataset(a: EmbeddingFile, b: EmbeddingFile) -> None:
    """Refuse files whose recorded dataset fingerprints differ (mixing datasets silently is the worst bug).

    Files that both record the split fingerprints are not compared with each other: text is checked
    against the dataset's catalogue and collab against its interactions (:func:`check_dataset`)."""
    if both_recorded((a, b)):
        return
    if a.dataset_fingerprint and b.dataset_fingerprint and a.dataset_fingerprint != b.dataset_fingerprint:
        raise InputError(b.path, f"comes from dataset {b.dataset_fingerprint}, but {a.path} comes from "
                                 f"{a.dataset_fingerprint}; both inputs must come from the same dataset")


def align_inputs(text: EmbeddingFile, collab: EmbeddingFile | None) -> AlignedInputs:
    """Join text and collab rows by id; collab-less or ``cold_item_ids`` items become cold."""
    ids = list(text.item_ids)
    text_x = F.normalize(text.embeddings, dim=-1)
    if collab is None:
        return AlignedInputs(ids, text_x, torch.zeros(len(ids), 1), torch.zeros(len(ids), dtype=torch.bool),
                             text.dataset_fingerprint, text.path, None)
    check_same_dataset(text, collab)
    text_set = set(ids)
    missing = [i for i in collab.item_ids if i not in text_set]
    if len(missing) == len(collab.item_ids):
        raise InputError(collab.path, f"shares no item ids with {text.path} (first collab id {missing[0]!r}, "
                                      f"first text id {ids[0]!r})")
    if missing:
        raise InputError(collab.path, f"{len(missing)} collab items are missing from the text file {text.path} "
                                      f"(first: {missing[0]!r})")
    cold_meta = collab.extra_metadata.get("cold_item_ids", [])
    if not isinstance(cold_meta, list):
        raise InputError(collab.path, "metadata 'cold_item_ids' must be a JSON list of ids")
    cold = {str(i) for i in cold_meta}
    cidx = collab.index()
    collab_x = torch.zeros(len(ids), collab.dim)
    has = torch.zeros(len(ids), dtype=torch.bool)
    normed = F.normalize(collab.embeddings, dim=-1)
    for k, iid in enumerate(ids):
        row = cidx.get(iid)
        if row is not None and iid not in cold:
            collab_x[k] = normed[row]
            has[k] = True
    if not bool(has.any()):
        raise InputError(collab.path, "has no warm items (every item is missing or listed in cold_item_ids)")
    fp = text.dataset_fingerprint or collab.dataset_fingerprint
    return AlignedInputs(ids, text_x, collab_x, has, fp, text.path, collab.path)


def check_dataset(data: AlignedInputs, ds: Dataset, text: EmbeddingFile | None = None,
                  collab: EmbeddingFile | None = None) -> None:
    """The dataset should be the one the embeddings were computed from, and share items with them.

    When both files record the split fingerprints (:mod:`uqf_cli.fingerprints`), the text file is
    refused unless every dataset item is in it with unchanged text, and a collab file of other train
    interactions is warned about. Otherwise (files of earlier versions) the whole-dataset fingerprint
    decides: a different one is refused when the embeddings miss some of the dataset's items (another
    catalogue), and only warned about when they cover every item (e.g. the same catalogue re-prepared
    with more interactions): the embeddings are still valid per item, the graph is simply newer.
    """
    known = set(ds.item_ids)
    covered = sum(1 for i in data.item_ids if i in known)
    if text is not None and collab is not None and both_recorded((text, collab)):
        check_split_fingerprints(text, collab, ds)
    elif data.fingerprint and ds.fingerprint and data.fingerprint != ds.fingerprint:
        if covered < len(known):
            raise InputError(ds.path, f"dataset fingerprint {ds.fingerprint} differs from the embeddings' "
                                      f"{data.fingerprint} ({data.text_path}) and {len(known) - covered} of its "
                                      "items have no embedding; use the dataset they were made from")
        runtime.warn(f"{data.text_path}: made from dataset {data.fingerprint}, {ds.path} is {ds.fingerprint} "
                     "(every item is covered, continuing)")
    if covered == 0:
        raise InputError(data.text_path, f"shares no item ids with dataset {ds.path}")
    lacking = len(known) - covered
    if lacking:
        runtime.warn(f"{data.text_path}: {lacking} dataset items have no text embedding and will not be fused")


def check_split_fingerprints(text: EmbeddingFile, collab: EmbeddingFile, ds: Dataset) -> None:
    """Text against the dataset's catalogue (refused on a changed or missing item), collab against its
    train interactions (warned: the embeddings are valid per item, the structural graph is newer)."""
    record = text_record(text)
    if record is None:
        raise InputError(text.path, "records fingerprints but no per-item text hashes (not an embed-text file?)")
    check_catalogue(text, record, ds)
    made_from = interactions_of(collab)
    if made_from and made_from != ds.interaction_fingerprint:
        runtime.warn(f"{collab.path}: learned from other train interactions ({made_from}) than {ds.path}'s "
                     f"({ds.interaction_fingerprint}); structural neighbours come from {ds.path}")


# --------------------------------------------------------------------------------------------
# Neighbours
# --------------------------------------------------------------------------------------------


TOPK_BLOCK_ELEMENTS = 1 << 24  # similarity entries per block (64 MB of float32), whatever the catalogue size


def topk_cosine(
    queries: torch.Tensor,
    bank: torch.Tensor,
    k: int,
    exclude: torch.Tensor | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """Indices [Nq, k] of each query's k most cosine-similar bank rows (inputs already unit length).

    ``exclude[i]`` is a bank row query i may not pick (itself), -1 for none. Ties break by index, so
    results are deterministic. ``k`` is capped at the usable bank size.

    Memory: queries go in blocks of ``chunk`` rows (by default sized so that a block holds
    ``TOPK_BLOCK_ELEMENTS`` similarities), so no [Nq, Nb] matrix ever exists: at 200k items a block is
    83 rows. Time: ``torch.topk`` per block (linear in Nb), not a full sort; a row whose k-th value is
    tied with a value outside the top k (duplicate vectors) is re-done with a stable sort, which
    keeps the index tie-break exact.
    """
    k = max(0, min(k, bank.shape[0] - (1 if exclude is not None else 0)))
    out = torch.empty(queries.shape[0], k, dtype=torch.long)
    if k == 0:
        return out
    rows_per_block = chunk or max(1, TOPK_BLOCK_ELEMENTS // max(1, bank.shape[0]))
    for s in range(0, queries.shape[0], rows_per_block):
        sims = queries[s:s + rows_per_block] @ bank.T
        if exclude is not None:
            ex = exclude[s:s + rows_per_block]
            rows = torch.nonzero(ex >= 0).squeeze(1)
            sims[rows, ex[rows]] = -math.inf
        out[s:s + rows_per_block] = _topk_index_ties(sims, k)
    return out


def _topk_index_ties(sims: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k column indices of each row, larger first, equal values by ascending index."""
    vals, idx = torch.topk(sims, k, dim=1)
    # order the selected entries by (value desc, index asc): sort by index, then a stable sort by value
    by_index = torch.sort(idx, dim=1).indices
    idx, vals = torch.gather(idx, 1, by_index), torch.gather(vals, 1, by_index)
    idx = torch.gather(idx, 1, torch.sort(vals, dim=1, descending=True, stable=True).indices)
    kth = vals.min(dim=1, keepdim=True).values
    tied = ((sims >= kth).sum(dim=1) > k).nonzero().squeeze(1)  # the boundary value also lies outside the top k
    for r in tied.tolist():
        idx[r] = torch.sort(sims[r], descending=True, stable=True).indices[:k]
    return idx


def cooccurrence_neighbours(ds: Dataset, item_ids: list[str], k: int) -> list[np.ndarray]:
    """Each item's top-k train co-occurrence neighbours (positions in ``item_ids``), cosine-normalised.

    Only :meth:`Dataset.train_sequences` is read, so valid and test interactions cannot leak in.
    """
    pos = {iid: n for n, iid in enumerate(item_ids)}
    rows, cols = [], []
    for u, seq in enumerate(ds.train_sequences().values()):
        for iid in dict.fromkeys(seq):
            if iid in pos:
                rows.append(u)
                cols.append(pos[iid])
    n = len(item_ids)
    empty = [np.zeros(0, dtype=np.int64) for _ in range(n)]
    if not rows:
        return empty
    idx = torch.tensor([rows, cols], dtype=torch.long)
    x = torch.sparse_coo_tensor(idx, torch.ones(len(rows)), (max(rows) + 1, n), check_invariants=False).coalesce()
    with warnings.catch_warnings():  # torch flags its sparse kernels as beta; the product is exact
        warnings.simplefilter("ignore", UserWarning)
        c = torch.sparse.mm(x.t().coalesce(), x).coalesce()
    r, q = c.indices().numpy()
    v = c.values().numpy().astype(np.float64)
    deg = np.zeros(n)
    diag = r == q
    deg[r[diag]] = v[diag]
    off = ~diag
    r, q, v = r[off], q[off], v[off] / np.sqrt(deg[r[off]] * deg[q[off]])
    order = np.lexsort((q, -v, r))  # by row, then similarity descending, then index (deterministic ties)
    r, q = r[order], q[order]
    starts = np.searchsorted(r, np.arange(n + 1))
    return [q[starts[i]:min(starts[i + 1], starts[i] + k)].astype(np.int64) for i in range(n)]


def knn_lists(neigh: torch.Tensor) -> list[np.ndarray]:
    return [row.numpy() for row in neigh]


# --------------------------------------------------------------------------------------------
# Memory inputs
# --------------------------------------------------------------------------------------------


@dataclass
class MemoryBank:
    """The reference catalogue neighbours are looked up in (saved with the fuser for ``--apply``)."""

    item_ids: list[str]
    text: torch.Tensor  # [Nb, dt] unit rows
    collab: torch.Tensor  # [Nw, dc] unit rows of the warm bank items
    collab_ids: list[str]


@dataclass
class MemoryInputs:
    """Per item, where its text and collab memories come from: row 0 is the item itself, rows 1..k its
    k nearest bank neighbours in that modality.

    Neighbour *indices* are kept, not the stacked vectors, and each batch gathers its rows on demand
    (:meth:`batch`): stacked, the text memory alone would take N x (1 + k) x d floats (1.5 GB at 200k
    items of 384-d text), five times the input it is made of.
    """

    text: torch.Tensor  # [N, dt] the items' own unit rows
    collab: torch.Tensor  # [N, dc] (zeros for cold items)
    has_collab: torch.Tensor  # [N] bool
    bank_text: torch.Tensor  # [Nb, dt]
    bank_collab: torch.Tensor  # [Nw, dc]
    text_neighbours: torch.Tensor  # [N, k] rows of bank_text (k = 0 with --memory tokens)
    collab_neighbours: torch.Tensor  # [N, k] rows of bank_collab

    def __len__(self) -> int:
        return self.text.shape[0]

    def batch(self, rows: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """``(text_seq [B, 1+k, dt], collab_seq [B, 1+k, dc])`` for ``rows``; cold items' collab memory is zero."""
        text_seq = torch.cat([self.text[rows].unsqueeze(1), self.bank_text[self.text_neighbours[rows]]], dim=1)
        warm = self.has_collab[rows]
        nbr = self.bank_collab[self.collab_neighbours[rows]] * warm[:, None, None]
        collab_seq = torch.cat([self.collab[rows].unsqueeze(1), nbr], dim=1)
        return text_seq, collab_seq


def build_memory(data: AlignedInputs, bank: MemoryBank, cfg: FuserConfig,
                 text_neighbours: torch.Tensor | None = None) -> MemoryInputs:
    """Find each item's k nearest bank neighbours in each modality (its memory, see :class:`MemoryInputs`).

    ``text_neighbours``: an already computed top-k' text search of these items against this bank
    (k' >= k, self excluded, same tie-break), of which the first k columns are used; ``fuse`` passes
    its semantic-neighbour search so the largest kNN search runs once, not twice.
    """
    k = cfg.k_memory if cfg.memory == "neighbours" else 0
    n = len(data.item_ids)
    tn = cn = torch.zeros(n, 0, dtype=torch.long)
    if k > 0:
        if text_neighbours is not None and text_neighbours.shape[1] >= min(k, bank.text.shape[0] - 1):
            tn = _pad_neighbours(text_neighbours[:, :k], k)
        else:
            bank_pos = {iid: j for j, iid in enumerate(bank.item_ids)}
            ex = torch.tensor([bank_pos.get(i, -1) for i in data.item_ids], dtype=torch.long)
            tn = _pad_neighbours(topk_cosine(data.text, bank.text, k, ex), k)
        cpos = {iid: j for j, iid in enumerate(bank.collab_ids)}
        cex = torch.tensor([cpos.get(i, -1) for i in data.item_ids], dtype=torch.long)
        cn = _pad_neighbours(topk_cosine(data.collab, bank.collab, k, cex), k)
    return MemoryInputs(data.text, data.collab, data.has_collab, bank.text, bank.collab, tn, cn)


def _pad_neighbours(nbrs: torch.Tensor, k: int) -> torch.Tensor:
    """When the bank is smaller than k, repeat the last neighbour (tiny catalogues only)."""
    if nbrs.shape[1] == k:
        return nbrs
    if nbrs.shape[1] == 0:
        return torch.zeros(nbrs.shape[0], k, dtype=torch.long)
    return torch.cat([nbrs, nbrs[:, -1:].expand(-1, k - nbrs.shape[1])], dim=1)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` should match row i of ``b`` against the other rows (in-batch)."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def modality_masks(
    has_collab: torch.Tensor, p_collab: float, p_text: float, enabled: bool, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(text_present, collab_present) after asymmetric modality dropout; never both dropped."""
    n = has_collab.shape[0]
    if not enabled:
        return torch.ones(n, dtype=torch.bool), has_collab.clone()
    u = torch.rand(n, generator=gen)
    drop_collab = has_collab & (u < p_collab)
    drop_text = has_collab & ~drop_collab & (u >= p_collab) & (u < p_collab + p_text)
    return ~drop_text, has_collab & ~drop_collab


def sample_positives(anchors: np.ndarray, neigh: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One uniformly drawn neighbour per anchor (-1 when it has none)."""
    out = np.full(len(anchors), -1, dtype=np.int64)
    for j, a in enumerate(anchors):
        cand = neigh[a]
        if len(cand):
            out[j] = cand[rng.integers(len(cand))]
    return out


@dataclass
class TrainResult:
    model: UnifiedQFormer
    curve: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def train_fuser(
    mem: MemoryInputs,
    text_targets: torch.Tensor,
    collab_targets: torch.Tensor,
    structural: list[np.ndarray],
    semantic: list[np.ndarray],
    cfg: FuserConfig,
    opts: FuseOptions,
    device: torch.device,
    checkpoint: Checkpointer | None = None,
) -> TrainResult:
    """Minimise the hybrid objective (module docstring) with AdamW; returns the model and its loss curve.

    ``checkpoint`` saves the loop's state at epoch ends and, with ``--resume``, restores it first."""
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    model = UnifiedQFormer(cfg).to(device)
    optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    n = len(mem)
    steps_per_epoch = max(1, math.ceil(n / opts.batch_size))
    total = steps_per_epoch * opts.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / max(1, total // 20))
                                              * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    w_s, w_m = opts.contrastive_weights()
    result = TrainResult(model)
    start = time.perf_counter()
    model.train()
    live = {"modules": {"fuser": model}, "optimizers": {"adamw": optim}, "schedulers": {"warmup_cosine": sched},
            "generators": {"dropout": gen}, "numpy_generators": {"positives": rng}}
    first_epoch, saved = 0, checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        saved.restore(**live)
        first_epoch, result.curve = saved.epoch, list(saved.state["curve"])
    with runtime.progress() as bar:
        task = bar.add_task("fusing", total=opts.epochs, completed=first_epoch, status="")
        for epoch in range(first_epoch, opts.epochs):
            perm = rng.permutation(n)
            sums: dict[str, float] = {}
            for s in range(0, n, opts.batch_size):
                anchors = perm[s:s + opts.batch_size]
                if len(anchors) < 2:
                    continue
                losses = _step_losses(model, mem, text_targets, collab_targets, anchors, structural, semantic,
                                      (w_s, w_m), opts, gen, rng, device)
                loss = sum(losses.values(), torch.zeros((), device=device))
                optim.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optim.step()
                sched.step()
                for name, v in {"loss": loss, **losses}.items():
                    sums[name] = sums.get(name, 0.0) + float(v.detach())
            point = {"epoch": epoch + 1, **{k: round(v / steps_per_epoch, 5) for k, v in sums.items()}}
            result.curve.append(point)
            bar.update(task, advance=1, status=f"loss {point.get('loss', float('nan')):.4f}")
            if checkpoint is not None:
                checkpoint.epoch_done(epoch + 1, functools.partial(Snapshot.capture, epoch + 1, **live,
                                                                   state={"curve": result.curve}),
                                      last=epoch + 1 == opts.epochs)
    result.seconds = time.perf_counter() - start
    model.eval()
    return result


def _step_losses(
    model: UnifiedQFormer,
    mem: MemoryInputs,
    text_targets: torch.Tensor,
    collab_targets: torch.Tensor,
    anchors: np.ndarray,
    structural: list[np.ndarray],
    semantic: list[np.ndarray],
    weights: tuple[float, float],
    opts: FuseOptions,
    gen: torch.Generator,
    rng: np.random.Generator,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """One batch: each anchor gets ONE positive, structural with probability w_s / (w_s + w_m) (semantic
    otherwise, or when it has no structural neighbour), so a batch costs 2B rows, not 3B. Every row draws
    its own modality dropout. Returns the loss terms; the contrastive terms are weighted by their share of
    anchors, so the weights act through how often each kind of positive is drawn."""
    w_s, w_m = weights
    pos_s = sample_positives(anchors, structural, rng) if w_s > 0 else np.full(len(anchors), -1)
    pos_m = sample_positives(anchors, semantic, rng) if w_m > 0 else np.full(len(anchors), -1)
    want_s = rng.random(len(anchors)) < (w_s / (w_s + w_m))
    use_s = (pos_s >= 0) & (want_s | (pos_m < 0))
    positives = np.where(use_s, pos_s, pos_m)
    kept = positives >= 0
    anchors, positives, use_s = anchors[kept], positives[kept], use_s[kept]
    rows = torch.from_numpy(np.concatenate([anchors, positives]))
    t_present, c_present = modality_masks(mem.has_collab[rows], opts.p_drop_collab, opts.p_drop_text,
                                          opts.modality_dropout, gen)
    text_seq, collab_seq = mem.batch(rows)
    out = model(text_seq.to(device), collab_seq.to(device), t_present.to(device), c_present.to(device))
    b = len(anchors)
    z = out.fused
    losses: dict[str, torch.Tensor] = {}
    for name, sel in (("structural", use_s), ("semantic", ~use_s)):
        mask = torch.from_numpy(sel).to(device)
        if int(mask.sum()) >= 2:
            losses[name] = float(mask.float().mean()) * info_nce(z[:b][mask], z[b:][mask], opts.temperature)
    if opts.w_recon > 0:
        warm = mem.has_collab[rows].to(device)
        rec = 1 - F.cosine_similarity(out.recon_text, text_targets[rows].to(device), dim=-1).mean()
        if bool(warm.any()):
            rc = 1 - F.cosine_similarity(out.recon_collab[warm], collab_targets[rows].to(device)[warm], dim=-1)
            rec = rec + rc.mean()
        losses["recon"] = opts.w_recon * rec
    if opts.w_align > 0:
        both = (t_present & c_present).to(device)
        if int(both.sum()) >= 2:
            losses["align"] = opts.w_align * info_nce(out.text_branch[both], out.collab_branch[both],
                                                      opts.temperature)
    return losses


@torch.no_grad()
def embed_items(
    model: UnifiedQFormer, mem: MemoryInputs, device: torch.device, batch: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused embeddings and gate values for every item; collab-less items take the text-only path."""
    model.eval()
    fused, gates = [], []
    for s in range(0, len(mem), batch):
        sl = slice(s, s + batch)
        text_seq, collab_seq = mem.batch(sl)
        present = torch.ones(text_seq.shape[0], dtype=torch.bool, device=device)
        out = model(text_seq.to(device), collab_seq.to(device), present, mem.has_collab[sl].to(device))
        fused.append(out.fused.float().cpu())
        gates.append(out.gate.float().cpu())
    return torch.cat(fused), torch.cat(gates)


# --------------------------------------------------------------------------------------------
# Baselines and neighbourhood preservation
# --------------------------------------------------------------------------------------------


def concat_embeddings(data: AlignedInputs) -> torch.Tensor:
    """Per-modality L2-normalised concatenation (cold items get zeros in the collab half)."""
    return torch.cat([data.text, data.collab], dim=1)


OVERLAP_MAX_QUERIES = 20_000  # above this, overlap@k is measured on an evenly spaced sample of query items


def overlap_queries(n: int) -> torch.Tensor:
    """Bool mask of the items whose neighbourhoods the overlap table measures: all of them up to
    ``OVERLAP_MAX_QUERIES``, else an evenly spaced (deterministic) sample. Neighbours are still searched
    among *all* items, so the estimate is unbiased; it keeps the diagnostic at O(sample x N), not O(N^2)."""
    mask = torch.zeros(n, dtype=torch.bool)
    if n <= OVERLAP_MAX_QUERIES:
        mask[:] = True
    else:
        mask[torch.linspace(0, n - 1, OVERLAP_MAX_QUERIES).round().long()] = True
    return mask


def space_neighbours(emb: torch.Tensor, rows: torch.Tensor, k: int = OVERLAP_K,
                     queries: torch.Tensor | None = None) -> tuple[list[int], np.ndarray] | None:
    """``(query positions, their top-k neighbours among rows, as positions)`` in one embedding space."""
    sub = rows.nonzero().squeeze(1)
    if sub.numel() < 2:
        return None
    x = F.normalize(emb[sub], dim=-1)
    local_q = torch.arange(sub.numel()) if queries is None else queries[sub].nonzero().squeeze(1)
    nb = topk_cosine(x[local_q], x, k, local_q)
    return sub[local_q].tolist(), sub[nb].numpy()


def overlap_score(query_pos: list[int], found: np.ndarray, ref_neigh: list[np.ndarray]) -> float | None:
    """Mean share of each query's reference neighbours that the found top-k contains."""
    scores = []
    for j, i in enumerate(query_pos):
        ref = ref_neigh[i]
        if len(ref):
            scores.append(len(set(found[j].tolist()) & set(ref.tolist())) / len(ref))
    return float(np.mean(scores)) if scores else None


@dataclass
class ReferenceNeighbours:
    text: list[np.ndarray]
    collab: list[np.ndarray]  # among warm items; empty for cold items
    cooc: list[np.ndarray] | None
    queries: torch.Tensor | None = None  # items whose lists were computed (None: all)


def reference_neighbours(data: AlignedInputs, cooc: list[np.ndarray] | None, k: int = OVERLAP_K,
                         queries: torch.Tensor | None = None) -> ReferenceNeighbours:
    """Each (query) item's k nearest text and collab neighbours and top-k co-occurrences, as positions."""
    n = len(data.item_ids)
    q = torch.ones(n, dtype=torch.bool) if queries is None else queries
    empty = np.zeros(0, dtype=np.int64)
    text: list[np.ndarray] = [empty] * n
    qi = q.nonzero().squeeze(1)
    for j, row in zip(qi.tolist(), topk_cosine(data.text[qi], data.text, k, qi), strict=True):
        text[j] = row.numpy()
    collab: list[np.ndarray] = [empty] * n
    warm = data.has_collab.nonzero().squeeze(1)
    if warm.numel() >= 2:
        local_q = q[warm].nonzero().squeeze(1)
        nb = topk_cosine(data.collab[warm[local_q]], data.collab[warm], k, local_q)
        for j, i in enumerate(warm[local_q].tolist()):
            collab[i] = warm[nb[j]].numpy()
    top_cooc = [c[:k] for c in cooc] if cooc is not None else None
    return ReferenceNeighbours(text, collab, top_cooc, queries)


def overlap_row(emb: torch.Tensor, present: torch.Tensor, data: AlignedInputs, ref: ReferenceNeighbours
                ) -> dict[str, float | None]:
    """Overlap@10 of an embedding space with the text, collab and co-occurrence neighbourhoods."""
    warm = data.has_collab & present
    q = ref.queries
    # One search per candidate set (not per reference): on 200k items each is a 20k x 200k scan.
    over_present = space_neighbours(emb, present, queries=q)
    over_warm = over_present if torch.equal(warm, present) else space_neighbours(emb, warm, queries=q)

    def score(found: tuple[list[int], np.ndarray] | None, neigh: list[np.ndarray] | None) -> float | None:
        return None if found is None or neigh is None else overlap_score(*found, neigh)

    return {"text": score(over_present, ref.text), "collab": score(over_warm, ref.collab),
            "cooc": score(over_present, ref.cooc)}


def overlap_table(method: str, emb: torch.Tensor, present: torch.Tensor, data: AlignedInputs,
                  cooc: list[np.ndarray] | None) -> dict[str, dict[str, float | None]]:
    """The neighbourhood-preservation table: inputs, concat and the chosen method, in one run."""
    ref = reference_neighbours(data, cooc, queries=overlap_queries(len(data.item_ids)))
    everyone = torch.ones(len(data.item_ids), dtype=torch.bool)
    table = {
        "text": overlap_row(data.text, everyone, data, ref),
        "collab": overlap_row(data.collab, data.has_collab, data, ref),
        "concat": overlap_row(concat_embeddings(data), everyone, data, ref),
    }
    if method not in table:
        table[method] = overlap_row(emb, present, data, ref)
    return table


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


@dataclass
class FuseResult:
    """What the CLI prints: counts, timings, the overlap table, the gate summary and the loss curve."""

    output: Path
    method: str
    items: int
    cold_items: int
    dim: int
    seconds: float
    overlap: dict[str, dict[str, float | None]]
    gate: dict[str, float] | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    model_path: Path | None = None
    omitted_items: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output"] = str(self.output)
        d["model_path"] = str(self.model_path) if self.model_path else None
        return d


def fuse(
    text_path: str | Path,
    collab_path: str | Path,
    dataset_dir: str | Path,
    output: str | Path,
    opts: FuseOptions,
    save_model: str | Path | None = None,
    force: bool = False,
    resume: bool = False,
) -> FuseResult:
    """Fit the chosen method on (text, collab, train graph) and write the unified embeddings.

    ``--method uqf`` keeps a checkpoint ``<output>.ckpt.st`` while training; ``resume`` continues from it."""
    opts.validate()
    check_output(output, force)
    if save_model is not None:
        if opts.method != "uqf":
            raise OptionError("--save-model", f"only --method uqf trains a fuser (got {opts.method})")
        check_output(save_model, force)
        if Path(save_model).resolve() == Path(output).resolve():
            raise OptionError("--save-model", "must differ from --output")
    device = runtime.resolve_device(opts.device)
    runtime.seed_everything(opts.seed)
    ds = Dataset.load(dataset_dir)
    text, collab = load_text(text_path), load_collab(collab_path)
    data = align_inputs(text, collab)
    check_dataset(data, ds, text, collab)
    fp = ds.fingerprint or data.fingerprint
    runtime.info(f"fuse: {len(data.item_ids)} items ({len(data.cold_ids)} cold), text {text.dim}-d, "
                 f"collab {collab.dim}-d, method {opts.method}")
    start = time.perf_counter()
    cooc = cooccurrence_neighbours(ds, data.item_ids, opts.k_structural)
    present = torch.ones(len(data.item_ids), dtype=torch.bool)
    gate = None
    curve: list[dict[str, float]] = []
    state = None
    cfg = None
    bank = None
    ckpt = None
    if opts.method == "uqf":
        cfg = opts.fuser_config(text.dim, collab.dim)
        bank = bank_from(data)  # the bank is these items, so the text search below serves the memory too
        text_knn = topk_cosine(data.text, data.text, max(opts.k_semantic, cfg.k_memory),
                               torch.arange(len(data.item_ids)))
        mem = build_memory(data, bank, cfg, text_neighbours=text_knn)
        structural = cooc if opts.structural == "cooc" else reference_neighbours(data, None, opts.k_structural).collab
        semantic = knn_lists(text_knn[:, :opts.k_semantic])
        ckpt = Checkpointer(output, "fuse", {k: v for k, v in asdict(opts).items() if k != "device"},
                            {"text": text_path, "collab": collab_path, "dataset": dataset_dir}, resume=resume)
        trained = train_fuser(mem, data.text, data.collab, structural, semantic, cfg, opts, device, checkpoint=ckpt)
        emb, gate = embed_items(trained.model, mem, device)
        curve = trained.curve
        state = {MODEL_PREFIX + k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
    elif opts.method == "concat":
        emb = concat_embeddings(data)
    elif opts.method == "text":
        emb = data.text.clone()
    else:
        emb = data.collab.clone()
        present = data.has_collab.clone()
    seconds = time.perf_counter() - start
    table = overlap_table(opts.method, emb, present, data, cooc)
    keep = present.nonzero().squeeze(1)
    out_ids = [data.item_ids[i] for i in keep.tolist()]
    omitted = [i for i, p in zip(data.item_ids, present.tolist(), strict=True) if not p]
    if omitted:
        runtime.warn(f"--method collab: {len(omitted)} cold items have no collab row and are left out")
    params = {k: v for k, v in asdict(opts).items() if k != "device"}
    prov = make_provenance("fuse", params, {"text": text_path, "collab": collab_path, "dataset": dataset_dir},
                           loss_curve=curve, neighbourhood_overlap=table,
                           device=str(device), text_model=text_model_of(text))
    extra_t = {"gate": gate[keep]} if gate is not None else None
    extra_m = {"cold_item_ids": data.cold_ids, "method": opts.method, "neighbourhood_overlap": table}
    if omitted:
        extra_m["omitted_item_ids"] = omitted
    if gate is not None:
        extra_m["gate_info"] = "tensor 'gate' follows item_ids; 1 = leans on text, 0 = on collab"
    save_embeddings(output, emb[keep], out_ids, prov, "unified", fp, extra_t, extra_m, force=force)
    if save_model is not None and state is not None and cfg is not None and bank is not None:
        save_fuser(save_model, state, cfg, bank, prov, fp, force)
    if ckpt is not None:
        ckpt.finish()
    return FuseResult(Path(output), opts.method, len(out_ids), len(data.cold_ids), int(emb.shape[1]),
                      round(seconds, 2), table, gate_summary(gate, data.has_collab), curve,
                      Path(save_model) if save_model else None, len(omitted))


def gate_summary(gate: torch.Tensor | None, has_collab: torch.Tensor) -> dict[str, float] | None:
    if gate is None:
        return None
    summary = {"mean": float(gate.mean()), "min": float(gate.min()), "max": float(gate.max())}
    if bool(has_collab.any()):
        summary["mean_warm"] = float(gate[has_collab].mean())
    if bool((~has_collab).any()):
        summary["mean_cold"] = float(gate[~has_collab].mean())
    return {k: round(v, 4) for k, v in summary.items()}


def bank_from(data: AlignedInputs) -> MemoryBank:
    warm = data.has_collab.nonzero().squeeze(1)
    return MemoryBank(list(data.item_ids), data.text.clone(), data.collab[warm].clone(),
                      [data.item_ids[i] for i in warm.tolist()])


# --------------------------------------------------------------------------------------------
# Saved fuser: save, load, apply
# --------------------------------------------------------------------------------------------


def save_fuser(path: str | Path, state: dict[str, torch.Tensor], cfg: FuserConfig, bank: MemoryBank,
               provenance: dict[str, Any], fingerprint: str | None, force: bool) -> Path:
    """Weights + memory bank in one safetensors file, config as JSON metadata."""
    tensors = dict(state)
    tensors[BANK_PREFIX + "text"] = bank.text
    tensors[BANK_PREFIX + "collab"] = bank.collab
    return save_model_file(path, FUSER_KIND, tensors, cfg.to_dict(), provenance, force=force,
                           bank_item_ids=bank.item_ids, bank_collab_ids=bank.collab_ids,
                           dataset_fingerprint=fingerprint or "")


def load_fuser(path: str | Path) -> tuple[UnifiedQFormer, MemoryBank, dict[str, Any]]:
    """Rebuild a saved fuser and its memory bank; a file that does not fit its config is refused."""
    tensors, config, meta = load_model_file(path, FUSER_KIND)
    try:
        cfg = FuserConfig.from_dict(config)
        model = UnifiedQFormer(cfg)
        state = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
        model.load_state_dict(state)
        bank = MemoryBank(list(meta["bank_item_ids"]), tensors[BANK_PREFIX + "text"],
                          tensors[BANK_PREFIX + "collab"], list(meta["bank_collab_ids"]))
    except (TypeError, KeyError, RuntimeError, ValueError) as e:
        raise InputError(path, f"fuser file is damaged or from another version ({str(e).splitlines()[0][:120]})"
                         ) from e
    model.eval()
    return model, bank, meta


def apply_fuser(
    fuser_path: str | Path,
    text_path: str | Path,
    collab_path: str | Path | None,
    output: str | Path,
    device_spec: str = "auto",
    force: bool = False,
) -> FuseResult:
    """Fuse new (or cold) items with a saved fuser; items without a collab row take the text-only path."""
    check_output(output, force)
    device = runtime.resolve_device(device_spec)
    model, bank, meta = load_fuser(fuser_path)
    cfg = model.cfg
    text = load_text(text_path)
    if text.dim != cfg.text_dim:
        raise InputError(text_path, f"text embeddings are {text.dim}-d but the fuser {fuser_path} expects "
                                    f"{cfg.text_dim}-d")
    check_text_model(fuser_path, meta, text)
    collab = load_collab(collab_path) if collab_path is not None else None
    if collab is not None and collab.dim != cfg.collab_dim:
        raise InputError(collab_path, f"collab embeddings are {collab.dim}-d but the fuser {fuser_path} expects "
                                      f"{cfg.collab_dim}-d")
    data = align_inputs(text, collab)
    if collab is None:
        data.collab = torch.zeros(len(data.item_ids), cfg.collab_dim)
    fused_fp = meta.get("dataset_fingerprint") or None
    if fused_fp and data.fingerprint and fused_fp != data.fingerprint:
        runtime.warn(f"{text_path}: dataset fingerprint {data.fingerprint} differs from the fuser's {fused_fp} "
                     "(fine for new items; neighbours come from the fuser's catalogue)")
    start = time.perf_counter()
    mem = build_memory(data, bank, cfg)
    emb, gate = embed_items(model.to(device), mem, device)
    seconds = time.perf_counter() - start
    table = overlap_table("uqf", emb, torch.ones(len(data.item_ids), dtype=torch.bool), data, None)
    prov = make_provenance("fuse", {"apply": str(fuser_path)},
                           {"fuser": fuser_path, "text": text_path, "collab": collab_path},
                           neighbourhood_overlap=table, device=str(device))
    extra_m = {"cold_item_ids": data.cold_ids, "method": "uqf", "neighbourhood_overlap": table,
               "gate_info": "tensor 'gate' follows item_ids; 1 = leans on text, 0 = on collab"}
    save_embeddings(output, emb, data.item_ids, prov, "unified", data.fingerprint or fused_fp,
                    {"gate": gate}, extra_m, force=force)
    return FuseResult(Path(output), "uqf (applied)", len(data.item_ids), len(data.cold_ids), int(emb.shape[1]),
                      round(seconds, 2), table, gate_summary(gate, data.has_collab))
