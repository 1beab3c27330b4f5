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
from uqf_cli.cli.config_options import build_config, config_parameters, is_config
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
    annotated with a config dataclass is expanded into its options the same way (see ``config_options``).
    Before anything else the wrapper checks every numeric option against its declared range (finite,
    64-bit), the device, and the environment (``option_checks``, ``core.env``); the numeric options are
    listed in the wrapper's ``number_options`` attribute (tests walk it).
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        configs = {p.name: p.annotation for p in signature.parameters.values() if is_config(p.annotation)}
        params: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            name_argument(p)
            if p.name in configs:
                params += config_parameters(configs[p.name])
            elif p.name != "run":
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        params += [inspect.Parameter(_SHARED[n][0], inspect.Parameter.KEYWORD_ONLY, default=RunOptions.__dict__[n],
                                     annotation=_SHARED[n][1]) for n in names]
        numbers: dict[str, NumberOption] = {}
        for k, p in enumerate(params):
            params[k], spec = number_parameter(p)
            if spec is not None:
                numbers[p.name] = spec

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            check_values(kwargs, numbers)
            check_environment()
            run = RunOptions(**{n: kwargs.pop(_SHARED[n][0]) for n in names})
            start(run.quiet)
            built = {name: build_config(cls, kwargs, run) for name, cls in configs.items()}
            return fn(**kwargs, **built, run=run)

        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        wrapper.number_options = numbers  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def name_argument(p: inspect.Parameter) -> None:
    """A positional argument is shown as ``MODEL_DIR`` in usage lines (Typer's default is ``{model_dir}``)."""
    for info in typing.get_args(p.annotation)[1:]:
        if isinstance(info, ArgumentInfo) and info.metavar is None:
            info.metavar = p.name.upper()


def start(quiet: bool) -> None:
    """Per-run set-up: quietness, thread count."""
    runtime.configure(quiet=quiet)
    runtime.set_threads_from_env()


def function_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults of a stage's library function (for stages without a config dataclass)."""
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}
