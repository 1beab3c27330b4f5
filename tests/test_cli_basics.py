"""The `uqf` command itself: help, version, and the demo's orchestration."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from uqf_cli import __version__
from uqf_cli.cli import app
from uqf_cli.demo import STEPS, DemoContext, Step, run_demo

runner = CliRunner()


def test_help_lists_commands() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for name in ("prepare", "embed-text", "demo"):
        assert name in res.output
    assert runner.invoke(app, ["--version"]).output.strip() == f"uqf {__version__}"
    for name in ("prepare", "embed-text", "demo"):
        sub = runner.invoke(app, [name, "--help"])
        assert sub.exit_code == 0 and "--force" in sub.output


def test_commands_are_top_level_functions_registered_in_pipeline_order() -> None:
    """``from uqf_cli.cli.prepare import prepare`` is the command itself: app.py registers these functions."""
    from uqf_cli.cli import demo, embed_text, evaluate, inspect_sids, prepare, recommend, train_gcn

    registered = {c.name: c.callback for c in app.registered_commands}
    modules = {"prepare": prepare, "embed-text": embed_text, "train-gcn": train_gcn, "inspect-sids": inspect_sids,
               "evaluate": evaluate, "recommend": recommend, "demo": demo}
    for name, module in modules.items():
        assert registered[name] is getattr(module, name.replace("-", "_")), name
    assert list(registered) == ["prepare", "embed-text", "train-gcn", "fuse", "quantize", "inspect-sids", "train-rec",
                                "evaluate", "recommend", "demo"]


def test_unknown_command_is_a_usage_error() -> None:
    res = runner.invoke(app, ["no-such-command"])
    assert res.exit_code == 2


def test_demo_steps_run_then_reuse_then_force(tmp_path: Path) -> None:
    runs: list[str] = []

    def count_items(ctx: DemoContext, force: bool) -> dict:
        runs.append("count")
        n = sum(1 for _ in (ctx.path("dataset") / "items.jsonl").open())
        ctx.path("count.json").write_text(json.dumps({"items": n}))
        return {"items": n}

    steps = [STEPS[0], Step("count", ("count.json",), count_items, "count items")]
    wd = tmp_path / "demo"
    first = run_demo(wd, steps=steps)
    assert [r.status for r in first] == ["ran", "ran"]
    assert json.loads((wd / "count.json").read_text()) == {"items": 2420}
    assert [r.status for r in run_demo(wd, steps=steps)] == ["reused", "reused"]
    (wd / "count.json").unlink()
    assert [r.status for r in run_demo(wd, steps=steps)] == ["reused", "ran"]
    assert [r.status for r in run_demo(wd, steps=steps, force=True)] == ["ran", "ran"]
    assert runs == ["count"] * 3


def test_demo_registers_prepare_and_embed_text() -> None:
    assert [s.name for s in STEPS[:2]] == ["prepare", "embed-text"]


def test_demo_cli_rejects_file_workdir(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    res = runner.invoke(app, ["demo", "--workdir", str(f)])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_parser_errors_are_one_line_exit_2(capsys, tmp_path: Path) -> None:
    """Click's own errors (bad option type, unknown option, missing argument) follow our one-line rule."""
    from uqf_cli.cli import run

    cases = [
        (["quantize", "--levels", "abc", str(tmp_path / "e.st"), "-o", str(tmp_path / "s.jsonl")], "--levels"),
        (["fuse", "--no-such-option"], "--no-such-option"),
        (["quantize"], "EMBEDDINGS"),
        (["no-such-command"], "no-such-command"),
    ]
    for args, named in cases:
        assert run(args) == 2, args
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and named in lines[0] and "Traceback" not in err, err
        assert lines[0].startswith("uqf"), lines[0]
    assert not list(tmp_path.iterdir())
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"uqf {__version__}"


def test_quiet_silences_library_progress_bars(monkeypatch) -> None:
    """transformers' "Loading weights" bar must not land in a pipe's stderr or a --quiet run."""
    import transformers.utils.logging as hf_logging

    from uqf_cli.core import runtime

    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")
    hf_logging.enable_progress_bar()
    try:
        runtime.configure(quiet=True)
        assert not hf_logging.is_progress_bar_enabled()
        import os

        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    finally:
        runtime.configure(quiet=False)
        hf_logging.enable_progress_bar()


def test_train_rec_refuses_an_option_the_backbone_does_not_use(tmp_path) -> None:
    """An option of another backbone is one clear line and exit code 2, before any data is read."""
    from uqf_cli.cli import run

    args = ["train-rec", str(tmp_path / "no-ds"), "-o", str(tmp_path / "m")]
    assert run([*args, "--backbone", "sasrec", "--lora-r", "4"]) == 2
    assert run([*args, "--backbone", "pop", "--epochs", "3"]) == 2
    assert not (tmp_path / "m").exists()
