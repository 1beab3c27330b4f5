"""LC-Rec's tasks as text and token ids: Alpaca-style prompts, SID strings, training examples.

The sequential task (always): history as SID strings, oldest first -> the next item's SID. With
``align_tasks``: title -> SID and SID -> title for every titled item (LC-Rec's item-index alignment).
Responses are written as token ids directly (never re-tokenized from text), so training and
constrained decoding see the same ids after the prompt.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable
from uqf_cli.rec.base import training_samples
from uqf_cli.rec.lcrec.options import LcRecOptions

PROMPT_VERSION = 1

_HEAD = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
SEQ_INSTRUCTION = (
    "The user has interacted with items {history} in chronological order. "
    "Can you predict the next possible item that the user may expect?"
)
TITLE_TO_SID_INSTRUCTION = 'Which item has the title: "{title}"?'
SID_TO_TITLE_INSTRUCTION = "What is the title of item {sid}?"


def prompt_text(instruction: str) -> str:
    """LC-Rec's Alpaca-style prompt; the response (SID tokens or a title) follows it directly."""
    return f"{_HEAD}\n\n### Instruction:\n{instruction}\n\n### Response:\n"


def sequential_prompt(history_sids: Sequence[str]) -> str:
    """The next-item prompt for a history already written as SID strings (oldest first)."""
    return prompt_text(SEQ_INSTRUCTION.format(history=", ".join(history_sids)))


def sid_strings(sids: SidTable) -> dict[str, str]:
    """Item id -> its SID written as tokens (``<a_1><b_2><c_3>``)."""
    return {iid: "".join(sids.tokens(k)) for k, iid in enumerate(sids.item_ids)}



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
    dataset: Dataset, sids: SidTable, tokenizer, opts: LcRecOptions, rng: random.Random
) -> tuple[list[Encoded], dict[str, int]]:
    """The sequential task (and, with ``align_tasks``, the two alignment tasks) as token ids."""
    sid_str = sid_strings(sids)
    sid_ids = sid_token_ids(tokenizer, sids)
    eos = [int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else []
    samples = training_samples(dataset, max_history=int(opts.max_history))
    if opts.max_samples is not None and int(opts.max_samples) < len(samples):
        samples = rng.sample(samples, int(opts.max_samples))
    prompts = [sequential_prompt([sid_str[i] for i in s.history]) for s in samples]
    responses = [sid_ids[s.target] + eos for s in samples]
    counts = {"sequential": len(samples), "title_to_sid": 0, "sid_to_title": 0}
    if opts.align_tasks:
        titled = [iid for iid in sids.item_ids if iid in dataset.items and dataset.items[iid].get("title")]
        for iid in titled:
            prompts.append(prompt_text(TITLE_TO_SID_INSTRUCTION.format(title=dataset.title(iid))))
            responses.append(sid_ids[iid] + eos)
        titles = tokenizer([dataset.title(i) for i in titled], add_special_tokens=False)["input_ids"]
        for iid, title_ids in zip(titled, titles, strict=True):
            prompts.append(prompt_text(SID_TO_TITLE_INSTRUCTION.format(sid=sid_str[iid])))
            responses.append(list(title_ids[: int(opts.max_title_tokens)]) + eos)
        counts["title_to_sid"] = counts["sid_to_title"] = len(titled)
    encoded = [Encoded(p, r) for p, r in zip(encode_prompts(tokenizer, prompts), responses, strict=True)]
    return encoded, counts
