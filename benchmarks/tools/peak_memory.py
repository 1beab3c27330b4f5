"""Peak resident memory of one command, measured the same way by every memory benchmark.

The command runs in a child process and its peak is that process's own ``ru_maxrss``: the process that
generated the inputs is not counted, and each measurement sees one command only (``RUSAGE_CHILDREN`` of the
benchmark itself keeps the largest child seen so far). Why a small launcher in between: on Linux a process
inherits, at ``exec``, the high-water RSS of the memory it was forked (or vforked) from, so a command
spawned straight from a benchmark holding 1 GiB of inputs would report at least 1 GiB. The launcher
(a bare Python, about 10 MiB) spawns the command and writes its children's rusage to a file.
While the command runs, its high-water mark (``VmHWM`` in ``/proc/PID/status``) can be printed whenever it
grew by 10%: a run that must be stopped still tells how much memory it had needed so far.
Linux only (``ru_maxrss`` in KiB, ``/proc``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LAUNCHER = ("import json, resource, subprocess, sys\n"
            "code = subprocess.call(sys.argv[2:])\n"
            "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "with open(sys.argv[1], 'w') as f:\n"
            "    json.dump([code, u.ru_maxrss, u.ru_utime + u.ru_stime], f)\n")


@dataclass(frozen=True)
class ChildUsage:
    """What one command cost: exit code, wall seconds, CPU seconds (user + system) and peak RSS in MiB."""

    returncode: int
    wall_s: float
    cpu_s: float
    peak_mib: float


def high_water_mib(pid: int) -> float:
    """The process's high-water RSS so far (``VmHWM``) in MiB; 0 when it cannot be read (gone, not Linux)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        return next(int(ln.split()[1]) for ln in lines if ln.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError, IndexError):
        return 0.0


def command_pid(launcher_pid: int) -> int | None:
    """The pid of the command the launcher started (its one child), or None while there is none."""
    try:
        children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def run_measured(cmd: Sequence[str], *, stdout: IO | int | None = None, stderr: IO | int | None = None,
                 env: dict[str, str] | None = None, cwd: Path | None = None, watch: str | None = None,
                 every: float = 0.5) -> ChildUsage:
    """Run ``cmd`` to its end and measure it; with ``watch`` (a label), print its growing high-water RSS."""
    with tempfile.TemporaryDirectory(prefix="uqf_peak_") as tmp:
        report = Path(tmp) / "usage.json"
        t0 = time.perf_counter()
        launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(report), *cmd], stdout=stdout,
                                    stderr=stderr, env=env, cwd=cwd)
        shown = 0.0
        while watch and launcher.poll() is None:
            pid = command_pid(launcher.pid)
            hwm = high_water_mib(pid) if pid else 0.0
            if hwm > shown * 1.1:
                shown = hwm
                print(f"  [{time.perf_counter() - t0:6.0f} s] {watch} high-water RSS so far {hwm:,.0f} MiB",
                      flush=True)
            time.sleep(every)
        launcher.wait()
        wall = time.perf_counter() - t0
        if not report.exists():
            raise RuntimeError(f"the measuring launcher failed (exit code {launcher.returncode}) for {cmd[0]}")
        code, maxrss_kib, cpu = json.loads(report.read_text())
    return ChildUsage(returncode=code, wall_s=wall, cpu_s=cpu, peak_mib=maxrss_kib / 1024)
