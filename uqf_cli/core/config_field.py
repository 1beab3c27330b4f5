"""Config dataclass fields that are also command-line options: one place for a default and its help.

A stage's config dataclass declares ``epochs: int = opt(300, "Maximum epochs.")``; the CLI builds
the option ``--epochs`` from that field (``uqf_cli/cli/config_options.py``). Kept free of Typer, so
library code can import its configs without the CLI.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any, TypeVar

from uqf_cli.core.bounds import Range, check_number
from uqf_cli.core.errors import OptionError

C = TypeVar("C")


@dataclass(frozen=True)
class Spelled:
    """How the CLI spells a field whose value is not one plain str, int, float or bool.

    ``kind``: the option's type (``str``, ``Path | None``); ``show(value)``: the option's default from the
    field's default; ``parse(text, values)``: the field's value from what was typed, given the other
    option values of the same config (``--codebook-size 256`` needs ``--levels``). ``typer``: extra
    ``typer.Option`` settings (``{"dir_okay": False}``).
    """

    kind: Any
    show: Callable[[Any], Any]
    parse: Callable[[Any, dict[str, Any]], Any]
    typer: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Off:
    """A second flag that sets an optional field to ``None`` (``--no-sinkhorn`` for ``--sinkhorn-eps``)."""

    flag: str
    help: str


def comma_list(element: type = str, container: type = list) -> Spelled:
    """A list (or tuple) field written as one comma-separated value (``--recall-k 5,10``): ``None`` is no
    value, an element that is not an ``element`` a ``ValueError`` (the CLI names the flag)."""
    names = {int: "integers", float: "numbers"}

    def parse(text: str | None, values: dict[str, Any]) -> Any:
        if text is None:
            return None
        try:
            return container(element(v.strip()) for v in text.split(",") if v.strip())
        except ValueError as e:
            raise ValueError(f"expected comma-separated {names.get(element, 'values')}") from e

    return Spelled(str | None, lambda value: None if value is None else ",".join(map(str, value)), parse)


def opt(default: Any, help: str | Callable[[], str] | None = None, *, flag: str | None = None,
        short: str | None = None, panel: str | None = None, before: str | None = None, ge: float | None = None,
        gt: float | None = None, le: float | None = None, lt: float | None = None, spelled: Spelled | None = None,
        off: Off | None = None) -> Any:
    """A dataclass field with ``default`` that the CLI offers as an option.

    ``help``: its text, or a function giving it when the help is built (a list of registered methods).
    ``flag``: the option name when it is not ``--<field-name>``; a bool field whose flag is
    ``--no-...`` is switched off by it (``--x/--no-x`` offers both). ``short``: a one-letter alias
    (``-k``). ``panel``: the help panel that lists it. ``before``: list
    it just before that field's option (where the help order differs from the field order).
    ``ge``/``gt``/``le``/``lt``: the allowed range of a numeric field (the CLI refuses other values
    in one line; :func:`check_ranges` does the same for library callers). ``spelled``: how the CLI
    writes a list or an optional value (:class:`Spelled`; :func:`comma_list` for a comma-separated list);
    ``off``: a flag that sets it to ``None``.
    """
    metadata = {"option": True, "help": help, "flag": flag, "short": short, "panel": panel, "before": before,
                "range": Range(ge=ge, gt=gt, le=le, lt=lt), "spelled": spelled, "off": off}
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


def help_of(f: Field) -> str | None:
    """The help text of an option field (a help given as a function is called now)."""
    text = f.metadata.get("help")
    return text() if callable(text) else text


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


def options_for(entry: str, cls: type | None, given: Any, flag: str = "--method") -> Any:
    """The own options of registry entry ``entry`` (its options dataclass ``cls``): ``given``, else ``cls()``'s
    defaults; ``None`` for an entry without options of its own (options given to it are refused)."""
    if cls is None:
        if given is not None:
            raise OptionError(flag, f"{flag} {entry} has no options of its own (got {type(given).__name__})")
        return None
    if given is None:
        return cls()
    if not isinstance(given, cls):
        raise TypeError(f"{flag} {entry} takes {cls.__name__}, not {type(given).__name__}")
    return given
