"""Typer options built from a stage's config dataclass, so each option's default and help live there once.

A command parameter annotated with a config dataclass (``cfg: GcnConfig = GcnConfig()``) stands for
that dataclass's :func:`~uqf_cli.core.config_field.opt` fields: they become the command's options at
that place, and the command receives the instance built from the values given.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import MISSING, Field
from typing import Annotated, Any

import typer

from uqf_cli.core.config_field import field_range, flag_of, option_fields

FROM_RUN = ("seed", "device")  # config fields filled from the shared run options, not from an option of their own


def is_config(annotation: Any) -> bool:
    """Whether a command parameter's annotation is a config dataclass with option fields."""
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation) and bool(option_fields(annotation))


def config_parameters(cls: type) -> list[inspect.Parameter]:
    """One keyword-only Typer parameter per option field of ``cls``, in help order."""
    hints = typing.get_type_hints(cls)
    return [_parameter(f, hints[f.name]) for f in option_fields(cls)]


def build_config(cls: type, values: dict[str, Any], run: Any) -> Any:
    """The ``cls`` instance from the option values (popped from ``values``) and the run's seed and device."""
    given = {f.name: (not values.pop(f.name)) if _negated(f) else values.pop(f.name) for f in option_fields(cls)}
    names = {f.name for f in dataclasses.fields(cls)}
    from_run = {name: getattr(run, name) for name in FROM_RUN if name in names and name not in given}
    return cls(**given, **from_run)


def _parameter(f: Field, kind: Any) -> inspect.Parameter:
    default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    option = typer.Option(flag_of(f), help=f.metadata["help"], rich_help_panel=f.metadata["panel"],
                          metavar=f.metadata.get("metavar"))
    allowed = field_range(f)
    annotation = Annotated[kind, option] if allowed is None else Annotated[kind, option, allowed]
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=(not default) if _negated(f) else default)


def _negated(f: Field) -> bool:
    """A ``--no-X`` flag switches its bool field off."""
    return flag_of(f).startswith("--no-")
