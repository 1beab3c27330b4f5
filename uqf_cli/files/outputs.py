"""Every path a command will write, checked together before any work, and locked while it runs.

A command lists its outputs (each with its kind, :mod:`uqf_cli.files.kinds`) and its inputs::

    outputs = [want(output, "sids", checkpoint=True), want(save_model, "quantizer", "--save-model")]
    with plan_outputs(outputs, inputs={"EMBEDDINGS": embeddings}, force=run.force):
        quantize(...)

:func:`plan_outputs` resolves each output together with the files written beside it (its ``.meta.json``, the
run's checkpoint, the lock) and refuses, in one line with exit code 2 and before anything is read or written:

* two of them at one path (``-o sids.jsonl --save-model sids.jsonl``; a SIDs file named like the LC-Rec index
  of another), or one inside an output folder (``train-rec -o model --plot model/curve.png``);
* an output at an input's path, or an output folder that holds an input (``prepare SRC -o SRC``);
* an existing output without ``--force``;
* with ``--force``, an existing path that is not an earlier output of the same kind, or an earlier output
  folder holding files its command did not write (:func:`uqf_cli.files.atomic.check_replaceable`);
* something at a checkpoint's path that is not a uqf checkpoint; a missing or read-only output folder.

Entering the plan takes a lock on each output, ``<output>.lock`` (created with ``O_EXCL``, holding the pid and
host), removed when the command ends however it ends. A second run on the same output refuses while the first
runs; a lock left by a run that was killed (its pid is gone) is removed with a warning.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from uqf_cli.core import runtime
from uqf_cli.core.errors import InputError, OutputExistsError
from uqf_cli.files.atomic import check_output
from uqf_cli.files.kinds import KINDS, read_json_object, recognise

LOCK_SUFFIX = ".lock"
CHECKPOINT_SUFFIXES = (".ckpt.st", ".ckpt")  # files.checkpoint: <output>.ckpt.st, the HF Trainer's <output>.ckpt/


@dataclass(frozen=True)
class Output:
    """One output of a command: where, what kind, and the option that named it (for messages)."""

    path: Path
    kind: str
    option: str = "--output"
    checkpoint: bool = False  # the run keeps a checkpoint beside it (files.checkpoint)
    role: str = ""  # how messages name it when it is derived from another output ("the LC-Rec index of -o")

    @property
    def name(self) -> str:
        return self.role or self.option

    def sidecars(self) -> list[Path]:
        """Files written together with this output (renamed into place with it)."""
        return [self.path.with_name(self.path.name + s) for s in KINDS[self.kind].sidecars]

    def checkpoints(self) -> list[Path]:
        return [self.path.with_name(self.path.name + s) for s in CHECKPOINT_SUFFIXES] if self.checkpoint else []

    def lock(self) -> Path:
        return self.path.with_name(self.path.name + LOCK_SUFFIX)


def want(path: str | Path | None, kind: str, option: str = "--output", checkpoint: bool = False,
         role: str = "") -> Output | None:
    """An :class:`Output` for ``path`` (``None`` when the option was not given)."""
    if path is None:
        return None
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    return Output(Path(path), kind, option, checkpoint, role)


@dataclass
class OutputPlan:
    """The checked outputs of one command; a context manager holding their locks."""

    outputs: list[Output]
    held: list[Path] = field(default_factory=list)

    def __enter__(self) -> OutputPlan:
        try:
            for out in self.outputs:
                self.held.append(acquire_lock(out.lock(), out.path))
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def release(self) -> None:
        while self.held:
            release_lock(self.held.pop())


def plan_outputs(outputs: Iterable[Output | None], inputs: Mapping[str, str | Path | None] | None = None,
                 force: bool = False) -> OutputPlan:
    """Check every output of a command against each other, the inputs and what exists (module docstring)."""
    outs = [o for o in outputs if o is not None]
    ins = {name: Path(p) for name, p in (inputs or {}).items() if p is not None and _exists(Path(p))}
    _check_collisions(outs)
    for out in outs:
        _check_against_inputs(out, ins)
    for out in outs:
        check_output(out.path, force, out.kind, out.option)
        for side in out.sidecars():
            _check_sidecar(side, out, force)
        for ckpt in out.checkpoints():
            _check_checkpoint(ckpt)
    return OutputPlan(outs)


def _written(out: Output) -> list[tuple[Path, str]]:
    """Every path ``out`` puts on disk, with how messages name it."""
    paths = [(out.path, out.name)]
    paths += [(p, f"the {p.name[len(out.path.name):]} of {out.name}") for p in out.sidecars()]
    paths += [(p, f"the checkpoint of {out.name}") for p in out.checkpoints()]
    paths.append((out.lock(), f"the lock of {out.name}"))
    return paths


def _check_collisions(outs: list[Output]) -> None:
    seen: dict[Path, str] = {}
    for out in outs:
        for path, name in _written(out):
            key = _resolved(path)
            if key in seen:
                raise InputError(path, f"would be written twice, as {seen[key]} and as {name}; choose distinct "
                                       "output names")
            seen[key] = name
    for folder in (o for o in outs if KINDS[o.kind].directory):
        inside = _resolved(folder.path)
        for other in outs:
            if other is not folder and inside in _resolved(other.path).parents:
                raise InputError(other.path, f"{other.name} is inside {folder.name} ({folder.path}), which is "
                                             "written as a whole; choose a path outside it")


def _check_against_inputs(out: Output, ins: Mapping[str, Path]) -> None:
    for name, inp in ins.items():
        for path, what in _written(out):
            if _same(path, inp):
                raise InputError(path, f"{what} is also the input {name}; uqf never writes over its inputs")
        target = _resolved(out.path)
        if target in _resolved(inp).parents and (out.path.is_dir() or KINDS[out.kind].directory):
            raise InputError(out.path, f"holds the input {name} ({inp}); writing {out.name} there would "
                                       "destroy it")


def _check_sidecar(side: Path, out: Output, force: bool) -> None:
    if not (side.exists() or side.is_symlink()):
        return
    if not force:
        raise OutputExistsError(side)
    if read_json_object(side).get("uqf_kind") != out.kind:
        raise InputError(side, f"--force replaces only the metadata of an earlier {KINDS[out.kind].label}, and "
                               "this file is not one; move it away")


def _check_checkpoint(ckpt: Path) -> None:
    """The run replaces its checkpoint without --force (docs/robustness.md), so only a uqf checkpoint may be
    there."""
    if not (ckpt.exists() or ckpt.is_symlink()):
        return
    if recognise(ckpt) not in ("checkpoint", "trainer-checkpoint"):
        raise InputError(ckpt, "is where this run keeps its checkpoint, but it is not a uqf checkpoint; move it "
                               "away")


# ----------------------------------------------------------------------------------------------------------
# locks
# ----------------------------------------------------------------------------------------------------------

_held_locks: dict[str, int] = {}  # lock path -> how many plans of this process hold it


def acquire_lock(lock: Path, output: Path) -> Path:
    """Create ``lock`` exclusively for this process (re-entrant within it); refuse while another live run holds it.

    A lock whose run is gone (same host, pid no longer running) is stale: removed with a warning, then taken.
    """
    key = str(_resolved(lock))
    if key in _held_locks:
        _held_locks[key] += 1
        return lock
    folder = lock.parent
    if not folder.is_dir():
        raise InputError(folder, "is not a directory, so the output cannot go there" if folder.exists()
                         else "output directory does not exist")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is None:
                raise InputError(lock, f"is in the way of {output}'s lock and is not a uqf lock file; move it "
                                       "away") from None
            if _alive(owner):
                raise InputError(output, f"another uqf run (pid {owner['pid']} on {owner['host']}) is writing this "
                                         f"output; wait for it to finish, or delete {lock} if no such run "
                                         "exists") from None
            runtime.warn(f"removing the stale lock {lock} of a run that is gone (pid {owner['pid']})")
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(lock)) from e
        record = {"uqf_lock": 1, "pid": os.getpid(), "host": socket.gethostname(),
                  "command": " ".join(["uqf", *sys.argv[1:]])}
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f)
        except OSError as e:  # a full disk: do not leave an empty lock behind
            with contextlib.suppress(OSError):
                lock.unlink()
            raise OSError(e.errno, e.strerror, str(lock)) from e
        _held_locks[key] = 1
        return lock
    raise InputError(output, f"another uqf run keeps taking its lock {lock}")


def release_lock(lock: Path) -> None:
    """Drop this process's hold on ``lock``; the last hold removes the file."""
    key = str(_resolved(lock))
    count = _held_locks.get(key, 0)
    if count > 1:
        _held_locks[key] = count - 1
        return
    _held_locks.pop(key, None)
    owner = _lock_owner(lock)
    if owner is not None and owner.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _lock_owner(lock: Path) -> dict | None:
    try:
        data = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not (isinstance(data, dict) and data.get("uqf_lock") == 1 and isinstance(data.get("pid"), int)):
        return None
    return data


def _alive(owner: Mapping) -> bool:
    """Whether the run that wrote a lock may still run (another host's pid cannot be checked: taken as alive)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = int(owner["pid"])
    if pid == os.getpid():
        return False  # this process holds no such lock (checked above): an earlier process with our pid left it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


# ----------------------------------------------------------------------------------------------------------


def _exists(p: Path) -> bool:
    return p.exists() or p.is_symlink()


def _resolved(p: Path) -> Path:
    return Path(os.path.realpath(p))


def _same(a: Path, b: Path) -> bool:
    if _resolved(a) == _resolved(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links
    except OSError:
        return False


__all__ = ["LOCK_SUFFIX", "Output", "OutputPlan", "acquire_lock", "plan_outputs", "release_lock", "want"]
