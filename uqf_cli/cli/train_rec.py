"""``uqf train-rec DS [--sids SIDS] -o MODEL_DIR --backbone NAME``.

The backbone options are not written here: each registered backbone's options dataclass declares them,
and ``BackboneFlags`` (``cli/backbone_flags.py``) makes one flag of each when this module is imported,
so a backbone registered before (``uqf_cli.rec.register``) has its flags.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from uqf_cli.cli.backbone_flags import backbone_flags, flags_config, given_options
from uqf_cli.cli.common import cli_command, emit_json
from uqf_cli.cli.options import OutDir, PlotOut, RunOptions, shared_options
from uqf_cli.core import runtime
from uqf_cli.rec import registry

BACKBONES = registry.backbones()
FLAGS = backbone_flags(BACKBONES)
BackboneFlags = flags_config(FLAGS)


@cli_command
@shared_options("seed", "device", "force", "resume", "quiet", "json")
def train_rec(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory from `uqf prepare`.")],
    output: OutDir,
    sids: Annotated[Path | None, typer.Option("--sids", help="SIDs file (tiger, lcrec; sasrec needs none).",
                                              dir_okay=False)] = None,
    backbone: Annotated[str, typer.Option("--backbone", help=" | ".join(b.name for b in BACKBONES))] = "tiger",
    options: BackboneFlags = BackboneFlags(),  # type: ignore[valid-type]
    plot: PlotOut = None,
    run: RunOptions = RunOptions(),
) -> None:
    """Train a recommender (--backbone: TIGER or LC-Rec over SIDs, SASRec, LightGCN or popularity over item
    ids) on the train split and write a model directory.

    Multi-GPU / multi-process: `torchrun --nproc_per_node N -m uqf_cli train-rec ...`.
    """
    from uqf_cli.files.outputs import plan_outputs, want
    from uqf_cli.rec import train_backbone

    chosen = registry.get(backbone)
    given = {**given_options(options, chosen, FLAGS), "seed": run.seed, "device": run.device}
    if run.resume:
        given["resume"] = True
    chosen.check_uses(given)  # before the plot check: the option is the error
    named = {f"--{key.replace('_', '-')}": Path(given[key]) for key in chosen.inputs if key in given}
    plan = plan_outputs([want(output, "model", checkpoint=True), want(plot, "figure", "--plot")],
                        {"DATASET": dataset, "--sids": sids, **named}, run.force)
    if plot is not None:
        _check_plot(plot, backbone, run.force)
    with plan if _is_main_process() else nullcontext():  # torchrun: rank 0 writes and holds the locks
        summary = train_backbone(chosen, dataset, output, sids, given, run.force)
        if not _is_main_process():
            return
        if plot is not None:
            from uqf_cli.plots.training import plot_training

            runtime.info(f"wrote {plot_training(output, plot, run.force)}")
    if run.json:
        emit_json(summary)
        return
    runtime.stdout_console().print(summary_table(summary, str(output)))


def _check_plot(plot: Path, backbone: str, force: bool) -> None:
    from uqf_cli.plots import check_plot_output
    from uqf_cli.plots.training import check_curve_backbone

    check_curve_backbone(backbone)
    check_plot_output(plot, force)


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def summary_table(summary: dict[str, Any], title: str) -> Table:
    """Scalar entries of a training summary, one row each."""
    t = Table(title=title)
    t.add_column("field")
    t.add_column("value", justify="right")
    for k, v in summary.items():
        if isinstance(v, (dict, list)):
            continue
        t.add_row(k.replace("_", " "), f"{v:.4g}" if isinstance(v, float) else str(v))
    return t
