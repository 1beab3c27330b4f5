"""LC-Rec training: LoRA fine-tuning of the base model on the prompts through the HF ``Trainer``
(CPU, one GPU with bf16/fp16, or DDP under ``torchrun``), resumable, and the model directory.

Cost levers (each an option; :data:`~uqf_cli.rec.lcrec.options.LEGACY` is the old float32 path):
bf16 autocast on CPUs with bf16 kernels (``precision``), the output head only at response positions
(``lm_head``), length-sorted micro-batches (``batching``, ``micro_batches``, ``micro_batch_overhead``), the
compact prompt (``prompt_template``).
The CPU protocol: ``windows`` (which training windows), validation every ``eval_steps`` steps on
``eval_users`` seeded validation users with early stopping (``patience``), best weights kept."""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uqf_cli.core import runtime
from uqf_cli.core.errors import OptionError
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, atomic_path, check_output, make_provenance
from uqf_cli.files.checkpoint import TrainerCheckpoints
from uqf_cli.rec.base import check_sids_cover as base_check_sids_cover
from uqf_cli.rec.base import write_model_meta
from uqf_cli.rec.lcrec import cpu_bf16, sid_rows
from uqf_cli.rec.lcrec.batching import Collator, RandomBatches, micro_batches, padding_share, response_loss
from uqf_cli.rec.lcrec.model import BACKBONE, BaseModelRef, add_sid_tokens, load_base, lora_config, resolve_base_model
from uqf_cli.rec.lcrec.options import LcRecOptions
from uqf_cli.rec.lcrec.prompts import PROMPT_VERSION, build_examples
from uqf_cli.rec.lcrec.recommender import CPU_EVAL_BATCH, GPU_EVAL_BATCH, LcRecRecommender
from uqf_cli.rec.lcrec.validation import Validation, autocast_for, validation_sample
from uqf_cli.rec.schedule import lr_multiplier


def check_sids_cover(dataset: Dataset, sids: SidTable | None) -> SidTable:
    """The SIDs must cover the dataset (see :func:`uqf_cli.rec.base.check_sids_cover`)."""
    return base_check_sids_cover(dataset, sids, "lcrec")


def _precision(device: torch.device, precision: str = "auto") -> tuple[bool, bool]:
    """``(bf16, fp16)`` for the Trainer. ``auto``: bf16 on a GPU that supports it (else fp16) and on a
    CPU with bf16 kernels (AMX / AVX-512 bf16), float32 elsewhere; ``fp32``: neither; ``bf16``: bf16 or
    an option error where the device lacks it."""
    if precision == "fp32":
        return False, False
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not bf16:
            raise OptionError("--precision", "this GPU has no bf16 support (use auto or fp32)")
        return bf16, not bf16
    bf16 = device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if precision == "bf16" and not bf16:
        raise OptionError("--precision", f"no bf16 kernels on this {device.type} (use auto or fp32)")
    return bf16, False


def _trainer_class(lm_head: str):
    """The HF ``Trainer`` that reads :class:`~uqf_cli.rec.lcrec.batching.RandomBatches` in order, runs each
    batch as its micro-batches, and with ``lm_head="response"`` runs the output head only at response positions."""
    from transformers import Trainer

    class LcRecTrainer(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            """Batches in order: they are the epoch's random batches, drawn by the dataset."""
            dataset = (args[0] if args else kwargs.get("train_dataset")) or self.train_dataset
            if isinstance(dataset, RandomBatches):
                return torch.utils.data.SequentialSampler(dataset)
            return super()._get_train_sampler(*args, **kwargs)

        def training_step(self, model, inputs, num_items_in_batch=None):
            """One random batch: forward and backward of each micro-batch through the Trainer's own step (autocast,
            loss scaling, accelerate's backward). Each loss is divided by the label tokens of the whole optimizer
            step (``num_items_in_batch``), so the gradients add up to the random batch's. Only the last pass of
            the item may synchronise DDP gradients (the Trainer already holds back the step's other items), so
            every rank synchronises once an item however many passes its batch takes."""
            passes = micro_batches(inputs)
            if len(passes) > 1 and num_items_in_batch is None:  # _check_accumulation refuses such runs up front
                raise RuntimeError("lcrec: micro-batches need the Trainer's label-token count (num_items_in_batch)")
            losses = []
            for k, micro in enumerate(passes):
                with self.accelerator.no_sync(model) if k < len(passes) - 1 else contextlib.nullcontext():
                    losses.append(super().training_step(model, micro, num_items_in_batch))
            return torch.stack(losses).sum()

        def create_scheduler(self, num_training_steps: int, optimizer=None):
            """With ``--decay-epochs``/``--min-lr-ratio`` (``self.decay``: the decay's steps, or None for the whole
            run, and the floor): linear warmup and decay over those steps, then the floor; else the Trainer's own."""
            plan = getattr(self, "decay", None)
            if plan is None or self.lr_scheduler is not None:
                return super().create_scheduler(num_training_steps, optimizer)
            steps, floor = plan
            total = min(num_training_steps, steps) if steps else num_training_steps
            warmup = self.args.get_warmup_steps(total)  # the Trainer's own reading of --warmup-ratio, over the decay
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer or self.optimizer, lambda s: lr_multiplier(s, max(1, warmup), total, "linear", floor))
            self._created_lr_scheduler = True
            return self.lr_scheduler

    if lm_head == "full":
        return LcRecTrainer

    class ResponseHeadTrainer(LcRecTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = response_loss(model, inputs, num_items_in_batch)
            if (self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs
                    and num_items_in_batch is not None):
                loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss does for the model's loss
            return (loss, None) if return_outputs else loss

    return ResponseHeadTrainer


def _check_accumulation(trainer, data: RandomBatches) -> None:
    """Before training: several passes a batch need the step's label-token count (else each pass would be its own
    mean; the Trainer counts it for models that take loss kwargs) and a plain backward per pass (DeepSpeed counts
    its own accumulation steps)."""
    if data.parts == 1:
        return
    if trainer.is_deepspeed_enabled:
        raise OptionError("--micro-batches", "several forward passes a batch are not supported under DeepSpeed: "
                                             "use --micro-batches 1 or --batching random")
    if not trainer.model_accepts_loss_kwargs:
        raise OptionError("--micro-batches", "this model does not take the Trainer's label-token count "
                                             "(num_items_in_batch), which several forward passes a batch need: "
                                             "use --micro-batches 1 or --batching random")


class _ProgressCallback:
    """Forward the Trainer's steps to uqf's rich progress bar (quiet in pipes)."""

    def __init__(self, bar) -> None:
        self.bar = bar
        self.task = None
        self.last_loss: float | None = None
        self.step_times: list[float] = []
        self.step_cpu_times: list[float] = []
        self._tick = self._cpu_tick = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.task = self.bar.add_task("lcrec: LoRA fine-tuning", total=state.max_steps, status="")

    def on_step_begin(self, args, state, control, **kwargs):
        self._tick, self._cpu_tick = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_times.append(time.perf_counter() - self._tick)
        self.step_cpu_times.append(time.process_time() - self._cpu_tick)
        self.bar.update(self.task, completed=state.global_step)

    def seconds_per_step(self, cpu: bool = False) -> float | None:
        """Median optimizer-step wall time (``cpu``: process CPU time, all threads), first (warm-up) step
        left out when there are others. CPU time tells the cost on a machine shared with other jobs."""
        series = self.step_cpu_times if cpu else self.step_times
        times = series[1:] or series
        return float(np.median(times)) if times else None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])
            self.bar.update(self.task, status=f"loss {self.last_loss:.3f}")


def _trainer_callback(bar):
    from transformers import TrainerCallback

    class Callback(_ProgressCallback, TrainerCallback):
        pass

    return Callback(bar)


def train(dataset: Dataset, sids: SidTable | None, output: str | Path, options: dict[str, Any],
          force: bool = False) -> dict[str, Any]:
    """Fine-tune the base model with LoRA on LC-Rec's tasks and write the model directory.

    Trainer checkpoints go to ``<output>.ckpt/``; ``options["resume"]`` continues from the newest one
    (see :class:`uqf_cli.files.checkpoint.TrainerCheckpoints`).
    """
    from peft import get_peft_model
    from transformers import PrinterCallback, TrainingArguments

    output = Path(output)
    check_output(output, force, "model")
    opts = LcRecOptions.from_dict(options)
    sids = check_sids_cover(dataset, sids)
    device = runtime.resolve_device(str(opts.device))
    seed = int(opts.seed)
    runtime.seed_everything(seed)
    ref = resolve_base_model(opts.base_model, opts.gguf_file)
    t0 = time.perf_counter()
    runtime.info(f"lcrec: loading base model {ref.name} ({ref.gguf_file or ref.path})")
    tokenizer, model = load_base(ref, bool(opts.trust_remote_code))
    token_ids = add_sid_tokens(tokenizer, model, sids)
    model = get_peft_model(model, lora_config(model, opts, token_ids))
    trainable, total = model.get_nb_trainable_parameters()
    examples, counts = build_examples(dataset, sids, tokenizer, opts, random.Random(seed))
    bf16, fp16 = _precision(device, str(opts.precision))
    _speed_up(model, opts, device, bf16)
    data = _training_data(examples, opts, seed)
    first_epoch = data.micro  # the forward passes' padding, for the summary
    max_steps = int(opts.max_steps) if opts.max_steps is not None else -1
    params = {"backbone": BACKBONE, **opts.params()}
    ckpts = TrainerCheckpoints(output, "train-rec", params, _run_inputs(dataset, sids, ref),
                               resume=bool((options or {}).get("resume")))
    resume_from = ckpts.prepare(main_process=os.environ.get("RANK", "0") == "0")
    args = TrainingArguments(
        output_dir=str(ckpts.dir),  # checkpoints for --resume (saved by ckpts.callback())
        per_device_train_batch_size=1,  # one random batch per item, run as its micro-batches
        gradient_accumulation_steps=int(opts.grad_accum),
        learning_rate=float(opts.lr),
        weight_decay=float(opts.weight_decay),
        num_train_epochs=float(opts.epochs),
        max_steps=max_steps,
        warmup_steps=float(opts.warmup_ratio),
        lr_scheduler_type="linear",
        logging_steps=10,
        save_strategy="no",
        save_total_limit=1,
        report_to="none",
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        use_cpu=device.type == "cpu",
        bf16=bf16,
        fp16=fp16,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
    )
    decay = decay_plan(opts, len(data.batches), int(args.world_size))
    validation = _validation(model, tokenizer, dataset, sids, opts, device, (bf16, fp16), resume_from,
                             judge_after=(decay[0] or 0) if decay else 0)
    with runtime.progress() as bar:
        callback = _trainer_callback(bar)
        extra = [validation] if validation is not None else []
        trainer = ckpts.trainer_class(_trainer_class(str(opts.lm_head)))(
            model=model, args=args, train_dataset=data, data_collator=Collator(int(tokenizer.pad_token_id)),
            callbacks=[callback, *extra, ckpts.callback()])
        trainer.decay = decay
        trainer.remove_callback(PrinterCallback)  # it prints log dicts on stdout, which belongs to --json
        _check_accumulation(trainer, data)
        result = trainer.train(resume_from_checkpoint=resume_from)
    if validation is not None:
        validation.restore_best(trainer.model)
    world = max(1, int(args.world_size))
    summary = {
        "backbone": BACKBONE,
        "output": str(output),
        "base_model": ref.name,
        "sid_depth": sids.depth,
        "samples": counts,
        "examples": len(examples),
        "steps": int(trainer.state.global_step),
        "train_loss": float(result.training_loss),
        "last_loss": callback.last_loss,
        "trainable_parameters": int(trainable),
        "total_parameters": int(total),
        "device": str(device),
        "precision": "bf16" if bf16 else "fp16" if fp16 else "fp32",
        "padding_share": round(padding_share(first_epoch), 4),
        "forwards_per_batch": round(len(first_epoch) / len(data.batches), 3),
        "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - t0, 1),
        "seconds_per_step": callback.seconds_per_step(),
        "cpu_seconds_per_step": callback.seconds_per_step(cpu=True),
        "step_seconds": [round(t, 4) for t in callback.step_times],
        "steps_per_epoch": math.ceil(len(data.batches) / (int(opts.grad_accum) * world)),
    }
    if validation is not None:
        state = validation.summary_state()
        summary.update(history=state["history"], best_step=state["best_step"],
                       best_valid_ndcg10_sample=state["best_ndcg10"], eval_users=len(validation.cases),
                       stopped_early=validation.stopped_early)
    if trainer.is_world_process_zero():  # under DDP only rank 0 writes the model directory
        _save(trainer.model, tokenizer, dataset, sids, ref, opts, token_ids, summary, output, force)
        ckpts.finish()
    return summary


def _speed_up(model, opts: LcRecOptions, device: torch.device, bf16: bool) -> None:
    """The levers' own code paths: the SID rows beside the frozen matrices with the response-only head
    (:mod:`~uqf_cli.rec.lcrec.sid_rows`), float32 attention and bf16 weights cast once under bf16 autocast
    on a CPU (:mod:`~uqf_cli.rec.lcrec.cpu_bf16`). The float32 path (``LEGACY``) gets neither."""
    if opts.lm_head == "response":
        sid_rows.install(model)
    if bf16 and device.type == "cpu":
        cpu_bf16.prepare(model)


def _training_data(examples: list, opts: LcRecOptions, seed: int) -> RandomBatches:
    """Each epoch's seeded random batches of ``batch_size``, each run as at most ``micro_batches`` length-sorted
    forward passes, as many as ``micro_batch_overhead`` makes cheapest (``bucketed``), or one (``random``): the
    same batches either way."""
    parts = int(opts.micro_batches) if opts.batching == "bucketed" else 1
    return RandomBatches(examples, int(opts.batch_size), parts, seed, int(opts.micro_batch_overhead))


def _validation(model, tokenizer, dataset: Dataset, sids: SidTable, opts: LcRecOptions, device: torch.device,
                amp: tuple[bool, bool], resume_from: str | None, judge_after: int = 0) -> Validation | None:
    """The early-stopping callback when ``eval_steps`` is set: it ranks with the live (peft) model and counts
    evaluations without improvement only after step ``judge_after`` (the end of the decay, when one is set)."""
    if opts.eval_steps is None:
        return None
    meta = {"options": opts.params(), "prompt_template": opts.prompt_template}
    users_per_batch = opts.eval_batch_size or (GPU_EVAL_BATCH if device.type == "cuda" else CPU_EVAL_BATCH)
    rec = LcRecRecommender(model, tokenizer, sids, device, int(users_per_batch), meta)
    return Validation(rec, validation_sample(dataset, int(opts.eval_users), int(opts.seed)), int(opts.eval_steps),
                      int(opts.patience), int(opts.eval_beam), lambda: autocast_for(device, *amp), resume_from,
                      judge_after)


def decay_plan(opts: LcRecOptions, batches: int, world: int) -> tuple[int | None, float] | None:
    """``(steps of the decay, floor)`` when ``--decay-epochs`` or ``--min-lr-ratio`` is set (steps None: over the
    whole run), else None: the Trainer's linear decay to zero over the run, as before these options."""
    if opts.decay_epochs is None and not opts.min_lr_ratio:
        return None
    per_epoch = math.ceil(batches / (int(opts.grad_accum) * max(1, world)))
    steps = math.ceil(per_epoch * float(opts.decay_epochs)) if opts.decay_epochs is not None else None
    return steps, float(opts.min_lr_ratio)


def _run_inputs(dataset: Dataset, sids: SidTable, ref: BaseModelRef) -> dict[str, Path | None]:
    """The inputs a run depends on (its provenance, and the identity of its --resume checkpoints)."""
    inputs: dict[str, Path | None] = {"sids": sids.path}
    if dataset.path is not None:
        inputs["dataset_items"] = dataset.path / "items.jsonl"
        inputs["dataset_sequences"] = dataset.path / "sequences.jsonl"
    if ref.gguf_file and Path(ref.path).is_dir():
        inputs["base_model"] = Path(ref.path) / ref.gguf_file
    return inputs


def _save(model, tokenizer, dataset: Dataset, sids: SidTable, ref: BaseModelRef, opts: LcRecOptions,
          token_ids: list[int], summary: dict[str, Any], output: Path, force: bool) -> None:
    """Write adapter, tokenizer, uqf_model.json and the SIDs copy atomically."""
    params = opts.params()
    provenance = make_provenance("train-rec", {"backbone": BACKBONE, **params}, _run_inputs(dataset, sids, ref))
    with atomic_path(output, force, directory=True) as tmp:
        model.save_pretrained(str(tmp), save_embedding_layers=False)
        tokenizer.save_pretrained(str(tmp))
        write_model_meta(tmp, BACKBONE, dataset, params, provenance, sids, base_model=ref.as_meta(),
                         prompt_version=PROMPT_VERSION, prompt_template=opts.prompt_template,
                         sid_token_range=[token_ids[0], token_ids[-1]],
                         train_summary={k: summary[k] for k in ("samples", "steps", "train_loss", "seconds",
                                                                "precision", "history", "best_step") if k in summary})
