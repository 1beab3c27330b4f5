"""``uqf train-rec DS [--sids SIDS] -o MODEL_DIR --backbone tiger|lcrec|sasrec``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from uqf_cli import runtime
from uqf_cli.cli.common import cli_command, emit_json, start
from uqf_cli.cli.options import Device, Force, JsonOut, OutDir, PlotOut, Quiet, Resume, Seed

SHARED_PANEL = "Training (tiger, lcrec, sasrec, lightgcn: each uses the ones it knows)"
TIGER_PANEL = "TIGER (--backbone tiger)"
LCREC_PANEL = "LC-Rec (--backbone lcrec)"
RUN_OPTIONS = ("seed", "device", "resume")  # accepted by every backbone


def _shared(flag: str, text: str | None) -> Any:
    return typer.Option(flag, help=text, rich_help_panel=SHARED_PANEL)


def _tiger(flag: str, text: str | None) -> Any:
    return typer.Option(flag, help=text, rich_help_panel=TIGER_PANEL)


def _lcrec(flag: str, text: str | None) -> Any:
    return typer.Option(flag, help=text, rich_help_panel=LCREC_PANEL)


def register(app: typer.Typer) -> None:
    @app.command("train-rec")
    @cli_command
    def train_rec_cmd(
        dataset: Annotated[Path, typer.Argument(help="Dataset directory from `uqf prepare`.")],
        output: OutDir,
        sids: Annotated[Path | None, typer.Option("--sids", help="SIDs file (tiger, lcrec; sasrec needs none).",
                                                  dir_okay=False)] = None,
        backbone: Annotated[str, typer.Option("--backbone", help="tiger | lcrec | sasrec")] = "tiger",
        epochs: Annotated[float | None, _shared("--epochs", "Training epochs (backbone default).")] = None,
        batch_size: Annotated[int | None, _shared("--batch-size", "Batch size per device.")] = None,
        lr: Annotated[float | None, _shared("--lr", "Peak learning rate (AdamW).")] = None,
        weight_decay: Annotated[float | None, _shared("--weight-decay", None)] = None,
        max_history: Annotated[int | None, _shared("--max-history", "History items per sample (20).")] = None,
        warmup_steps: Annotated[int | None, _tiger("--warmup-steps", "tiger: warmup steps.")] = None,
        eval_every: Annotated[int | None, _shared("--eval-every", "tiger/sasrec: validate every N epochs.")] = None,
        eval_users: Annotated[int | None, _tiger("--eval-users", "tiger: valid users sampled for early stopping.")
                              ] = None,
        patience: Annotated[int | None, _shared("--patience", "Evaluations without improvement before stopping.")
                            ] = None,
        user_tokens: Annotated[int | None, _tiger("--user-tokens", "tiger: hashed user tokens (0 = off).")] = None,
        preset: Annotated[str | None, _tiger("--preset", "tiger: model shape, tiger (the paper's, default) | small "
                                             "(CPU budgets); explicit shape options override it.")] = None,
        d_model: Annotated[int | None, _shared("--d-model", "tiger/sasrec: hidden size.")] = None,
        num_layers: Annotated[int | None, _shared("--num-layers", "tiger: encoder layers; sasrec: blocks.")] = None,
        num_decoder_layers: Annotated[int | None, _tiger("--num-decoder-layers", "tiger: decoder layers.")] = None,
        dropout: Annotated[float | None, _shared("--dropout", None)] = None,
        engine: Annotated[str | None, _tiger("--engine", "tiger: training forward, lean (fused attention, bf16 "
                                             "autocast where the CPU has it; default) | hf (Hugging Face's, fp32 on "
                                             "CPU).")] = None,
        base_model: Annotated[str | None, _lcrec("--base-model", "lcrec: hub id, local dir or .gguf (default: "
                                                 "embedded SmolLM2-135M).")] = None,
        gguf_file: Annotated[str | None, _lcrec("--gguf-file", "lcrec: GGUF file inside --base-model.")] = None,
        trust_remote_code: Annotated[bool, _lcrec("--trust-remote-code", "lcrec: allow the base model's own code "
                                                  "(only for models you trust).")] = False,
        lora_r: Annotated[int | None, _lcrec("--lora-r", "lcrec: LoRA rank.")] = None,
        lora_alpha: Annotated[int | None, _lcrec("--lora-alpha", "lcrec: LoRA alpha.")] = None,
        lora_dropout: Annotated[float | None, _lcrec("--lora-dropout", None)] = None,
        lora_target_modules: Annotated[str | None, _lcrec("--lora-target-modules", "lcrec: comma list of module "
                                                          "names.")] = None,
        align_tasks: Annotated[bool, _lcrec("--align-tasks", "lcrec: add title<->SID tasks.")] = False,
        max_steps: Annotated[int | None, _lcrec("--max-steps", "lcrec: cap optimizer steps.")] = None,
        grad_accum: Annotated[int | None, _lcrec("--grad-accum", "lcrec: gradient accumulation.")] = None,
        max_samples: Annotated[int | None, _lcrec("--max-samples", "lcrec: cap training samples.")] = None,
        plot: PlotOut = None,
        seed: Seed = 0,
        device: Device = "auto",
        force: Force = False,
        resume: Resume = False,
        quiet: Quiet = False,
        json_out: JsonOut = False,
    ) -> None:
        """Train a recommender (TIGER, LC-Rec or SASRec) on the train split and write a model directory.

        Multi-GPU / multi-process: `torchrun --nproc_per_node N -m uqf_cli train-rec ...`.
        """
        from uqf_cli.dataset import Dataset
        from uqf_cli.io import check_output, read_sids
        from uqf_cli.rec import backbone_module

        start(quiet)
        module = backbone_module(backbone)
        options: dict[str, Any] = {
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "max_history": max_history, "warmup_steps": warmup_steps, "eval_every": eval_every,
            "eval_users": eval_users, "patience": patience, "user_tokens": user_tokens, "d_model": d_model,
            "num_layers": num_layers, "num_decoder_layers": num_decoder_layers, "dropout": dropout,
            "base_model": base_model, "gguf_file": gguf_file, "trust_remote_code": trust_remote_code or None,
            "lora_r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
            "lora_target_modules": lora_target_modules, "align_tasks": align_tasks or None, "max_steps": max_steps,
            "grad_accum": grad_accum, "max_samples": max_samples, "seed": seed, "device": device,
            "resume": resume or None, "preset": preset, "engine": engine,
        }
        if epochs is not None:  # whole numbers as int (tiger and sasrec count epochs; lcrec accepts fractions)
            options["epochs"] = _whole_epochs(epochs) if backbone == "tiger" else (
                int(epochs) if epochs == int(epochs) else epochs)
        given = {k: v for k, v in options.items() if v is not None}
        check_backbone_uses(backbone, module.OPTIONS, given)
        check_output(output, force)
        if plot is not None:
            _check_plot(plot, backbone, force)
        ds = Dataset.load(dataset)
        table = read_sids(sids) if sids is not None else None
        summary = module.train(ds, table, output, given, force)
        if not _is_main_process():
            return
        if plot is not None:
            from uqf_cli.plots.training import plot_training

            runtime.info(f"wrote {plot_training(output, plot, force)}")
        if json_out:
            emit_json(summary)
            return
        runtime.stdout_console().print(summary_table(summary, str(output)))


def check_backbone_uses(backbone: str, known: tuple[str, ...], given: dict[str, Any]) -> None:
    """An option the chosen backbone does not read is an error, not silently dropped."""
    from uqf_cli.errors import OptionError

    unused = [k for k in given if k not in known and k not in RUN_OPTIONS]
    if unused:
        raise OptionError(f"--{unused[0].replace('_', '-')}", f"the {backbone} backbone does not use this option")


def _check_plot(plot: Path, backbone: str, force: bool) -> None:
    from uqf_cli.plots import check_plot_output
    from uqf_cli.plots.training import check_curve_backbone

    check_curve_backbone(backbone)
    check_plot_output(plot, force)


def _whole_epochs(epochs: float) -> int:
    from uqf_cli.errors import OptionError

    if epochs != int(epochs) or epochs < 1:
        raise OptionError("--epochs", "the tiger backbone trains whole epochs (a positive integer)")
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
