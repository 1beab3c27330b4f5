"""``uqf evaluate MODEL_DIR DS [--split test] [--json] [-o metrics.json] [--predictions preds.jsonl]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from uqf_cli.cli.common import cli_command, emit_json
from uqf_cli.cli.options import ModelDir, RunOptions, shared_options
from uqf_cli.core import runtime
from uqf_cli.evaluation import EvaluateConfig
from uqf_cli.evaluation import evaluate as evaluate_model
from uqf_cli.evaluation.evaluate import MIN_TIMED_SECONDS
from uqf_cli.files.outputs import plan_outputs, want


@cli_command
@shared_options("device", "force", "quiet", "json")
def evaluate(
    model_dir: ModelDir,
    dataset: Annotated[Path, typer.Argument(help="The dataset directory the model was trained on.")],
    sids: Annotated[Path | None, typer.Option("--sids", help="Check that the model was trained on these SIDs.",
                                              dir_okay=False)] = None,
    predictions: Annotated[Path | None, typer.Option("--predictions", help="Write top-K lists (JSONL).",
                                                     dir_okay=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write metrics JSON (with provenance).",
                                                dir_okay=False)] = None,
    cfg: EvaluateConfig = EvaluateConfig(),
    run: RunOptions = RunOptions(),
) -> None:
    """Recall@K and NDCG@K of a trained recommender (full ranking, one target per user)."""
    outputs = [want(predictions, "predictions", "--predictions"), want(output, "metrics")]
    with plan_outputs(outputs, {"MODEL_DIR": model_dir, "DATASET": dataset, "--sids": sids}, run.force):
        result = evaluate_model(model_dir, dataset, cfg, sids_path=sids, predictions=predictions, output=output,
                                force=run.force)
    if run.json:
        emit_json(result)
        return
    runtime.stdout_console().print(metrics_table(result))
    if "by_popularity" in result:
        runtime.stdout_console().print(popularity_table(result["by_popularity"], result["backbone"]))
    if "by_coldness" in result:
        runtime.stdout_console().print(coldness_table(result["by_coldness"], result["backbone"]))


def metrics_table(result: dict[str, Any]) -> Table:
    """Metrics as rows; the popularity baselines as extra columns when present."""
    speed = (f"{result['users_per_second']:,} users/s" if result.get("users_per_second") is not None
             else f"ranked in under {MIN_TIMED_SECONDS:g} s")
    mode = f" ({result['rank']}, alpha {result['alpha']:g})" if "rank" in result else ""
    title = f"{result['backbone']}{mode} on {result['split']}"
    caption = f"{result['users']:,} users, beam {result['beam_size']}, {speed}"
    # wide enough for title and caption on one line each: a narrow table would wrap them mid-word
    t = Table(title=title, caption=caption, min_width=max(len(title), len(caption)) + 4)
    t.add_column("metric")
    t.add_column(result["backbone"], justify="right")
    extra = [k for k in ("popularity", "popularity_excluding_history") if k in result]
    for k in extra:
        t.add_column(k.replace("_", " "), justify="right")
    for name, value in result["metrics"].items():
        t.add_row(name, f"{value:.4f}", *(f"{result[k][name]:.4f}" for k in extra))
    return t


def popularity_table(by_pop: dict[str, Any], backbone: str) -> Table:
    """One column per popularity group (head / torso / tail), with its items and users."""
    groups = by_pop["groups"]
    t = Table(title=f"{backbone} by target popularity", caption=f"{by_pop['rule']}; cold items "
              f"{by_pop['cold_items']:,}, users with a cold target {by_pop['cold_users']:,}")
    t.add_column("metric")
    for name, g in groups.items():
        t.add_column(f"{name} ({g['items']:,} items, {g['users']:,} users)", justify="right")
    for metric in next(iter(groups.values()))["metrics"]:
        t.add_row(metric, *(f"{g['metrics'][metric]:.4f}" for g in groups.values()))
    return t


def coldness_table(by_cold: dict[str, Any], backbone: str) -> Table:
    """One column per target group (cold / warm), with its users."""
    groups = by_cold["groups"]
    share = next((v for k, v in by_cold.items() if k.startswith("cold_in_top")), None)
    note = f"; cold share of the top 10: {share:.4f}" if share is not None else ""
    t = Table(title=f"{backbone} by target coldness",
              caption=f"cold items: {by_cold['rule']} ({by_cold['cold_items']:,}){note}")
    t.add_column("metric")
    for name, g in groups.items():
        t.add_column(f"{name} ({g['users']:,} users)", justify="right")
    for metric in groups["warm"]["metrics"]:
        t.add_row(metric, *(f"{g['metrics'][metric]:.4f}" for g in groups.values()))
    return t
