"""Training checkpoints for ``--resume``: safetensors + JSON, no pickle.

Why: train-gcn, fuse, quantize and train-rec can run for many minutes; a Ctrl-C, a kill or a lost
machine should not throw that work away. Each long stage saves a checkpoint next to its output and
``--resume`` continues from it. A resumed run gives **the same final output** as an uninterrupted
run with the same seed on CPU, because the checkpoint holds everything the next epoch depends on:

* model weights (``module.<name>.<param>``) and any extra tensors the loop keeps, such as the best
  weights so far (``tensor.<name>``);
* optimizer state, flattened: every tensor of ``optimizer.state_dict()["state"]`` (Adam/AdamW's
  ``step``, ``exp_avg``, ``exp_avg_sq``) becomes ``optim.<name>.<param index>.<key>``; the
  non-tensor parts (``param_groups`` with their hyper-parameters, scalar state) go into JSON;
* scheduler state (``scheduler.state_dict()`` is plain numbers: JSON; ``LambdaLR``'s lambdas are not
  saved, they come from the code that builds the scheduler);
* random-number generators: each ``torch.Generator`` the loop draws from (its state is a uint8
  tensor), each ``numpy.random.Generator`` (its bit generator's state: a dict of ints, JSON), the
  global torch CPU (and CUDA) generators, NumPy's and Python's global generators
  (NumPy's key array as a tensor, the rest JSON);
* the epoch/step counters and a JSON ``state`` dict for the loop's own bookkeeping (best metric so
  far, epochs without improvement, training curve).

File: ``<output>.ckpt.st`` (:func:`checkpoint_path`), a safetensors file written atomically
(:func:`uqf_cli.io.save_tensors`), so an interrupted save never leaves a torn checkpoint. It is
saved at the end of an epoch when at least ``UQF_CHECKPOINT_EVERY`` seconds (default 60; 0 = every
epoch) have passed since the last save, and removed once the final output has been written.

Identity: the checkpoint records the stage, its key parameters and the sha256 of its inputs
(:func:`uqf_cli.io.make_provenance`). ``--resume`` refuses (one line, exit 2) a checkpoint whose
identity differs from the current command's: continuing someone else's optimizer state would give
an output that matches neither run. Without ``--resume`` an existing checkpoint is ignored with a
warning and overwritten by the new run's first save.

Test hook: ``UQF_TEST_STOP_AFTER_EPOCH=N`` makes :meth:`Checkpointer.epoch_done` save a checkpoint
after epoch ``N`` and raise ``KeyboardInterrupt``, exactly as a Ctrl-C right after that save would.
The tests use it to interrupt a run at a known point and compare the resumed result with an
uninterrupted one.

Typical use in a plain torch loop (AdamW + LambdaLR)::

    ckpt = Checkpointer(output, STAGE, params, inputs={"dataset": ds_dir}, resume=resume)
    first_epoch, saved = 1, ckpt.load()
    if saved is not None:
        saved.restore(modules={"model": model}, optimizers={"adamw": opt}, schedulers={"lr": sched},
                      generators={"gen": gen})
        first_epoch, loop_state = saved.epoch + 1, saved.state
    for epoch in range(first_epoch, epochs + 1):
        ...train one epoch...
        ckpt.epoch_done(epoch, lambda: Snapshot.capture(epoch, modules={"model": model}, ...))
    ...write the output atomically...
    ckpt.finish()
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uqf_cli import runtime
from uqf_cli.errors import InputError
from uqf_cli.io import load_tensors, make_provenance, meta_json, save_tensors

CHECKPOINT_KIND = "checkpoint"
CHECKPOINT_SUFFIX = ".ckpt.st"
FORMAT_VERSION = 1
DEFAULT_EVERY_SECONDS = 60.0
STOP_HOOK_ENV = "UQF_TEST_STOP_AFTER_EPOCH"
STOP_STEP_ENV = "UQF_TEST_STOP_AFTER_STEP"
EVERY_ENV = "UQF_CHECKPOINT_EVERY"

_active: dict[str, Any] = {}  # this process's checkpoint: path, epoch of the latest save (for the CLI's message)


def checkpoint_path(output: str | Path) -> Path:
    """Where the checkpoint of a run writing ``output`` lives: ``<output>.ckpt.st`` beside it."""
    p = Path(output)
    return p.with_name(p.name + CHECKPOINT_SUFFIX)


def active_checkpoint() -> dict[str, Any]:
    """``{"path": ..., "epoch": ...}`` of the checkpoint this process's training run keeps, when that file
    exists (``epoch`` only once this process saved it); empty otherwise. Used by the CLI's interrupt message."""
    path = _active.get("path")
    if path is None or not Path(path).exists():
        return {}
    return dict(_active)


# ----------------------------------------------------------------------------------------------
# Flattening state dicts into tensors + JSON
# ----------------------------------------------------------------------------------------------


def _cpu_copy(t: torch.Tensor) -> torch.Tensor:
    # clone: safetensors refuses tensors that share storage (tied weights, views)
    return t.detach().to("cpu").clone().contiguous()


def flatten_optimizer(prefix: str, state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors named ``<prefix>.<param>.<key>`` and a JSON part."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{param}.{key}"] = _cpu_copy(value)
            else:
                scalars.setdefault(str(param), {})[key] = value
    groups = []
    for group in state_dict["param_groups"]:
        if any(isinstance(v, torch.Tensor) for v in group.values()):
            raise TypeError("optimizer param_groups holding tensors (tensor lr) cannot be checkpointed")
        groups.append(dict(group))
    return tensors, {"param_groups": groups, "scalars": scalars, "params": [str(p) for p in state_dict["state"]]}


def unflatten_optimizer(prefix: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`: a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    head = prefix + "."
    for name, t in tensors.items():
        if not name.startswith(head):
            continue
        param, key = name[len(head):].split(".", 1)
        state.setdefault(int(param), {})[key] = t
    for param, entries in meta.get("scalars", {}).items():
        state.setdefault(int(param), {}).update(entries)
    return {"state": state, "param_groups": [dict(g) for g in meta["param_groups"]]}


def _rng_states() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The global generators' states: torch CPU (+ CUDA), NumPy, Python ``random``."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for k, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{k}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))
    py_version, py_state, py_gauss = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [py_version, list(py_state), py_gauss]}
    return tensors, meta


def _restore_rng(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    py_version, py_state, py_gauss = meta["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))


# ----------------------------------------------------------------------------------------------
# Snapshot: one training state
# ----------------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """A training loop's full state at an epoch boundary, as tensors + JSON."""

    epoch: int
    step: int = 0
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def capture(
        cls,
        epoch: int,
        *,
        step: int = 0,
        modules: Mapping[str, torch.nn.Module] | None = None,
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
        schedulers: Mapping[str, Any] | None = None,
        generators: Mapping[str, torch.Generator] | None = None,
        numpy_generators: Mapping[str, np.random.Generator] | None = None,
        tensors: Mapping[str, torch.Tensor] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> Snapshot:
        """Copy the state of live objects. ``tensors`` are the loop's own (e.g. best weights, as
        ``{"best.<param>": t}``); ``state`` is JSON-able bookkeeping (best metric, curve, counters)."""
        out: dict[str, torch.Tensor] = {}
        meta: dict[str, Any] = {"optimizers": {}, "schedulers": {}, "modules": [], "generators": [],
                                "numpy_generators": {}}
        for name, module in (modules or {}).items():
            for key, t in module.state_dict().items():
                out[f"module.{name}.{key}"] = _cpu_copy(t)
            meta["modules"].append(name)
        for name, opt in (optimizers or {}).items():
            flat, opt_meta = flatten_optimizer(f"optim.{name}", opt.state_dict())
            out.update(flat)
            meta["optimizers"][name] = opt_meta
        for name, sched in (schedulers or {}).items():
            meta["schedulers"][name] = sched.state_dict()
        for name, gen in (generators or {}).items():
            out[f"generator.{name}"] = gen.get_state()
            meta["generators"].append(name)
        for name, np_gen in (numpy_generators or {}).items():
            meta["numpy_generators"][name] = np_gen.bit_generator.state  # plain dict of (big) ints
        for name, t in (tensors or {}).items():
            out[f"tensor.{name}"] = _cpu_copy(t)
        rng_tensors, meta["rng"] = _rng_states()
        out.update(rng_tensors)
        return cls(epoch=epoch, step=step, tensors=out, meta=meta, state=dict(state or {}))

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """The loop's own tensors (``tensors=`` of :meth:`capture`), by their names."""
        return {k[len("tensor."):]: v for k, v in self.tensors.items() if k.startswith("tensor.")}

    def restore(
        self,
        *,
        modules: Mapping[str, torch.nn.Module] | None = None,
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
        schedulers: Mapping[str, Any] | None = None,
        generators: Mapping[str, torch.Generator] | None = None,
        numpy_generators: Mapping[str, np.random.Generator] | None = None,
    ) -> None:
        """Load the saved state into live objects (same names as at capture) and reset the global RNGs."""
        for name, module in (modules or {}).items():
            head = f"module.{name}."
            sd = {k[len(head):]: v for k, v in self.tensors.items() if k.startswith(head)}
            module.load_state_dict(sd)
        for name, opt in (optimizers or {}).items():
            sd = unflatten_optimizer(f"optim.{name}", self.tensors, self.meta["optimizers"][name])
            opt.load_state_dict(sd)  # moves state tensors to each parameter's device
        for name, sched in (schedulers or {}).items():
            sched.load_state_dict(dict(self.meta["schedulers"][name]))
        for name, gen in (generators or {}).items():
            gen.set_state(self.tensors[f"generator.{name}"])
        for name, np_gen in (numpy_generators or {}).items():
            np_gen.bit_generator.state = self.meta["numpy_generators"][name]
        _restore_rng(self.tensors, self.meta["rng"])


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
        self._stop_after = _stop_hook()
        _active.clear()
        _active["path"] = str(self.path)

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

        ``snapshot`` is only called when a save happens (capturing copies every tensor). Honours the
        ``UQF_TEST_STOP_AFTER_EPOCH`` test hook (save, then ``KeyboardInterrupt``).
        """
        stop = self._stop_after is not None and epoch == self._stop_after
        due = time.monotonic() - self._last_save >= self.every_seconds
        if stop or (due and not last):
            self.save(snapshot())
        if stop:
            raise KeyboardInterrupt(f"{STOP_HOOK_ENV}={epoch}")

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

    def prepare(self, main_process: bool = True) -> str | None:
        """Check (and on the main process set up) the checkpoint folder; return what to pass as
        ``resume_from_checkpoint`` (``None``: start from the beginning)."""
        from uqf_cli.io import read_json, write_json

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
            _active["path"] = str(self.dir)
        if last is not None:
            runtime.info(f"resuming from {last}")
        return None if last is None else str(last)

    def last_complete(self) -> Path | None:
        """The newest ``checkpoint-<step>`` folder whose ``trainer_state.json`` exists."""
        done = []
        for d in self.dir.glob("checkpoint-*"):
            step = d.name.rsplit("-", 1)[-1]
            if d.is_dir() and step.isdigit() and (d / "trainer_state.json").exists():
                done.append((int(step), d))
        return max(done)[1] if done else None

    def callback(self):
        """A ``TrainerCallback`` that asks for a save every ``UQF_CHECKPOINT_EVERY`` seconds (use with
        ``save_strategy="no"``, ``save_total_limit=1``), and honours ``UQF_TEST_STOP_AFTER_STEP=N``: save
        after optimizer step N, then ``KeyboardInterrupt``."""
        from transformers import TrainerCallback

        every, stop_after = self.every_seconds, _stop_hook(STOP_STEP_ENV)

        class _SaveEvery(TrainerCallback):
            def __init__(self) -> None:
                self.last = time.monotonic()

            def on_step_end(self, args, state, control, **kwargs):
                if time.monotonic() - self.last >= every or state.global_step == stop_after:
                    control.should_save = True
                return control

            def on_save(self, args, state, control, **kwargs):
                self.last = time.monotonic()
                if state.global_step == stop_after:
                    raise KeyboardInterrupt(f"{STOP_STEP_ENV}={stop_after}")
                return control

        return _SaveEvery()

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
    raw = os.environ.get(EVERY_ENV, "")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_EVERY_SECONDS
    except ValueError:
        return DEFAULT_EVERY_SECONDS


def _stop_hook(env: str = STOP_HOOK_ENV) -> int | None:
    raw = os.environ.get(env, "")
    return int(raw) if raw.strip().isdigit() else None
