"""``uqf demo [--workdir DIR]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from uqf_cli import runtime
from uqf_cli.commands._common import Device, Force, JsonOut, Quiet, cli_command, emit_json, start


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @cli_command
    def demo_cmd(
        workdir: Annotated[
            Path, typer.Option("--workdir", "-w", help="Where the demo writes its files.", file_okay=False)
        ] = Path("uqf-demo"),
        force: Force = False,
        device: Device = "auto",
        quiet: Quiet = False,
        json_out: JsonOut = False,
    ) -> None:
        """Run the pipeline on the embedded Office dataset (reuses finished steps unless --force)."""
        from uqf_cli.demo import run_demo

        start(quiet)
        reports = run_demo(workdir, force=force, device=device)
        if json_out:
            emit_json({"workdir": str(workdir), "steps": [r.__dict__ for r in reports]})
            return
        t = Table(title=escape(f"uqf demo in {workdir}"))
        t.add_column("step")
        t.add_column("status")
        t.add_column("output", overflow="fold")
        t.add_column("result", overflow="fold")
        t.add_column("seconds", justify="right")
        for r in reports:
            result = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in r.summary.items())
            t.add_row(r.name, r.status, escape("\n".join(r.outputs)), escape(result) or "-", f"{r.seconds:.1f}")
        runtime.stdout_console().print(t)
        runtime.stdout_console().print(
            escape(f"all files are in {workdir}/ (the output column); a rerun reuses them, --force redoes every step"),
            soft_wrap=True,
        )
