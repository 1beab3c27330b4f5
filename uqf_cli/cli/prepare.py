"""``uqf prepare SOURCE -o DS``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from uqf_cli.cli.common import cli_command, emit_json
from uqf_cli.cli.options import OutDir, RunOptions, shared_options
from uqf_cli.core import runtime
from uqf_cli.data.prepare import PrepareConfig
from uqf_cli.data.prepare import prepare as prepare_dataset
from uqf_cli.files.outputs import plan_outputs, want


@cli_command
@shared_options("force", "quiet", "json")
def prepare(
    source: Annotated[
        str,
        typer.Argument(help="Source: a directory or file (LC-Rec JSON, RecBole atomic or "
                       "benchmark files, raw Amazon 2018/2023 dumps), or builtin:office (the embedded Office "
                       "dataset)."),
    ],
    output: OutDir,
    cfg: PrepareConfig = PrepareConfig(),
    run: RunOptions = RunOptions(),
) -> None:
    """Prepare a dataset directory (items.jsonl, sequences.jsonl, dataset.json) from public data."""
    with plan_outputs([want(output, "dataset")], {"SOURCE": source}, run.force):
        ds = prepare_dataset(source, output, cfg, force=run.force)
    stats = ds.stats()
    if run.json:
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
