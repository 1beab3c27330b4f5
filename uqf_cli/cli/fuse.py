"""``uqf fuse --text T --collab C --dataset DS -o unified.st`` and ``uqf fuse --apply fuser.st ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from uqf_cli.cli.common import emit_json
from uqf_cli.cli.options import OutFile, PlotOut, RunOptions, command, panel_options
from uqf_cli.core import runtime
from uqf_cli.core.errors import OptionError
from uqf_cli.fuse import FuseOptions

_F = FuseOptions()

_model = panel_options("UQF model")
_objective = panel_options("Objective")
_ablation = panel_options("Ablations")


def register(app: typer.Typer) -> None:
    @command(app, "fuse", "seed", "device", "force", "resume", "quiet", "json")
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
        d_model: Annotated[int, _model("--d-model", "Width of queries and memories.")] = _F.d_model,
        queries: Annotated[int, _model("--queries", "Number of learnable queries.")] = _F.queries,
        layers: Annotated[int, _model("--layers", "Q-Former blocks.")] = _F.layers,
        heads: Annotated[int, _model("--heads", "Attention heads.")] = _F.heads,
        out_dim: Annotated[int, _model("--out-dim", "Output dimension.")] = _F.out_dim,
        memory: Annotated[str, _model("--memory", "neighbours | tokens: what the queries attend to.")] = _F.memory,
        k_memory: Annotated[int, _model("--k-memory", "Neighbours per memory (--memory neighbours).")] = _F.k_memory,
        memory_tokens: Annotated[int, _model("--memory-tokens", "Tokens per memory (--memory tokens).")
                                 ] = _F.memory_tokens,
        epochs: Annotated[int, _objective("--epochs")] = _F.epochs,
        batch_size: Annotated[int, _objective("--batch-size")] = _F.batch_size,
        lr: Annotated[float, _objective("--lr")] = _F.lr,
        temperature: Annotated[float, _objective("--temperature", "InfoNCE temperature.")] = _F.temperature,
        structural: Annotated[str, _objective("--structural", "cooc (train co-occurrence) | collab "
                                              "(LightGCN cosine): source of structural neighbours.")] = _F.structural,
        k_structural: Annotated[int, _objective("--k-structural")] = _F.k_structural,
        k_semantic: Annotated[int, _objective("--k-semantic")] = _F.k_semantic,
        w_structural: Annotated[float, _objective("--w-structural")] = _F.w_structural,
        w_semantic: Annotated[float, _objective("--w-semantic")] = _F.w_semantic,
        w_recon: Annotated[float, _objective("--w-recon", "Reconstruction of both inputs (0 = off).")] = _F.w_recon,
        w_align: Annotated[float, _objective("--w-align", "Text/collab branch alignment (0 = off).")] = _F.w_align,
        p_drop_collab: Annotated[float, _objective("--p-drop-collab")] = _F.p_drop_collab,
        p_drop_text: Annotated[float, _objective("--p-drop-text")] = _F.p_drop_text,
        no_gate: Annotated[bool, _ablation("--no-gate", "Mean of the branches instead of the gate.")] = not _F.gate,
        no_shortcut: Annotated[bool, _ablation("--no-shortcut", "No linear input shortcut to the output.")
                               ] = not _F.shortcut,
        no_structural: Annotated[bool, _ablation("--no-structural")] = not _F.use_structural,
        no_semantic: Annotated[bool, _ablation("--no-semantic")] = not _F.use_semantic,
        no_modality_dropout: Annotated[bool, _ablation("--no-modality-dropout")] = not _F.modality_dropout,
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
                device=run.device,
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
