"""Checks generated from the options themselves: every number, every device, before a command does any work.

A numeric option declares its range where it is declared, either with Typer's ``min=``/``max=`` or
with a :class:`~uqf_cli.core.bounds.Range` in its annotation (open bounds: ``Range(gt=0)``); a config
field does it with ``opt(..., gt=0)``. :func:`number_parameter` reads that declaration and hands Typer
the option without ``min``/``max``, so that every refusal has the same form as other bad options
(``error: --lr: must be > 0, got nan``, exit 2) instead of Click's usage panel. On top of the declared
range every float must be finite and every int must fit 64 bits, declared or not.
"""

from __future__ import annotations

import copy
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Union

from typer.models import ParameterInfo

from uqf_cli.core.bounds import Range, check_number

DEVICE_FLAG = "--device"


@dataclass(frozen=True)
class NumberOption:
    """One numeric option of a command: its parameter name, flag, type and allowed range."""

    name: str
    flag: str
    kind: type
    allowed: Range


def number_parameter(p: inspect.Parameter) -> tuple[inspect.Parameter, NumberOption | None]:
    """``p`` as Typer should see it and, for an int or float option, its declaration (else ``None``)."""
    if typing.get_origin(p.annotation) is not Annotated:
        return p, None
    base, *extra = typing.get_args(p.annotation)
    kind = _number_kind(base)
    info = next((m for m in extra if isinstance(m, ParameterInfo)), None)
    if kind is None or info is None:
        return p, None
    allowed = _merge([m for m in extra if isinstance(m, Range)] + [Range(ge=info.min, le=info.max)])
    shown = copy.copy(info)
    shown.min = shown.max = None  # checked by check_values, in the one-line form
    if allowed.declared:
        shown.help = f"{info.help or ''} Allowed: {allowed}.".strip()
    rest = [shown if m is info else m for m in extra]
    return p.replace(annotation=Annotated[(base, *rest)]), NumberOption(p.name, flag_of(p.name, info), kind, allowed)


def flag_of(name: str, info: ParameterInfo) -> str:
    """The option's long name (``--batch-size``), from its declaration or its parameter name."""
    decls = [d for d in (info.default, *(getattr(info, "param_decls", ()) or ())) if isinstance(d, str)]
    longs = [d for d in decls if d.startswith("--")]
    return longs[0].split("/")[0] if longs else "--" + name.replace("_", "-")


def check_values(values: dict[str, Any], numbers: dict[str, NumberOption]) -> None:
    """Refuse (``OptionError``, one line) a non-finite, oversized or out-of-range number, and a device this
    machine lacks."""
    for name, spec in numbers.items():
        check_number(spec.flag, values.get(name), spec.allowed)
    from uqf_cli.core.runtime import check_device

    if isinstance(values.get("device"), str):
        check_device(values["device"])
    if isinstance(values.get("devices"), str):  # embed-text --devices cuda:0,cuda:1
        for spec in (d.strip() for d in values["devices"].split(",") if d.strip()):
            check_device(spec, "--devices")


def _number_kind(annotation: Any) -> type | None:
    """``int`` or ``float`` for ``int``, ``float``, ``int | None`` ...; ``None`` for anything else (bool too)."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else None
    return annotation if annotation in (int, float) else None


def _merge(ranges: list[Range]) -> Range:
    """One range from several declarations (the strictest bound of each kind)."""

    def pick(attr: str, strictest: Any) -> Any:
        values = [getattr(r, attr) for r in ranges if getattr(r, attr) is not None]
        return strictest(values) if values else None

    return Range(ge=pick("ge", max), gt=pick("gt", max), le=pick("le", min), lt=pick("lt", min))
