"""``uqf inspect-sids sids.jsonl [--dataset DS] [--text text.st] [--collab collab.st] [--compare other.jsonl]``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from uqf_cli import runtime
from uqf_cli.commands._common import JsonOut, Quiet, Seed, cli_command, emit_json, start
from uqf_cli.errors import OptionError


def register(app: typer.Typer) -> None:
    @app.command("inspect-sids")
    @cli_command
    def inspect_sids_cmd(
        sids: Annotated[Path, typer.Argument(help="SIDs file (uqf .jsonl, or an LC-Rec/LETTER .index.json).")],
        dataset: Annotated[Path | None, typer.Option("--dataset", help="Dataset dir: titles, categories, train "
                                                     "sequences (labels, purity, collaborative consistency).")]
        = None,
        text: Annotated[Path | None, typer.Option("--text", help="Text embeddings for semantic consistency.")]
        = None,
        collab: Annotated[Path | None, typer.Option("--collab", help="Collaborative embeddings for collaborative "
                                                    "cosine consistency.")] = None,
        compare: Annotated[Path | None, typer.Option("--compare", help="Another SIDs file shown side by side.")]
        = None,
        prefix: Annotated[str | None, typer.Option("--prefix", help="Descend into a prefix: 12 or 12,3.")] = None,
        item: Annotated[str | None, typer.Option("--item", help="Show this item's SID and its siblings.")] = None,
        depth: Annotated[int, typer.Option("--depth", help="Levels of the tree to show below the prefix.")] = 2,
        top: Annotated[int, typer.Option("--top", help="Children (codes or items) shown per node.")] = 8,
        no_tree: Annotated[bool, typer.Option("--no-tree", help="Only the summary table.")] = False,
        seed: Seed = 0,
        quiet: Quiet = False,
        json_out: JsonOut = False,
    ) -> None:
        """Explore a tokenization: the code hierarchy as a tree, usage, collisions and consistency metrics."""
        from uqf_cli import inspect_sids as ins_mod

        start(quiet)
        if depth < 1:
            raise OptionError("--depth", "must be at least 1")
        if top < 1:
            raise OptionError("--top", "must be at least 1")
        ins = ins_mod.load_inspection(sids, dataset, text, collab)
        pre = ins_mod.parse_prefix(prefix, ins.table)
        tree, item_info = None, None
        if item is not None:
            tree, item_info = ins_mod.item_view(ins, item, top)
        elif not no_tree:
            tree = ins_mod.build_tree(ins, pre, depth, top)
        figures = ins_mod.metrics(ins, seed)
        other = None
        if compare is not None:
            other = ins_mod.metrics(ins_mod.load_inspection(compare, dataset, text, collab), seed)
        if json_out:
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


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def summary_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of one metrics dict, in reading order."""
    rows = [("items", _fmt(m["items"])), ("levels", _fmt(m["levels"])),
            ("codebook sizes", ",".join(map(str, m["codebook_sizes"])))]
    for lv in m["per_level"]:
        rows.append((f"level {lv['level']} utilisation / perplexity",
                     f"{lv['utilisation']:.1%} / {lv['perplexity']:.1f}"))
    rows.append(("collision rate", f"{m['collision_rate']:.2%}"))
    for d, s in m["items_per_prefix"].items():
        rows.append((f"items per depth-{d} prefix (max / mean / shared)",
                     f"{s['max']} / {s['mean']:.2f} / {s['shared']:.2%}"))
    for key, name in (("semantic_cosine", "text cosine"), ("collab_cosine", "collab cosine")):
        for d, s in m.get(key, {}).items():
            rows.append((f"{name} depth {d} (within / random / lift)",
                         f"{_fmt(s['within'])} / {_fmt(s['random'])} / {_fmt(s['lift'])}"))
    for d, s in m.get("category_purity", {}).items():
        rows.append((f"category purity depth {d} (observed / random)", f"{_fmt(s['purity'])} / {_fmt(s['random'])}"))
    for d, s in m.get("collab_adjacency", {}).items():
        rows.append((f"adjacent train pairs sharing depth-{d} prefix (share / random / lift)",
                     f"{_fmt(s['share'])} / {_fmt(s['random'])} / {_fmt(s['lift'])}"))
    return rows


def summary_table(m: dict[str, Any], other: dict[str, Any] | None = None) -> Table:
    """The summary; with ``other`` the two tokenizations side by side (rows matched by label)."""
    t = Table(title="SIDs summary")
    t.add_column("metric", overflow="fold")
    t.add_column(Path(m["sids"]).name if m.get("sids") else "value", justify="right", overflow="fold")
    mine = summary_rows(m)
    if other is None:
        for label, value in mine:
            t.add_row(label, value)
        return t
    t.add_column(Path(other["sids"]).name if other.get("sids") else "compare", justify="right", overflow="fold")
    theirs = dict(summary_rows(other))
    labels = [label for label, _ in mine] + [label for label in theirs if label not in dict(mine)]
    mine_d = dict(mine)
    for label in labels:
        t.add_row(label, mine_d.get(label, "-"), theirs.get(label, "-"))
    return t
