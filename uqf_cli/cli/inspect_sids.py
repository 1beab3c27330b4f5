"""``uqf inspect-sids sids.jsonl [--dataset DS] [--text text.st] [--collab collab.st] [--compare other.jsonl]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from uqf_cli.cli.common import cli_command, emit_json
from uqf_cli.cli.options import PlotOut, RunOptions, shared_options
from uqf_cli.core import runtime
from uqf_cli.core.errors import OptionError
from uqf_cli.evaluation.inspect_sids import TreeView
from uqf_cli.files.outputs import plan_outputs, want


@cli_command
@shared_options("seed", "force", "quiet", "json")
def inspect_sids(
    sids: Annotated[Path, typer.Argument(help="SIDs file (uqf .jsonl, or an LC-Rec/LETTER .index.json).")],
    dataset: Annotated[Path | None, typer.Option("--dataset", help="Dataset dir: titles, categories, train "
                                                 "sequences (labels, purity, collaborative consistency).")] = None,
    text: Annotated[Path | None, typer.Option("--text", help="Text embeddings for semantic consistency.")] = None,
    collab: Annotated[Path | None, typer.Option("--collab", help="Collaborative embeddings for collaborative "
                                                "cosine consistency.")] = None,
    compare: Annotated[Path | None, typer.Option("--compare", help="Another SIDs file shown side by side.")] = None,
    view: TreeView = TreeView(),
    plot: PlotOut = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report (tables "
                                              "and pictures; needs the 'plot' extra).", dir_okay=False)] = None,
    map_emb: Annotated[Path | None, typer.Option("--map", help="Embeddings projected for the pictures' item "
                                                 "map (default: --text, else --collab; e.g. the fused file).")]
    = None,
    tui: Annotated[bool, typer.Option("--tui", help="Explore interactively in the terminal: the code tree "
                                      "level by level, items per prefix, title search, --compare side by side "
                                      "(needs the 'tui' extra).")] = False,
    run: RunOptions = RunOptions(),
) -> None:
    """Explore a tokenization: the code hierarchy as a tree, usage, collisions and consistency metrics."""
    if tui:
        if plot is not None or html is not None:
            raise OptionError("--tui", "draws no pictures: run --plot/--html without --tui")
        _explore(sids, dataset, compare, view, run.json)
        return
    _check_picture_outputs(plot, html, run.force)
    inputs = {"SIDS": sids, "--dataset": dataset, "--text": text, "--collab": collab, "--compare": compare,
              "--map": map_emb}
    with plan_outputs([want(plot, "figure", "--plot"), want(html, "report", "--html")], inputs, run.force):
        _inspect(sids, dataset, text, collab, compare, view, plot, html, map_emb, run)


def _inspect(sids: Path, dataset: Path | None, text: Path | None, collab: Path | None, compare: Path | None,
             view: TreeView, plot: Path | None, html: Path | None, map_emb: Path | None, run: RunOptions) -> None:
    """Load, measure, draw and print (the command's work, inside its output plan)."""
    from uqf_cli.evaluation import inspect_sids as ins_mod

    ins = ins_mod.load_inspection(sids, dataset, text, collab)
    tree, item_info = ins_mod.tree_view(ins, view)
    figures = ins_mod.metrics(ins, run.seed)
    other, other_ins = None, None
    if compare is not None:
        other_ins = ins_mod.load_inspection(compare, dataset, text, collab)
        other = ins_mod.metrics(other_ins, run.seed)
    if plot is not None or html is not None:
        _write_pictures(ins, figures, other_ins, other, plot, html, map_emb, run.seed, run.force)
    if run.json:
        payload: dict[str, Any] = {"metrics": figures}
        if other is not None:
            payload["compare"] = other
        if item_info is not None:
            payload["item"] = item_info
        emit_json(payload)
        return
    con = runtime.stdout_console()
    if tree is not None:
        con.print(tree)
    con.print(summary_table(figures, other))
    con.print(guide_table())


def interactive_terminal() -> bool:
    """Whether stdin and stdout are a terminal (the explorer reads keys and draws the screen)."""
    import sys

    return sys.stdin.isatty() and sys.stdout.isatty()


def _explore(sids: Path, dataset: Path | None, compare: Path | None, view: TreeView, as_json: bool) -> None:
    """Start the interactive explorer (``--tui``) after checking that it can run here."""
    from uqf_cli.evaluation import inspect_sids as ins_mod
    from uqf_cli.tui import require_textual

    require_textual()
    if as_json:
        raise OptionError("--tui", "is interactive; leave out --json")
    if not interactive_terminal():
        raise OptionError("--tui", "needs an interactive terminal (stdin and stdout are not one)")
    inspections = [ins_mod.load_inspection(sids, dataset)]
    if compare is not None:
        inspections.append(ins_mod.load_inspection(compare, dataset))
    start = ins_mod.parse_prefix(view.prefix, inspections[0].table)
    if view.item is not None:
        ins_mod.item_row(inspections[0].table, view.item)  # an unknown --item is refused before the screen opens
    from uqf_cli.tui.sid_explorer import explorer_app

    explorer_app(inspections, view.item, start).run()


def _check_picture_outputs(plot: Path | None, html: Path | None, force: bool) -> None:
    from uqf_cli.files import check_output
    from uqf_cli.plots import check_plot_output, require_matplotlib

    if plot is not None:
        check_plot_output(plot, force)
    if html is not None:
        require_matplotlib("--html")
        check_output(html, force)


def _write_pictures(ins: Any, figures: dict[str, Any], other_ins: Any, other: dict[str, Any] | None,
                    plot: Path | None, html: Path | None, map_emb: Path | None, seed: int, force: bool) -> None:
    from uqf_cli.files import load_embeddings, make_provenance
    from uqf_cli.plots.sids import write_sids_pictures

    inspections = [ins] if other_ins is None else [ins, other_ins]
    inputs = {"sids": ins.table.path, "compare": other_ins.table.path if other_ins else None, "map": map_emb}
    prov = make_provenance("inspect-sids", {"seed": seed}, inputs)
    emb = load_embeddings(map_emb) if map_emb is not None else None
    for path in write_sids_pictures(inspections, [figures] + ([other] if other else []), prov, plot, html, emb,
                                    force):
        runtime.info(f"wrote {path}")


def summary_table(m: dict[str, Any], other: dict[str, Any] | None = None) -> Table:
    """The summary; with ``other`` the two tokenizations side by side (rows matched by label)."""
    from uqf_cli.evaluation.sid_summary import side_by_side

    rows, notes = side_by_side(m, other)
    t = Table(title="SIDs summary", caption=escape("\n".join(notes)) or None, caption_justify="left")
    t.add_column("metric", overflow="fold")
    t.add_column(Path(m["sids"]).name if m.get("sids") else "value", justify="right", overflow="fold")
    if other is not None:
        t.add_column(Path(other["sids"]).name if other.get("sids") else "compare", justify="right", overflow="fold")
    for row in rows:
        t.add_row(*(escape(cell) for cell in row))
    return t


def guide_table() -> Table:
    """What each summary figure means and what a good value is (the same text as the HTML legend)."""
    from uqf_cli.evaluation.sid_summary import METRIC_GUIDE

    t = Table(title="How to read the summary", title_justify="left", box=None, show_header=True, pad_edge=False)
    t.add_column("figure", style="bold", overflow="fold")
    t.add_column("what it measures", overflow="fold")
    t.add_column("good value", overflow="fold")
    for name, meaning, good in METRIC_GUIDE:
        t.add_row(escape(name), escape(meaning), escape(good))
    return t
