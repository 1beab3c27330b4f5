"""Run-time plumbing shared by every stage: console, progress bars, seeding, devices.

Why one module: every stage must behave the same in a terminal (progress bars, tables) and in a
pipe or batch job (quiet, no colour), and the same seed must mean the same result everywhere.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from uqf_cli.core.errors import OptionError

# Status and progress go to stderr so stdout stays clean for --json and pipes.
_state: dict[str, Any] = {"quiet": False, "console": None}


def configure(quiet: bool = False) -> None:
    """Set quietness for this process (the CLI calls it once per command)."""
    _state["quiet"] = quiet
    _state["console"] = None
    if quiet or not sys.stderr.isatty():
        silence_library_progress_bars()


def silence_library_progress_bars() -> None:
    """No tqdm bars from huggingface_hub / transformers (e.g. "Loading weights" when a model loads).

    Why: our own bars already vanish in pipes and with --quiet, and a batch job's log should not
    collect a library's bar either. The environment variable covers libraries imported later; the
    calls cover those already imported.
    """
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    hub = sys.modules.get("huggingface_hub.utils")
    if hub is not None and hasattr(hub, "disable_progress_bars"):
        hub.disable_progress_bars()
    hf_logging = sys.modules.get("transformers.utils.logging")
    if hf_logging is not None and hasattr(hf_logging, "disable_progress_bar"):
        hf_logging.disable_progress_bar()


def is_quiet() -> bool:
    return bool(_state["quiet"])


def console() -> Console:
    """The stderr console: colour only on a TTY and when NO_COLOR is unset."""
    if _state["console"] is None:
        _state["console"] = Console(stderr=True, quiet=is_quiet(), no_color="NO_COLOR" in os.environ or None,
                                    highlight=False)
    return _state["console"]


class _PipeConsole(Console):
    """A stdout console whose reader may go away (``uqf ... | head``): rich's default then exits with 1;
    the error is passed up instead, so the CLI can end quietly with 0 as other well-behaved tools do."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError("stdout was closed by its reader")


def stdout_console() -> Console:
    """A console on stdout for results people read (tables, trees); fits the terminal width."""
    return _PipeConsole(no_color="NO_COLOR" in os.environ or None, highlight=False)


def info(message: str) -> None:
    """One status line on stderr (suppressed by --quiet)."""
    console().print(message)


def warn(message: str) -> None:
    """A warning on stderr; shown even with --quiet because it may change what the user does."""
    Console(stderr=True, soft_wrap=True, no_color="NO_COLOR" in os.environ or None, highlight=False).print(
        f"[yellow]warning:[/yellow] {escape(message)}"  # one line however long (paths), brackets kept
    )


class _NullProgress:
    """Stands in for a rich Progress when output is not a terminal or --quiet is set."""

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None

    def advance(self, *args: Any, **kwargs: Any) -> None:
        return None


@contextlib.contextmanager
def progress() -> Iterator[Progress | _NullProgress]:
    """A progress bar on a TTY, nothing in pipes or with --quiet."""
    con = console()
    if is_quiet() or not con.is_terminal:
        yield _NullProgress()
        return
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=con,
        transient=False,
    ) as bar:
        yield bar


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch Generator for code that wants its own stream."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(spec: str = "auto", flag: str = "--device") -> torch.device:
    """``auto`` -> CUDA when present, else MPS, else CPU; an explicit device must exist on this machine
    (``OptionError`` naming ``flag`` otherwise)."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as e:
        raise OptionError(flag, f"unknown device {spec!r} (use {DEVICE_NAMES})") from e
    if dev.type not in ("cpu", "cuda", "mps"):
        raise OptionError(flag, f"unknown device {spec!r} (use {DEVICE_NAMES})")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(flag, f"{spec}: CUDA was requested but is not available on this machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise OptionError(flag, f"{spec}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    if dev.type == "mps" and not _mps_available():
        raise OptionError(flag, f"{spec}: MPS (Apple GPU) was requested but is not available on this machine")
    return dev


def check_device(spec: str, flag: str = "--device") -> None:
    """Refuse, in one line, a device name this machine does not have (the CLI calls it before any work)."""
    resolve_device(spec, flag)


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def set_threads_from_env() -> None:
    """Respect UQF_THREADS for torch's intra-op pool (batch jobs sharing a machine); checked by
    :func:`uqf_cli.core.env.threads` (garbage refused, more than the machine's CPUs clamped)."""
    from uqf_cli.core.env import threads

    n = threads()
    if n is not None:
        torch.set_num_threads(n)


@contextlib.contextmanager
def private_tempdir(prefix: str = "uqf-") -> Iterator[Path]:
    """Send what libraries write to the default temp folder into a private one, removed with its files after.

    Why: PyG's ``MessagePassing`` renders a module per conv class from a jinja template and writes it with
    ``tempfile.NamedTemporaryFile(delete=False)`` into ``tempfile.gettempdir()`` (torch_geometric/template.py,
    2.8), leaving one file in the system temp folder per run. The module is imported before the body ends, so
    its file is not needed afterwards.
    """
    folder = tempfile.mkdtemp(prefix=prefix)
    previous = tempfile.tempdir
    tempfile.tempdir = folder
    try:
        yield Path(folder)
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)
