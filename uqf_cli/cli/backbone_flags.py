"""``uqf train-rec``'s backbone flags, made from the registered backbones' option fields (none written by hand).

Each backbone's options dataclass declares its options with ``opt()`` (the shared training options once,
in ``uqf_cli/rec/options.py``). Here the fields of all backbones become one config dataclass,
:func:`flags_config`, that ``train-rec`` declares like any config (``cli/config_options.py``): one flag
per option, its default ``None`` ("the backbone's default", each backbone's listed in the help), so the
options a backbone receives are exactly those given.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from uqf_cli.core.config_field import field_range, flag_of, option_fields
from uqf_cli.core.errors import OptionError
from uqf_cli.rec.options import SHARED, option_key, value_type
from uqf_cli.rec.registry import Backbone


@dataclass(frozen=True)
class BackboneFlag:
    """One flag and, for each backbone that reads it, the type and the default of its field."""

    declared: Field  # the first field declaring it: flag, help, panel, range
    panel: str | None
    kinds: dict[str, type]
    defaults: dict[str, Any]

    @property
    def key(self) -> str:
        return option_key(self.declared)

    @property
    def pair(self) -> bool:
        """A bool offered both ways (``--x/--no-x``): either spelling given is passed on, neither leaves the
        backbone's default."""
        return "/" in flag_of(self.declared)

    @property
    def mixed(self) -> bool:
        """Some backbones read a whole number, others a fraction (``--epochs``): parsed as a float."""
        return set(self.kinds.values()) == {int, float}

    @property
    def kind(self) -> type:
        return float if self.mixed else next(iter(self.kinds.values()))

    def help(self) -> str:
        """The declared help followed by the numeric default of each backbone that reads it."""
        text = self.declared.metadata["help"] or ""
        numbers = {b: v for b, v in self.defaults.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not numbers:
            return text
        values = set(numbers.values())
        note = (f"default {values.pop():g}" if len(values) == 1
                else "defaults: " + ", ".join(f"{b} {v:g}" for b, v in numbers.items()))
        return f"{text} ({note})." if text else f"({note})."

    def as_field(self) -> tuple[str, Any, Any]:
        """``(name, type, field)`` of this flag in :func:`flags_config`."""
        shared = self.declared.metadata.get("shared")
        metadata = {"option": True, "help": self.help(), "flag": flag_of(self.declared), "panel": self.panel,
                    "before": None, "range": shared.allowed if shared is not None else field_range(self.declared),
                    "metavar": "<int>" if self.mixed else None}
        if self.kind is bool and self.pair:
            return self.key, bool | None, field(default=None, metadata=metadata)
        if self.kind is bool:
            return self.key, bool, field(default=False, metadata=metadata)  # a switch: given turns it on
        return self.key, self.kind | None, field(default=None, metadata=metadata)


def backbone_flags(backbones: list[Backbone]) -> list[BackboneFlag]:
    """One flag per option of ``backbones``: the shared ones first (in ``SHARED``'s order), then the others in
    the order the backbones declare them; listed in its declared panel, else in its first reader's."""
    readers: dict[str, list[tuple[Backbone, Field]]] = {}
    for backbone in backbones:
        for f in option_fields(backbone.options):
            readers.setdefault(option_key(f), []).append((backbone, f))
    flags = [BackboneFlag(found[0][1], found[0][1].metadata["panel"] or found[0][0].panel,
                          {b.name: value_type(b.options, f.name) for b, f in found},
                          {b.name: _default(f) for b, f in found}) for found in readers.values()]
    order = {shared.flag: n for n, shared in enumerate(SHARED)}
    return sorted(flags, key=lambda flag: order.get(flag_of(flag.declared), len(order)))


def flags_config(flags: list[BackboneFlag]) -> type:
    """The config dataclass of ``flags`` (a command parameter annotated with it gets them as its options)."""
    return make_dataclass("BackboneFlags", [flag.as_field() for flag in flags])


def given_options(values: Any, backbone: Backbone, flags: list[BackboneFlag]) -> dict[str, Any]:
    """The options given on the command line (left out: ``None``, a switch not given; a pair's ``--no-x`` is
    given) by their keys, a path as text; a mixed number (``--epochs``) is an int when whole, and a fraction only
    where ``backbone`` takes one."""
    mixed = {flag.key: flag for flag in flags if flag.mixed}
    pairs = {flag.key for flag in flags if flag.pair}
    given = {k: str(v) if isinstance(v, Path) else v for k, v in vars(values).items()
             if v is not None and (v is not False or k in pairs)}
    for key, value in given.items():
        if key in mixed and value == int(value):
            given[key] = int(value)
        elif key in mixed and mixed[key].kinds.get(backbone.name) is int:
            takes = [b for b, kind in mixed[key].kinds.items() if kind is float]
            raise OptionError(flag_of(mixed[key].declared),
                              f"the {backbone.name} backbone trains whole {key.replace('_', ' ')} (a positive integer; "
                              f"only {', '.join(takes)} take{'s' if len(takes) == 1 else ''} fractions)")
    return given


def _default(f: Field) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
