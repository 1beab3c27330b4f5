"""``uqf prepare SOURCE -o DS``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from uqf_cli import runtime
from uqf_cli.commands._common import Force, JsonOut, OutDir, Quiet, cli_command, emit_json, start


def register(app: typer.Typer) -> None:
    @app.command("prepare")
    @cli_command
    def prepare_cmd(
        source: Annotated[
            Path, typer.Argument(help="Source directory (LC-Rec JSON, RecBole atomic or raw Amazon dumps).")
        ],
        output: OutDir,
        fmt: Annotated[str, typer.Option("--format", help="auto | lcrec")] = "auto",
        force: Force = False,
        quiet: Quiet = False,
        json_out: JsonOut = False,
    ) -> None:
        """Prepare a dataset directory (items.jsonl, sequences.jsonl, dataset.json) from public data."""
        from uqf_cli.prepare import prepare

        start(quiet)
        ds = prepare(source, output, fmt=fmt, force=force)
        stats = ds.stats()
        if json_out:
            emit_json({"output": str(output), **stats})
            return
        runtime.stdout_console().print(stats_table(stats, f"{output}"))


def stats_table(stats: dict, title: str) -> Table:
    """The rich table of dataset statistics."""
    t = Table(title=title, show_header=True)
    t.add_column("statistic")
    t.add_column("value", justify="right")
    for k, v in stats.items():
        t.add_row(k.replace("_", " "), f"{v:,}" if isinstance(v, int) else f"{v:.4g}")
    return t
