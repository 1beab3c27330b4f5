"""uqf: semantic IDs for generative recommendation with the Unified Q-Former.

Every stage is a plain importable package whose main function takes keyword defaults, so a notebook
needs no config objects: ``uqf_cli.data.prepare(source, out)``, ``uqf_cli.embed.embed_text``,
``uqf_cli.collab.train_gcn``, ``uqf_cli.fuse.fuse``, ``uqf_cli.quantize.quantize``, ``uqf_cli.rec.train_rec``,
``uqf_cli.evaluation.evaluate``. The subpackages load on first use (``import uqf_cli`` alone is cheap);
the Typer app in ``uqf_cli.cli`` is a thin layer over them. File formats live in ``uqf_cli.files``.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

SUBPACKAGES = ("cli", "collab", "core", "data", "embed", "evaluation", "files", "fuse", "plots", "quantize", "rec")

__all__ = ["__version__", *SUBPACKAGES]


def __getattr__(name: str) -> Any:
    """``uqf_cli.quantize`` after a bare ``import uqf_cli`` (Python only binds a subpackage once imported)."""
    if name in SUBPACKAGES:
        return import_module(f"uqf_cli.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
