"""LC-Rec training batches: every epoch a seeded shuffle of the samples cut into random batches, each batch run
as one forward pass (``batching="random"``) or as length-sorted micro-batches (``batching="bucketed"``).

Why micro-batches and not length-sorted batches: a batch is padded to its longest sample, and Office prompts
range from one to twenty history items, so random batches of 8 are about 40 % padding. Sorting all samples by
length and cutting the order into batches removes it, but then every optimizer step sees windows of one
history length: the length-dependent part of the gradient no longer averages out within a step (its variance
grows up to ``batch_size`` times), and on Office the loss after 40 steps was 0.3 worse than with random
batches. Sorting only within shuffled groups of batches (Hugging Face's ``group_by_length``) leaves the steps
almost as uniform in length (between-step share of the history-length variance 0.68 with groups of 2 batches,
0.92 with 4, against 0.13 for random batches). So the step stays a random batch, and only its forward
passes are grouped: the batch is sorted by length and cut into ``micro_batches`` contiguous parts with the
fewest padded positions, whose gradients the Trainer accumulates (the loss is divided by the label tokens of
the whole batch, so the step's gradient is the random batch's). Office, batch 8, 4 micro-batches: 3 %
padding instead of 40 %. Both settings draw the same batches from the same seed, so they train the same
model (up to float rounding and dropout draws).
"""

from __future__ import annotations

import random
from typing import Any

import torch

from uqf_cli.rec.lcrec.prompts import Encoded


def _length(e: Encoded) -> int:
    return len(e.prompt) + len(e.response)


def epoch_batches(examples: list[Encoded], batch_size: int, seed: int, epoch: int) -> list[list[Encoded]]:
    """The epoch's random batches: a shuffle seeded by ``(seed, epoch)``, cut into ``batch_size`` (the last may be
    smaller). The same on every rank and after a resume."""
    order = examples[:]
    random.Random(f"lcrec-batches:{seed}:{epoch}").shuffle(order)
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


def split_by_length(batch: list[Encoded], parts: int) -> list[list[Encoded]]:
    """``batch`` sorted by length and cut into ``min(parts, len(batch))`` contiguous micro-batches with the fewest
    padded positions (a micro-batch costs its size times its longest sample; dynamic programming over the cuts)."""
    ordered = sorted(batch, key=_length)  # stable: equal lengths keep the batch's (shuffled) order
    lengths = [_length(e) for e in ordered]
    n, parts = len(ordered), min(parts, len(ordered))
    if parts == n:
        return [[e] for e in ordered]
    # cost[p][j]: fewest positions for the first j samples in p micro-batches; cut[p][j]: where the last one starts
    cost = [[float("inf")] * (n + 1) for _ in range(parts + 1)]
    cut = [[0] * (n + 1) for _ in range(parts + 1)]
    cost[0][0] = 0
    for p in range(1, parts + 1):
        for j in range(p, n + 1):
            for i in range(p - 1, j):
                c = cost[p - 1][i] + (j - i) * lengths[j - 1]
                if c < cost[p][j]:
                    cost[p][j], cut[p][j] = c, i
    bounds, j = [], n
    for p in range(parts, 0, -1):
        bounds.append((cut[p][j], j))
        j = cut[p][j]
    return [ordered[i:j] for i, j in reversed(bounds)]


class MicroBatches(torch.utils.data.Dataset):
    """One micro-batch per item, in step order: each random batch of the epoch as ``parts`` length-sorted
    micro-batches (``parts=1``: the batch as it is). The Trainer reads the items in order (per-device batch
    size 1) and accumulates ``parts`` of them per batch: gradient accumulation of ``parts * grad_accum``.

    ``set_epoch`` draws the epoch's batches; the Trainer calls it at the start of every epoch, also the one a
    resumed run continues, and then skips the items already trained (accelerate's ``DataLoaderShard`` passes
    the call on to the dataset, and calls it again when it starts iterating; the data loader must keep its
    workers in this process, ``dataloader_num_workers=0``). Under ``torchrun`` accelerate deals the items to
    the ranks in turn, so the ranks' next ``parts * grad_accum`` items each are ``world * grad_accum`` whole
    batches, one step (the loss divided by the label tokens of all of them); at an epoch's end it repeats the
    epoch's first items to even the ranks out, as it repeats samples for a random sampler."""

    def __init__(self, examples: list[Encoded], batch_size: int, parts: int, seed: int) -> None:
        self.examples, self.batch_size, self.seed = examples, batch_size, seed
        self.parts = min(parts, batch_size)
        full, rest = divmod(len(examples), batch_size)
        self.size = full * self.parts + min(self.parts, rest)
        self.epoch: int | None = None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if epoch == self.epoch:
            return
        self.epoch = epoch
        self.batches = epoch_batches(self.examples, self.batch_size, self.seed, epoch)
        self.micro = [m for b in self.batches for m in split_by_length(b, self.parts)]
        if len(self.micro) != self.size:  # the Trainer plans the epoch's steps from the length
            raise RuntimeError(f"epoch {epoch}: {len(self.micro)} micro-batches, expected {self.size}")

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, k: int) -> list[Encoded]:
        return self.micro[k]


def padding_share(batches: list[list[Encoded]]) -> float:
    """Share of the padded token positions that are padding, over the batches of the forward passes (what
    length-sorted micro-batches remove)."""
    real = sum(len(e.prompt) + len(e.response) for b in batches for e in b)
    padded = sum(len(b) * max(len(e.prompt) + len(e.response) for e in b) for b in batches)
    return 1.0 - real / padded if padded else 0.0


class Collator:
    """Right-pad a batch; labels are -100 on the prompt and on padding. Takes a list of examples, or a
    one-element list holding a micro-batch (an item of :class:`MicroBatches`)."""

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
    the logits of the columns where some row predicts one (``logits_to_keep``: with length-sorted micro-batches
    a few columns instead of the whole sequence, with random batches the union of the rows' few columns), so
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
