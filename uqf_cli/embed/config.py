"""The options of ``uqf embed-text`` in one dataclass: each ``opt`` field is also the command's option."""

from __future__ import annotations

from dataclasses import dataclass

from uqf_cli.core.config_field import check_ranges, comma_list, opt
from uqf_cli.core.errors import OptionError
from uqf_cli.embed.models import DEFAULT_MODEL


@dataclass
class EmbedConfig:
    """Which model embeds which text of each item, and how; ``device`` comes from ``--device``."""

    model: str = opt(DEFAULT_MODEL, "minilm (bundled all-MiniLM-L6-v2, the default), smollm2 (bundled SmolLM2-135M "
                     "GGUF, mean pooling), a local directory or .gguf file, or a hub id.")
    pooling: str = opt("auto", "auto | model (the sentence-transformers model's own) | mean (masked mean of last "
                       "hidden states, as LC-Rec).")
    fields: list[str] | None = opt(None, "Comma-separated item fields, embedded as 'name: value; ...'. Default: "
                                   "those of title,brand,categories,description that exist, else every string "
                                   "field.", spelled=comma_list())
    template: str | None = opt(None, "Item text template, e.g. '{title} | {brand}' (overrides --fields).")
    max_length: int = opt(128, "Truncate each text at this many tokens.", ge=1)
    batch_size: int = opt(64, "Texts per batch.", ge=1)
    device: str = "auto"
    devices: list[str] | None = opt(None, "Several devices, e.g. cuda:0,cuda:1 (sentence-transformers multi-process "
                                    "pool).", spelled=comma_list())
    normalize: bool = opt(True, "L2-normalise vectors.", flag="--normalize/--no-normalize")
    fp16: bool = opt(True, "Half precision on CUDA.", flag="--fp16/--no-fp16")
    trust_remote_code: bool = opt(False, "Allow a hub model to run its own Python code.")

    def validate(self) -> None:
        """Refuse sizes that cannot encode (one line naming the option), before the model is loaded."""
        if self.max_length < 1:
            raise OptionError("--max-length", "must be at least 1")
        if self.batch_size < 1:
            raise OptionError("--batch-size", "must be at least 1")
        check_ranges(self)
