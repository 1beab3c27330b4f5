"""LC-Rec training batches: per-sample (random batches, the Trainer's sampler) or length-bucketed.

Why buckets: a batch is padded to its longest sample, and Office prompts range from one to twenty
history items, so random batches of 8 spend a large share of every forward on padding. Bucketed
batches hold samples of (nearly) equal length: samples are sorted by length with a seeded random
tie-break and cut into batches; the Trainer's seeded sampler shuffles the batch order every epoch.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from uqf_cli.rec.lcrec.prompts import Encoded


class ExampleDataset(torch.utils.data.Dataset):
    """One example per item: the Trainer draws ``batch_size`` of them at random (``batching="random"``)."""

    def __init__(self, examples: list[Encoded]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, k: int) -> Encoded:
        return self.examples[k]


class BatchDataset(torch.utils.data.Dataset):
    """One whole batch per item (``batching="bucketed"``; the Trainer's per-device batch size is 1)."""

    def __init__(self, batches: list[list[Encoded]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> list[Encoded]:
        return self.batches[k]


def bucketed_batches(examples: list[Encoded], batch_size: int, rng: random.Random) -> list[list[Encoded]]:
    """Batches of ``batch_size`` examples of similar total length (the last may be smaller)."""
    keys = [(len(e.prompt) + len(e.response), rng.random()) for e in examples]
    order = sorted(range(len(examples)), key=keys.__getitem__)
    return [[examples[k] for k in order[start:start + batch_size]] for start in range(0, len(order), batch_size)]


def padding_share(batches: list[list[Encoded]]) -> float:
    """Share of the padded token positions that are padding (what bucketing removes)."""
    real = sum(len(e.prompt) + len(e.response) for b in batches for e in b)
    padded = sum(len(b) * max(len(e.prompt) + len(e.response) for e in b) for b in batches)
    return 1.0 - real / padded if padded else 0.0


class Collator:
    """Right-pad a batch; labels are -100 on the prompt and on padding. Takes a list of examples, or a
    one-element list holding a prebuilt batch (from :class:`BatchDataset`)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[Any]) -> dict[str, torch.Tensor]:
        if len(batch) == 1 and isinstance(batch[0], list):
            batch = batch[0]
        width = max(len(e.prompt) + len(e.response) for e in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, e in enumerate(batch):
            seq = e.prompt + e.response
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, len(e.prompt): len(seq)] = torch.tensor(e.response)
            mask[row, : len(seq)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def response_loss(model, inputs: dict[str, torch.Tensor], num_items_in_batch: Any = None) -> torch.Tensor:
    """The causal-LM loss with the output head run only where a label follows (``lm_head="response"``).

    The loss needs logits only at the positions that predict a response token; the model is asked for
    the logits of the columns where some row predicts one (``logits_to_keep``: with bucketed batches a
    few columns instead of the whole sequence, with random ones the union of the rows' few columns), so
    the head's matmul and the log-softmax over the vocabulary shrink by the prompt's share. The sum over
    label tokens divided by ``num_items_in_batch`` (or their count) is the loss Hugging Face's causal-LM
    loss computes."""
    labels = inputs["labels"]
    targets = labels[:, 1:]  # position p predicts token p + 1
    keep = (targets != -100).any(0).nonzero().flatten()
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], logits_to_keep=keep)
    logits = out.logits.float()
    wanted = targets[:, keep]
    total = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), wanted.reshape(-1),
                                              ignore_index=-100, reduction="sum")
    if num_items_in_batch is None:
        return total / (wanted != -100).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
