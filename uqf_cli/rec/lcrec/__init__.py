"""LC-Rec backbone: a causal LLM fine-tuned with LoRA to generate the next item's semantic ID.

LC-Rec (Zheng et al., 2024): every SID code becomes a new token and instruction prompts ask the
model to continue a user's history with the next item's SID; generation is constrained to real
items. Options: :mod:`.options`; prompts and examples: :mod:`.prompts`; base model, SID tokens and
LoRA: :mod:`.model`; training: :mod:`.training` (its levers' code paths: :mod:`.sid_rows`,
:mod:`.cpu_bf16`); decoding and loading: :mod:`.recommender`.
docs/lcrec.md describes the options and the design.
"""

from uqf_cli.rec.lcrec.model import (
    BACKBONE,
    DEFAULT_TARGET_MODULES,
    EMBEDDED_BASE,
    EMBEDDED_GGUF,
    BaseModelRef,
    add_sid_tokens,
    embedded_smollm2_dir,
    load_base,
    lora_config,
    resolve_base_model,
)
from uqf_cli.rec.lcrec.options import LEGACY, PANEL, LcRecOptions
from uqf_cli.rec.lcrec.prompts import (
    PROMPT_VERSION,
    SEQ_INSTRUCTION,
    SID_TO_TITLE_INSTRUCTION,
    TEMPLATES,
    TITLE_TO_SID_INSTRUCTION,
    build_examples,
    encode_prompts,
    prompt_text,
    sequential_prompt,
    sid_strings,
    sid_token_ids,
)
from uqf_cli.rec.lcrec.recommender import CausalLmStepDecoder, LcRecRecommender, build_trie, load
from uqf_cli.rec.lcrec.training import check_sids_cover, train
from uqf_cli.rec.registry import Backbone

__all__ = [
    "BACKBONE",
    "DEFAULT_TARGET_MODULES",
    "EMBEDDED_BASE",
    "EMBEDDED_GGUF",
    "LEGACY",
    "PANEL",
    "PROMPT_VERSION",
    "SEQ_INSTRUCTION",
    "SID_TO_TITLE_INSTRUCTION",
    "SPEC",
    "TEMPLATES",
    "TITLE_TO_SID_INSTRUCTION",
    "BaseModelRef",
    "CausalLmStepDecoder",
    "LcRecOptions",
    "LcRecRecommender",
    "add_sid_tokens",
    "build_examples",
    "build_trie",
    "check_sids_cover",
    "embedded_smollm2_dir",
    "encode_prompts",
    "load",
    "load_base",
    "lora_config",
    "prompt_text",
    "resolve_base_model",
    "sequential_prompt",
    "sid_strings",
    "sid_token_ids",
    "train",
]

SPEC = Backbone(BACKBONE, LcRecOptions, train, load, panel=PANEL, inputs=("base_model",))
