"""``uqf recommend MODEL_DIR DS --history ID,ID,... [-k 10]``: look at what a model recommends."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from uqf_cli.cli.common import emit_json, parse_csv
from uqf_cli.cli.options import RunOptions, command
from uqf_cli.core import runtime


def register(app: typer.Typer) -> None:
    @command(app, "recommend", "device", "quiet", "json")
    def recommend_cmd(
        model_dir: Annotated[Path, typer.Argument(help="Model directory from `uqf train-rec`.")],
        dataset: Annotated[Path, typer.Argument(help="The dataset directory (for titles and item ids).")],
        history: Annotated[str, typer.Option("--history", help="Item ids, oldest first, comma-separated.")],
        k: Annotated[int, typer.Option("--k", "-k", help="How many items to show.")] = 10,
        beam_size: Annotated[int | None, typer.Option("--beam-size", help="Beam size (default: max(k, 20)).")
                             ] = None,
        user_id: Annotated[str | None, typer.Option("--user-id", help="User id (models with user tokens).")] = None,
        rank: Annotated[str | None, typer.Option("--rank", help="hybrid models: generate | hybrid | dense "
                                                 "(default: the model's stored mode).")] = None,
        run: RunOptions = RunOptions(),
    ) -> None:
        """Top-k items, with titles, for one history."""
        from uqf_cli.evaluation import recommend_for_history

        ds, items = recommend_for_history(model_dir, dataset, parse_csv(history), k, beam_size, run.device, user_id,
                                         rank)
        if run.json:
            emit_json({"history": parse_csv(history), "item_ids": items,
                       "titles": [ds.title(i) for i in items]})
            return
        t = Table(title=f"top {k} after {len(parse_csv(history))} items")
        t.add_column("rank", justify="right")
        t.add_column("item id")
        t.add_column("title")
        for r, iid in enumerate(items, 1):
            t.add_row(str(r), iid, ds.title(iid))
        runtime.stdout_console().print(t)
