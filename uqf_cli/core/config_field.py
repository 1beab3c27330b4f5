"""Config dataclass fields that are also command-line options: one place for a default and its help.

A stage's config dataclass declares ``epochs: int = opt(300, "Maximum epochs.")``; the CLI builds
the option ``--epochs`` from that field (``uqf_cli/cli/config_options.py``). Kept free of Typer, so
library code can import its configs without the CLI.
"""

from __future__ import annotations

import copy
from dataclasses import Field, field, fields, replace
from typing import Any, TypeVar

from uqf_cli.core.bounds import Range, check_number

C = TypeVar("C")


def opt(default: Any, help: str | None = None, *, flag: str | None = None, panel: str | None = None,
        before: str | None = None, ge: float | None = None, gt: float | None = None, le: float | None = None,
        lt: float | None = None) -> Any:
    """A dataclass field with ``default`` that the CLI offers as an option.

    ``flag``: the option name when it is not ``--<field-name>``; a bool field whose flag is
    ``--no-...`` is switched off by it. ``panel``: the help panel that lists it. ``before``: list
    it just before that field's option (where the help order differs from the field order).
    ``ge``/``gt``/``le``/``lt``: the allowed range of a numeric field (the CLI refuses other values
    in one line; :func:`check_ranges` does the same for library callers).
    """
    metadata = {"option": True, "help": help, "flag": flag, "panel": panel, "before": before,
                "range": Range(ge=ge, gt=gt, le=le, lt=lt)}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def option_fields(cls: type) -> list[Field]:
    """The fields of the config dataclass ``cls`` made with :func:`opt`, in the order the help lists them."""
    chosen = [f for f in fields(cls) if f.metadata.get("option")]
    for moved in [f for f in chosen if f.metadata["before"]]:
        chosen.remove(moved)
        chosen.insert([f.name for f in chosen].index(moved.metadata["before"]), moved)
    return chosen


def flag_of(f: Field) -> str:
    """The option name of a field: its ``flag``, else ``--`` and the name with dashes."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def field_range(f: Field) -> Range | None:
    """The declared range of an option field (``None`` when it declares none)."""
    allowed = f.metadata.get("range")
    return allowed if allowed is not None and allowed.declared else None


def check_ranges(config: Any) -> None:
    """Every numeric option field of ``config`` is finite, fits 64 bits and lies in its declared range
    (``OptionError`` naming the flag otherwise): the CLI's checks, for library callers."""
    for f in option_fields(type(config)):
        value = getattr(config, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            check_number(flag_of(f), value, field_range(f))


def configured(cls: type[C], cfg: C | None, settings: dict[str, Any]) -> C:
    """The config a library call runs with: ``cfg`` (or ``cls()``'s defaults) with ``settings`` replacing fields.

    Why: from a notebook ``quantize("unified.st", "sids.jsonl", levels=4)`` reads better than building a
    config object first; a config object is still accepted. An unknown name is a TypeError naming the known ones.
    """
    base = cfg if cfg is not None else cls()
    if not settings:
        return base
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = [name for name in settings if name not in known]
    if unknown:
        raise TypeError(f"unknown {cls.__name__} setting {unknown[0]!r} (known: {', '.join(known)})")
    return replace(base, **settings)  # type: ignore[type-var]
