"""What a new user meets first: help text, shell completion, pipes, argument-order and file-kind hints,
dataset mismatches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from conftest import make_dataset
from rich.console import Console
from typer.testing import CliRunner

from uqf_cli.cli import app, run
from uqf_cli.core.errors import InputError
from uqf_cli.files import SidTable, make_provenance, save_embeddings, write_sids
from uqf_cli.rec import BACKBONES

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def uqf(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """``uqf ARGS`` in a fresh process, as a shell runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "UQF_THREADS": "1", "NO_COLOR": "1", **kwargs.pop("env", {})}
    return subprocess.run([sys.executable, "-m", "uqf_cli", *args], capture_output=True, text=True, env=env,
                          **kwargs)


def commands() -> dict[str, object]:
    group = typer.main.get_command(app)
    return {name: group.commands[name] for name in group.commands}


def option_line(help_text: str, flag: str) -> str:
    """The help line that lists ``flag``."""
    return next(line for line in help_text.splitlines() if line.strip(" │*").startswith(flag))


# -- help --------------------------------------------------------------------------------------------------


def test_usage_lines_name_arguments_in_capitals() -> None:
    for name in ("prepare", "evaluate", "quantize", "inspect-sids"):
        res = runner.invoke(app, [name, "--help"], env={"COLUMNS": "120"})
        usage = next(line for line in res.output.splitlines() if "Usage:" in line)
        assert "{" not in usage, usage
    assert "uqf evaluate [OPTIONS] MODEL_DIR DATASET" in runner.invoke(app, ["evaluate", "--help"],
                                                                       env={"COLUMNS": "120"}).output


def test_every_option_of_every_command_is_described() -> None:
    for name, command in commands().items():
        for param in command.params:
            assert (getattr(param, "help", None) or "").strip(), f"uqf {name} {param.opts[0]} has no help"


def test_backbone_help_lists_the_registry_and_epochs_is_not_a_float() -> None:
    out = runner.invoke(app, ["train-rec", "--help"], env={"COLUMNS": "200"}).output
    backbone_line = option_line(out, "--backbone")
    for backbone in BACKBONES:
        assert backbone in backbone_line, backbone
    epochs_line = option_line(out, "--epochs")
    assert "<int>" in epochs_line and "<float>" not in epochs_line and "lcrec" in epochs_line


def test_tiger_refuses_fractional_epochs_with_the_reason(tmp_path: Path, capsys) -> None:
    assert run(["train-rec", str(tmp_path), "-o", str(tmp_path / "m"), "--epochs", "1.5"]) == 2
    assert "whole epochs" in capsys.readouterr().err


def test_fuse_marks_the_inputs_training_needs() -> None:
    out = runner.invoke(app, ["fuse", "--help"], env={"COLUMNS": "200"}).output
    for flag in ("--collab", "--dataset"):
        line = option_line(out, flag)
        assert "Required to train" in line, line


# -- completion ----------------------------------------------------------------------------------------------


def test_shell_completion_script_and_completions() -> None:
    # `--show-completion` detects the shell from the process tree (shellingham), which a test runner under make or
    # nohup need not have: the script itself comes from Typer for an explicit shell, and `--help` offers both flags.
    from typer.completion import get_completion_script

    assert "_UQF_COMPLETE=complete_bash" in get_completion_script(prog_name="uqf", complete_var="_UQF_COMPLETE",
                                                                  shell="bash")
    helped = uqf("--help", env={"COLUMNS": "200"}).stdout
    assert "--install-completion" in helped and "--show-completion" in helped
    env = {"_UQF_COMPLETE": "complete_bash", "COMP_WORDS": "uqf ins", "COMP_CWORD": "1"}
    assert uqf(env=env).stdout.split() == ["inspect-sids"]
    env = {"_UQF_COMPLETE": "complete_bash", "COMP_WORDS": "uqf quantize --code", "COMP_CWORD": "2"}
    assert set(uqf(env=env).stdout.split()) == {"--codebook-size", "--code-dim"}


# -- pipes ---------------------------------------------------------------------------------------------------


def big_sids(path: Path) -> Path:
    """Unique SIDs of 4,096 items: the tree below prints far more than a pipe buffer holds."""
    codes = np.array([[i // 256, (i // 16) % 16, i % 16] for i in range(4096)])
    return write_sids(path, SidTable([f"item{i}" for i in range(4096)], codes, [16, 16, 16]))


def test_output_into_a_closed_pipe_ends_quietly_with_0(tmp_path: Path) -> None:
    sids = big_sids(tmp_path / "sids.jsonl")
    env = {**os.environ, "PYTHONPATH": str(REPO), "UQF_THREADS": "1", "NO_COLOR": "1"}
    script = f"set -o pipefail; {sys.executable} -m uqf_cli inspect-sids {sids} --depth 3 --top 16 | head -n 2"
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 2 and res.stderr == ""
    script = f"set -o pipefail; {sys.executable} -m uqf_cli train-rec --help | head -n 1"
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert res.returncode == 0 and res.stderr == "", res.stderr


# -- evaluate's table ----------------------------------------------------------------------------------------


def test_evaluate_table_keeps_title_and_caption_whole_and_no_absurd_speed() -> None:
    from uqf_cli.cli.evaluate import metrics_table
    from uqf_cli.evaluation.evaluate import users_per_second

    assert users_per_second(4905, 0.0004) is None
    assert users_per_second(4905, 10.0) == 490.5
    result = {"backbone": "popularity", "split": "test", "users": 4905, "beam_size": 20, "users_per_second": None,
              "metrics": {"recall@10": 0.01}}
    console = Console(width=80, record=True, no_color=True)
    console.print(metrics_table(result))
    text = console.export_text()
    assert "popularity on test" in text and "4,905 users, beam 20, ranked in under 0.1 s" in text
    assert "users/s" not in text


# -- hints ---------------------------------------------------------------------------------------------------


def test_swapped_model_and_dataset_are_named(tmp_path: Path, capsys) -> None:
    ds = make_dataset(tmp_path / "ds")
    model = tmp_path / "pop"
    assert run(["train-rec", str(ds), "-o", str(model), "--backbone", "pop", "--quiet"]) == 0
    capsys.readouterr()
    for command in ("evaluate", "recommend"):
        extra = ["--history", "1"] if command == "recommend" else []
        assert run([command, str(ds), str(model), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "swapped" in err, err
    from uqf_cli.data.dataset import Dataset
    from uqf_cli.evaluation.evaluate import check_argument_order

    with pytest.raises(InputError, match=r"look swapped \(uqf evaluate MODEL_DIR DATASET"):
        check_argument_order(ds, model)
    with pytest.raises(InputError, match="is a model directory, not a dataset directory"):
        Dataset.load(model)  # any command that reads the model as its dataset
    assert run(["evaluate", str(ds), str(ds)]) == 2
    assert "is a dataset directory, not a model directory" in capsys.readouterr().err


def test_json_lines_given_as_safetensors_is_named(tmp_path: Path, capsys) -> None:
    sids = big_sids(tmp_path / "sids.jsonl")
    assert run(["quantize", str(sids), "-o", str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "looks like JSON lines, expected a safetensors file" in err and "header" not in err


def test_embeddings_of_more_items_than_the_dataset_need_allow_subset(tmp_path: Path, capsys) -> None:
    full = make_dataset(tmp_path / "full", n_items=12)
    subset = make_dataset(tmp_path / "subset", n_items=6, seed=1)  # items 0-5 of the 12
    ids = [str(i) for i in range(12)]
    g = torch.Generator().manual_seed(0)
    fp = (full / "dataset.json").read_text()  # fingerprints of the full dataset: made from it
    from uqf_cli.data.dataset import Dataset

    fingerprint = Dataset.load(full).fingerprint
    assert fp
    for name, modality in (("text.st", "text"), ("collab.st", "collab")):
        save_embeddings(tmp_path / name, torch.randn(12, 8, generator=g), ids, make_provenance("test", {}),
                        modality, dataset_fingerprint=fingerprint)
    args = ["fuse", "--text", str(tmp_path / "text.st"), "--collab", str(tmp_path / "collab.st"), "--dataset",
            str(subset), "--method", "concat", "-o", str(tmp_path / "u.st"), "--quiet"]
    assert run(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and "6 of its 12 items are not in dataset" in err[0] and "--allow-subset" in err[0]
    assert not (tmp_path / "u.st").exists()
    assert run([*args, "--allow-subset"]) == 0
    from uqf_cli.files import load_embeddings

    assert len(load_embeddings(tmp_path / "u.st").item_ids) == 12
