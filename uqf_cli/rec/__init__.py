"""Recommenders (backbones) behind ``uqf train-rec`` / ``uqf evaluate`` / ``uqf recommend``.

Each backbone module (``tiger``, ``lcrec``, ``sasrec``, ...) provides

* ``train(dataset, sids, output, options, force) -> dict``: trains and writes a model directory;
* ``load(model_dir, device) -> Recommender``: loads it for ranking.

:mod:`uqf_cli.rec.base` holds what they share: training samples from the one split, the model
directory's ``uqf_model.json`` and the :class:`~uqf_cli.rec.base.Recommender` protocol.
"""

from __future__ import annotations

import importlib
from types import ModuleType

BACKBONES = ("tiger", "lcrec", "sasrec", "lightgcn", "pop", "hybrid", "textknn")


def backbone_module(name: str) -> ModuleType:
    """Import the module that implements backbone ``name``."""
    from uqf_cli.core.errors import OptionError

    if name not in BACKBONES:
        raise OptionError("--backbone", f"unknown backbone {name!r} (known: {', '.join(BACKBONES)})")
    return importlib.import_module(f"uqf_cli.rec.{name}")
