"""benchmarks/ is a package: every script imports as ``benchmarks.<group>.<name>`` without ``sys.path`` edits,
and ``make bench`` (benchmarks.tools.quick) names only quick modes that write under its own folder."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks
from benchmarks.tools import quick

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("speed", "scale", "quality", "tools")


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(benchmarks.__path__, "benchmarks.") if not m.ispkg)


def test_every_script_sits_in_a_group_and_imports_as_a_module() -> None:
    names = _modules()
    assert len(names) >= 20
    assert not [p.name for p in (ROOT / "benchmarks").glob("*.py") if p.name != "__init__.py"]
    for name in names:
        assert name.split(".")[1] in GROUPS, name
        importlib.import_module(name)


def test_no_script_edits_sys_path() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "benchmarks").rglob("*.py")
                 if "sys.path" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_a_script_runs_with_dash_m_from_the_repository_root() -> None:
    res = subprocess.run([sys.executable, "-m", "benchmarks.quality.ablation", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "--budget-minutes" in res.stdout


def test_quick_benchmarks_are_modules_that_exist_and_write_only_under_their_folder(tmp_path: Path) -> None:
    commands = quick.quick_commands(tmp_path)
    known = set(_modules())
    for name, argv in commands.items():
        assert argv[0] in known, name
        paths = [a for a in argv[1:] if "/" in a]
        assert all(Path(a).is_relative_to(tmp_path) for a in paths), name
        assert not any("benchmarks/results" in a for a in argv), name


def test_quick_rejects_an_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown benchmark"):
        quick.run_quick(tmp_path, ["no_such_benchmark"])


def test_recorded_commands_are_repository_relative_and_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.tools.command import command_line

    monkeypatch.setenv("UQF_THREADS", "1")
    line = command_line("benchmarks.quality.cold_start", ["--out", "a b.md"], env=["UQF_THREADS"])
    assert line == "UQF_THREADS=1 python -m benchmarks.quality.cold_start --out 'a b.md'"
