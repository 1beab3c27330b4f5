"""Text embeddings of the catalogue (``uqf embed-text``): item texts, encoders, the options, the stage."""

from uqf_cli.embed.config import EmbedConfig
from uqf_cli.embed.fields import DEFAULT_FIELDS, FieldChoice, choose_fields
from uqf_cli.embed.models import DEFAULT_MODEL, ResolvedModel, resolve_model
from uqf_cli.embed.stage import Encoder, TextEmbeddingResult, embed_text
from uqf_cli.embed.texts import build_texts, item_text

__all__ = ["DEFAULT_FIELDS", "DEFAULT_MODEL", "EmbedConfig", "Encoder", "FieldChoice", "ResolvedModel",
           "TextEmbeddingResult", "build_texts", "choose_fields", "embed_text", "item_text", "resolve_model"]
