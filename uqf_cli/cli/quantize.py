"""``uqf quantize EMB.st -o sids.jsonl`` and ``uqf quantize --apply quantizer.st new.st -o new_sids.jsonl``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from uqf_cli.cli.common import emit_json
from uqf_cli.cli.options import OutFile, RunOptions, command
from uqf_cli.core import runtime
from uqf_cli.core.bounds import Range
from uqf_cli.core.errors import OptionError
from uqf_cli.files.outputs import Output, plan_outputs, want
from uqf_cli.quantize import QuantizeConfig
from uqf_cli.quantize.letter import LetterConfig

_Q = QuantizeConfig()
_L = LetterConfig()


def register(app: typer.Typer) -> None:
    @command(app, "quantize", "seed", "device", "force", "resume", "quiet", "json")
    def quantize_cmd(
        embeddings: Annotated[Path, typer.Argument(help="Embedding file (.st): text, collaborative or unified.")],
        output: OutFile,
        method: Annotated[str, typer.Option("--method", help="rqvae (trained MLP + residual codebooks) | "
                                            "rqkmeans (residual k-means, no training).")] = _Q.method,
        levels: Annotated[int, typer.Option("--levels", help="Number of code levels.", min=1, max=8)] = _Q.levels,
        codebook_size: Annotated[str, typer.Option("--codebook-size", help="Codes per level: auto (the smallest "
                                                   "power of two K with K*K >= items), one int, or one per level "
                                                   "(\"256,256,128\").")] = "auto",
        code_dim: Annotated[int, typer.Option("--code-dim", help="RQ-VAE latent dimension.", min=1)] = _Q.code_dim,
        hidden: Annotated[str, typer.Option("--hidden", help="RQ-VAE encoder hidden sizes (decoder mirrors).")]
        = ",".join(map(str, _Q.hidden)),
        epochs: Annotated[int, typer.Option("--epochs", help="RQ-VAE training epochs (after warm-up).", min=0)
                          ] = _Q.epochs,
        warmup_epochs: Annotated[int, typer.Option("--warmup-epochs", help="Autoencoder-only epochs before the "
                                                   "k-means codebook initialisation.", min=0)] = _Q.warmup_epochs,
        lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate."), Range(gt=0)] = _Q.lr,
        beta: Annotated[float, typer.Option("--beta", help="Commitment weight.", min=0)] = _Q.beta,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Items per step (full batch below it).", min=1)]
        = _Q.batch_size,
        sinkhorn_eps: Annotated[float | None, typer.Option("--sinkhorn-eps", help="Balanced (Sinkhorn) assignment "
                                                           "epsilon on the --sinkhorn-levels (default "
                                                           f"{_Q.sinkhorn_eps}); --no-sinkhorn for nearest codes."),
                                 Range(gt=0)]
        = _Q.sinkhorn_eps,
        no_sinkhorn: Annotated[bool, typer.Option("--no-sinkhorn", help="Plain nearest-code assignment on every "
                                                  "level.")] = False,
        sinkhorn_levels: Annotated[str, typer.Option("--sinkhorn-levels", help="Balanced levels: rest (all but the "
                                                     "first) | last | all | numbers (\"2,3\").")] = _Q.sinkhorn_levels,
        sinkhorn_iters: Annotated[int, typer.Option("--sinkhorn-iters", help="Sinkhorn-Knopp iterations.", min=1)
                                  ] = _Q.sinkhorn_iters,
        fit_sample: Annotated[int, typer.Option("--fit-sample", help="Fit on at most this many items (seeded "
                                                "sample); all items are coded.", min=2)] = _Q.fit_sample,
        dedup: Annotated[str, typer.Option("--dedup", help="level (append a disambiguating code) | sinkhorn "
                                           "(re-assign the last code of colliding items).")] = _Q.dedup,
        fmt: Annotated[str, typer.Option("--format", help="jsonl | lcrec (also writes <stem>.index.json).")]
        = "jsonl",
        save_model: Annotated[Path | None, typer.Option("--save-model", help="Save the quantizer (safetensors) "
                                                        "to code new items later with --apply.")] = None,
        apply: Annotated[Path | None, typer.Option("--apply", help="Code EMBEDDINGS with this saved quantizer "
                                                   "instead of fitting one.")] = None,
        collab: Annotated[Path | None, typer.Option("--collab", help="LETTER-style training: align the quantized "
                                                    "items with these collaborative (train-gcn) embeddings.",
                                                    dir_okay=False)] = None,
        w_collab: Annotated[float, typer.Option("--w-collab", help="LETTER collaborative alignment weight "
                                                "(alpha; needs --collab).", min=0)] = _L.w_collab,
        w_diversity: Annotated[float, typer.Option("--w-diversity", help="LETTER code diversity weight (beta; "
                                                   "needs --collab).", min=0)] = _L.w_diversity,
        letter_temperature: Annotated[float, typer.Option("--letter-temperature", help="Temperature of both "
                                                          "LETTER InfoNCE terms."), Range(gt=0)] = _L.temperature,
        letter_clusters: Annotated[int, typer.Option("--letter-clusters", help="Clusters of code vectors per "
                                                     "level for the diversity term.", min=2)] = _L.clusters,
        run: RunOptions = RunOptions(),
    ) -> None:
        """Quantize item embeddings into hierarchical semantic IDs (RQ-VAE or residual k-means)."""
        from uqf_cli import quantize as q
        from uqf_cli.cli.common import parse_csv

        plan = plan_outputs(quantize_outputs(output, fmt, save_model, apply is None),
                            {"EMBEDDINGS": embeddings, "--apply": apply, "--collab": collab}, run.force)
        if apply is not None:
            with plan:
                result = q.apply_quantizer(apply, embeddings, output, fmt=fmt, device=run.device, force=run.force)
        else:
            try:
                hidden_sizes = [int(h) for h in parse_csv(hidden)]
            except ValueError as e:
                raise OptionError("--hidden", f"expected comma-separated ints, got {hidden!r}") from e
            cfg = q.QuantizeConfig(
                method=method, levels=levels, codebook_sizes=q.parse_codebook_sizes(codebook_size, levels),
                code_dim=code_dim, hidden=hidden_sizes, epochs=epochs, warmup_epochs=warmup_epochs, lr=lr,
                beta=beta, batch_size=batch_size, sinkhorn_eps=None if no_sinkhorn else sinkhorn_eps,
                sinkhorn_iters=sinkhorn_iters, sinkhorn_levels=sinkhorn_levels, fit_sample=fit_sample, dedup=dedup,
                seed=run.seed,
            )
            cfg.validate()
            letter = letter_config(collab, w_collab, w_diversity, letter_temperature, letter_clusters)
            with plan:
                result = q.quantize(embeddings, output, cfg, save_model=save_model, fmt=fmt, device=run.device,
                                    force=run.force, resume=run.resume, letter=letter)
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


def letter_config(collab: Path | None, w_collab: float, w_diversity: float, temperature: float,
                  clusters: int) -> LetterConfig | None:
    """The LETTER settings (a ``LetterConfig``) when ``--collab`` is given; LETTER options without it are refused."""
    if collab is None:
        if (w_collab, w_diversity, temperature, clusters) != (_L.w_collab, _L.w_diversity, _L.temperature,
                                                               _L.clusters):
            raise OptionError("--collab", "the LETTER options (--w-collab, --w-diversity, --letter-*) need --collab")
        return None
    return LetterConfig(collab=str(collab), w_collab=w_collab, w_diversity=w_diversity, temperature=temperature,
                        clusters=clusters)


_OUTPUT_NAMES = {"lcrec_index": "LC-Rec/LETTER index (item id -> SID tokens)", "model": "quantizer (for --apply)"}


def also_wrote(outputs: dict[str, str]) -> list[str]:
    """``also wrote sids.index.json: LC-Rec/LETTER index ...``: every output besides the SIDs file."""
    return [f"also wrote {path}: {_OUTPUT_NAMES.get(kind, kind)}" for kind, path in outputs.items() if kind != "sids"]


def stats_table(stats: dict[str, Any], title: str) -> Table:
    """Per-level utilisation/perplexity, then collisions and reconstruction error."""
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
    rows += [("final collision rate", f"{stats['final_collision_rate']:.2%}"),
             ("reconstruction MSE (relative)", f"{stats['recon_mse']:.4g} ({stats['recon_rel']:.1%})")]
    for name, value in rows:
        t.add_row(name, "", "", "", value)
    return t
