"""``uqf train-gcn DS -o collab.st``."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Table

from uqf_cli.cli.common import cli_command, emit_json
from uqf_cli.cli.options import DatasetDir, OutFile, RunOptions, shared_options
from uqf_cli.collab.config import GcnConfig
from uqf_cli.core import runtime
from uqf_cli.files.outputs import plan_outputs, want


@cli_command
@shared_options("seed", "device", "force", "resume", "quiet", "json")
def train_gcn(
    dataset: DatasetDir,
    output: OutFile,
    cfg: GcnConfig = GcnConfig(),
    run: RunOptions = RunOptions(),
) -> None:
    """Train LightGCN on the train split; write item + user collaborative embeddings."""
    from uqf_cli.collab import train_gcn as train

    display = TrainingDisplay(cfg)
    plan = plan_outputs([want(output, "embeddings:collab", checkpoint=True)], {"DATASET": dataset}, run.force)
    with plan, display:
        result = train(dataset, output, cfg, force=run.force, on_eval=display.on_eval, on_epoch=display.on_epoch,
                       resume=run.resume)
    summary: dict[str, Any] = {
        "output": str(output),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        **result.metrics,
        "train_seconds": round(result.train_seconds, 2),
        "train_edges": result.num_edges,
        "items": len(result.item_ids),
        "users": len(result.user_ids),
        "cold_items": len(result.cold_item_ids),
    }
    if run.json:
        emit_json(summary)
        return
    runtime.stdout_console().print(summary_table(summary))
    if result.cold_item_ids:
        runtime.info(f"{len(result.cold_item_ids)} item(s) have no train interaction: their rows are zeros "
                     "(not learned), listed in metadata cold_item_ids")


class TrainingDisplay(AbstractContextManager):
    """A live rich table (one row per validation) above a progress bar, on a TTY only."""

    MAX_ROWS = 15

    def __init__(self, cfg: GcnConfig) -> None:
        self.cfg = cfg
        self.rows: list[tuple[str, ...]] = []
        self.live: Live | nullcontext = nullcontext()
        self.bar: Any = None
        self.task = 0

    def __enter__(self) -> TrainingDisplay:
        con = runtime.console()
        if runtime.is_quiet() or not con.is_terminal:
            return self
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("epochs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[status]}"), console=con)
        self.task = self.bar.add_task("epochs", total=self.cfg.epochs, status="")
        self.live = Live(self._renderable(), console=con, refresh_per_second=4)
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)

    def on_epoch(self, epoch: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=epoch, status=f"loss {loss:.4f}")

    def on_eval(self, record: Any, is_best: bool) -> None:
        if self.bar is None:
            return
        recall = "-" if record.recall is None else f"{record.recall:.4f}"
        ndcg = "-" if record.ndcg is None else f"{record.ndcg:.4f}"
        self.rows.append((str(record.epoch), f"{record.loss:.4f}", recall, ndcg, f"{record.seconds:.1f}",
                          "[green]best[/green]" if is_best else ""))
        if isinstance(self.live, Live):
            self.live.update(self._renderable())

    def _renderable(self) -> Group:
        """The table keeps the last rows only, so it never outgrows the terminal."""
        table = Table(title="LightGCN training (validation)", show_header=True)
        for name in ("epoch", "loss", f"recall@{self.cfg.k}", f"ndcg@{self.cfg.k}", "seconds", ""):
            table.add_column(name, justify="right")
        for row in self.rows[-self.MAX_ROWS:]:
            table.add_row(*row)
        return Group(table, self.bar)


def summary_table(summary: dict[str, Any]) -> Table:
    t = Table(title=f"train-gcn -> {summary['output']}", show_header=True)
    t.add_column("result")
    t.add_column("value", justify="right")
    for key, value in summary.items():
        if key == "output":
            continue
        t.add_row(key.replace("_", " "), f"{value:.4f}" if isinstance(value, float) else str(value))
    return t
