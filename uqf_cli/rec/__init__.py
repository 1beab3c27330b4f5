"""Recommenders (backbones) behind ``uqf train-rec`` / ``uqf evaluate`` / ``uqf recommend``.

Each backbone module (``tiger``, ``lcrec``, ``sasrec``, ...) describes itself to the registry
(:mod:`uqf_cli.rec.registry`) with its options dataclass and

* ``train(dataset, sids, output, options, force) -> dict``: trains and writes a model directory;
* ``load(model_dir, device) -> Recommender``: loads it for ranking.

:mod:`uqf_cli.rec.base` holds what they share: training samples from the one split, the model
directory's ``uqf_model.json`` and the :class:`~uqf_cli.rec.base.Recommender` protocol;
:mod:`uqf_cli.rec.options` the training options they share.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from uqf_cli.rec import registry
from uqf_cli.rec.registry import Backbone, register

if TYPE_CHECKING:
    from uqf_cli.data.dataset import Dataset
    from uqf_cli.files import SidTable

BACKBONES = registry.names()  # the built-in backbones; registry.names() also lists those registered later
backbone_module = registry.get  # its earlier name (the benchmarks use it): the backbone, with train and load

__all__ = ["BACKBONES", "Backbone", "backbone_module", "register", "registry", "train_backbone", "train_rec"]


def train_rec(dataset: str | Path | Dataset, output: str | Path, sids: str | Path | SidTable | None = None,
              backbone: str = "tiger", force: bool = False, **options: Any) -> dict[str, Any]:
    """Train ``backbone`` on the dataset's train split and write a model directory (``uqf train-rec``).

    ``options`` are train-rec's options by their Python names (``epochs=4, preset="small", seed=0``);
    the ones left out take the backbone's defaults. Returns the training summary.
    """
    chosen = registry.get(backbone)
    chosen.check_uses(options)
    return train_backbone(chosen, dataset, output, sids, options, force)


def train_backbone(chosen: Backbone, dataset: str | Path | Dataset, output: str | Path,
                   sids: str | Path | SidTable | None, options: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """:func:`train_rec` for options already checked against what ``chosen`` reads (``uqf train-rec`` checks
    them before it reads any file): reads the inputs and trains."""
    from uqf_cli.data.dataset import Dataset
    from uqf_cli.files import SidTable, check_output, read_sids

    check_output(output, force)
    ds = dataset if isinstance(dataset, Dataset) else Dataset.load(dataset)
    table = sids if isinstance(sids, SidTable) or sids is None else read_sids(sids)
    return chosen.train(ds, table, output, options, force)
