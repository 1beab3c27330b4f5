"""`uqf demo --quick` end to end: every stage's file in the work directory, the final table, reuse on rerun."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.demo import FULL, QUICK, STEPS, DemoContext
from uqf_cli.files import read_sids

runner = CliRunner()

EXPECTED_FILES = ("dataset", "text.st", "collab.st", "unified.st", "fuser.st", "sids.jsonl", "quantizer.st", "tiger",
                  "test_metrics.json", "test_predictions.jsonl", "sid_stats.json", "sids.png", "demo.json")


def test_quick_demo_end_to_end_then_reuse(tmp_path: Path) -> None:
    wd = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--quick", "--workdir", str(wd), "--device", "cpu", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [s["name"] for s in out["steps"]] == [s.name for s in STEPS]
    assert all(s["status"] == "ran" for s in out["steps"])
    for name in EXPECTED_FILES:
        assert (wd / name).exists(), name
    # The final figures are the evaluate step's file and the inspect step's summary.
    metrics = json.loads((wd / "test_metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["backbone"] == "tiger" and metrics["users"] > 100
    assert out["test_metrics"] == metrics["metrics"]
    for k in ("recall@5", "recall@10", "ndcg@5", "ndcg@10"):
        assert 0.0 <= out["test_metrics"][k] <= 1.0
    assert out["test_metrics"]["recall@10"] >= out["test_metrics"]["recall@5"]
    assert (wd / "sids.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sids = read_sids(wd / "sids.jsonl")
    assert out["sid_stats"]["items"] == len(sids.item_ids) and out["sid_stats"]["collision_rate"] == 0.0
    # Every command the demo prints is a real `uqf` subcommand with options it accepts (checked by --help).
    for step in out["steps"]:
        words = step["command"].split("#")[0].split()
        assert words[0] == "uqf"
        helptext = runner.invoke(app, [words[1], "--help"], env={"COLUMNS": "300"}).output
        for flag in (w for w in words[2:] if w.startswith("--")):
            assert flag in helptext, (words[1], flag)

    again = runner.invoke(app, ["demo", "--quick", "--workdir", str(wd), "--device", "cpu", "--json", "--quiet"])
    assert again.exit_code == 0, again.output
    second = json.loads(again.output)
    assert all(s["status"] == "reused" for s in second["steps"])
    assert second["test_metrics"] == out["test_metrics"] and second["sid_stats"] == out["sid_stats"]

    # Files made with one budget are never mixed with another's: a full run in the same directory is refused.
    clash = runner.invoke(app, ["demo", "--workdir", str(wd), "--device", "cpu"])
    assert clash.exit_code == 2 and "--force" in clash.output and "Traceback" not in clash.output

    table = runner.invoke(app, ["demo", "--quick", "--workdir", str(wd), "--device", "cpu"], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    for text in ("test recall@10", "test ndcg@5", "collision_rate", "uqf train-rec", "quick budget",
                 f"picture of the SIDs: {wd / 'sids.png'}"):
        assert text in table.output


def test_budgets_and_commands_agree() -> None:
    ctx = DemoContext(Path("w"), budget=FULL)
    by_name = {s.name: s for s in STEPS}
    assert f"--epochs {FULL.tiger['epochs']}" in by_name["train-rec"].command(ctx)
    assert f"--preset {FULL.tiger['preset']}" in by_name["train-rec"].command(ctx)
    assert "--kcore" not in by_name["prepare"].command(ctx)
    quick = DemoContext(Path("w"), budget=QUICK, seed=7)
    assert "--kcore 15 --max-history 10" in by_name["prepare"].command(quick)
    assert "--codebook-size 8,8,8" in by_name["quantize"].command(quick)
    assert "--seed 7" in by_name["fuse"].command(quick)
    assert all(note for note in FULL.notes)


def _script_commands(script: str) -> list[list[str]]:
    """Every `$UQF <subcommand> ...` of a shell script, continuation lines joined, comments dropped."""
    text = script.replace("\\\n", " ")
    return [line.split()[1:] for line in text.splitlines() if line.strip().startswith("$UQF ")]


def test_example_script_uses_real_subcommands_and_options() -> None:
    script = (Path(__file__).resolve().parents[1] / "examples" / "office.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in script
    commands = _script_commands(script)
    steps = [c[0] for c in commands]
    for name in ("prepare", "embed-text", "train-gcn", "fuse", "quantize", "train-rec", "evaluate", "inspect-sids"):
        assert name in steps
    for words in commands:
        helptext = runner.invoke(app, [words[0], "--help"], env={"COLUMNS": "300"}).output
        assert "Usage" in helptext, words[0]
        for flag in (w for w in words[1:] if w.startswith("--")):
            assert flag in helptext, (words[0], flag)


def test_final_tables_stay_readable_at_80_columns() -> None:
    """At 80 columns no output name or summary entry is cut inside a word."""
    from rich.console import Console

    from uqf_cli.cli.demo import results_table, steps_table
    from uqf_cli.demo import DemoResult, StepReport

    wd = Path("uqf-demo")
    steps = [
        StepReport("evaluate", "ran", [str(wd / "test_metrics.json"), str(wd / "test_predictions.jsonl")], 41.5,
                   {"users": 4905, "recall@5": 0.0107, "recall@10": 0.0214, "ndcg@5": 0.0061, "ndcg@10": 0.0095},
                   "", 80.2),
        StepReport("inspect-sids", "ran", [str(wd / "sid_stats.json")], 3.2,
                   {"items": 2420, "levels": 4, "collision_rate": 0.0, "utilisation L1": 1.0,
                    "semantic lift @1": 1.234, "collab adjacency lift @2": None}, "", 3.1),
        StepReport("quantize", "reused", [str(wd / "sids.jsonl"), str(wd / "quantizer.st")], 0.0, {}),
    ]
    result = DemoResult(wd, QUICK, 0, steps, {"recall@5": 0.0107, "ndcg@10": 0.0095},
                        {"items": 2420, "collab adjacency lift @2": None})
    con = Console(width=80, record=True, color_system=None)
    con.print(steps_table(result))
    con.print(results_table(result))
    text = con.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    words = set(text.replace("│", " ").split())
    for step in steps:
        assert f"{step.name}:" in words
        assert all(Path(o).name in words for o in step.outputs), step.outputs
        for key, value in step.summary.items():
            entry = f"{key}={value:,}" if isinstance(value, int) else f"{key}={value}"
            assert all(w.rstrip(",") in {x.rstrip(",") for x in words} for w in entry.split()), entry
    assert "reused" in words and "test ndcg@10" in text and "0.0095" in words
