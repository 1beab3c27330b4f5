"""The README's quick start and its notebook section, run as written on a fresh virtualenv layout.

Cheaply: the quick start's ``make`` lines are dry runs (``make -n``: the target exists and runs what the
README says), every other line runs for real in bash, in a directory holding a fresh ``.venv`` (made by
``venv``, with the ``uqf`` entry point pyproject.toml declares) and a small ``uqf-demo/`` made from a
synthetic dataset; the notebook cells run verbatim in a fresh interpreter on that ``uqf-demo/``. A
README that names a missing option, file, function or argument fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import make_dataset

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def section(title: str) -> str:
    """The README text under ``## title`` up to the next ``## `` heading."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def command_lines(block: str) -> list[str]:
    """The block's commands, comments dropped."""
    lines = [line.split(" #")[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def fresh_venv(where: Path) -> Path:
    """A new virtualenv whose ``bin/uqf`` is the console script pyproject.toml declares, run by this
    interpreter (which has the dependencies) on this checkout: what ``pip install -e .`` leaves behind."""
    env_dir = where / ".venv"
    venv.create(env_dir, with_pip=False, symlinks=True)
    scripts = re.search(r"^\[project\.scripts\]\n(.*?)(?=^\[)", (REPO / "pyproject.toml").read_text(),
                        flags=re.S | re.M)
    assert scripts, "pyproject.toml declares no [project.scripts]"
    entry = re.search(r'^uqf\s*=\s*"([\w.]+):(\w+)"', scripts.group(1), flags=re.M)
    assert entry, "pyproject.toml declares no uqf console script"
    module, function = entry.groups()
    script = env_dir / "bin" / "uqf"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                      f"from {module} import {function}\nsys.exit({function}())\n")
    script.chmod(0o755)
    return env_dir


def small_demo_dir(where: Path) -> Path:
    """``uqf-demo/`` as ``make demo`` leaves it, in small: dataset, text.st, sids.jsonl (real writers)."""
    from test_catalogue import FakeEncoder

    from uqf_cli.embed import embed_text
    from uqf_cli.quantize import quantize

    demo = where / "uqf-demo"
    demo.mkdir()
    make_dataset(demo / "dataset", n_users=60, n_items=40)
    embed_text(demo / "dataset", demo / "text.st", encoder=FakeEncoder())
    quantize(demo / "text.st", demo / "sids.jsonl", method="rqkmeans")
    return demo


def run_env(where: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(UQF_THREADS="1", HF_HUB_OFFLINE="1", NO_COLOR="1", PYTHONPATH=str(REPO), HOME=str(where))
    return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("readme")
    fresh_venv(where)
    small_demo_dir(where)
    return where


def test_quick_start_runs_as_written(workdir: Path) -> None:
    blocks = code_blocks(section("Quick start"), "bash")
    assert blocks, "the quick start has no bash block"
    lines = [line for block in blocks for line in command_lines(block)]
    shell = []
    for line in lines:
        if line.startswith("make "):
            target = shlex.split(line)[1]
            dry = subprocess.run(["make", "-n", "-C", str(REPO), target, f"VENV={workdir / '.venv'}"],
                                 capture_output=True, text=True, env=run_env(workdir))
            assert dry.returncode == 0, f"{line}: {dry.stderr}"
            assert {"demo": "bin/uqf demo", "test": "pytest"}.get(target, "") in dry.stdout, dry.stdout
        else:
            shell.append(line)
    assert any(line.startswith((". .venv/bin/activate", "source .venv/bin/activate")) for line in shell), \
        "the quick start must say how to put uqf on the PATH"
    script = "set -euo pipefail\n" + "\n".join(shell) + "\n"
    res = subprocess.run(["bash", "-c", script], cwd=workdir, capture_output=True, text=True, env=run_env(workdir))
    assert res.returncode == 0, f"quick start failed:\n{script}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    from uqf_cli import __version__

    assert f"uqf {__version__}" in res.stdout


def test_quick_start_names_the_venv_binary_for_shells_without_activation(workdir: Path) -> None:
    """The README's other way, ``.venv/bin/uqf``, works without activating."""
    assert ".venv/bin/uqf" in section("Quick start")
    res = subprocess.run([".venv/bin/uqf", "--version"], cwd=workdir, capture_output=True, text=True,
                         env=run_env(workdir))
    assert res.returncode == 0 and res.stdout.startswith("uqf "), res.stderr


def test_notebook_section_runs_as_written(workdir: Path) -> None:
    blocks = code_blocks(section("From a notebook"), "python")
    assert len(blocks) == 1, "one python block in the notebook section"
    code = blocks[0]
    res = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True,
                         env=run_env(workdir), timeout=900)
    assert res.returncode == 0, f"notebook section failed:\n{res.stderr[-3000:]}"
    printed = res.stdout.splitlines()
    assert printed[0].startswith("Dataset(uqf-demo/dataset: 40 items, 60 users")
    assert printed[1].startswith("QuantizeResult(40 items, ") and len(printed[1]) < 200
    assert "recall@10" in printed[2]
    for output in ("nb/collab.st", "nb/unified.st", "nb/sids.jsonl", "nb/tiger/uqf_model.json"):
        assert (workdir / output).exists(), output
