"""Allowed ranges of numbers: declared beside an option (or an environment variable), checked in one place.

Why: a NaN learning rate, an infinite weight or a seed beyond 64 bits must be refused in one line before
any work, not turn into a traceback, a silent fallback or a useless output recorded as ``null``. Every
number the user gives goes through :func:`check_number`: floats must be finite, ints must fit 64 bits,
and both must lie in their declared :class:`Range`. Kept free of Typer, so library configs can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from uqf_cli.core.errors import OptionError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SEED_MAX = INT64_MAX  # seeds are derived (seed + k) and stored as int64 by torch: one bit of headroom


@dataclass(frozen=True)
class Range:
    """The allowed values of a number: ``Range(ge=1)``, ``Range(gt=0)``, ``Range(ge=0, lt=1)`` ..."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __contains__(self, value: float) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def __str__(self) -> str:
        """``>= 1``, ``> 0``, ``in [0, 1)``, ``in [1, 8]``: what an error message and the help say."""
        low = ("[", self.ge) if self.ge is not None else ("(", self.gt) if self.gt is not None else None
        high = (self.le, "]") if self.le is not None else (self.lt, ")") if self.lt is not None else None
        if low and high:
            return f"in {low[0]}{_num(low[1])}, {_num(high[0])}{high[1]}"
        if low:
            return f"{'>=' if low[0] == '[' else '>'} {_num(low[1])}"
        if high:
            return f"{'<=' if high[1] == ']' else '<'} {_num(high[0])}"
        return "any number"

    @property
    def declared(self) -> bool:
        return any(v is not None for v in (self.ge, self.gt, self.le, self.lt))


def _num(x: float | None) -> str:
    if x == INT64_MAX:
        return "2^63 - 1"
    return f"{x:g}" if isinstance(x, float) else str(x)


def number_problem(value: Any, allowed: Range | None = None) -> str | None:
    """Why ``value`` is not an acceptable number (``None`` when it is): not finite, beyond 64 bits, out of range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, got {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return f"must fit in 64 bits, got a {len(str(abs(value)))}-digit number"
    if allowed is not None and value not in allowed:
        return f"must be {allowed}, got {_num(value)}"
    return None


def check_number(flag: str, value: Any, allowed: Range | None = None) -> None:
    """Raise :class:`OptionError` naming ``flag`` when ``value`` (``None``: not given) is not acceptable."""
    if value is None:
        return
    problem = number_problem(value, allowed)
    if problem:
        raise OptionError(flag, problem)


def check_finite_fields(config: Any, flag_of: Any = None) -> None:
    """Every float field of the dataclass ``config`` is finite (NaN passes ``x > 0`` tests, so check it first).

    ``flag_of(field)`` names the option of a field (when it returns ``None``: ``--field-name``).
    """
    assert is_dataclass(config)
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            flag = (flag_of(f) if flag_of else None) or "--" + f.name.replace("_", "-")
            raise OptionError(flag, f"must be a finite number, got {value}")
