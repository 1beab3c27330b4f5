"""``uqf fuse --text T --collab C --dataset DS -o unified.st`` and ``uqf fuse --apply fuser.st ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from uqf_cli.cli.common import cli_command, emit_json
from uqf_cli.cli.config_options import EntryOptions
from uqf_cli.cli.options import OutFile, PlotOut, RunOptions, shared_options
from uqf_cli.core import runtime
from uqf_cli.core.errors import OptionError
from uqf_cli.files.outputs import plan_outputs, want
from uqf_cli.fuse.config import FuseOptions
from uqf_cli.fuse.registry import fusion_options

REQUIRED_TO_TRAIN = "[bold red]Required to train[/bold red] a fuser"  # Typer's [required] means always


@cli_command
@shared_options("seed", "device", "force", "resume", "quiet", "json")
def fuse(
    output: OutFile,
    text: Annotated[Path, typer.Option("--text", help="Text embedding file (modality text).")],
    collab: Annotated[
        Path | None, typer.Option("--collab", help="Collaborative embedding file from train-gcn. "
                                  f"{REQUIRED_TO_TRAIN}; optional with --apply.")
    ] = None,
    dataset: Annotated[
        Path | None, typer.Option("--dataset", help="Dataset directory (train interactions only are read). "
                                  f"{REQUIRED_TO_TRAIN}; not with --apply.")
    ] = None,
    apply: Annotated[
        Path | None, typer.Option("--apply", help="Fuse with a saved fuser instead of training.")
    ] = None,
    save_model: Annotated[
        Path | None, typer.Option("--save-model", help="Also save the trained fuser (safetensors) here.")
    ] = None,
    allow_subset: Annotated[
        bool, typer.Option("--allow-subset", help="Fuse even when the embeddings hold items the dataset does "
                           "not have (e.g. a full catalogue with a sample of its interactions).")
    ] = False,
    opts: FuseOptions = FuseOptions(),
    own: EntryOptions = EntryOptions(fusion_options, "--method"),
    plot: PlotOut = None,
    run: RunOptions = RunOptions(),
) -> None:
    """Fuse text and collaborative embeddings into one unified space (Unified Q-Former)."""
    from uqf_cli.fuse import apply_fuser
    from uqf_cli.fuse import fuse as fit_and_fuse

    if apply is not None:
        if dataset is not None or save_model is not None or allow_subset:
            raise OptionError("--apply", "takes --text [--collab] -o only (no --dataset, --save-model or "
                              "--allow-subset)")
    else:
        if collab is None:
            raise OptionError("--collab", "is required to fit a fuser (only --apply works from text alone)")
        if dataset is None:
            raise OptionError("--dataset", "is required to fit a fuser (the train interaction graph)")
    outputs = [want(output, "embeddings:unified", checkpoint=apply is None),
               want(save_model, "fuser", "--save-model"), want(plot, "figure", "--plot")]
    inputs = {"--text": text, "--collab": collab, "--dataset": dataset, "--apply": apply, **own.files()}
    plan = plan_outputs(outputs, inputs, run.force)
    if plot is not None:
        _check_plot(plot, opts.method, apply is not None, run.force)
    with plan:
        if apply is not None:
            result = apply_fuser(apply, text, collab, output, device_spec=run.device, force=run.force)
        else:
            result = fit_and_fuse(text, collab, dataset, output, opts, save_model=save_model, force=run.force,
                                  resume=run.resume, allow_subset=allow_subset, options=own.of(opts.method))
        if plot is not None:
            from uqf_cli.plots.training import plot_fuse

            runtime.info(f"wrote {plot_fuse(result.output, result.curve, plot, run.force)}")
    if run.json:
        emit_json(result.as_dict())
        return
    con = runtime.stdout_console()
    con.print(overlap_table(result.overlap, f"{result.output}: {result.items} items "
                            f"({result.cold_items} cold), {result.dim}-d, {result.method}, {result.seconds:.1f}s"))
    if result.gate:
        con.print("gate (1 = text, 0 = collab): " + ", ".join(f"{k} {v:.3f}" for k, v in result.gate.items()))
    if result.model_path:
        con.print(f"fuser saved to {result.model_path}")


def _check_plot(plot: Path, method: str, applying: bool, force: bool) -> None:
    from uqf_cli.plots import check_plot_output
    from uqf_cli.plots.training import check_fuse_plot

    check_fuse_plot(method, applying)
    check_plot_output(plot, force)


def overlap_table(overlap: dict, title: str) -> Table:
    """Neighbourhood preservation: mean overlap of top-10 neighbours with each reference space."""
    t = Table(title=title, show_header=True)
    t.add_column("space")
    t.add_column("overlap@10 text", justify="right")
    t.add_column("overlap@10 collab", justify="right")
    t.add_column("overlap@10 co-occurrence", justify="right")
    for name, row in overlap.items():
        t.add_row(name, *(f"{row[c]:.3f}" if row.get(c) is not None else "-" for c in ("text", "collab", "cooc")))
    return t
