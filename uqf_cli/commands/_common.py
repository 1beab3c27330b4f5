"""Options and error handling shared by every subcommand (the CLI layer only)."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from uqf_cli import runtime
from uqf_cli.errors import UqfError
from uqf_cli.io import to_json

F = TypeVar("F", bound=Callable[..., Any])

Force = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or status lines (errors still print).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (runs are deterministic on CPU).")]
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

_debug = {"on": False}


def set_debug(on: bool) -> None:
    _debug["on"] = on


def debug_enabled() -> bool:
    return _debug["on"] or os.environ.get("UQF_DEBUG", "") not in ("", "0")


def _err_console() -> Console:
    return Console(stderr=True, soft_wrap=True, no_color="NO_COLOR" in os.environ or None, highlight=False)


def cli_command(fn: F) -> F:
    """Turn user-fixable errors into one line on stderr and exit code 2 (130 on Ctrl-C).

    With ``--debug`` (or UQF_DEBUG=1) the traceback is printed too. Bugs (any other exception)
    keep their traceback: hiding them would make them look like bad input.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UqfError as e:
            _report(e, str(e), e.exit_code)
        except KeyboardInterrupt as e:
            _report(e, _interrupt_message(e), 143 if isinstance(e, Terminated) else 130)
        except OSError as e:
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            _report(e, f"{where}{e.strerror or e}", 2)

    return wrapper  # type: ignore[return-value]


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler, so a ``kill`` unwinds like Ctrl-C (temporary files removed)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"signal {signum}")


def install_signal_handlers() -> None:
    """Make Ctrl-C (SIGINT) and ``kill`` (SIGTERM) raise inside the running stage.

    Why: the atomic writers remove their temporary file when an exception unwinds through them;
    Python's default SIGTERM action kills the process without unwinding. SIGINT is reset to
    Python's handler too, because a shell may start background jobs with SIGINT ignored.
    Exit codes: 130 after SIGINT, 143 after SIGTERM (128 + signal number, as shells report).
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_terminated)


def _interrupt_message(exc: KeyboardInterrupt) -> str:
    from uqf_cli.checkpoint import active_checkpoint

    what = "terminated" if isinstance(exc, Terminated) else "interrupted"
    saved = active_checkpoint()
    epoch = f" (epoch {saved['epoch']})" if "epoch" in saved else ""
    resume = f"; checkpoint {saved['path']}{epoch} can be continued with --resume" if saved else ""
    return f"{what}; no partial output was left behind{resume}"


def _report(exc: BaseException, message: str, code: int) -> None:
    con = _err_console()
    if debug_enabled():
        con.print("".join(traceback.format_exception(exc)), markup=False)
    con.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def emit_json(payload: Any) -> None:
    """Write a JSON document on stdout (for --json)."""
    sys.stdout.write(to_json(payload, indent=2) + "\n")
    sys.stdout.flush()


def start(quiet: bool) -> None:
    """Per-command set-up: quietness, thread count."""
    runtime.configure(quiet=quiet)
    runtime.set_threads_from_env()


def parse_csv(value: str | None) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (empty entries dropped)."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


__all__ = ["Device", "Force", "JsonOut", "OutDir", "OutFile", "PlotOut", "Quiet", "Resume", "Seed", "cli_command",
           "emit_json", "json", "parse_csv", "start"]
