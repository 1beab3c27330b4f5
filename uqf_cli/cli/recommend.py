"""``uqf recommend MODEL_DIR DS (--history ID,... | --user ID | --item-search TEXT)``: what a model recommends, why."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from uqf_cli.cli.common import cli_command, emit_json, parse_csv
from uqf_cli.cli.options import ModelDir, RunOptions, shared_options
from uqf_cli.core import runtime
from uqf_cli.core.errors import OptionError
from uqf_cli.evaluation.recommend import SEARCH_LIMIT, RecommendConfig, explain_recommendations, find_items

HISTORY_SHOWN = 20  # the most recent history items shown in the terminal (JSON has them all)


@cli_command
@shared_options("device", "quiet", "json")
def recommend(
    model_dir: ModelDir,
    dataset: Annotated[Path, typer.Argument(help="The dataset directory (for titles and item ids).")],
    history: Annotated[str | None, typer.Option("--history", help="Item ids, oldest first, comma-separated.")]
    = None,
    user: Annotated[str | None, typer.Option("--user", help="Take this user's history from the dataset "
                                             "(cut by --split; the held-out item is shown).")] = None,
    item_search: Annotated[str | None, typer.Option("--item-search", help="Find item ids by title words "
                                                    "(case-insensitive) and show them with their SIDs.")] = None,
    cfg: RecommendConfig = RecommendConfig(),
    run: RunOptions = RunOptions(),
) -> None:
    """Top-k items for one history, with titles, the model's scores and SIDs; or find item ids by title."""
    if item_search is not None:
        if history is not None or user is not None:
            raise OptionError("--item-search", "searches items only: leave out --history and --user")
        _print_search(find_items(model_dir, dataset, item_search), item_search, run.json)
        return
    if history is None and user is None:
        raise OptionError("--history", "give --history ID,ID,..., --user ID, or --item-search TEXT to find ids")
    out = explain_recommendations(model_dir, dataset, parse_csv(history) if history is not None else None, user, cfg)
    if run.json:
        emit_json(out.as_dict())
        return
    _print_explained(out)


def _sid_cell(sid: str | None) -> str:
    return escape(sid) if sid else "-"


def _print_search(found: list[dict[str, Any]], text: str, as_json: bool) -> None:
    if as_json:
        emit_json({"query": text, "matches": len(found), "items": found})
        return
    con = runtime.stdout_console()
    if not found:
        con.print(f"no item title matches {text!r}")
        return
    t = Table(title=f"{len(found):,} items whose title matches {escape(repr(text))}", title_justify="left",
              caption=f"... and {len(found) - SEARCH_LIMIT:,} more: add words to narrow it"
              if len(found) > SEARCH_LIMIT else None, caption_justify="left")
    t.add_column("item id", no_wrap=True)
    t.add_column("title")
    t.add_column("SID", no_wrap=True)
    for item in found[:SEARCH_LIMIT]:
        t.add_row(escape(item["item_id"]), escape(item["title"]), _sid_cell(item["sid"]))
    con.print(t)


def _print_explained(out: Any) -> None:
    con = runtime.stdout_console()
    who = f"user {out.user_id}, {'every item' if out.split == 'full' else f'before the {out.split} item'}" \
        if out.user_id is not None else "as given"
    hist = Table(title=f"history: {len(out.history)} items ({escape(who)}), oldest first", title_justify="left")
    hist.add_column("#", justify="right")
    hist.add_column("item id", no_wrap=True)
    hist.add_column("title")
    hist.add_column("SID", no_wrap=True)
    start = max(0, len(out.history) - HISTORY_SHOWN)
    if start:
        hist.add_row("", "", f"[dim]... {start} earlier items (--json lists them)[/dim]", "")
    for n, item in enumerate(out.history[start:], start + 1):
        hist.add_row(str(n), escape(item["item_id"]), escape(item["title"]), _sid_cell(item["sid"]))
    con.print(hist)
    held = out.held_out["item_id"] if out.held_out else None
    recs = Table(title=f"top {len(out.recommendations)} ({out.backbone}; score = {out.score_name}, higher is "
                       "better)", title_justify="left")
    recs.add_column("rank", justify="right")
    recs.add_column("item id", no_wrap=True)
    recs.add_column("title")
    recs.add_column("score", justify="right")
    recs.add_column("SID", no_wrap=True)
    for r in out.recommendations:
        mark = " [bold green](held out)[/bold green]" if r["item_id"] == held else ""
        recs.add_row(str(r["rank"]), escape(r["item_id"]) + mark, escape(r["title"]), f"{r['score']:.4g}",
                     _sid_cell(r["sid"]))
    con.print(recs)
    if out.held_out:
        h = out.held_out
        where = f"rank {h['rank']}" if h["rank"] else f"not in the top {len(out.recommendations)}"
        con.print(f"held-out next item ({out.split}): {escape(h['item_id'])}  {escape(h['title'])}  "
                  f"{_sid_cell(h['sid'])}: {where}")
