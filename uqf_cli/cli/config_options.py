"""Typer options built from a stage's config dataclass, so each option's default and help live there once.

A command parameter annotated with a config dataclass (``cfg: GcnConfig = GcnConfig()``) stands for
that dataclass's :func:`~uqf_cli.core.config_field.opt` fields: they become the command's options at
that place, and the command receives the instance built from the values given.

A parameter whose default is an :class:`EntryOptions` (``own: EntryOptions = EntryOptions(quantizer_options,
"--method")``) stands for the own option fields of every entry of a registry (quantizers, fusion methods):
the registry is read each time the command's options are built, so an entry registered later (a test's
toy, a plugin) gets its flags, help, range checks and provenance like a built-in one.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field
from pathlib import Path
from typing import Annotated, Any

import typer

from uqf_cli.core.config_field import field_range, flag_of, help_of, option_fields
from uqf_cli.core.errors import OptionError

FROM_RUN = ("seed", "device")  # config fields filled from the shared run options, not from an option of their own


def is_config(annotation: Any) -> bool:
    """Whether a command parameter's annotation is a config dataclass with option fields."""
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation) and bool(option_fields(annotation))


def config_parameters(cls: type, prefix: str = "") -> list[inspect.Parameter]:
    """One keyword-only Typer parameter per option field of ``cls`` (two for a field with ``off=``), in help
    order; ``prefix`` keeps the parameter names of several configs apart (the flags are the fields' own)."""
    hints = typing.get_type_hints(cls)
    params: list[inspect.Parameter] = []
    for f in option_fields(cls):
        params += _parameters(f, hints[f.name], prefix)
    return params


def build_config(cls: type, values: dict[str, Any], run: Any, prefix: str = "") -> Any:
    """The ``cls`` instance from the option values (popped from ``values``) and the run's seed and device."""
    given: dict[str, Any] = {}
    for f in option_fields(cls):
        value = values.pop(prefix + f.name)
        off = f.metadata.get("off")
        if off is not None and values.pop(prefix + identifier(off.flag)):
            value = None
        given[f.name] = (not value) if _negated(f) else value
    for f in option_fields(cls):
        spelled = f.metadata.get("spelled")
        if spelled is not None:
            try:
                given[f.name] = spelled.parse(given[f.name], given)
            except ValueError as e:  # a parse that does not know its flag (comma_list): name it here
                raise OptionError(flag_of(f), str(e)) from e
    names = {f.name for f in dataclasses.fields(cls)}
    from_run = {name: getattr(run, name) for name in FROM_RUN if name in names and name not in given}
    return cls(**given, **from_run)


class EntryOptions:
    """The own options of every entry of a registry, as one command parameter.

    ``entries()`` gives ``{entry name: its options dataclass, or None}``; ``flag`` is the option that picks
    the entry (``--method``). The command receives an instance whose :meth:`of` returns the picked entry's
    options built from the values given.
    """

    def __init__(self, entries: Callable[[], Mapping[str, type | None]], flag: str,
                 built: dict[str, Any] | None = None) -> None:
        self.entries = entries
        self.flag = flag
        self.built = built or {}

    def classes(self) -> dict[str, type]:
        """``{entry name: options dataclass}`` of the entries that declare options, now."""
        return {name: cls for name, cls in self.entries().items() if cls is not None}

    def parameters(self) -> list[inspect.Parameter]:
        """The Typer parameters of every entry's option fields, entry by entry in registry order."""
        return [p for name, cls in self.classes().items() for p in config_parameters(cls, _prefix(name))]

    def build(self, values: dict[str, Any], run: Any) -> EntryOptions:
        """This parameter with every entry's options built from ``values`` (popped)."""
        built = {name: build_config(cls, values, run, _prefix(name)) for name, cls in self.classes().items()}
        return EntryOptions(self.entries, self.flag, built)

    def of(self, name: str) -> Any:
        """Entry ``name``'s options (``None`` when it declares none); an option of another entry that was
        given a value other than its default is refused, naming the entry it belongs to."""
        for other, options in self.built.items():
            defaults = type(options)()
            changed = [f for f in option_fields(type(options)) if getattr(options, f.name) != getattr(defaults, f.name)]
            if other != name and changed:
                raise OptionError(flag_of(changed[0]), f"is an option of {self.flag} {other}, not of "
                                                       f"{self.flag} {name}")
        return self.built.get(name)

    def files(self) -> dict[str, Any]:
        """``{flag: path}`` of the given options (of any entry) that name a file, i.e. whose CLI spelling is a
        ``Path``: inputs the command checks its outputs against."""
        found: dict[str, Any] = {}
        for options in self.built.values():
            for f in option_fields(type(options)):
                spelled = f.metadata.get("spelled")
                names_file = spelled is not None and Path in (spelled.kind, *typing.get_args(spelled.kind))
                if names_file and getattr(options, f.name):
                    found[flag_of(f)] = getattr(options, f.name)
        return found


def identifier(flag: str) -> str:
    """A parameter name for a flag or an entry name: ``--no-sinkhorn`` -> ``no_sinkhorn``."""
    return re.sub(r"\W", "_", flag.lstrip("-"))


def _prefix(entry: str) -> str:
    return f"{identifier(entry)}__"


def _parameters(f: Field, kind: Any, prefix: str) -> list[inspect.Parameter]:
    default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    spelled = f.metadata.get("spelled")
    if spelled is not None:
        kind, default = spelled.kind, spelled.show(default)
    names = [flag_of(f), *([f.metadata["short"]] if f.metadata.get("short") else [])]
    option = typer.Option(*names, help=help_of(f), rich_help_panel=f.metadata["panel"],
                          **{"metavar": f.metadata.get("metavar"), **(spelled.typer if spelled is not None else {})})
    allowed = field_range(f)
    annotation = Annotated[kind, option] if allowed is None else Annotated[kind, option, allowed]
    params = [inspect.Parameter(prefix + f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                default=(not default) if _negated(f) else default)]
    off = f.metadata.get("off")
    if off is not None:
        flag = typer.Option(off.flag, help=off.help, rich_help_panel=f.metadata["panel"])
        params.append(inspect.Parameter(prefix + identifier(off.flag), inspect.Parameter.KEYWORD_ONLY,
                                        annotation=Annotated[bool, flag], default=False))
    return params


def _negated(f: Field) -> bool:
    """A ``--no-X`` flag switches its bool field off."""
    return flag_of(f).startswith("--no-")
