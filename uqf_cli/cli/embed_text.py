"""``uqf embed-text DS -o text.st``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from uqf_cli.cli.common import emit_json, parse_csv
from uqf_cli.cli.options import Device, OutFile, RunOptions, command, function_defaults
from uqf_cli.core import runtime
from uqf_cli.embed import embed_text
from uqf_cli.files.outputs import plan_outputs, want

_E = function_defaults(embed_text)


def register(app: typer.Typer) -> None:
    @command(app, "embed-text", "force", "quiet", "json")
    def embed_text_cmd(
        dataset: Annotated[Path, typer.Argument(help="Dataset directory written by `uqf prepare`.")],
        output: OutFile,
        model: Annotated[
            str,
            typer.Option("--model", help="minilm (bundled all-MiniLM-L6-v2, the default), smollm2 (bundled "
                         "SmolLM2-135M GGUF, mean pooling), a local directory or .gguf file, or a hub id."),
        ] = _E["model"],
        pooling: Annotated[
            str, typer.Option("--pooling", help="auto | model (the sentence-transformers model's own) | "
                              "mean (masked mean of last hidden states, as LC-Rec).")
        ] = _E["pooling"],
        fields: Annotated[
            str | None,
            typer.Option("--fields", help="Comma-separated item fields, embedded as 'name: value; ...'. Default: "
                         "those of title,brand,categories,description that exist, else every string field."),
        ] = None,
        template: Annotated[
            str | None,
            typer.Option("--template", help="Item text template, e.g. '{title} | {brand}' (overrides --fields)."),
        ] = None,
        max_length: Annotated[int, typer.Option("--max-length", help="Truncate each text at this many tokens.")]
        = _E["max_length"],
        batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per batch.")] = _E["batch_size"],
        device: Device = _E["device"],
        devices: Annotated[
            str | None,
            typer.Option("--devices", help="Several devices, e.g. cuda:0,cuda:1 (sentence-transformers "
                         "multi-process pool)."),
        ] = None,
        normalize: Annotated[bool, typer.Option("--normalize/--no-normalize", help="L2-normalise vectors.")
                             ] = _E["normalize"],
        fp16: Annotated[bool, typer.Option("--fp16/--no-fp16", help="Half precision on CUDA.")] = _E["fp16"],
        trust_remote_code: Annotated[
            bool, typer.Option("--trust-remote-code", help="Allow a hub model to run its own Python code.")
        ] = _E["trust_remote_code"],
        from_array: Annotated[
            Path | None,
            typer.Option("--from-array", help="Wrap precomputed vectors instead of running a model: a raw "
                         "float32 N x D file in item-index order (UniSRec's X.feat1CLS), rows named by the "
                         "X.item2index next to it; D is inferred from the file size."),
        ] = None,
        reuse: Annotated[
            Path | None,
            typer.Option("--reuse", help="An earlier embed-text file of this catalogue (same model, pooling, "
                         "fields/template, max length, normalisation): copy the rows of items whose text is "
                         "unchanged, encode only new or changed items."),
        ] = None,
        run: RunOptions = RunOptions(),
    ) -> None:
        """Embed each item's text into an [N, d] float32 safetensors file aligned by item id."""
        chosen = parse_csv(fields) if fields is not None else None
        inputs = {"DATASET": dataset, "--from-array": from_array, "--reuse": reuse, "--model": Path(model)}
        with plan_outputs([want(output, "embeddings:text")], inputs, run.force):
            res = embed_text(dataset, output, model=model, pooling=pooling, fields=chosen, template=template,
                             max_length=max_length, batch_size=batch_size, device=device,
                             devices=parse_csv(devices), normalize=normalize, fp16=fp16,
                             trust_remote_code=trust_remote_code, force=run.force, from_array=from_array,
                             reuse=reuse)
        summary = {"output": str(res.output), "items": res.items, "dim": res.dim, "model": res.model,
                   "pooling": res.pooling, "device": res.device, "seconds": round(res.seconds, 3),
                   "load_seconds": round(res.load_seconds, 3),
                   "items_per_second": round(res.items_per_second, 1)}
        if "reuse" in res.params:
            summary["reuse"] = res.params["reuse"]
        if run.json:
            emit_json(summary)
            return
        if from_array is not None:
            runtime.stdout_console().print(f"wrote {res.output}: [{res.items:,}, {res.dim}] float32 from "
                                           f"{from_array.name} (no model run)", soft_wrap=True)
            return
        runtime.stdout_console().print(
            f"wrote {res.output}: [{res.items:,}, {res.dim}] float32, {res.model} ({res.pooling} pooling) on "
            f"{res.device}: {res.items_per_second:,.1f} items/s ({res.seconds:.1f} s encoding, "
            f"{res.load_seconds:.1f} s loading the model)",
            soft_wrap=True,
        )
        if "reuse" in res.params:
            r = res.params["reuse"]
            runtime.stdout_console().print(f"reused {r['file']}: {r['copied']:,} items copied, {r['embedded']:,} "
                                           f"encoded ({r['new']:,} new, {r['changed']:,} with changed text)",
                                           soft_wrap=True)
