"""Datasets: the prepared dataset and its split (:mod:`.dataset`), and ``uqf prepare`` (:mod:`.prepare`).

``uqf_cli.data.prepare`` is the subpackage and also callable: ``uqf_cli.data.prepare("builtin:office", "ds")``
runs :func:`uqf_cli.data.prepare.prepare`.
"""

from importlib import import_module
from typing import Any

__all__ = ["Dataset", "EvalCase", "dataset", "prepare"]


def __getattr__(name: str) -> Any:
    """Load on first use: ``import uqf_cli.data`` then ``uqf_cli.data.prepare(...)`` or ``uqf_cli.data.Dataset``."""
    if name in ("prepare", "dataset"):
        return import_module(f"uqf_cli.data.{name}")
    if name in ("Dataset", "EvalCase"):
        return getattr(import_module("uqf_cli.data.dataset"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
