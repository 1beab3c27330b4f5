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
from uqf_cli.rec.base import Sample, training_samples
from uqf_cli.rec.lcrec.options import LcRecOptions, window_count

PROMPT_VERSION = 1  # the SID-token and response layout; the wording is the template (``prompt_template``)

_HEAD = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
SEQ_INSTRUCTION = (
    "The user has interacted with items {history} in chronological order. "
    "Can you predict the next possible item that the user may expect?"
)
TITLE_TO_SID_INSTRUCTION = 'Which item has the title: "{title}"?'
SID_TO_TITLE_INSTRUCTION = "What is the title of item {sid}?"
COMPACT_SEQ_INSTRUCTION = "The user has interacted with items {history} in chronological order. Next item?"
DEFAULT_TEMPLATE = "alpaca"  # of model directories that record no template (trained before templates existed)


@dataclass(frozen=True)
class PromptTemplate:
    """How an instruction becomes a prompt: the wrapper, the sequential instruction and the SID separator.

    ``alpaca`` is LC-Rec's own (the Alpaca preamble, SIDs joined by ", "); ``compact`` drops the
    preamble and the blank lines and writes the history's SIDs back to back (each SID token is one
    added token, so no separator is needed): on Office 56 prompt tokens on average instead of 101."""

    name: str
    head: str
    seq_instruction: str
    separator: str
    gap: str  # between the instruction and "### Response:"

    def wrap(self, instruction: str) -> str:
        return f"{self.head}### Instruction:\n{instruction}\n{self.gap}### Response:\n"


TEMPLATES: dict[str, PromptTemplate] = {
    "alpaca": PromptTemplate("alpaca", f"{_HEAD}\n\n", SEQ_INSTRUCTION, ", ", "\n"),
    "compact": PromptTemplate("compact", "", COMPACT_SEQ_INSTRUCTION, "", ""),
}


def template_of(name: str | None) -> PromptTemplate:
    """The named template (``None``: the one of models that record none)."""
    return TEMPLATES[name or DEFAULT_TEMPLATE]


def prompt_text(instruction: str, template: str | None = None) -> str:
    """The prompt around ``instruction`` (default: LC-Rec's Alpaca style); the response follows it directly."""
    return template_of(template).wrap(instruction)


def sequential_prompt(history_sids: Sequence[str], template: str | None = None) -> str:
    """The next-item prompt for a history already written as SID strings (oldest first)."""
    tpl = template_of(template)
    return tpl.wrap(tpl.seq_instruction.format(history=tpl.separator.join(history_sids)))


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


def select_windows(samples: list[Sample], windows: str) -> list[Sample]:
    """The training windows ``windows`` names: all, or the last K of every user (``last:K``), in order."""
    keep = window_count(windows)
    if keep is None:
        return samples
    by_user: dict[str, list[Sample]] = {}
    for s in samples:
        by_user.setdefault(s.user_id, []).append(s)
    return [s for group in by_user.values() for s in group[-keep:]]


def build_examples(
    dataset: Dataset, sids: SidTable, tokenizer, opts: LcRecOptions, rng: random.Random
) -> tuple[list[Encoded], dict[str, int]]:
    """The sequential task (and, with ``align_tasks``, the two alignment tasks) as token ids."""
    sid_str = sid_strings(sids)
    sid_ids = sid_token_ids(tokenizer, sids)
    eos = [int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else []
    samples = select_windows(training_samples(dataset, max_history=int(opts.max_history)), opts.windows)
    if opts.max_samples is not None and int(opts.max_samples) < len(samples):
        samples = rng.sample(samples, int(opts.max_samples))
    template = str(opts.prompt_template)
    prompts = [sequential_prompt([sid_str[i] for i in s.history], template) for s in samples]
    responses = [sid_ids[s.target] + eos for s in samples]
    counts = {"sequential": len(samples), "title_to_sid": 0, "sid_to_title": 0}
    if opts.align_tasks:
        titled = [iid for iid in sids.item_ids if iid in dataset.items and dataset.items[iid].get("title")]
        for iid in titled:
            prompts.append(prompt_text(TITLE_TO_SID_INSTRUCTION.format(title=dataset.title(iid)), template))
            responses.append(sid_ids[iid] + eos)
        titles = tokenizer([dataset.title(i) for i in titled], add_special_tokens=False)["input_ids"]
        for iid, title_ids in zip(titled, titles, strict=True):
            prompts.append(prompt_text(SID_TO_TITLE_INSTRUCTION.format(sid=sid_str[iid]), template))
            responses.append(list(title_ids[: int(opts.max_title_tokens)]) + eos)
        counts["title_to_sid"] = counts["sid_to_title"] = len(titled)
    encoded = [Encoded(p, r) for p, r in zip(encode_prompts(tokenizer, prompts), responses, strict=True)]
    return encoded, counts
