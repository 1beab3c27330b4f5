"""Paths checked with clear errors, and atomic writes: a temporary beside the target, renamed over it
only once complete, with SIGINT/SIGTERM held while the renames happen. An existing output is only replaced
with ``force=True``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from uqf_cli.core.errors import InputError, OutputExistsError


def require_file(path: str | Path, what: str = "file") -> Path:
    """Return ``path`` as a Path if it is an existing regular file, else raise a clear error."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, f"{what} not found")
    if p.is_dir():
        raise InputError(p, f"is a directory, expected a {what}")
    return p


def require_dir(path: str | Path, what: str = "directory") -> Path:
    """Return ``path`` as a Path if it is an existing directory, else raise a clear error."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, f"{what} not found")
    if not p.is_dir():
        raise InputError(p, f"is a file, expected a {what}")
    return p


def check_output(path: str | Path, force: bool, kind: str | None = None, option: str = "--output") -> Path:
    """Fail early (before any heavy work) if ``path`` cannot be written as an output.

    Why early: a user should learn that the output exists, or that its directory is missing, before
    a ten-minute training run, not after it. With ``kind`` (a key of :data:`uqf_cli.files.kinds.KINDS`),
    ``force`` replaces only an earlier output of that kind (:func:`check_replaceable`).
    """
    p = Path(path)
    if (p.exists() or p.is_symlink()) and not force:
        raise OutputExistsError(p)
    if kind is not None and (p.exists() or p.is_symlink()):
        check_replaceable(p, kind, option)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise InputError(parent, "output directory does not exist")
    if not parent.is_dir():
        raise InputError(parent, "output's parent is not a directory")
    if not os.access(parent, os.W_OK):
        raise InputError(parent, "output directory is not writable")
    return p


def check_replaceable(path: Path, kind: str, option: str = "--output") -> None:
    """Refuse (one line, exit 2) to ``--force`` over anything but an earlier output of ``kind``: a user's own
    folder or file, an output of another kind, or an earlier output folder holding files its command did not
    write (replacing the folder would delete them)."""
    from uqf_cli.files.kinds import KINDS, describe, recognise, unexpected_files

    want = KINDS[kind]
    found = recognise(path)
    if found != kind:
        if path.is_dir() and not want.directory:
            raise InputError(path, f"is a folder; {option} names a file here, and --force never replaces a folder")
        raise InputError(path, f"--force replaces only an earlier {want.label}, but this is "
                               f"{describe(found, path)}; move it away or choose another {option}")
    extra = unexpected_files(path, kind)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise InputError(path, f"holds {extra[0]}{more}, which uqf did not write there; --force would delete it "
                               "with the folder: move it away first")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path, force: bool = False, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success move it over ``path``, on failure remove it.

    ``directory=True`` yields a fresh temporary directory for outputs that are directories
    (model dirs). The rename happens only after the body finished without an exception, and a
    KeyboardInterrupt inside the body removes the temporary, so nothing partial is left behind.
    """
    target = check_output(path, force)
    parent = target.parent if str(target.parent) else Path(".")
    tmp: Path | None = None
    try:
        with signals_deferred():  # a Ctrl-C between creating the temporary and noting its name would leak it
            tmp = _make_temporary(target, parent, directory)
        with naming_errors(target):
            yield tmp
        commit([(tmp, target)], force, directory)
    except BaseException:
        if tmp is not None:
            _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_files(paths: Sequence[str | Path], force: bool = False) -> Iterator[list[Path]]:
    """Yield one temporary sibling per path; on success rename them all over their targets at once.

    Nothing is renamed unless the body finished; a failure or a signal removes every temporary.
    """
    targets = [check_output(p, force) for p in paths]
    tmps: list[Path] = []
    try:
        for target in targets:
            with signals_deferred():
                tmps.append(_make_temporary(target, target.parent if str(target.parent) else Path("."), False))
        with naming_errors(*targets):
            yield tmps
        commit(list(zip(tmps, targets, strict=True)), force)
    except BaseException:
        for tmp in tmps:
            _remove(tmp)
        raise


@contextlib.contextmanager
def naming_errors(*targets: Path) -> Iterator[None]:
    """Give an ``OSError`` without a file name (a full disk: ``write`` has none) the name of the output being
    written, so that its one-line message says which file could not be written."""
    try:
        yield
    except OSError as e:
        if getattr(e, "filename", None) or not targets:
            raise
        names = ", ".join(str(t) for t in targets)
        raise OSError(e.errno, e.strerror or str(e), names) from e


def commit(renames: Sequence[tuple[Path, Path]], force: bool, directory: bool = False) -> None:
    """Move each complete temporary over its target, all with signals held (a directory swap is two renames:
    never stop between them); a target that appeared meanwhile is refused unless ``force``."""
    with signals_deferred():
        for _, target in renames:
            if target.exists() and not force:  # appeared while we worked
                raise OutputExistsError(target)
        for tmp, target in renames:
            if directory:
                _replace_dir(tmp, target)
            else:
                os.replace(tmp, target)


def _make_temporary(target: Path, parent: Path, directory: bool) -> Path:
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
        tmp.chmod(0o777 & ~_UMASK)
        return tmp
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should follow the user's umask
    return tmp


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a few file-system calls must happen together; they act right after.

    Python raises KeyboardInterrupt between any two bytecodes, so without this a Ctrl-C could land
    after ``mkstemp`` created the temporary file but before its name is known (a leaked ``.tmp``), or
    between the two renames that swap a directory output (the earlier output gone). The Python-level
    handlers are swapped for one that only records the signal (blocking it with ``pthread_sigmask``
    would not do: the kernel hands a process signal to any thread, and torch runs several); the
    recorded signal is then passed to the previous handler. Only the main thread can do this
    (Python runs signal handlers there); elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    held = [sig for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) is not None]  # None: set in C
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)  # KeyboardInterrupt / the CLI's Terminated
            elif handler == signal.SIG_DFL:
                signal.raise_signal(pending[0])

def _replace_dir(tmp: Path, target: Path) -> None:
    if target.exists():
        backup = target.with_name(f".{target.name}.old")
        _remove(backup)
        os.replace(target, backup)
        os.replace(tmp, target)
        _remove(backup)
    else:
        os.replace(tmp, target)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        with contextlib.suppress(OSError):
            p.unlink()
