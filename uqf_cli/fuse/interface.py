"""The one interface of a fusion method (``uqf fuse --method NAME``), one method per module.

A :class:`Fusion` turns the aligned text and collaborative rows into one embedding per item; a method
that trains can also be saved (``--save-model``), applied to new items (``--apply``) and drawn
(``--plot``: its loss curve and gate). The stage, the saved fuser and the plot go through this class
only; the methods are listed in :mod:`uqf_cli.fuse.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from uqf_cli.files.checkpoint import Checkpointer
    from uqf_cli.fuse.config import FuseOptions
    from uqf_cli.fuse.inputs import AlignedInputs

GATE_INFO = "tensor 'gate' follows item_ids; 1 = leans on text, 0 = on collab"


@dataclass
class FuseInputs:
    """What a method fits on: the inputs aligned by item id (cold items: zero collab rows), the train
    co-occurrence neighbours (``opts.k_structural`` per item), the options (``options``: the method's own,
    ``None`` when it declares none), the device and, for a method that trains, its checkpoint."""

    data: AlignedInputs
    cooc: list[np.ndarray]
    opts: FuseOptions
    options: Any
    device: torch.device
    checkpoint: Checkpointer | None = None


@dataclass
class Fused:
    """A method's result: one row per item of the inputs; ``present`` marks the rows written (``None``: all,
    ``left_out`` says what the others lack); the gate per item (1 = text) and the loss curve, if any;
    ``model``: what :meth:`Fusion.save` writes."""

    embeddings: torch.Tensor
    present: torch.Tensor | None = None
    left_out: str = ""
    gate: torch.Tensor | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    model: Any = None


@dataclass
class SavedFuser:
    """A fuser file as read back: its method, tensors, config and metadata."""

    path: str | Path
    method: Fusion
    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]
    meta: dict[str, Any]


@dataclass
class Applied:
    """What applying a saved fuser gives: the inputs as aligned, one row per item, the gate if any."""

    data: AlignedInputs
    embeddings: torch.Tensor
    gate: torch.Tensor | None = None


class Fusion:
    """One fusion method.

    ``name``: its ``--method``; ``summary``: a few words for the docs; ``options``: a dataclass of
    :func:`~uqf_cli.core.config_field.opt` fields, its own flags (``None``: none; provenance records them
    under ``name``); ``trains``: it fits a model, so it keeps a ``--resume`` checkpoint, can be saved and
    applied, and records the loss curve ``--plot`` draws.
    """

    name: str = ""
    summary: str = ""
    options: type | None = None
    trains: bool = False

    def fit(self, inputs: FuseInputs) -> Fused:
        raise NotImplementedError

    def save(self, fused: Fused) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
        """``(tensors, config, metadata)`` of the fuser file for ``fused.model`` (a method that trains)."""
        raise NotImplementedError

    def apply(self, saved: SavedFuser, text_path: str | Path, collab_path: str | Path | None,
              device: torch.device) -> Applied:
        """Fuse the items of ``text_path`` (and ``collab_path``, if given) with a saved fuser of this method."""
        raise NotImplementedError
