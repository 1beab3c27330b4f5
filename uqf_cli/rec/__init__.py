"""Recommenders (backbones) behind ``uqf train-rec`` / ``uqf evaluate`` / ``uqf recommend``.

Each backbone module (``tiger``, ``lcrec``, ``sasrec``, ...) provides

* ``train(dataset, sids, output, options, force) -> dict``: trains and writes a model directory;
* ``load(model_dir, device) -> Recommender``: loads it for ranking.

:mod:`uqf_cli.rec.base` holds what they share: training samples from the one split, the model
directory's ``uqf_model.json`` and the :class:`~uqf_cli.rec.base.Recommender` protocol.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uqf_cli.data.dataset import Dataset
    from uqf_cli.files import SidTable

BACKBONES = ("tiger", "lcrec", "sasrec", "lightgcn", "pop", "hybrid", "textknn")


def backbone_module(name: str) -> ModuleType:
    """Import the module that implements backbone ``name``."""
    from uqf_cli.core.errors import OptionError

    if name not in BACKBONES:
        raise OptionError("--backbone", f"unknown backbone {name!r} (known: {', '.join(BACKBONES)})")
    return importlib.import_module(f"uqf_cli.rec.{name}")


RUN_OPTIONS = ("seed", "device", "resume")  # accepted by every backbone


def check_backbone_uses(backbone: str, known: tuple[str, ...], given: dict[str, Any]) -> None:
    """An option the chosen backbone does not read is an error, not silently dropped."""
    from uqf_cli.core.errors import OptionError

    unused = [k for k in given if k not in known and k not in RUN_OPTIONS]
    if unused:
        raise OptionError(f"--{unused[0].replace('_', '-')}", f"the {backbone} backbone does not use this option")


def train_rec(dataset: str | Path | Dataset, output: str | Path, sids: str | Path | SidTable | None = None,
              backbone: str = "tiger", force: bool = False, **options: Any) -> dict[str, Any]:
    """Train ``backbone`` on the dataset's train split and write a model directory (``uqf train-rec``).

    ``options`` are train-rec's options by their Python names (``epochs=4, preset="small", seed=0``);
    the ones left out take the backbone's defaults. Returns the training summary.
    """
    from uqf_cli.data.dataset import Dataset
    from uqf_cli.files import SidTable, check_output, read_sids

    module = backbone_module(backbone)
    check_backbone_uses(backbone, module.OPTIONS, options)
    check_output(output, force)
    ds = dataset if isinstance(dataset, Dataset) else Dataset.load(dataset)
    table = sids if isinstance(sids, SidTable) or sids is None else read_sids(sids)
    return module.train(ds, table, output, options, force)
