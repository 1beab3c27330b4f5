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
passes are grouped: the batch is sorted by length and cut into at most ``micro_batches`` contiguous parts,
whose gradients are accumulated (the loss is divided by the label tokens of the whole batch, so the step's
gradient is the random batch's). Office, batch 8, 4 micro-batches: 3 % padding instead of 40 %.

But every forward and backward pass has a fixed cost (on a 2-core CPU with SmolLM2 about what 110
padded token positions cost), so a fixed 4 passes of 2 samples can cost more than the padding they remove. The number
of passes is therefore chosen per batch, with the cut: the fewest padded positions plus ``overhead`` positions a
pass (``micro_batch_overhead``; 0: always ``micro_batches`` passes). A step is still ``grad_accum`` whole batches
for the Trainer (one item of :class:`RandomBatches` each, however many passes it takes), so resuming and
gradient accumulation stay exact. All settings draw the same batches from the same seed, so they train the
same model (up to float rounding and dropout draws).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
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


def split_by_length(batch: list[Encoded], parts: int, overhead: int = 0) -> list[list[Encoded]]:
    """``batch`` sorted by length and cut into at most ``parts`` contiguous micro-batches.

    A micro-batch costs its padded positions (its size times its longest sample) plus ``overhead`` positions: the
    fixed cost of a forward and backward pass, in padded token positions. The cut and the number of
    micro-batches minimise the sum (dynamic programming over the cuts, then the best count; a tie goes to fewer
    passes). ``overhead=0``: always ``min(parts, len(batch))`` micro-batches, the cut with the fewest padded
    positions."""
    if not batch:
        return []
    ordered = sorted(batch, key=_length)  # stable: equal lengths keep the batch's (shuffled) order
    lengths = [_length(e) for e in ordered]
    n, most = len(ordered), min(parts, len(ordered))
    if most == 1:  # one pass (``--batching random``): nothing to cut, no quadratic table
        return [ordered]
    cost, cut = _fewest_positions(lengths, most)
    count = most if overhead == 0 else min(range(1, most + 1), key=lambda p: (cost[p][n] + overhead * p, p))
    bounds, j = [], n
    for p in range(count, 0, -1):
        bounds.append((cut[p][j], j))
        j = cut[p][j]
    return [ordered[i:j] for i, j in reversed(bounds)]


def _fewest_positions(lengths: list[int], most: int) -> tuple[list[list[float]], list[list[int]]]:
    """For ascending ``lengths``: ``cost[p][j]``, the fewest padded positions of the first ``j`` samples cut into
    ``p`` contiguous non-empty micro-batches (each its size times its last, longest, length), and ``cut[p][j]``,
    where the last of them starts; ``p`` up to ``most``."""
    n = len(lengths)
    cost = [[float("inf")] * (n + 1) for _ in range(most + 1)]
    cut = [[0] * (n + 1) for _ in range(most + 1)]
    cost[0][0] = 0
    for p in range(1, most + 1):
        for j in range(p, n + 1):
            for i in range(p - 1, j):
                c = cost[p - 1][i] + (j - i) * lengths[j - 1]
                if c < cost[p][j]:
                    cost[p][j], cut[p][j] = c, i
    return cost, cut


@dataclass(frozen=True)
class SplitBatch:
    """One random batch as its micro-batches (length-sorted, contiguous): one item of :class:`RandomBatches`."""

    parts: tuple[list[Encoded], ...]


class RandomBatches(torch.utils.data.Dataset):
    """One random batch per item, in step order, each as its length-sorted micro-batches
    (:func:`split_by_length` with ``parts`` and ``overhead``; ``parts=1``: the batch in one forward pass).

    The Trainer reads the items in order (per-device batch size 1, gradient accumulation ``grad_accum``), so a
    step is always ``grad_accum`` whole batches however many forward passes each takes; the trainer's
    ``training_step`` runs an item's micro-batches one after another (:func:`micro_batches`). A resumed run
    skips whole batches, so it continues at the same one.

    ``set_epoch`` draws the epoch's batches; the Trainer calls it at the start of every epoch, also the one a
    resumed run continues, and then skips the items already trained (accelerate's ``DataLoaderShard`` passes
    the call on to the dataset, and calls it again when it starts iterating; the data loader must keep its
    workers in this process, ``dataloader_num_workers=0``). Under ``torchrun`` accelerate deals the batches to
    the ranks in turn, so a step is ``world * grad_accum`` whole batches (the loss divided by the label tokens of
    all of them); at an epoch's end it repeats the epoch's first batches to even the ranks out, as it repeats
    samples for a random sampler."""

    def __init__(self, examples: list[Encoded], batch_size: int, parts: int, seed: int, overhead: int = 0) -> None:
        self.examples, self.batch_size, self.seed, self.overhead = examples, batch_size, seed, overhead
        self.parts = min(parts, batch_size)
        self.epoch: int | None = None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if epoch == self.epoch:
            return
        self.epoch = epoch
        self.batches = epoch_batches(self.examples, self.batch_size, self.seed, epoch)
        self.splits = [SplitBatch(tuple(split_by_length(b, self.parts, self.overhead))) for b in self.batches]

    @property
    def micro(self) -> list[list[Encoded]]:
        """The epoch's micro-batches, one per forward pass, in order."""
        return [m for s in self.splits for m in s.parts]

    def __len__(self) -> int:
        return len(self.batches)  # the same every epoch: the Trainer plans the epoch's steps from it

    def __getitem__(self, k: int) -> SplitBatch:
        return self.splits[k]


def padding_share(batches: list[list[Encoded]]) -> float:
    """Share of the padded token positions that are padding, over the batches of the forward passes (what
    length-sorted micro-batches remove)."""
    real = sum(len(e.prompt) + len(e.response) for b in batches for e in b)
    padded = sum(len(b) * max(len(e.prompt) + len(e.response) for e in b) for b in batches)
    return 1.0 - real / padded if padded else 0.0


MICRO_KEY = "micro_batches"  # a collated batch's micro-batch bounds: (first row, end row, width) each


class Collator:
    """Right-pad a batch; labels are -100 on the prompt and on padding. Takes a list of examples, or a
    one-element list holding a :class:`SplitBatch` (an item of :class:`RandomBatches`): its micro-batches' rows
    in order, padded once, with their bounds under ``MICRO_KEY`` (:func:`micro_batches` cuts them out)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[Any]) -> dict[str, Any]:
        if len(batch) == 1 and isinstance(batch[0], SplitBatch):
            parts = batch[0].parts
            out: dict[str, Any] = self._pad([e for m in parts for e in m])
            bounds, start = [], 0
            for m in parts:
                bounds.append((start, start + len(m), max(_length(e) for e in m)))
                start += len(m)
            out[MICRO_KEY] = tuple(bounds)
            return out
        return self._pad(batch)

    def _pad(self, batch: list[Encoded]) -> dict[str, torch.Tensor]:
        width = max(_length(e) for e in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, e in enumerate(batch):
            seq = e.prompt + e.response
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, len(e.prompt): len(seq)] = torch.tensor(e.response)
            mask[row, : len(seq)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def micro_batches(inputs: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
    """The forward passes of a collated batch: its rows cut at the micro-batch bounds, each cut to its own longest
    sample (right padding: the columns beyond are padding in every row of it). Without bounds, one pass."""
    bounds = inputs.get(MICRO_KEY)
    tensors = {k: v for k, v in inputs.items() if k != MICRO_KEY}
    if bounds is None:
        return [tensors]
    return [{k: v[start:stop, :width].contiguous() for k, v in tensors.items()} for start, stop, width in bounds]


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
