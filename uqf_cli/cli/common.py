"""What every subcommand shares besides its options: error reporting, signals, --json output, set-up."""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from uqf_cli.core.errors import UqfError
from uqf_cli.files import to_json

F = TypeVar("F", bound=Callable[..., Any])

_debug = {"on": False}


def set_debug(on: bool) -> None:
    _debug["on"] = on


def debug_enabled() -> bool:
    from uqf_cli.core.env import debug_requested

    return _debug["on"] or debug_requested()


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
        except BrokenPipeError as e:  # before OSError: a reader that stopped reading is not bad input
            silence_stdout()
            raise StdoutClosed from e
        except UqfError as e:
            _report(e, str(e), e.exit_code)
        except KeyboardInterrupt as e:
            _report(e, _interrupt_message(e), 143 if isinstance(e, Terminated) else 130)
        except OSError as e:
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            _report(e, f"{where}{e.strerror or e}", 2)
        except (MemoryError, RuntimeError) as e:
            problem = out_of_memory(e)
            if problem is None:
                raise
            _report(e, problem, 2)

    return wrapper  # type: ignore[return-value]


def out_of_memory(exc: BaseException) -> str | None:
    """The one-line message for an allocation that failed (an absurd size or batch), ``None`` for other errors.

    Why here: how much fits depends on the machine, so no declared range can refuse it before the run;
    the allocator's own error is a traceback of C++ frames.
    """
    text = str(exc)
    if not (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in text):
        return None
    match = re.search(r"allocate (\d+) bytes", text)
    need = f": {int(match.group(1)) / 2**30:,.1f} GiB were asked for" if match else ""
    return f"out of memory{need} (lower the sizes or the batch size asked for)"


class StdoutClosed(Exception):
    """stdout's reader went away (``uqf inspect-sids ... | head``): the rest of the output is not wanted.

    Not an OSError, so Click's own broken-pipe handling (exit 1) does not see it; ``run`` exits 0.
    """


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (a test runner's capture): nothing to flush
        pass


def end_quietly_when_stdout_closes() -> None:
    """Every rich console of this process (ours, and Typer's help) ends the command through
    :class:`StdoutClosed` when its reader goes away, instead of rich's default exit code 1."""

    def on_broken_pipe(self: Console) -> None:
        self.quiet = True
        silence_stdout()
        raise StdoutClosed

    Console.on_broken_pipe = on_broken_pipe  # type: ignore[method-assign]


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
    from uqf_cli.files.checkpoint import active_checkpoint

    what = "terminated" if isinstance(exc, Terminated) else "interrupted"
    return f"{what}; no partial output was left behind{_checkpoint_note(active_checkpoint())}"


def _checkpoint_note(ckpt: dict[str, Any]) -> str:
    """What an interrupted training run leaves to ``--resume``: its checkpoint, or why there is none yet.

    No checkpoint is written on Ctrl-C itself: the loop's state is only consistent at an epoch's end, and a
    snapshot taken mid-epoch would resume into a different run than an uninterrupted one.
    """
    if not ckpt:
        return ""
    if ckpt["exists"] and "epoch" in ckpt:
        return f"; checkpoint {ckpt['path']} ({ckpt['epoch']}) can be continued with --resume"
    every = ckpt.get("every", 60.0)
    when = "at the end of the first epoch" if every <= 0 else (
        f"at the end of the first epoch after {every:g} s of training (UQF_CHECKPOINT_EVERY)")
    if ckpt["exists"]:
        return (f"; this run had saved no checkpoint yet (the first comes {when}); {ckpt['path']} is still the "
                "one of an earlier run, which --resume continues only with that run's options and inputs")
    return f"; no checkpoint had been saved yet (the first comes {when}), so --resume would start from the beginning"


def _report(exc: BaseException, message: str, code: int) -> None:
    con = _err_console()
    if debug_enabled():
        con.print("".join(traceback.format_exception(exc)), markup=False, emoji=False)
    con.print(f"error: {message}", markup=False, emoji=False)
    raise typer.Exit(code)


def emit_json(payload: Any) -> None:
    """Write a JSON document on stdout (for --json)."""
    sys.stdout.write(to_json(payload, indent=2) + "\n")
    sys.stdout.flush()


def parse_csv(value: str | None) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (empty entries dropped)."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


__all__ = [
    "StdoutClosed", "Terminated", "cli_command", "debug_enabled", "emit_json", "end_quietly_when_stdout_closes",
    "install_signal_handlers", "parse_csv", "set_debug", "silence_stdout"
]
