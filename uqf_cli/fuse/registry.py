"""The fusion methods ``uqf fuse --method`` offers, one line each (docs/architecture.md).

A method is a :class:`~uqf_cli.fuse.interface.Fusion` in its own module. Its name, own options
(flags), provenance, ``--save-model``/``--apply`` and ``--plot`` follow from the entry here; a plugin
or a test adds one with :func:`register` (or ``FUSIONS[name] = ...``) before the command runs.
"""

from __future__ import annotations

from uqf_cli.core.errors import OptionError
from uqf_cli.fuse.collab_only import CollabOnly
from uqf_cli.fuse.concat import Concat
from uqf_cli.fuse.interface import Fusion
from uqf_cli.fuse.text_only import TextOnly
from uqf_cli.fuse.uqf import UnifiedQFormerFusion

FUSIONS: dict[str, Fusion] = {f.name: f for f in (
    UnifiedQFormerFusion(),
    Concat(),
    TextOnly(),
    CollabOnly(),
)}


def register(method: Fusion) -> Fusion:
    """Offer ``method`` as ``--method <its name>`` (replacing one of that name)."""
    FUSIONS[method.name] = method
    return method


def fusion(name: str) -> Fusion:
    """The method called ``name`` (``OptionError`` naming ``--method`` for an unknown one)."""
    if name not in FUSIONS:
        raise OptionError("--method", f"must be one of {', '.join(FUSIONS)}")
    return FUSIONS[name]


def fusion_options() -> dict[str, type | None]:
    """Each method's own options dataclass (``None``: it has none): the flags ``uqf fuse`` adds for them."""
    return {name: f.options for name, f in FUSIONS.items()}


def trainers() -> str:
    """``--method uqf`` (or ``--method uqf or --method x``): the methods that train, for messages."""
    return " or ".join(f"--method {name}" for name, f in FUSIONS.items() if f.trains)


def trains(name: str) -> bool:
    """Whether the method called ``name`` trains (``False`` for an unknown name)."""
    return name in FUSIONS and FUSIONS[name].trains
