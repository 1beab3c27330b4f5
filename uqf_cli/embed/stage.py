"""``uqf embed-text``: one text embedding per item, aligned by item id (docs/embed-text.md).

Nothing is downloaded unless the user names a hub model and has not set ``HF_HUB_OFFLINE``;
``trust_remote_code`` is off unless asked for. On CPU the same inputs give a bit-identical file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from uqf_cli.core.config_field import configured
from uqf_cli.core.errors import OptionError, UqfError
from uqf_cli.core.runtime import info, progress, resolve_device
from uqf_cli.data.dataset import Dataset
from uqf_cli.embed.config import EmbedConfig
from uqf_cli.embed.fields import choose_fields
from uqf_cli.embed.models import (
    ResolvedModel,
    choose_pooling,
    encode_with_mean_pooling,
    encode_with_sentence_transformer,
    load_for_mean_pooling,
    load_sentence_transformer,
    quiet_hf_progress_bars,
    resolve_model,
)
from uqf_cli.embed.texts import build_texts
from uqf_cli.files import check_output, make_provenance, save_embeddings
from uqf_cli.files.fingerprints import TextSpec, text_file_fields, text_hashes


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

    def __repr__(self) -> str:
        return (f"TextEmbeddingResult({self.output}: [{self.items:,}, {self.dim}] from {self.model} "
                f"({self.pooling} pooling) on {self.device})")

    @property
    def items_per_second(self) -> float:
        done = self.items if self.embedded is None else self.embedded
        return done / self.seconds if self.seconds > 0 else math.inf


Encoder = Callable[[list[str], Callable[[int], None]], torch.Tensor]
"""Texts and a progress callback (items done) -> ``[len(texts), d]`` vectors, not yet normalised."""


def load_encoder(resolved: ResolvedModel, how: str, dev: torch.device, max_length: int, batch_size: int,
                 devices: Sequence[str], fp16: bool, trust_remote_code: bool) -> Encoder:
    """Load the model once and return the function that encodes texts with it."""
    info(f"loading {resolved.name} from {resolved.location}")
    if how == "model":
        st = load_sentence_transformer(resolved, dev, max_length, fp16, trust_remote_code)
        return lambda texts, advance: encode_with_sentence_transformer(texts, st, batch_size, devices=devices,
                                                                       on_batch=advance)
    tokenizer, net = load_for_mean_pooling(resolved, dev, fp16, trust_remote_code)
    return lambda texts, advance: encode_with_mean_pooling(texts, tokenizer, net, max_length, batch_size,
                                                           on_batch=advance)


def encode_all(texts: list[str], encoder: Encoder) -> torch.Tensor:
    """Run ``encoder`` over ``texts`` behind a progress bar."""
    with progress() as bar:
        task = bar.add_task("embed-text", total=len(texts), status="")
        return encoder(texts, lambda n: bar.advance(task, n))


def embed_text(
    dataset_dir: str | Path,
    output: str | Path,
    cfg: EmbedConfig | None = None,
    force: bool = False,
    from_array: str | Path | None = None,
    reuse: str | Path | None = None,
    encoder: Encoder | None = None,
    **settings: Any,
) -> TextEmbeddingResult:
    """Embed every item's text and write ``[N, d]`` float32 embeddings with ids, text hashes and provenance.

    ``cfg`` defaults to ``EmbedConfig()``; ``settings`` (its field names: ``model="smollm2"``,
    ``normalize=False``) replace single fields. ``fields=None`` picks the fields as :mod:`uqf_cli.embed.fields`
    documents; ``from_array`` wraps precomputed vectors instead of running a model
    (:mod:`uqf_cli.embed.from_array`); ``reuse`` copies the rows of unchanged items from an earlier file
    (:mod:`uqf_cli.embed.reuse`). ``encoder`` replaces the model named by ``model`` (which is still recorded),
    e.g. to run a model already in memory.
    """
    cfg = configured(EmbedConfig, cfg, settings)
    cfg.validate()
    if from_array is not None:
        if reuse is not None:
            raise OptionError("--reuse", "does not apply with --from-array (no model runs)")
        from uqf_cli.embed.from_array import embed_from_array

        return embed_from_array(dataset_dir, output, from_array, cfg.model, cfg.fields, cfg.template, cfg.devices or (),
                                cfg.normalize, force)
    check_output(output, force, "embeddings:text")
    return _embed_items(dataset_dir, output, cfg, force, reuse, encoder)


def _embed_items(dataset_dir: str | Path, output: str | Path, cfg: EmbedConfig, force: bool,
                 reuse: str | Path | None, encoder: Encoder | None) -> TextEmbeddingResult:
    """Run the model over every item whose text changed (all of them without ``reuse``) and write the file."""
    quiet_hf_progress_bars()
    ds = Dataset.load(dataset_dir)
    choice = None if cfg.template else choose_fields(ds.items, cfg.fields)
    if choice and choice.note:
        info(choice.note)
    texts = build_texts(ds, choice.fields if choice else (), cfg.template)
    spec = TextSpec(choice.fields if choice else (), cfg.template)
    hashes = text_hashes(texts)
    resolved = resolve_model(cfg.model)
    how = choose_pooling(cfg.pooling, resolved)
    if cfg.devices and how != "model":
        raise OptionError("--devices", "several devices work with sentence-transformers pooling only")
    plan = None
    if reuse is not None:
        from uqf_cli.embed.reuse import plan_reuse

        signature = {"model": resolved.name, "pooling": how, "fields": list(choice.fields) if choice else None,
                     "template": cfg.template, "max_length": cfg.max_length, "normalize": cfg.normalize}
        plan = plan_reuse(reuse, ds.item_ids, hashes, signature)
        info(f"--reuse {reuse}: {plan.copied:,} items unchanged, {plan.new_items:,} new, "
                     f"{plan.changed_items:,} with changed text")
    todo = plan.to_embed if plan else list(range(len(texts)))
    dev = resolve_device(cfg.devices[0] if cfg.devices else cfg.device)
    emb, seconds, load_seconds = _encode_items([texts[i] for i in todo], resolved, how, dev, cfg, encoder)
    if plan is not None:
        emb = plan.assemble(emb)
    assert emb is not None

    params = {
        "model": resolved.provenance(),
        "pooling": how,
        "fields": list(choice.fields) if choice else None,
        "fields_chosen": choice.source if choice else None,
        "template": cfg.template,
        "max_length": cfg.max_length,
        "normalize": cfg.normalize,
        "fp16": bool(cfg.fp16 and dev.type == "cuda"),
        "batch_size": cfg.batch_size,
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


def _encode_items(texts: list[str], resolved: ResolvedModel, how: str, dev: torch.device, cfg: EmbedConfig,
                  encoder: Encoder | None) -> tuple[torch.Tensor | None, float, float]:
    """(vectors, encoding seconds, loading seconds) of ``texts``; no vectors and no model load when there are none."""
    if not texts:
        return None, 0.0, 0.0
    info(f"embedding {len(texts):,} items with {resolved.name} ({how} pooling) on {dev}")
    loading = time.perf_counter()
    if encoder is None:
        encoder = load_encoder(resolved, how, dev, cfg.max_length, cfg.batch_size, cfg.devices or (), cfg.fp16,
                               cfg.trust_remote_code)
    load_seconds = time.perf_counter() - loading
    started = time.perf_counter()
    emb = encode_all(texts, encoder)
    if cfg.normalize:
        emb = torch.nn.functional.normalize(emb, dim=1)
    seconds = time.perf_counter() - started
    if not torch.isfinite(emb).all():
        raise UqfError(f"model {resolved.name} produced NaN/Inf embeddings (try --no-fp16 or another model)")
    return emb, seconds, load_seconds
