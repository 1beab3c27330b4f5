"""Config dataclass fields that are also command-line options: one place for a default and its help.

A stage's config dataclass declares ``epochs: int = opt(300, "Maximum epochs.")``; the CLI builds
the option ``--epochs`` from that field (``uqf_cli/cli/config_options.py``). Kept free of Typer, so
library code can import its configs without the CLI.
"""

from __future__ import annotations

import copy
from dataclasses import Field, field, fields, replace
from typing import Any, TypeVar

C = TypeVar("C")


def opt(default: Any, help: str | None = None, *, flag: str | None = None, panel: str | None = None,
        before: str | None = None) -> Any:
    """A dataclass field with ``default`` that the CLI offers as an option.

    ``flag``: the option name when it is not ``--<field-name>``; a bool field whose flag is
    ``--no-...`` is switched off by it. ``panel``: the help panel that lists it. ``before``: list
    it just before that field's option (where the help order differs from the field order).
    """
    metadata = {"option": True, "help": help, "flag": flag, "panel": panel, "before": before}
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
