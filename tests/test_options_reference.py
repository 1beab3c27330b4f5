"""docs/options.md is generated from the app's option declarations and must be current."""

from pathlib import Path

from uqf_cli.cli.app import app
from uqf_cli.cli.reference import options_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "options.md"


def test_options_reference_is_current():
    assert DOC.read_text(encoding="utf-8") == options_reference(app), (
        "docs/options.md is stale: run `.venv/bin/python -m uqf_cli.cli.reference > docs/options.md`")


def test_every_command_and_a_declared_option_appear():
    text = options_reference(app)
    for name in ("prepare", "embed-text", "train-gcn", "fuse", "quantize", "inspect-sids", "train-rec",
                 "evaluate", "recommend"):
        assert f"## `uqf {name}`" in text
    assert "| `--codebook-size` |" in text and "| `--epochs` |" in text
