"""``uqf prepare SOURCE -o DS``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from uqf_cli.cli.common import emit_json
from uqf_cli.cli.options import OutDir, RunOptions, command, function_defaults
from uqf_cli.core import runtime
from uqf_cli.data.prepare import prepare
from uqf_cli.files.outputs import plan_outputs, want

_P = function_defaults(prepare)


def register(app: typer.Typer) -> None:
    @command(app, "prepare", "force", "quiet", "json")
    def prepare_cmd(
        source: Annotated[
            str,
            typer.Argument(help="Source: a directory or file (LC-Rec JSON, RecBole atomic or "
                           "benchmark files, raw Amazon 2018/2023 dumps), or builtin:office (the embedded Office "
                           "dataset)."),
        ],
        output: OutDir,
        fmt: Annotated[
            str, typer.Option("--format", help="auto | lcrec | recbole | recbole-benchmark | "
                              "amazon2018 | amazon2023")
        ] = _P["fmt"],
        kcore: Annotated[
            int | None,
            typer.Option("--kcore", help="Iterative k-core; 0 = off. Default: 5 for raw Amazon dumps, off otherwise."),
        ] = _P["kcore_k"],
        dedup: Annotated[
            bool | None,
            typer.Option("--dedup/--no-dedup", help="Keep only the first (user, item) interaction. Default: on for "
                         "raw dumps and RecBole atomic files, off for LC-Rec and benchmark files."),
        ] = _P["dedup"],
        max_history: Annotated[
            int | None, typer.Option("--max-history", help="Keep each user's last N interactions.")
        ] = _P["max_history"],
        run: RunOptions = RunOptions(),
    ) -> None:
        """Prepare a dataset directory (items.jsonl, sequences.jsonl, dataset.json) from public data."""
        with plan_outputs([want(output, "dataset")], {"SOURCE": source}, run.force):
            ds = prepare(source, output, fmt=fmt, force=run.force, kcore_k=kcore, dedup=dedup,
                         max_history=max_history)
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
