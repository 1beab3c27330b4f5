"""Options shared by several subcommands, defined once (type, flag names, help)."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.models import ArgumentInfo

from uqf_cli.cli.common import cli_command
from uqf_cli.cli.config_options import EntryOptions, build_config, config_parameters, is_config
from uqf_cli.cli.option_checks import NumberOption, check_values, number_parameter
from uqf_cli.core import runtime
from uqf_cli.core.bounds import SEED_MAX
from uqf_cli.core.env import check_environment

F = TypeVar("F", bound=Callable[..., Any])

Force = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or status lines (errors still print).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (runs are deterministic on CPU).", min=0,
                                   max=SEED_MAX)]
Device = Annotated[
    str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps (auto picks CUDA when present).")
]
OutFile = Annotated[Path, typer.Option("--output", "-o", help="Output file.", dir_okay=False)]
OutDir = Annotated[Path, typer.Option("--output", "-o", help="Output directory.", file_okay=False)]
DatasetDir = Annotated[Path, typer.Argument(help="Dataset directory written by `uqf prepare`.")]
ModelDir = Annotated[Path, typer.Argument(help="Model directory from `uqf train-rec`.")]
PlotOut = Annotated[
    Path | None,
    typer.Option("--plot", help="Also draw a picture here (.png, .svg or .pdf; needs the 'plot' extra).",
                 dir_okay=False),
]
Resume = Annotated[
    bool,
    typer.Option("--resume", help="Continue an interrupted run from its checkpoint <output>.ckpt.st "
                 "(same options and inputs; see docs/robustness.md)."),
]


def panel_options(panel: str, describe: Callable[[str, str | None], str] | None = None) -> Callable[..., Any]:
    """A maker of options listed under one help panel: ``model = panel_options("Model")``, then
    ``model("--heads", "Attention heads.", min=1)``; ``describe(flag, text)``, if given, writes the help.
    ``min``/``max``: the allowed range of a numeric option (checked by ``option_checks``)."""

    def option(flag: str, text: str | None = None, min: float | None = None, max: float | None = None,
               **extra: Any) -> Any:
        return typer.Option(flag, help=describe(flag, text) if describe else text, rich_help_panel=panel,
                            min=min, max=max, **extra)

    return option


@dataclass(frozen=True)
class RunOptions:
    """The shared options of one command run (``--seed --device --force --resume --quiet --json``)."""

    seed: int = 0
    device: str = "auto"
    force: bool = False
    resume: bool = False
    quiet: bool = False
    json: bool = False


# name in RunOptions -> (parameter name in the command signature, its Typer annotation)
_SHARED: dict[str, tuple[str, Any]] = {
    "seed": ("seed", Seed), "device": ("device", Device), "force": ("force", Force), "resume": ("resume", Resume),
    "quiet": ("quiet", Quiet), "json": ("json_out", JsonOut),
}


def command(app: typer.Typer, name: str, *shared: str) -> Callable[[F], F]:
    """Register the decorated function as ``uqf NAME``, with one-line errors and the shared options ``shared``."""

    def decorate(fn: F) -> F:
        app.command(name)(cli_command(shared_options(*shared)(fn)))
        return fn

    return decorate


def shared_options(*names: str) -> Callable[[F], F]:
    """Give a command the shared options ``names`` (listed in this order after its own options).

    The command declares ``run: RunOptions`` instead of one parameter per shared option; the wrapper
    sets up the run (quietness, threads) and passes the values gathered into ``run``. A parameter
    annotated with a config dataclass is expanded into its options the same way, and one whose default
    is an ``EntryOptions`` into the options of every entry of its registry (see ``config_options``).
    Before anything else the wrapper checks every numeric option against its declared range (finite,
    64-bit), the device, and the environment (``option_checks``, ``core.env``); the numeric options are
    listed in the wrapper's ``number_options`` attribute (tests walk it).
    """

    def decorate(fn: F) -> F:
        return SharedOptions(fn, names)  # type: ignore[return-value]

    return decorate


class SharedOptions:
    """A command function with its shared options, config and registry options expanded (``shared_options``).

    Typer reads the signature each time it builds the command (every run), and so does this class: a
    registry entry added after import (a test's toy quantizer) gets its options in the next run.
    """

    def __init__(self, fn: Callable[..., Any], names: tuple[str, ...]) -> None:
        functools.update_wrapper(self, fn)
        self.fn, self.names = fn, names
        self.declared = inspect.signature(fn, eval_str=True)
        self.number_options: dict[str, NumberOption] = {}  # updated in place: wrappers copying it see each build
        self.signature()  # built once now, so that a bad declaration fails at import

    @property
    def __signature__(self) -> inspect.Signature:
        return self.signature()

    def signature(self) -> inspect.Signature:
        """The command's parameters as Typer sees them, read from the registries as they are now."""
        params: list[inspect.Parameter] = []
        for p in self.declared.parameters.values():
            name_argument(p)
            if is_config(p.annotation):
                params += config_parameters(p.annotation)
            elif isinstance(p.default, EntryOptions):
                params += p.default.parameters()
            elif p.name != "run":
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        params += [inspect.Parameter(_SHARED[n][0], inspect.Parameter.KEYWORD_ONLY, default=RunOptions.__dict__[n],
                                     annotation=_SHARED[n][1]) for n in self.names]
        numbers: dict[str, NumberOption] = {}
        for k, p in enumerate(params):
            params[k], spec = number_parameter(p)
            if spec is not None:
                numbers[p.name] = spec
        self.number_options.clear()
        self.number_options.update(numbers)
        self.__annotations__ = {p.name: p.annotation for p in params}
        return self.declared.replace(parameters=params)

    def __call__(self, **kwargs: Any) -> Any:
        check_values(kwargs, self.number_options)
        check_environment()
        run = RunOptions(**{n: kwargs.pop(_SHARED[n][0]) for n in self.names})
        start(run.quiet)
        built: dict[str, Any] = {}
        for p in self.declared.parameters.values():
            if is_config(p.annotation):
                built[p.name] = build_config(p.annotation, kwargs, run)
            elif isinstance(p.default, EntryOptions):
                built[p.name] = p.default.build(kwargs, run)
        return self.fn(**kwargs, **built, run=run)


def name_argument(p: inspect.Parameter) -> None:
    """A positional argument is shown as ``MODEL_DIR`` in usage lines (Typer's default is ``{model_dir}``)."""
    for info in typing.get_args(p.annotation)[1:]:
        if isinstance(info, ArgumentInfo) and info.metavar is None:
            info.metavar = p.name.upper()


def start(quiet: bool) -> None:
    """Per-run set-up: quietness, thread count."""
    runtime.configure(quiet=quiet)
    runtime.set_threads_from_env()
