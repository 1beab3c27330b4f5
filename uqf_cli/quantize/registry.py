"""The quantization methods ``uqf quantize --method`` offers, one line each (docs/architecture.md).

A method is a :class:`~uqf_cli.quantize.interface.Quantizer` in its own module. Its name, help, own
options (flags), provenance, ``--save-model`` and ``--apply`` follow from the entry here; a plugin or a
test adds one with :func:`register` (or ``QUANTIZERS[name] = ...``) before the command runs.
"""

from __future__ import annotations

from uqf_cli.core.errors import OptionError
from uqf_cli.quantize.interface import Quantizer
from uqf_cli.quantize.rqkmeans import RqKMeans
from uqf_cli.quantize.rqvae import RqVae

QUANTIZERS: dict[str, Quantizer] = {q.name: q for q in (
    RqVae(),
    RqKMeans(),
)}


def register(method: Quantizer) -> Quantizer:
    """Offer ``method`` as ``--method <its name>`` (replacing one of that name)."""
    QUANTIZERS[method.name] = method
    return method


def quantizer(name: str) -> Quantizer:
    """The method called ``name`` (``OptionError`` naming ``--method`` for an unknown one)."""
    if name not in QUANTIZERS:
        raise OptionError("--method", f"unknown method {name!r} (use {' or '.join(QUANTIZERS)})")
    return QUANTIZERS[name]


def quantizer_options() -> dict[str, type | None]:
    """Each method's own options dataclass (``None``: it has none): the flags ``uqf quantize`` adds for them."""
    return {name: q.options for name, q in QUANTIZERS.items()}
