"""``uqf embed-text DS -o text.st``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from uqf_cli.cli.common import cli_command, emit_json
from uqf_cli.cli.options import DatasetDir, OutFile, RunOptions, shared_options
from uqf_cli.core import runtime
from uqf_cli.embed import EmbedConfig, TextEmbeddingResult
from uqf_cli.embed import embed_text as embed_items
from uqf_cli.files.outputs import plan_outputs, want


@cli_command
@shared_options("device", "force", "quiet", "json")
def embed_text(
    dataset: DatasetDir,
    output: OutFile,
    cfg: EmbedConfig = EmbedConfig(),
    from_array: Annotated[Path | None, typer.Option("--from-array", help=(
        "Wrap precomputed vectors instead of running a model: a raw float32 N x D file in item-index order "
        "(UniSRec's X.feat1CLS), rows named by the X.item2index next to it; D is inferred from the file size."))]
    = None,
    reuse: Annotated[Path | None, typer.Option("--reuse", help=(
        "An earlier embed-text file of this catalogue (same model, pooling, fields/template, max length, "
        "normalisation): copy the rows of items whose text is unchanged, encode only new or changed items."))]
    = None,
    run: RunOptions = RunOptions(),
) -> None:
    """Embed each item's text into an [N, d] float32 safetensors file aligned by item id."""
    inputs = {"DATASET": dataset, "--from-array": from_array, "--reuse": reuse, "--model": Path(cfg.model)}
    with plan_outputs([want(output, "embeddings:text")], inputs, run.force):
        res = embed_items(dataset, output, cfg, force=run.force, from_array=from_array, reuse=reuse)
    if run.json:
        emit_json(summary(res))
        return
    print_summary(res, from_array)


def summary(res: TextEmbeddingResult) -> dict:
    """The ``--json`` answer: the file, its shape, the model and how fast it encoded."""
    out = {"output": str(res.output), "items": res.items, "dim": res.dim, "model": res.model,
           "pooling": res.pooling, "device": res.device, "seconds": round(res.seconds, 3),
           "load_seconds": round(res.load_seconds, 3), "items_per_second": round(res.items_per_second, 1)}
    if "reuse" in res.params:
        out["reuse"] = res.params["reuse"]
    return out


def print_summary(res: TextEmbeddingResult, from_array: Path | None) -> None:
    """What was written, by which model, how fast; and what ``--reuse`` copied."""
    con = runtime.stdout_console()
    if from_array is not None:
        con.print(f"wrote {res.output}: [{res.items:,}, {res.dim}] float32 from {from_array.name} (no model run)",
                  soft_wrap=True)
        return
    con.print(f"wrote {res.output}: [{res.items:,}, {res.dim}] float32, {res.model} ({res.pooling} pooling) on "
              f"{res.device}: {res.items_per_second:,.1f} items/s ({res.seconds:.1f} s encoding, "
              f"{res.load_seconds:.1f} s loading the model)", soft_wrap=True)
    if "reuse" in res.params:
        r = res.params["reuse"]
        con.print(f"reused {r['file']}: {r['copied']:,} items copied, {r['embedded']:,} encoded ({r['new']:,} new, "
                  f"{r['changed']:,} with changed text)", soft_wrap=True)
