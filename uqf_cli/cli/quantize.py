"""``uqf quantize EMB.st -o sids.jsonl`` and ``uqf quantize --apply quantizer.st new.st -o new_sids.jsonl``.

The options come from ``QuantizeConfig``'s fields and from each registered method's own options
(``uqf_cli.quantize.registry``); the command parses them, calls the stage and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from uqf_cli.cli.common import cli_command, emit_json
from uqf_cli.cli.config_options import EntryOptions
from uqf_cli.cli.options import OutFile, RunOptions, shared_options
from uqf_cli.core import runtime
from uqf_cli.files.outputs import Output, plan_outputs, want
from uqf_cli.quantize.config import QuantizeConfig
from uqf_cli.quantize.registry import quantizer_options


@cli_command
@shared_options("seed", "device", "force", "resume", "quiet", "json")
def quantize(
    embeddings: Annotated[Path, typer.Argument(help="Embedding file (.st): text, collaborative or unified.")],
    output: OutFile,
    cfg: QuantizeConfig = QuantizeConfig(),
    fmt: Annotated[str, typer.Option("--format", help="jsonl | lcrec (also writes <stem>.index.json).")] = "jsonl",
    save_model: Annotated[Path | None, typer.Option("--save-model", help="Save the quantizer (safetensors) to code "
                                                    "new items later with --apply.")] = None,
    apply: Annotated[Path | None, typer.Option("--apply", help="Code EMBEDDINGS with this saved quantizer instead "
                                               "of fitting one.")] = None,
    own: EntryOptions = EntryOptions(quantizer_options, "--method"),
    run: RunOptions = RunOptions(),
) -> None:
    """Quantize item embeddings into hierarchical semantic IDs (RQ-VAE or residual k-means)."""
    from uqf_cli.quantize import apply_quantizer
    from uqf_cli.quantize import quantize as fit_and_code

    plan = plan_outputs(quantize_outputs(output, fmt, save_model, apply is None),
                        {"EMBEDDINGS": embeddings, "--apply": apply, **own.files()}, run.force)
    if apply is not None:
        with plan:
            result = apply_quantizer(apply, embeddings, output, fmt=fmt, device=run.device, force=run.force)
    else:
        options = own.of(cfg.method)
        with plan:
            result = fit_and_code(embeddings, output, cfg, save_model=save_model, fmt=fmt, device=run.device,
                                  force=run.force, resume=run.resume, options=options)
    if run.json:
        emit_json({"outputs": result.outputs, **result.stats})
        return
    con = runtime.stdout_console()
    con.print(stats_table(result.stats, str(output)))
    for line in also_wrote(result.outputs):
        con.print(line, soft_wrap=True, highlight=False, markup=False)


def quantize_outputs(output: Path, fmt: str, save_model: Path | None, fitting: bool) -> list[Output | None]:
    """What ``uqf quantize`` writes: the SIDs (+ its checkpoint when fitting), the LC-Rec index, the quantizer."""
    from uqf_cli.quantize.stage import check_format, lcrec_index_path

    check_format(fmt)
    index = lcrec_index_path(output) if fmt == "lcrec" else None
    return [want(output, "sids", checkpoint=fitting),
            want(index, "lcrec-index", "--format lcrec", role="the LC-Rec index of --output (--format lcrec)"),
            want(save_model, "quantizer", "--save-model")]


_OUTPUT_NAMES = {"lcrec_index": "LC-Rec/LETTER index (item id -> SID tokens)", "model": "quantizer (for --apply)"}


def also_wrote(outputs: dict[str, str]) -> list[str]:
    """``also wrote sids.index.json: LC-Rec/LETTER index ...``: every output besides the SIDs file."""
    return [f"also wrote {path}: {_OUTPUT_NAMES.get(kind, kind)}" for kind, path in outputs.items() if kind != "sids"]


def stats_table(stats: dict[str, Any], title: str) -> Table:
    """Per-level utilisation/perplexity, then collisions and reconstruction error (when the method has one)."""
    t = Table(title=title)
    t.add_column("level")
    t.add_column("codes", justify="right")
    t.add_column("used", justify="right")
    t.add_column("utilisation", justify="right")
    t.add_column("perplexity", justify="right")
    for lv in stats["per_level"]:
        t.add_row(str(lv["level"]), str(lv["codebook_size"]), str(lv["used"]), f"{lv['utilisation']:.1%}",
                  f"{lv['perplexity']:.1f}")
    t.add_section()
    rows = [("items", f"{stats['items']:,}"), ("raw collision rate", f"{stats['raw_collision_rate']:.2%}")]
    if "collisions_with_existing" in stats:
        rows.append(("collisions with existing items", str(stats["collisions_with_existing"])))
    if "raw_collision_groups" in stats:
        groups = f"{stats['raw_collision_groups']} / {stats['max_items_per_sid']}"
        rows.append(("colliding SIDs / largest group", groups))
    if "depth" in stats:
        rows.append((f"depth (dedup {stats['dedup']})" if "dedup" in stats else "depth", stats["depth"]))
    if "letter" in stats:
        lt = stats["letter"]
        rows.append(("LETTER (w-collab / w-diversity; warm items)",
                     f"{lt['w_collab']:g} / {lt['w_diversity']:g}; {lt['warm_items']:,}"))
    rows.append(("final collision rate", f"{stats['final_collision_rate']:.2%}"))
    if "recon_mse" in stats:
        rows.append(("reconstruction MSE (relative)", f"{stats['recon_mse']:.4g} ({stats['recon_rel']:.1%})"))
    for name, value in rows:
        t.add_row(name, "", "", "", value)
    return t
