"""Training checkpoints for ``--resume``: safetensors + JSON, no pickle (docs/robustness.md).

A long stage saves ``<output>.ckpt.st`` (:func:`checkpoint_path`) atomically at the end of an epoch when
``UQF_CHECKPOINT_EVERY`` seconds (default 60; 0 = every epoch) have passed, refuses on ``--resume`` a
checkpoint whose identity (stage, key parameters, input hashes) differs from the current run's, and removes
it once the output is written. Typical use in a plain torch loop::

    ckpt = Checkpointer(output, STAGE, params, inputs={"dataset": ds_dir}, resume=resume)
    first_epoch, saved = 1, ckpt.load()
    if saved is not None:
        saved.restore(modules={"model": model}, optimizers={"adamw": opt}, generators={"gen": gen})
        first_epoch, loop_state = saved.epoch + 1, saved.state
    for epoch in range(first_epoch, epochs + 1):
        ...train one epoch...
        ckpt.epoch_done(epoch, lambda: Snapshot.capture(epoch, modules={"model": model}, ...))
    ...write the output atomically...
    ckpt.finish()
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from uqf_cli.core import runtime
from uqf_cli.core.errors import InputError
from uqf_cli.core.snapshot import Snapshot
from uqf_cli.files.jsonio import read_json, write_json
from uqf_cli.files.provenance import make_provenance
from uqf_cli.files.tensors import load_tensors, meta_json, save_tensors

CHECKPOINT_KIND = "checkpoint"
CHECKPOINT_SUFFIX = ".ckpt.st"
FORMAT_VERSION = 1
DEFAULT_EVERY_SECONDS = 60.0
EVERY_ENV = "UQF_CHECKPOINT_EVERY"

# this process's checkpoint, for the CLI's interrupt message: path, every (seconds between saves), epoch (of the
# latest save or of the checkpoint resumed from; absent while this run has saved none)
_active: dict[str, Any] = {}


def checkpoint_path(output: str | Path) -> Path:
    """Where the checkpoint of a run writing ``output`` lives: ``<output>.ckpt.st`` beside it."""
    p = Path(output)
    return p.with_name(p.name + CHECKPOINT_SUFFIX)


def active_checkpoint() -> dict[str, Any]:
    """What the CLI's interrupt message says about the checkpoint of this process's training run: empty when no
    checkpointing run is under way; else ``path``, ``every`` (seconds between saves), ``exists`` (the file is
    there) and ``epoch`` once this run saved one, or resumed from one."""
    path = _active.get("path")
    if path is None:
        return {}
    found = {**_active, "exists": Path(path).exists()}
    if found.pop("trainer", False):  # the HF Trainer's folder exists from the start; a complete checkpoint counts
        last = TrainerCheckpoints.complete_in(Path(path))
        found["exists"] = last is not None
        if last is not None:
            found["epoch"] = f"step {last.name.rsplit('-', 1)[-1]}"
    elif "epoch" in found:
        found["epoch"] = f"epoch {found['epoch']}"
    return found


# ----------------------------------------------------------------------------------------------
# Checkpointer: when to save, where, and whether a saved one belongs to this run
# ----------------------------------------------------------------------------------------------


class Checkpointer:
    """Saves and loads the checkpoint of one run writing ``output``.

    ``parameters`` and ``inputs`` identify the run: pass the stage's key parameters (those that
    change the result; not ``device``) and its input paths, as for :func:`make_provenance`.
    """

    def __init__(
        self,
        output: str | Path,
        stage: str,
        parameters: Mapping[str, Any],
        inputs: Mapping[str, str | Path | None] | None = None,
        resume: bool = False,
        every_seconds: float | None = None,
    ) -> None:
        self.path = checkpoint_path(output)
        self.resume = resume
        self.identity = run_identity(stage, parameters, inputs)
        self.every_seconds = _every_seconds() if every_seconds is None else every_seconds
        self._last_save = time.monotonic()
        self._save_failed = False
        _active.clear()
        _active.update(path=str(self.path), every=self.every_seconds)

    # -- loading ----------------------------------------------------------------------------

    def load(self) -> Snapshot | None:
        """The saved snapshot if ``resume`` and one exists for this run; ``None`` to start fresh.

        Raises :class:`InputError` (exit 2) if the checkpoint is unreadable or from another run.
        """
        if not self.path.exists():
            if self.resume:
                runtime.warn(f"--resume: no checkpoint at {self.path}; starting from the beginning")
            return None
        if not self.resume:
            runtime.warn(f"ignoring the checkpoint {self.path} of an earlier interrupted run (pass --resume to "
                         "continue it); this run will overwrite it")
            return None
        tensors, metadata = load_tensors(self.path)
        if metadata.get("uqf_kind") != CHECKPOINT_KIND:
            raise InputError(self.path, "not a uqf checkpoint")
        saved = meta_json(self.path, metadata, "identity")
        mismatch = _identity_mismatch(saved, self.identity)
        if mismatch:
            raise InputError(self.path, f"checkpoint is from a different run ({mismatch}); rerun without --resume "
                                        "to start over")
        snap = Snapshot(
            epoch=int(meta_json(self.path, metadata, "epoch")),
            step=int(meta_json(self.path, metadata, "step")),
            tensors=tensors,
            meta=meta_json(self.path, metadata, "layout"),
            state=meta_json(self.path, metadata, "state"),
        )
        runtime.info(f"resuming from {self.path} (epoch {snap.epoch} done)")
        _active["epoch"] = snap.epoch
        return snap

    # -- saving -----------------------------------------------------------------------------

    def save(self, snapshot: Snapshot) -> Path:
        """Write ``snapshot`` atomically, replacing the previous checkpoint."""
        metadata = {
            "uqf_kind": CHECKPOINT_KIND,
            "format_version": FORMAT_VERSION,
            "identity": self.identity,
            "epoch": snapshot.epoch,
            "step": snapshot.step,
            "layout": snapshot.meta,
            "state": snapshot.state,
        }
        # json.dumps directly: io.to_json would turn NaN/inf into null and change the resumed state
        encoded = {k: json.dumps(v, allow_nan=True) for k, v in metadata.items() if k != "uqf_kind"}
        save_tensors(self.path, snapshot.tensors, {"uqf_kind": CHECKPOINT_KIND, **encoded}, force=True)
        self._last_save = time.monotonic()
        _active.update(path=str(self.path), epoch=snapshot.epoch)
        return self.path

    def epoch_done(self, epoch: int, snapshot: Callable[[], Snapshot], last: bool = False) -> None:
        """Call at the end of each epoch: saves when due (not after the last epoch: the output follows).

        ``snapshot`` is only called when a save happens (capturing copies every tensor). Saving is best effort:
        a checkpoint that cannot be written (a full disk, a read-only folder) warns once, naming the file, and
        training goes on; the next save is tried after another interval, and the final output is still written.
        """
        due = time.monotonic() - self._last_save >= self.every_seconds
        if not due or last:
            return
        try:
            self.save(snapshot())
        except OSError as e:
            self._last_save = time.monotonic()
            if not self._save_failed:
                self._save_failed = True
                runtime.warn(f"could not write the checkpoint {e.filename or self.path} ({e.strerror or e}); "
                             "training goes on without it (the output is still written at the end)")

    def finish(self) -> None:
        """Remove the checkpoint once the final output is safely written."""
        if self.path.exists():
            self.path.unlink()
        _active.clear()


def run_identity(stage: str, parameters: Mapping[str, Any],
                 inputs: Mapping[str, str | Path | None] | None = None) -> dict[str, Any]:
    """What makes two runs the same run: stage, key parameters (as JSON) and the sha256 of each input."""
    record = make_provenance(stage, parameters, inputs)
    return {
        "stage": stage,
        "parameters": record["parameters"],
        "inputs": {name: entry["sha256"] for name, entry in record["inputs"].items()},
    }


# ----------------------------------------------------------------------------------------------
# Loops that write their own checkpoints: the Hugging Face Trainer (LC-Rec)
# ----------------------------------------------------------------------------------------------


def trainer_checkpoint_dir(output: str | Path) -> Path:
    """Where a Trainer-based run writing ``output`` keeps its checkpoints: ``<output>.ckpt/``."""
    p = Path(output)
    return p.with_name(p.name + ".ckpt")


class TrainerCheckpoints:
    """``--resume`` for the Hugging Face ``Trainer``, which saves and restores its own checkpoints.

    The Trainer writes ``checkpoint-<step>/`` folders (adapter weights as safetensors; optimizer,
    scheduler and RNG states with ``torch.save``) and restores them with
    ``trainer.train(resume_from_checkpoint=...)``. transformers 5.x loads every one of those ``.pt``
    / ``.pth`` files with ``torch.load(..., weights_only=True)`` (trainer.py ``_load_rng_state``,
    ``_load_optimizer_and_scheduler``), so no pickle code runs on resume; ``training_args.bin`` is
    written but never loaded. uqf adds what the Trainer lacks: ``uqf_checkpoint.json`` with the run's
    identity (refused on mismatch, as for :class:`Checkpointer`), a choice of the newest *complete*
    checkpoint (its ``trainer_state.json`` is written last), time-based saving (:meth:`callback`,
    ``UQF_CHECKPOINT_EVERY``) and removal after the output is written.
    """

    IDENTITY_FILE = "uqf_checkpoint.json"

    def __init__(self, output: str | Path, stage: str, parameters: Mapping[str, Any],
                 inputs: Mapping[str, str | Path | None] | None = None, resume: bool = False,
                 every_seconds: float | None = None) -> None:
        self.dir = trainer_checkpoint_dir(output)
        self.resume = resume
        self.identity = run_identity(stage, parameters, inputs)
        self.every_seconds = _every_seconds() if every_seconds is None else every_seconds
        self._save_failed = False

    def prepare(self, main_process: bool = True) -> str | None:
        """Check (and on the main process set up) the checkpoint folder; return what to pass as
        ``resume_from_checkpoint`` (``None``: start from the beginning)."""
        ident_file = self.dir / self.IDENTITY_FILE
        if self.dir.exists() and not self.resume and main_process:
            runtime.warn(f"ignoring the checkpoints in {self.dir} of an earlier interrupted run (pass --resume "
                         "to continue it); this run will replace them")
            shutil.rmtree(self.dir)
        last = None
        if self.resume and self.dir.exists():
            if not ident_file.exists():
                raise InputError(self.dir, f"has no {self.IDENTITY_FILE}: not a uqf checkpoint folder")
            mismatch = _identity_mismatch(read_json(ident_file), self.identity)
            if mismatch:
                raise InputError(self.dir, f"checkpoint is from a different run ({mismatch}); rerun without "
                                           "--resume to start over")
            last = self.last_complete()
        if self.resume and last is None and main_process:
            runtime.warn(f"--resume: no checkpoint in {self.dir}; starting from the beginning")
        if main_process:
            self.dir.mkdir(exist_ok=True)
            write_json(ident_file, self.identity, force=True)
            _active.clear()
            _active.update(path=str(self.dir), every=self.every_seconds, trainer=True)
        if last is not None:
            runtime.info(f"resuming from {last}")
        return None if last is None else str(last)

    def last_complete(self) -> Path | None:
        """The newest ``checkpoint-<step>`` folder whose ``trainer_state.json`` exists."""
        return self.complete_in(self.dir)

    @staticmethod
    def complete_in(folder: Path) -> Path | None:
        """The newest complete ``checkpoint-<step>`` folder in ``folder`` (``None`` if there is none)."""
        done = []
        for d in folder.glob("checkpoint-*"):
            step = d.name.rsplit("-", 1)[-1]
            if d.is_dir() and step.isdigit() and (d / "trainer_state.json").exists():
                done.append((int(step), d))
        return max(done)[1] if done else None

    def callback(self):
        """A ``TrainerCallback`` that asks for a save every ``UQF_CHECKPOINT_EVERY`` seconds (use with
        ``save_strategy="no"``, ``save_total_limit=1``)."""
        from transformers import TrainerCallback

        every = self.every_seconds

        class _SaveEvery(TrainerCallback):
            def __init__(self) -> None:
                self.last = time.monotonic()

            def on_step_end(self, args, state, control, **kwargs):
                if time.monotonic() - self.last >= every:
                    control.should_save = True
                return control

            def on_save(self, args, state, control, **kwargs):
                self.last = time.monotonic()
                return control

        return _SaveEvery()

    def trainer_class(self, trainer: type) -> type:
        """``trainer`` (the HF ``Trainer``) with best-effort checkpoints, as :meth:`Checkpointer.epoch_done`: a
        checkpoint that cannot be written warns once, its incomplete folder is removed and training goes on.

        Single-process runs only: under DDP a save that failed on one rank would leave the others waiting at
        the Trainer's barriers, so there the error still stops the run.
        """
        keeper = self

        class BestEffortCheckpoints(trainer):  # type: ignore[misc, valid-type]
            def _save_checkpoint(self, model, trial):
                try:
                    return super()._save_checkpoint(model, trial)
                except OSError as e:
                    if self.args.world_size > 1:
                        raise
                    keeper.save_failed(e, keeper.dir / f"checkpoint-{self.state.global_step}")

        return BestEffortCheckpoints

    def save_failed(self, error: OSError, folder: Path) -> None:
        """Warn once about a checkpoint that could not be written and remove what it left."""
        shutil.rmtree(folder, ignore_errors=True)
        if not self._save_failed:
            self._save_failed = True
            runtime.warn(f"could not write the checkpoint {error.filename or folder} ({error.strerror or error}); "
                         "training goes on without it (the output is still written at the end)")

    def finish(self) -> None:
        """Remove the checkpoint folder once the final output is written."""
        shutil.rmtree(self.dir, ignore_errors=True)
        _active.clear()


def _identity_mismatch(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """A short description of the first difference between two run identities ('' if equal)."""
    if saved.get("stage") != current["stage"]:
        return f"stage {saved.get('stage')!r}, this is {current['stage']!r}"
    for key in sorted(set(saved.get("parameters", {})) | set(current["parameters"])):
        a, b = saved.get("parameters", {}).get(key), current["parameters"].get(key)
        if a != b:
            return f"{key} was {a!r}, now {b!r}"
    for name in sorted(set(saved.get("inputs", {})) | set(current["inputs"])):
        if saved.get("inputs", {}).get(name) != current["inputs"].get(name):
            return f"input {name!r} has changed"
    return ""


def _every_seconds() -> float:
    """``UQF_CHECKPOINT_EVERY`` as :mod:`uqf_cli.core.env` declares and checks it (garbage is an error there)."""
    from uqf_cli.core.env import checkpoint_every

    return checkpoint_every(DEFAULT_EVERY_SECONDS)
