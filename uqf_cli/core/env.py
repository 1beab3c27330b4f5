"""The environment variables uqf reads, declared once with their type and range, and checked like options.

Why: ``UQF_THREADS=abc`` or ``UQF_CHECKPOINT_EVERY=soon`` used to be ignored without a word, and
``UQF_THREADS=5000`` crashed torch. Every command calls :func:`check_environment` before any work:
garbage is refused in one line (exit 2); a value beyond what this machine has is clamped with a warning.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uqf_cli.core.bounds import Range, number_problem
from uqf_cli.core.errors import UqfError

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class EnvError(UqfError):
    """An environment variable uqf reads has a value it cannot use."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")


def machine_cpus() -> int:
    """Logical CPUs of this machine (the most threads worth asking torch for)."""
    return os.cpu_count() or 1


@dataclass(frozen=True)
class EnvVar:
    """One variable: its name, value type (int, float or bool), allowed range, and the machine's limit
    (a callable giving the largest useful value; above it the value is clamped with a warning)."""

    name: str
    kind: type
    allowed: Range | None = None
    limit: Callable[[], int] | None = None
    meaning: str = ""
    unit: str = ""


ENV_VARS: dict[str, EnvVar] = {v.name: v for v in (
    EnvVar("UQF_THREADS", int, Range(ge=1), machine_cpus, "torch intra-op threads", "CPUs"),
    EnvVar("UQF_CHECKPOINT_EVERY", float, Range(ge=0), None, "seconds between training checkpoints; 0: every epoch"),
    EnvVar("UQF_DEBUG", bool, None, None, "show tracebacks (1/0, true/false, yes/no, on/off)"),
)}


def read(name: str, warn: bool = True) -> Any:
    """The value of the declared variable ``name`` (``None`` when unset or empty); refuses garbage with
    :class:`EnvError`, clamps a value beyond the machine (with a warning when ``warn``)."""
    var = ENV_VARS[name]
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    value = _parse(var, raw)
    if var.limit is not None and value > var.limit():
        limit = var.limit()
        if warn:
            from uqf_cli.core.runtime import warn as print_warning

            print_warning(f"{name}={raw} is more than this machine's {limit} {var.unit}; using {limit}")
        value = limit
    return value


def _parse(var: EnvVar, raw: str) -> Any:
    if var.kind is bool:
        if raw.lower() in _TRUE + _FALSE:
            return raw.lower() in _TRUE
        raise EnvError(var.name, f"expected 1/0, true/false, yes/no or on/off, got {raw!r}")
    try:
        value = var.kind(raw)
    except ValueError:
        kind = "an integer" if var.kind is int else "a number"
        raise EnvError(var.name, f"expected {kind} ({var.meaning}), got {raw!r}") from None
    problem = number_problem(value, var.allowed)
    if problem:
        raise EnvError(var.name, f"{problem} ({var.meaning})")
    return value


def check_environment() -> None:
    """Refuse any declared variable set to a value uqf cannot use (called by every command before work)."""
    for name in ENV_VARS:
        read(name, warn=False)


def threads() -> int | None:
    """``UQF_THREADS``, clamped to this machine's CPUs (``None``: leave torch's default)."""
    return read("UQF_THREADS")


def checkpoint_every(default: float) -> float:
    """``UQF_CHECKPOINT_EVERY`` in seconds, or ``default`` when unset."""
    value = read("UQF_CHECKPOINT_EVERY")
    return default if value is None else float(value)


def debug_requested() -> bool:
    """``UQF_DEBUG`` is on. Never raises (it is read while an error is being reported): a value that
    :func:`check_environment` refuses counts as off, so that refusal stays one line."""
    try:
        return bool(read("UQF_DEBUG", warn=False))
    except EnvError:
        return False
