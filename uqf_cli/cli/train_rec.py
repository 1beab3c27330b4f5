"""``uqf train-rec DS [--sids SIDS] -o MODEL_DIR --backbone tiger|lcrec|sasrec``."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from uqf_cli.cli.common import emit_json
from uqf_cli.cli.options import OutDir, PlotOut, RunOptions, command, panel_options
from uqf_cli.core import runtime
from uqf_cli.core.bounds import Range
from uqf_cli.rec import BACKBONES

SHARED_PANEL = "Training (tiger, lcrec, sasrec, lightgcn: each uses the ones it knows)"
TIGER_PANEL = "TIGER (--backbone tiger; the hybrid backbone reads them too)"
LCREC_PANEL = "LC-Rec (--backbone lcrec)"
HYBRID_PANEL = "Hybrid (--backbone hybrid: TIGER's options plus these; textknn: --item-emb)"
RUN_OPTIONS = ("seed", "device", "resume")  # accepted by every backbone


@cache
def backbone_defaults() -> dict[str, dict[str, Any]]:
    """Each backbone's default for every train-rec option it reads, from its options dataclass."""
    from uqf_cli.collab.config import GcnConfig
    from uqf_cli.rec.hybrid.options import HybridOptions
    from uqf_cli.rec.lcrec.options import LcRecOptions
    from uqf_cli.rec.lightgcn import GCN_OPTIONS
    from uqf_cli.rec.sasrec import SasRecOptions
    from uqf_cli.rec.tiger.options import PRESETS, TigerOptions

    gcn, sasrec = asdict(GcnConfig()), asdict(SasRecOptions())
    return {
        "tiger": asdict(TigerOptions(**PRESETS[TigerOptions.preset])),
        "hybrid": asdict(HybridOptions(**PRESETS[HybridOptions.preset])),
        "lcrec": asdict(LcRecOptions()),
        "sasrec": {**sasrec, **{alias: sasrec[key] for alias, key in SasRecOptions.ALIASES.items()}},
        "lightgcn": {option: gcn[name] for option, name in GCN_OPTIONS.items()},
    }


def with_defaults(flag: str, text: str | None) -> str:
    """``text`` followed by the numeric defaults of the backbones that read ``flag``."""
    key = flag.removeprefix("--").replace("-", "_")
    found = {b: d[key] for b, d in backbone_defaults().items()
             if isinstance(d.get(key), (int, float)) and not isinstance(d.get(key), bool)}
    if not found:
        return text or ""
    values = set(found.values())
    note = (f"default {values.pop():g}" if len(values) == 1
            else "defaults: " + ", ".join(f"{b} {v:g}" for b, v in found.items()))
    return f"{text} ({note})." if text else f"({note})."


_shared = panel_options(SHARED_PANEL, with_defaults)
_tiger = panel_options(TIGER_PANEL, with_defaults)
_lcrec = panel_options(LCREC_PANEL, with_defaults)
_hybrid = panel_options(HYBRID_PANEL, with_defaults)


def register(app: typer.Typer) -> None:
    @command(app, "train-rec", "seed", "device", "force", "resume", "quiet", "json")
    def train_rec_cmd(
        dataset: Annotated[Path, typer.Argument(help="Dataset directory from `uqf prepare`.")],
        output: OutDir,
        sids: Annotated[Path | None, typer.Option("--sids", help="SIDs file (tiger, lcrec; sasrec needs none).",
                                                  dir_okay=False)] = None,
        backbone: Annotated[str, typer.Option("--backbone", help=" | ".join(BACKBONES))] = "tiger",
        epochs: Annotated[float | None, _shared("--epochs", "Training epochs, a whole number; lcrec also takes a "
                                                "fraction such as 0.5", metavar="<int>"), Range(gt=0)] = None,
        batch_size: Annotated[int | None, _shared("--batch-size", "Batch size per device", min=1)] = None,
        lr: Annotated[float | None, _shared("--lr", "Peak AdamW learning rate"), Range(gt=0)] = None,
        weight_decay: Annotated[float | None, _shared("--weight-decay", "Weight decay", min=0)] = None,
        max_history: Annotated[int | None, _shared("--max-history", "History items per sample", min=1)] = None,
        warmup_steps: Annotated[int | None, _tiger("--warmup-steps", "tiger: warmup steps, at most a tenth of all",
                                                       min=0)
                                ] = None,
        warmup_ratio: Annotated[float | None, _tiger("--warmup-ratio", "tiger: warmup as a share of all planned "
                                                     "steps; overrides --warmup-steps when > 0"),
                                Range(ge=0, lt=1)] = None,
        lr_schedule: Annotated[str | None, _tiger("--lr-schedule", "tiger: after warmup, linear | cosine decay to "
                                                  "zero at the last planned epoch, or constant (default linear)."
                                                  )] = None,
        eval_beam: Annotated[int | None, _shared("--eval-beam", "tiger, lcrec: beam size of the validation search",
                                                 min=10)] = None,
        eval_every: Annotated[int | None, _shared("--eval-every", "Validate every N epochs", min=1)] = None,
        eval_users: Annotated[int | None, _shared("--eval-users", "tiger, lcrec: valid users sampled for early "
                                                  "stopping", min=1)] = None,
        patience: Annotated[int | None, _shared("--patience", "Evaluations without improvement before stopping",
                                                     min=0)
                            ] = None,
        user_tokens: Annotated[int | None, _tiger("--user-tokens", "tiger: hashed user tokens, 0 = off", min=0)] = None,
        preset: Annotated[str | None, _tiger("--preset", "tiger: model shape, tiger (the paper's, default) | small "
                                             "(CPU budgets); explicit shape options override it.")] = None,
        d_model: Annotated[int | None, _shared("--d-model", "Hidden size; lightgcn: embedding size", min=1)] = None,
        num_layers: Annotated[int | None, _shared("--num-layers", "tiger: encoder layers; sasrec: blocks; "
                                                  "lightgcn: propagation layers", min=1)] = None,
        num_decoder_layers: Annotated[int | None, _tiger("--num-decoder-layers", "tiger: decoder layers", min=1)
                                      ] = None,
        dropout: Annotated[float | None, _shared("--dropout", "Dropout"), Range(ge=0, lt=1)] = None,
        engine: Annotated[str | None, _tiger("--engine", "tiger: training forward, lean (fused attention, bf16 "
                                             "autocast where the CPU has it; default) | hf (Hugging Face's, fp32 on "
                                             "CPU).")] = None,
        base_model: Annotated[str | None, _lcrec("--base-model", "lcrec: hub id, local dir or .gguf (default: "
                                                 "embedded SmolLM2-135M).")] = None,
        gguf_file: Annotated[str | None, _lcrec("--gguf-file", "lcrec: GGUF file inside --base-model.")] = None,
        trust_remote_code: Annotated[bool, _lcrec("--trust-remote-code", "lcrec: allow the base model's own code "
                                                  "(only for models you trust).")] = False,
        lora_r: Annotated[int | None, _lcrec("--lora-r", "lcrec: LoRA rank", min=1)] = None,
        lora_alpha: Annotated[int | None, _lcrec("--lora-alpha", "lcrec: LoRA alpha", min=1)] = None,
        lora_dropout: Annotated[float | None, _lcrec("--lora-dropout", "lcrec: LoRA dropout"), Range(ge=0, lt=1)
                                ] = None,
        lora_target_modules: Annotated[str | None, _lcrec("--lora-target-modules", "lcrec: comma list of module "
                                                          "names.")] = None,
        align_tasks: Annotated[bool, _lcrec("--align-tasks", "lcrec: add title<->SID tasks.")] = False,
        max_steps: Annotated[int | None, _lcrec("--max-steps", "lcrec: cap optimizer steps.", min=1)] = None,
        grad_accum: Annotated[int | None, _lcrec("--grad-accum", "lcrec: gradient accumulation", min=1)] = None,
        max_samples: Annotated[int | None, _lcrec("--max-samples", "lcrec: cap training samples.", min=1)] = None,
        windows: Annotated[str | None, _lcrec("--windows", "lcrec: training windows, all | last:K (the last K of "
                                              "every user; default all).")] = None,
        eval_steps: Annotated[int | None, _lcrec("--eval-steps", "lcrec: validate every N optimizer steps and stop "
                                                 "early (default: no validation).", min=1)] = None,
        precision: Annotated[str | None, _lcrec("--precision", "lcrec: auto (bf16 where the CPU/GPU has it; "
                                                "default) | bf16 | fp32.")] = None,
        lm_head: Annotated[str | None, _lcrec("--lm-head", "lcrec: response (output head only at response "
                                              "positions; default) | full.")] = None,
        batching: Annotated[str | None, _lcrec("--batching", "lcrec: bucketed (equal-length batches; default) | "
                                               "random.")] = None,
        prompt_template: Annotated[str | None, _lcrec("--prompt-template", "lcrec: compact (default) | alpaca "
                                                      "(LC-Rec's original).")] = None,
        item_emb: Annotated[Path | None, _hybrid("--item-emb", "hybrid, textknn: item embeddings file (aligned by "
                                                 "id; e.g. the UQF unified.st, or the text .st)")] = None,
        dense_weight: Annotated[float | None, _hybrid("--dense-weight", "hybrid: weight of the dense loss", min=0)
                                ] = None,
        dense_loss: Annotated[str | None, _hybrid("--dense-loss", "hybrid: cosine | inbatch | softmax (default "
                                                  "inbatch)")] = None,
        temperature: Annotated[float | None, _hybrid("--temperature", "hybrid: softmax temperature of the dense "
                                                     "scores"), Range(gt=0)] = None,
        dense_query: Annotated[str | None, _hybrid("--dense-query", "hybrid: decoder (first decoder state, "
                                                   "default) | encoder (mean of the encoder states)")] = None,
        rank: Annotated[str | None, _hybrid("--rank", "hybrid: stored ranking mode and validation metric, "
                                            "generate | hybrid | dense (default hybrid)")] = None,
        alpha: Annotated[float | None, _hybrid("--alpha", "hybrid: mix alpha * P_dense + (1 - alpha) * P_generate "
                                               "in the hybrid mode", min=0, max=1)] = None,
        plot: PlotOut = None,
        run: RunOptions = RunOptions(),
    ) -> None:
        """Train a recommender (--backbone: TIGER or LC-Rec over SIDs, SASRec, LightGCN or popularity over item
        ids) on the train split and write a model directory.

        Multi-GPU / multi-process: `torchrun --nproc_per_node N -m uqf_cli train-rec ...`.
        """
        from uqf_cli.files.outputs import plan_outputs, want
        from uqf_cli.rec import backbone_module, check_backbone_uses, train_rec

        module = backbone_module(backbone)
        options: dict[str, Any] = {
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "max_history": max_history, "warmup_steps": warmup_steps, "warmup_ratio": warmup_ratio,
            "lr_schedule": lr_schedule, "eval_beam": eval_beam, "eval_every": eval_every,
            "eval_users": eval_users, "patience": patience, "user_tokens": user_tokens, "d_model": d_model,
            "num_layers": num_layers, "num_decoder_layers": num_decoder_layers, "dropout": dropout,
            "base_model": base_model, "gguf_file": gguf_file, "trust_remote_code": trust_remote_code or None,
            "lora_r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
            "lora_target_modules": lora_target_modules, "align_tasks": align_tasks or None, "max_steps": max_steps,
            "grad_accum": grad_accum, "max_samples": max_samples, "windows": windows, "eval_steps": eval_steps,
            "precision": precision, "lm_head": lm_head, "batching": batching, "prompt_template": prompt_template,
            "seed": run.seed, "device": run.device,
            "resume": run.resume or None, "preset": preset, "engine": engine,
            "item_emb": str(item_emb) if item_emb is not None else None, "dense_weight": dense_weight,
            "dense_loss": dense_loss, "temperature": temperature, "dense_query": dense_query, "rank": rank,
            "alpha": alpha,
        }
        if epochs is not None:  # whole numbers as int (lcrec alone accepts fractions)
            options["epochs"] = _whole_epochs(epochs, backbone) if backbone != "lcrec" else (
                int(epochs) if epochs == int(epochs) else epochs)
        given = {k: v for k, v in options.items() if v is not None}
        check_backbone_uses(backbone, module.OPTIONS, given)  # before the plot check: the option is the error
        inputs = {"DATASET": dataset, "--sids": sids, "--base-model": Path(base_model) if base_model else None}
        plan = plan_outputs([want(output, "model", checkpoint=True), want(plot, "figure", "--plot")], inputs,
                            run.force)
        if plot is not None:
            _check_plot(plot, backbone, run.force)
        with plan if _is_main_process() else nullcontext():  # torchrun: rank 0 writes and holds the locks
            summary = train_rec(dataset, output, sids, backbone, run.force, **given)
            if not _is_main_process():
                return
            if plot is not None:
                from uqf_cli.plots.training import plot_training

                runtime.info(f"wrote {plot_training(output, plot, run.force)}")
        if run.json:
            emit_json(summary)
            return
        runtime.stdout_console().print(summary_table(summary, str(output)))


def _check_plot(plot: Path, backbone: str, force: bool) -> None:
    from uqf_cli.plots import check_plot_output
    from uqf_cli.plots.training import check_curve_backbone

    check_curve_backbone(backbone)
    check_plot_output(plot, force)


def _whole_epochs(epochs: float, backbone: str) -> int:
    from uqf_cli.core.errors import OptionError

    if epochs != int(epochs) or epochs < 1:
        raise OptionError("--epochs", f"the {backbone} backbone trains whole epochs (a positive integer; "
                          "only lcrec takes fractions)")
    return int(epochs)


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def summary_table(summary: dict[str, Any], title: str) -> Table:
    """Scalar entries of a training summary, one row each."""
    t = Table(title=title)
    t.add_column("field")
    t.add_column("value", justify="right")
    for k, v in summary.items():
        if isinstance(v, (dict, list)):
            continue
        t.add_row(k.replace("_", " "), f"{v:.4g}" if isinstance(v, float) else str(v))
    return t
