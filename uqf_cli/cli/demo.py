"""``uqf demo [--workdir DIR] [--quick]``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from uqf_cli.cli.common import cli_command, emit_json
from uqf_cli.cli.options import RunOptions, shared_options
from uqf_cli.core import runtime
from uqf_cli.demo import DEFAULT_WORKDIR

if TYPE_CHECKING:
    from uqf_cli.demo import DemoResult


@cli_command
@shared_options("seed", "force", "device", "quiet", "json")
def demo(
    workdir: Annotated[
        Path, typer.Option("--workdir", "-w", help="Where the demo writes its files.", file_okay=False)
    ] = DEFAULT_WORKDIR,
    quick: Annotated[bool, typer.Option("--quick", help="A tiny budget (Office 15-core, tiny models): checks "
                                        "that the pipeline works in about a minute; numbers mean nothing.")
                     ] = False,
    run: RunOptions = RunOptions(),
) -> None:
    """Run the whole pipeline on the embedded Office dataset: prepare, embed-text, train-gcn, fuse, quantize,
    train-rec (TIGER), evaluate (test), inspect-sids, a picture of the SIDs (sids.png). Reuses finished steps
    unless --force."""
    from uqf_cli.demo import PICTURE, run_demo
    from uqf_cli.files.outputs import Output, OutputPlan

    with OutputPlan([Output(workdir, "demo", "--workdir")]):  # a lock only: each step checks its own outputs
        result = run_demo(workdir, force=run.force, device=run.device, seed=run.seed, quick=quick)
    if run.json:
        emit_json(result.as_dict())
        return
    con = runtime.stdout_console()
    con.print(steps_table(result))
    con.print(results_table(result))
    con.print(escape("budget: " + "; ".join(result.budget.notes)), soft_wrap=True)
    con.print("\nthe same pipeline in the shell (examples/office.sh is the commented version):")
    for r in result.steps:
        if r.command:
            con.print(escape(r.command), soft_wrap=True, highlight=False)
    picture = workdir / PICTURE
    if picture.exists():
        con.print(escape(f"\npicture of the SIDs: {picture}"), soft_wrap=True)
    con.print(escape(f"\nall files are in {workdir}/; a rerun reuses them, --force redoes every step"),
              soft_wrap=True)


def steps_table(result: DemoResult) -> Table:
    """One row per step: the step and its outputs (inside the work directory), a short summary (or
    ``reused``) and the wall and CPU seconds. Values wrap between entries, so 80 columns suffice."""
    t = Table(title=escape(f"uqf demo in {result.workdir} ({result.budget.name} budget, seed {result.seed}, "
                           f"{result.seconds:.0f} s wall, {result.cpu_seconds:.0f} s CPU)"))
    t.add_column("step: outputs", overflow="fold")
    t.add_column("result", overflow="fold", ratio=1)
    t.add_column("wall s", justify="right", no_wrap=True)
    t.add_column("CPU s", justify="right", no_wrap=True)
    for r in result.steps:
        outputs = [Path(o).relative_to(result.workdir).as_posix() if Path(o).is_relative_to(result.workdir) else o
                   for o in r.outputs]
        summary = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in r.summary.items())
        t.add_row(escape("\n".join([f"{r.name}:", *(f"  {o}" for o in outputs)])),
                  "reused" if r.status == "reused" else escape(summary) or "-", f"{r.seconds:.1f}",
                  f"{r.cpu_seconds:.1f}")
    return t


def results_table(result: DemoResult) -> Table:
    """Test Recall@5/10 and NDCG@5/10 of TIGER, then the SID statistics."""
    from uqf_cli.demo import TABLE_NDCG_KS, TABLE_RECALL_KS

    t = Table(title="TIGER on the test split (full ranking) and the SIDs it was trained on")
    t.add_column("figure")
    t.add_column("value", justify="right")
    names = [f"recall@{k}" for k in TABLE_RECALL_KS] + [f"ndcg@{k}" for k in TABLE_NDCG_KS]
    for name in names:
        value = result.test_metrics.get(name)
        t.add_row(f"test {name}", "-" if value is None else f"{value:.4f}")
    for name, value in result.sid_stats.items():
        t.add_row(f"SIDs: {name}", f"{value:.4f}" if isinstance(value, float) else str(value))
    return t
