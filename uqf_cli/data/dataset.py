"""A prepared dataset and its one leave-one-out split.

The split follows LC-Rec, TIGER and LETTER: per user, the last item is the test target, the second
to last the valid target, the rest is train. Every stage obtains its training interactions through
:meth:`Dataset.train_sequences` so that no stage can leak valid or test interactions by accident:
there is deliberately no other public way to get "the interactions" as a flat list.

Users with fewer than three interactions cannot give a train, valid and test item; they are kept
for training only (all their items are train) and take no part in evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from uqf_cli.files.dataset_dir import read_dataset_dir
from uqf_cli.files.fingerprints import interaction_fingerprint

Split = Literal["train", "valid", "test"]
MIN_EVAL_LENGTH = 3


@dataclass(frozen=True)
class EvalCase:
    """One evaluation target: a user, the history before the target, and the target item."""

    user_id: str
    history: tuple[str, ...]
    target: str


class Dataset:
    """Items with text and users' chronological sequences, loaded from a dataset directory."""

    def __init__(
        self,
        items: dict[str, dict[str, Any]],
        sequences: dict[str, list[str]],
        info: dict[str, Any] | None = None,
        path: Path | None = None,
    ) -> None:
        self.items = items
        self.sequences = sequences
        self.info = info or {}
        self.path = path
        self.item_ids: list[str] = list(items)
        self.user_ids: list[str] = list(sequences)
        self.item_index: dict[str, int] = {iid: k for k, iid in enumerate(self.item_ids)}
        self.user_index: dict[str, int] = {uid: k for k, uid in enumerate(self.user_ids)}

    def __repr__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return (f"Dataset({where}{len(self.item_ids):,} items, {len(self.user_ids):,} users, "
                f"{self.num_interactions:,} interactions)")

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        """Read a dataset directory written by ``uqf prepare`` (validated on load)."""
        items, sequences, info = read_dataset_dir(path)
        return cls(items, sequences, info, Path(path))

    @property
    def fingerprint(self) -> str | None:
        """Content hash of items and sequences; downstream files record it to detect mix-ups."""
        return self.info.get("fingerprint")

    @cached_property
    def interaction_fingerprint(self) -> str:
        """Hash of the train part of the split: what collaborative files and recommenders depend on."""
        return interaction_fingerprint(self.train_sequences())

    @property
    def num_interactions(self) -> int:
        return sum(len(s) for s in self.sequences.values())

    # ---- the split -------------------------------------------------------------------------

    def train_sequences(self, include_valid: bool = False) -> dict[str, list[str]]:
        """Each user's train part (chronological). ``include_valid`` adds the valid item too,
        for a final fit before testing on test; the test item is never included."""
        cut = 1 if include_valid else 2
        out = {}
        for uid, seq in self.sequences.items():
            if len(seq) < MIN_EVAL_LENGTH:
                out[uid] = list(seq)
            else:
                out[uid] = list(seq[:-cut])
        return out

    def eval_cases(self, split: Split) -> list[EvalCase]:
        """One case per user with at least three interactions: the valid or the test target with
        every earlier item as history."""
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', not {split!r}")
        offset = 2 if split == "valid" else 1
        cases = []
        for uid, seq in self.sequences.items():
            if len(seq) < MIN_EVAL_LENGTH:
                continue
            pos = len(seq) - offset
            cases.append(EvalCase(uid, tuple(seq[:pos]), seq[pos]))
        return cases

    def train_edges(self, include_valid: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(user_index, item_index) arrays of the train interactions, duplicates removed."""
        us, its = [], []
        for uid, seq in self.train_sequences(include_valid).items():
            u = self.user_index[uid]
            for iid in dict.fromkeys(seq):
                us.append(u)
                its.append(self.item_index[iid])
        return np.asarray(us, dtype=np.int64), np.asarray(its, dtype=np.int64)

    # ---- text ------------------------------------------------------------------------------

    def title(self, item_id: str) -> str:
        """A short human label for an item (title, else the id)."""
        fields = self.items.get(item_id, {})
        return str(fields.get("title") or item_id)

    def stats(self) -> dict[str, Any]:
        """Counts, density and sequence length quantiles (the prepare table)."""
        lengths = np.asarray([len(s) for s in self.sequences.values()])
        n_u, n_i, n = len(self.user_ids), len(self.item_ids), int(lengths.sum())
        q = np.quantile(lengths, [0.0, 0.25, 0.5, 0.75, 0.9, 1.0])
        return {
            "users": n_u,
            "items": n_i,
            "interactions": n,
            "density": n / (n_u * n_i),
            "seq_len_min": int(q[0]),
            "seq_len_p25": float(q[1]),
            "seq_len_median": float(q[2]),
            "seq_len_p75": float(q[3]),
            "seq_len_p90": float(q[4]),
            "seq_len_max": int(q[5]),
            "seq_len_mean": float(lengths.mean()),
        }
