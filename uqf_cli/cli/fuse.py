"""``uqf fuse --text T --collab C --dataset DS -o unified.st`` and ``uqf fuse --apply fuser.st ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from uqf_cli.cli.common import cli_command, emit_json
from uqf_cli.cli.options import OutFile, PlotOut, RunOptions, shared_options
from uqf_cli.core import runtime
from uqf_cli.core.errors import OptionError
from uqf_cli.fuse import FuseOptions

_F = FuseOptions()

_D = "UQF model"
_O = "Objective"
_A = "Ablations"


def register(app: typer.Typer) -> None:
    @app.command("fuse")
    @cli_command
    @shared_options("seed", "device", "force", "resume", "quiet", "json")
    def fuse_cmd(
        output: OutFile,
        text: Annotated[Path, typer.Option("--text", help="Text embedding file (modality text).")],
        collab: Annotated[
            Path | None, typer.Option("--collab", help="Collaborative embedding file from train-gcn.")
        ] = None,
        dataset: Annotated[
            Path | None, typer.Option("--dataset", help="Dataset directory (train interactions only are read).")
        ] = None,
        apply: Annotated[
            Path | None, typer.Option("--apply", help="Fuse with a saved fuser instead of training.")
        ] = None,
        save_model: Annotated[
            Path | None, typer.Option("--save-model", help="Also save the trained fuser (safetensors) here.")
        ] = None,
        method: Annotated[str, typer.Option("--method", help="uqf | concat | text | collab")] = _F.method,
        d_model: Annotated[int, typer.Option("--d-model", help="Width of queries and memories.", rich_help_panel=_D)
                           ] = _F.d_model,
        queries: Annotated[int, typer.Option("--queries", help="Number of learnable queries.", rich_help_panel=_D)
                           ] = _F.queries,
        layers: Annotated[int, typer.Option("--layers", help="Q-Former blocks.", rich_help_panel=_D)] = _F.layers,
        heads: Annotated[int, typer.Option("--heads", help="Attention heads.", rich_help_panel=_D)] = _F.heads,
        out_dim: Annotated[int, typer.Option("--out-dim", help="Output dimension.", rich_help_panel=_D)] = _F.out_dim,
        memory: Annotated[str, typer.Option("--memory", help="neighbours | tokens: what the queries attend to.",
                                            rich_help_panel=_D)] = _F.memory,
        k_memory: Annotated[int, typer.Option("--k-memory", help="Neighbours per memory (--memory neighbours).",
                                              rich_help_panel=_D)] = _F.k_memory,
        memory_tokens: Annotated[int, typer.Option("--memory-tokens", help="Tokens per memory (--memory tokens).",
                                                   rich_help_panel=_D)] = _F.memory_tokens,
        epochs: Annotated[int, typer.Option("--epochs", rich_help_panel=_O)] = _F.epochs,
        batch_size: Annotated[int, typer.Option("--batch-size", rich_help_panel=_O)] = _F.batch_size,
        lr: Annotated[float, typer.Option("--lr", rich_help_panel=_O)] = _F.lr,
        temperature: Annotated[float, typer.Option("--temperature", help="InfoNCE temperature.",
                                                   rich_help_panel=_O)] = _F.temperature,
        structural: Annotated[str, typer.Option("--structural", help="cooc (train co-occurrence) | collab "
                                                "(LightGCN cosine): source of structural neighbours.",
                                                rich_help_panel=_O)] = _F.structural,
        k_structural: Annotated[int, typer.Option("--k-structural", rich_help_panel=_O)] = _F.k_structural,
        k_semantic: Annotated[int, typer.Option("--k-semantic", rich_help_panel=_O)] = _F.k_semantic,
        w_structural: Annotated[float, typer.Option("--w-structural", rich_help_panel=_O)] = _F.w_structural,
        w_semantic: Annotated[float, typer.Option("--w-semantic", rich_help_panel=_O)] = _F.w_semantic,
        w_recon: Annotated[float, typer.Option("--w-recon", help="Reconstruction of both inputs (0 = off).",
                                               rich_help_panel=_O)] = _F.w_recon,
        w_align: Annotated[float, typer.Option("--w-align", help="Text/collab branch alignment (0 = off).",
                                               rich_help_panel=_O)] = _F.w_align,
        p_drop_collab: Annotated[float, typer.Option("--p-drop-collab", rich_help_panel=_O)] = _F.p_drop_collab,
        p_drop_text: Annotated[float, typer.Option("--p-drop-text", rich_help_panel=_O)] = _F.p_drop_text,
        no_gate: Annotated[bool, typer.Option("--no-gate", help="Mean of the branches instead of the gate.",
                                              rich_help_panel=_A)] = not _F.gate,
        no_shortcut: Annotated[bool, typer.Option("--no-shortcut", help="No linear input shortcut to the output.",
                                                  rich_help_panel=_A)] = not _F.shortcut,
        no_structural: Annotated[bool, typer.Option("--no-structural", rich_help_panel=_A)] = not _F.use_structural,
        no_semantic: Annotated[bool, typer.Option("--no-semantic", rich_help_panel=_A)] = not _F.use_semantic,
        no_modality_dropout: Annotated[bool, typer.Option("--no-modality-dropout", rich_help_panel=_A)
                                       ] = not _F.modality_dropout,
        ann_threshold: Annotated[int, typer.Option(
            "--ann-threshold", help="Catalogue size from which neighbours are searched approximately (faiss, "
            "the 'ann' extra); 0 = always exact.")] = _F.ann_threshold,
        plot: PlotOut = None,
        run: RunOptions = RunOptions(),
    ) -> None:
        """Fuse text and collaborative embeddings into one unified space (Unified Q-Former)."""
        from uqf_cli.fuse import apply_fuser, fuse

        if plot is not None:
            _check_plot(plot, output, method, apply is not None, run.force)
        if apply is not None:
            if dataset is not None or save_model is not None:
                raise OptionError("--apply", "takes --text [--collab] -o only (no --dataset or --save-model)")
            result = apply_fuser(apply, text, collab, output, device_spec=run.device, force=run.force)
        else:
            if collab is None:
                raise OptionError("--collab", "is required to fit a fuser (only --apply works from text alone)")
            if dataset is None:
                raise OptionError("--dataset", "is required to fit a fuser (the train interaction graph)")
            opts = FuseOptions(
                method=method, d_model=d_model, queries=queries, layers=layers, heads=heads, out_dim=out_dim,
                memory=memory, k_memory=k_memory, memory_tokens=memory_tokens, epochs=epochs,
                batch_size=batch_size, lr=lr, temperature=temperature, structural=structural,
                k_structural=k_structural, k_semantic=k_semantic, w_structural=w_structural,
                w_semantic=w_semantic, w_recon=w_recon, w_align=w_align, p_drop_collab=p_drop_collab,
                p_drop_text=p_drop_text, gate=not no_gate, shortcut=not no_shortcut, use_structural=not no_structural,
                use_semantic=not no_semantic, modality_dropout=not no_modality_dropout, seed=run.seed,
                device=run.device, ann_threshold=ann_threshold,
            )
            result = fuse(text, collab, dataset, output, opts, save_model=save_model, force=run.force,
                          resume=run.resume)
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


def _check_plot(plot: Path, output: Path, method: str, applying: bool, force: bool) -> None:
    from uqf_cli.plots import check_plot_output
    from uqf_cli.plots.training import check_fuse_plot

    check_fuse_plot(method, applying)
    check_plot_output(plot, force)
    if plot.resolve() == output.resolve():
        raise OptionError("--plot", "must differ from --output")


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
