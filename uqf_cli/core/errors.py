"""Errors that the CLI turns into one clear line and exit code 2.

Library code raises :class:`UqfError` (or a subclass) for anything the *user* can fix: a missing
file, a malformed line, an incompatible upstream file. Bugs stay ordinary exceptions so that they
surface with a traceback instead of being disguised as bad input.
"""

from __future__ import annotations

from pathlib import Path


class UqfError(Exception):
    """A problem with the user's input or options; the message is shown as one line."""

    exit_code = 2


class InputError(UqfError):
    """An input file is missing, malformed or inconsistent. The message names the file."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class OptionError(UqfError):
    """An option value is out of range or inconsistent with another option."""

    def __init__(self, option: str, problem: str) -> None:
        self.option = option
        super().__init__(f"{option}: {problem}")


class OutputExistsError(UqfError):
    """An output exists and ``--force`` was not given: we never overwrite silently."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"{path}: output exists; pass --force to overwrite it")
