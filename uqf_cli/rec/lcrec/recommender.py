"""A trained LC-Rec model: loading (base + adapter, merged) and ranking by constrained beam search.

The prompt runs once per user (left-padded batch, last-position logits only); its KV cache is then
expanded to the beams (``reorder_cache`` with each beam's parent row), and each further SID level
costs one single-token forward for all beams (:func:`uqf_cli.rec.decoding.constrained_beam_search`).
Users are batched in order of prompt length (so a batch pads little) and returned in their own order.
Items whose SIDs collide share a leaf and are all returned, in SID-file order.

bf16 and half decoding of Llama-architecture models (SmolLM2) keep one copy of each user's prompt
keys/values for all its beams (:mod:`uqf_cli.rec.lcrec.shared_prefix`) instead of Hugging Face's cache
repeated and copied per beam at every level; that path also runs the opening all prompts of a batch
share once and keeps the head's logits and log-probs in buffers reused from step to step
(:class:`SharedPrefixStepDecoder`, :class:`Scratch`). float32 decoding keeps Hugging Face's cache.

Precision: ``bf16`` runs the transformer body in bfloat16 weights and keeps the output head in float32
(:class:`Float32Head`), so the scores that rank the beams keep float32's resolution over the vocabulary.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uqf_cli.core import runtime
from uqf_cli.core.errors import InputError
from uqf_cli.files import SidTable, level_token
from uqf_cli.rec.base import read_model_meta, read_model_sids
from uqf_cli.rec.decoding import BeamResult, SidTrie, constrained_beam_search, full_log_softmax
from uqf_cli.rec.lcrec import shared_prefix
from uqf_cli.rec.lcrec.model import BACKBONE, EMBEDDED_BASE, BaseModelRef, load_base, resolve_base_model
from uqf_cli.rec.lcrec.options import LcRecOptions
from uqf_cli.rec.lcrec.prompts import encode_prompts, sequential_prompt, sid_strings

CPU_EVAL_BATCH = 32  # users per decoding batch on a CPU (was 8 before the cost levers; see docs/lcrec.md)
GPU_EVAL_BATCH = 64


class Float32Head(torch.nn.Module):
    """The output head in float32 on bfloat16 hidden states (a copy of the weight: tied or not)."""

    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(head.weight.detach().float().clone(), requires_grad=False)
        bias = getattr(head, "bias", None)
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().float().clone(), requires_grad=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(hidden.float(), self.weight, self.bias)


def to_decoding_precision(model, precision: str, fp32_head: bool = True):
    """``model`` in the dtype decoding runs in: ``fp32``, ``bf16`` (with a float32 head unless ``fp32_head``
    is off) or ``half`` (GPU)."""
    if precision == "fp32":
        return model
    if precision == "half":
        return model.to(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    if not fp32_head:
        return model.to(torch.bfloat16)
    head = Float32Head(model.get_output_embeddings())
    model.config.tie_word_embeddings = False  # the head is its own float32 copy from here on
    model = model.to(torch.bfloat16)
    model.set_output_embeddings(head)
    return model


def decoding_precision(options: dict[str, Any], device: torch.device, override: str | None = None) -> str:
    """What :func:`to_decoding_precision` gets for a model trained with ``options``.

    Models trained before the ``precision`` option decode as they always did (float32 on a CPU, half
    on a GPU); ``auto`` means bf16 on a CPU with bf16 kernels, half on a GPU, float32 elsewhere."""
    wanted = override or options.get("precision")
    if wanted is None:
        return "half" if device.type == "cuda" else "fp32"
    if wanted == "fp32":
        return "fp32"
    if device.type == "cuda":
        return "half"
    if device.type == "cpu" and (wanted == "bf16" or torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return "bf16"
    return "fp32"


def left_pad(prompts: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts as one left-padded batch (ids, attention mask), so every last position is a real token."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p):] = 1
    return ids.to(device), mask.to(device)


class CausalLmStepDecoder:
    """A causal LM as a :class:`~uqf_cli.rec.decoding.StepDecoder`: the prompts once, then one token
    per level for every beam, with the prompt's KV cache reordered to the beams."""

    def __init__(self, model, prompts: list[list[int]], pad_id: int, device: torch.device) -> None:
        self.model = model
        self.ids, self.mask = left_pad(prompts, pad_id, device)
        self.cache = None
        self.last_pos = None
        self.cache_kwarg = cache_kwarg(model)

    def first(self) -> torch.Tensor:
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=self.ids, attention_mask=self.mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1)
        self.cache, self.last_pos = cache_of(out), positions[:, -1:]
        return out.logits[:, -1, :]

    def next(self, last_tokens: torch.Tensor, parent_rows: torch.Tensor) -> torch.Tensor:
        self.cache.reorder_cache(parent_rows)
        ones = torch.ones((len(parent_rows), 1), dtype=self.mask.dtype, device=self.mask.device)
        self.mask = torch.cat([self.mask.index_select(0, parent_rows), ones], dim=1)
        self.last_pos = self.last_pos.index_select(0, parent_rows) + 1
        out = self.model(input_ids=last_tokens.reshape(-1, 1), attention_mask=self.mask, position_ids=self.last_pos,
                         use_cache=True, **{self.cache_kwarg: self.cache})
        self.cache = cache_of(out)
        return out.logits[:, -1, :]


def cache_kwarg(model) -> str:
    """The keyword ``model``'s forward takes its KV cache by: ``cache`` since transformers 5 renamed
    ``past_key_values`` (the old name still works there, with a deprecation warning every call)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def cache_of(out):
    """The KV cache of a Hugging Face model output, under either name."""
    cache = getattr(out, "cache", None)
    return out.past_key_values if cache is None else cache


MIN_COMMON_START = 4  # prompt tokens shared by a whole batch worth running once (fewer: each prompt runs whole)


def common_start(prompts: list[list[int]]) -> int:
    """How many leading tokens all ``prompts`` share, leaving each at least one token of its own."""
    first, limit = prompts[0], min(len(p) for p in prompts) - 1
    for i in range(max(limit, 0)):
        if any(p[i] != first[i] for p in prompts):
            return i
    return max(limit, 0)


class Scratch:
    """Output tensors reused from one beam step (and batch) to the next.

    A step's logits and their log-softmax are ``[rows, vocabulary]`` float32: 126 MB each for 32 users x
    20 beams over SmolLM2's 49k tokens. The allocator hands tensors that large back to the system when
    they are freed, so a fresh one is new pages, faulted in and zeroed by the kernel each time (40-50 ms
    a tensor on one thread, measured); a reused one is written in place."""

    def __init__(self) -> None:
        self._tensors: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A tensor of ``shape`` (uninitialised) backed by the buffer ``name``, grown when too small."""
        size = math.prod(shape)
        buf = self._tensors.get(name)
        if buf is None or buf.numel() < size or buf.dtype != dtype or buf.device != device:
            buf = self._tensors[name] = torch.empty(size, dtype=dtype, device=device)
        return buf[:size].view(shape)


class SharedPrefixStepDecoder:
    """A causal LM prepared by :func:`.shared_prefix.prepare` as a :class:`~uqf_cli.rec.decoding.StepDecoder`:
    the prompts once through Hugging Face's cache, then one token per level for every beam, attending to
    its user's single copy of the prompt (:class:`.shared_prefix.PrefixState`).

    The transformer body runs through the model's own decoder; a float32 linear head (:class:`Float32Head`,
    or the float32 model's) writes its logits, and :meth:`log_softmax` their log-probabilities, into
    :class:`Scratch` buffers, so each is valid until the next step."""

    def __init__(self, model, prompts: list[list[int]], pad_id: int, device: torch.device,
                 scratch: Scratch | None = None) -> None:
        self.model = model
        self.body = model.get_decoder()
        self.head = model.get_output_embeddings()
        self.scratch = scratch or Scratch()
        self.prompts, self.pad_id, self.device = prompts, pad_id, device
        self.cache_kwarg = cache_kwarg(self.body)
        self.state: shared_prefix.PrefixState | None = None
        self.last_pos: torch.Tensor | None = None

    def first(self) -> torch.Tensor:
        """The prompts' forward. The tokens every prompt of the batch starts with (the template's opening,
        11 of a compact prompt's 58 on Office) run once, their keys/values repeated for the users, and the
        rest of each prompt, left-padded, after them."""
        users = len(self.prompts)
        start = common_start(self.prompts) if users > 1 else 0
        start = start if start >= MIN_COMMON_START else 0
        cache = None
        if start:
            ids = torch.tensor([self.prompts[0][:start]], dtype=torch.long, device=self.device)
            cache = cache_of(self._forward(ids, None, torch.arange(start, device=self.device)[None], None))
            cache.batch_repeat_interleave(users)
        ids, mask = left_pad([p[start:] for p in self.prompts], self.pad_id, self.device)
        positions = start + (mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([mask.new_ones((users, start)), mask], dim=1)
        out = self._forward(ids, mask, positions, cache)
        self.state = shared_prefix.PrefixState.from_cache(cache_of(out), mask)
        self.last_pos = positions[:, -1:]
        return self.logits(out.last_hidden_state[:, -1, :])

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor, cache):
        return self.body(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         **{self.cache_kwarg: cache})

    def next(self, last_tokens: torch.Tensor, parent_rows: torch.Tensor) -> torch.Tensor:
        assert self.state is not None and self.last_pos is not None, "first() comes first"
        if len(parent_rows) % len(self.prompts):
            raise ValueError("every user needs the same number of beam rows")
        self.state.reorder(parent_rows)
        self.last_pos = self.last_pos.index_select(0, parent_rows) + 1
        out = self.body(input_ids=last_tokens.reshape(-1, 1), position_ids=self.last_pos, use_cache=False,
                        **{shared_prefix.STATE_KWARG: self.state})
        if self.state.calls != len(self.state.prefix_keys):
            raise RuntimeError(f"the shared-prefix attention ran in {self.state.calls} of "
                               f"{len(self.state.prefix_keys)} layers: this model does not pass it on")
        return self.logits(out.last_hidden_state[:, -1, :])

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The head's logits of ``hidden`` (``[R, hidden]``): a float32 linear head's own product, written
        into the ``logits`` buffer; any other head as it computes them."""
        if not isinstance(self.head, (Float32Head, torch.nn.Linear)) or self.head.weight.dtype != torch.float32:
            return self.head(hidden)
        weight, bias = self.head.weight, self.head.bias
        out = self.scratch.get("logits", (hidden.shape[0], weight.shape[0]), torch.float32, hidden.device)
        x = hidden.float()
        return torch.mm(x, weight.t(), out=out) if bias is None else torch.addmm(bias, x, weight.t(), out=out)

    def log_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """:func:`~uqf_cli.rec.decoding.full_log_softmax` of ``logits``, written into the ``log_probs`` buffer."""
        if logits.dtype != torch.float32:
            return full_log_softmax(logits)
        out = self.scratch.get("log_probs", tuple(logits.shape), torch.float32, logits.device)
        return torch.log_softmax(logits, dim=-1, out=out)


def build_trie(sids: SidTable, tokenizer) -> SidTrie:
    """The trie of the model's SIDs over its SID-token ids; colliding SIDs share a leaf."""
    codes = np.asarray(sids.codes, dtype=np.int64)
    sizes = [int(codes[:, t].max()) + 1 for t in range(codes.shape[1])]
    token_ids = [tokenizer.convert_tokens_to_ids([level_token(t, c) for c in range(size)])
                 for t, size in enumerate(sizes)]
    return SidTrie.from_token_ids(codes, token_ids, collisions="group")


class LcRecRecommender:
    """A trained LC-Rec model that ranks items by constrained beam search over their SIDs."""

    backbone = BACKBONE
    score_name = "beam log-prob"

    def __init__(self, model, tokenizer, sids: SidTable, device: torch.device, eval_batch_size: int,
                 meta: dict[str, Any], shared_prefix: bool = False) -> None:
        self.model = model
        self.shared_prefix = shared_prefix  # the model is prepared by shared_prefix.prepare
        self.scratch = Scratch()  # the shared-prefix steps' logits and log-probs, reused across batches
        self.tokenizer = tokenizer
        self.sids = sids
        self.device = device
        self.eval_batch_size = eval_batch_size
        self.meta = meta
        self.sid_str = sid_strings(sids)
        self.trie = build_trie(sids, tokenizer).to(device)
        self.max_history = int(meta.get("options", {}).get("max_history", LcRecOptions.max_history))
        self.template = meta.get("prompt_template")  # None: the Alpaca template of models made before templates

    def prompts(self, histories: Sequence[Sequence[str]]) -> list[list[int]]:
        texts = []
        for h in histories:
            unknown = [i for i in h if i not in self.sid_str]
            if unknown:
                raise InputError(None, f"history names item {unknown[0]!r}, which has no SID in this model")
            texts.append(sequential_prompt([self.sid_str[i] for i in list(h)[-self.max_history:]], self.template))
        return encode_prompts(self.tokenizer, texts)

    def search(self, prompts: list[list[int]], beams: int) -> BeamResult:
        """Constrained beam search for one batch of prompts: leaves (first item rows) and scores."""
        pad = int(self.tokenizer.pad_token_id)
        if not self.shared_prefix:
            return constrained_beam_search(CausalLmStepDecoder(self.model, prompts, pad, self.device), self.trie,
                                           len(prompts), beams)
        decoder = SharedPrefixStepDecoder(self.model, prompts, pad, self.device, self.scratch)
        return constrained_beam_search(decoder, self.trie, len(prompts), beams, log_softmax=decoder.log_softmax)

    def recommend(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None) -> list[list[str]]:
        """Top-``k`` item ids (best first) per history."""
        return [[iid for iid, _ in ranked] for ranked in self.recommend_scored(histories, k, beam_size)]

    def recommend_scored(self, histories: Sequence[Sequence[str]], k: int,
                         beam_size: int | None = None) -> list[list[tuple[str, float]]]:
        """Like :meth:`recommend`, with each item's beam score (summed log-probability of its SID tokens;
        items sharing a full SID share its score)."""
        beams = max(int(beam_size or k), int(k))
        prompts = self.prompts(histories)
        order = sorted(range(len(prompts)), key=lambda u: len(prompts[u]))  # batches of similar prompt lengths
        out: list[list[tuple[str, float]]] = [[] for _ in prompts]
        for start in range(0, len(order), self.eval_batch_size):
            users = order[start:start + self.eval_batch_size]
            result = self.search([prompts[u] for u in users], beams)
            for user, row, scores in zip(users, result.items.tolist(), result.scores.tolist(), strict=True):
                ranked = [(self.sids.item_ids[r], float(s)) for leaf, s in zip(row, scores, strict=True) if leaf >= 0
                          for r in self.trie.rows_of(leaf)]
                out[user] = ranked[:k]
        return out


def load(model_dir: str | Path, device: str | torch.device = "auto", precision: str | None = None,
         eval_batch_size: int | None = None, fp32_head: bool = True,
         shared_prefix: bool | None = None) -> LcRecRecommender:
    """Load base model + adapter + tokenizer of an LC-Rec model directory, merged for fast decoding.

    ``precision`` (``fp32`` | ``bf16`` | ``auto``) and ``eval_batch_size`` override what the model directory
    records (see :func:`decoding_precision`); ``fp32_head=False`` runs a bf16 model's head in bf16 too.
    ``shared_prefix`` (default: on for bf16 and half decoding where the architecture allows it) decodes
    with one copy of each prompt's keys/values for all its beams (:mod:`.shared_prefix`)."""
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
    dtype = decoding_precision(opts, dev, precision)
    model = to_decoding_precision(model, dtype, fp32_head).to(dev).eval()
    batch = eval_batch_size or opts.get("eval_batch_size") or (GPU_EVAL_BATCH if dev.type == "cuda" else CPU_EVAL_BATCH)
    share = use_shared_prefix(model, dtype, shared_prefix)
    return LcRecRecommender(model, tokenizer, sids, dev, int(batch), meta, shared_prefix=share)


def use_shared_prefix(model, precision: str, wanted: bool | None) -> bool:
    """Whether ``model`` decodes with :class:`SharedPrefixStepDecoder` (and prepare it if so): ``wanted``,
    or by default for bf16 and half; an architecture it does not support keeps Hugging Face's cache."""
    share = (precision != "fp32") if wanted is None else bool(wanted)
    if share and not shared_prefix.supported(model):
        if wanted:
            raise InputError(None, f"shared-prefix decoding does not support {model.config.model_type!r} models")
        return False
    if share:
        shared_prefix.prepare(model)
    return share
