"""benchmarks.tools.peak_memory: the one helper the memory benchmarks measure a child's peak RSS with."""

from __future__ import annotations

import subprocess
import sys
import tempfile

import pytest

from benchmarks.tools.peak_memory import run_measured

ALLOCATE = "import sys; block = bytearray(int(sys.argv[1]) * 2**20); block[::4096] = b'x' * len(block[::4096])"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB and /proc: Linux")


def test_peak_follows_what_the_child_allocated_not_the_largest_child_so_far() -> None:
    big = run_measured([sys.executable, "-c", ALLOCATE, "300"])
    small = run_measured([sys.executable, "-c", ALLOCATE, "1"])
    assert big.returncode == 0 and small.returncode == 0
    assert big.peak_mib >= 300 > small.peak_mib
    assert big.peak_mib - small.peak_mib >= 250


def test_the_benchmark_s_own_memory_is_not_counted() -> None:
    """Linux hands a child the high-water RSS of the memory it was spawned from; the launcher keeps it out."""
    ballast = bytearray(400 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])
    small = run_measured([sys.executable, "-c", ALLOCATE, "1"])
    assert small.returncode == 0 and small.peak_mib < 150
    del ballast


def test_watching_reports_the_same_peak_and_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryFile("w+") as err:
        usage = run_measured([sys.executable, "-c", ALLOCATE + "; sys.exit(3)", "200"], stderr=err,
                             watch="child", every=0.05)
    assert usage.returncode == 3 and usage.peak_mib >= 200
    assert usage.wall_s > 0 and usage.cpu_s >= 0


def test_output_goes_where_it_is_sent() -> None:
    with tempfile.TemporaryFile("w+") as out:
        usage = run_measured([sys.executable, "-c", "print('hello')"], stdout=out, stderr=subprocess.DEVNULL)
        out.seek(0)
        assert out.read() == "hello\n" and usage.returncode == 0
