"""Worker processes of a benchmark runner: ``python -m MODULE ARGV... --worker TASK...``, ``jobs`` at a time.

A runner (``ablation.py``, ``hybrid_office.py``) re-invokes itself with its own arguments and a hidden
``--worker`` tail naming one task; each worker writes its own records, so the pool only starts processes,
logs one line when each starts and ends, and fails the run at the end when any worker failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def share_threads(jobs: int) -> int:
    """Each of ``jobs`` workers' torch threads: the run's (``UQF_THREADS``, else torch's default) split between
    them, at least 1 (more threads than cores made LC-Rec workers about 15x slower)."""
    import torch

    from uqf_cli.core.env import threads

    return max(1, (threads() or torch.get_num_threads()) // jobs)


def worker_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker: the repository root first on PYTHONPATH so ``-m MODULE`` imports from any cwd;
    ``extra`` variables (e.g. the worker's ``UQF_THREADS``) on top."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def strip_worker(argv: list[str]) -> list[str]:
    """The invocation's arguments without a ``--worker ...`` tail (workers get their own)."""
    return argv[:argv.index("--worker")] if "--worker" in argv else argv


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_parallel(tasks: Sequence[list[str]], *, module: str, argv: Sequence[str], jobs: int, logs: Path, label: str,
                 env: Mapping[str, str] | None = None,
                 then: Callable[[list[str]], list[list[str]]] | None = None) -> None:
    """Run ``python -m MODULE ARGV... --worker TASK`` for each task (``TASK[1]`` names it), ``jobs`` at a time.

    ``then(task)``, called when a task ends well, returns the tasks it made ready (a dependency met); they start
    before the remaining ones. Each worker's output goes to ``logs/<name>.<action>.log``; exits with an error
    naming the failed tasks once every started task has ended."""
    pending, running, failed = list(tasks), [], []
    logs.mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and len(running) < jobs:
            task = pending.pop(0)
            log = open(logs / f"{task[1]}.{task[0]}.log", "w", encoding="utf-8")  # noqa: SIM115 (closed when it ends)
            cmd = [sys.executable, "-m", module, *argv, "--worker", *task]
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=worker_env(env))
            running.append((task, proc, log, time.time()))
            progress(f"{label}: started {task[1]}")
        time.sleep(0.5)
        for item in list(running):
            task, proc, log, started = item
            if proc.poll() is None:
                continue
            running.remove(item)
            log.close()
            took = (time.time() - started) / 60
            if proc.returncode:
                failed.append(task[1])
                progress(f"{label}: {task[1]} FAILED (exit {proc.returncode}, {took:.1f} min; see {log.name})")
            else:
                progress(f"{label}: finished {task[1]} ({took:.1f} min)")
                if then is not None:
                    pending[:0] = then(task)
    if failed:
        sys.exit(f"error: {len(failed)} unit(s) failed: {', '.join(failed)} (logs in {logs})")
