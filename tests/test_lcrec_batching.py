"""LC-Rec's bucketed batching: random batches, each run as length-sorted micro-batches, as many as the padding and
the cost of a pass make cheapest (no model needed)."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest
import torch

from uqf_cli.rec.lcrec.batching import (
    Collator,
    RandomBatches,
    SplitBatch,
    epoch_batches,
    micro_batches,
    padding_share,
    split_by_length,
)
from uqf_cli.rec.lcrec.prompts import Encoded

# Office's training windows by history length 1..20 (38,543 windows, max_history 20): most are short, and the
# length-20 class collects every window of the long sequences.
OFFICE_HISTORY = [4905, 4905, 3609, 2851, 2413, 2084, 1813, 1576, 1417, 1256, 1114, 1005, 893, 801, 727, 656, 599,
                  545, 479, 4895]


def _office_like(n: int, seed: int = 0) -> list[Encoded]:
    """``n`` windows drawn from Office's history lengths, as compact prompts: 24 tokens and 4 SID tokens an item,
    then a 4-token SID and EOS."""
    rng = random.Random(seed)
    lengths = rng.choices(range(1, 21), weights=OFFICE_HISTORY, k=n)
    return [Encoded([7] * (24 + 4 * h), [9] * 5) for h in lengths]


def _between_step_share(batches: list[list[Encoded]]) -> float:
    """Share of the window-length variance that lies between the steps' mean lengths (random batches of ``b``:
    about ``1 / b``; batches of equal lengths: about 1): how much the length-dependent part of the gradient
    varies from step to step."""
    lengths = [len(e.prompt) for b in batches for e in b]
    means = [statistics.mean(len(e.prompt) for e in b) for b in batches if len(b) == len(batches[0])]
    return statistics.pvariance(means) / statistics.pvariance(lengths)


def test_every_epoch_runs_each_window_once_in_new_random_batches() -> None:
    examples = _office_like(203)
    data = RandomBatches(examples, 8, 4, seed=5)
    sizes = []
    for epoch in (0, 1, 2):
        data.set_epoch(epoch)
        assert len(data) == 26 and len(data.micro) == 25 * 4 + 3  # 25 full batches of 4 micro-batches; 3 windows last
        assert sorted(id(e) for k in range(len(data)) for m in data[k].parts for e in m) == sorted(map(id, examples))
        assert [len(b) for b in data.batches] == [8] * 25 + [3]
        # one item per batch: the Trainer's step is grad_accum whole batches, however many passes each takes
        for k, batch in enumerate(data.batches):
            assert len(data[k].parts) == min(4, len(batch))
            assert sorted(id(e) for m in data[k].parts for e in m) == sorted(id(e) for e in batch)
        sizes.append([[id(e) for e in b] for b in data.batches])
    assert sizes[0] != sizes[1] != sizes[2]  # another composition every epoch, like the random sampler
    again = RandomBatches(examples, 8, 4, seed=5)  # the same on every rank and after a resume
    again.set_epoch(2)
    assert [[id(e) for e in b] for b in again.batches] == sizes[2]
    other = RandomBatches(examples, 8, 4, seed=6)
    assert [[id(e) for e in b] for b in other.batches] != sizes[0]
    # the overhead changes how batches are cut, never which batches there are
    costly = RandomBatches(examples, 8, 4, seed=5, overhead=96)
    costly.set_epoch(2)
    assert [[id(e) for e in b] for b in costly.batches] == sizes[2] and len(costly) == 26


def test_steps_stay_as_diverse_as_random_batches_with_little_padding() -> None:
    """The optimizer steps are random batches (their mean lengths vary as random batches' do), while the forward
    passes pad a few percent instead of random batches' ~40 %. Sorting all windows by length and cutting the
    order into batches pads less still, but makes every step one history length (share about 1)."""
    examples = _office_like(4000)
    data = RandomBatches(examples, 8, 4, seed=0)
    assert _between_step_share(data.batches) < 0.2  # random batches of 8: 1/8
    assert padding_share(data.micro) < 0.05
    shuffled = examples[:]
    random.Random(1).shuffle(shuffled)
    plain = [shuffled[k:k + 8] for k in range(0, len(shuffled), 8)]
    assert padding_share(plain) > 0.3 and padding_share(data.batches) > 0.3  # the same batches in one forward each
    ordered = sorted(shuffled, key=lambda e: len(e.prompt))
    assert _between_step_share([ordered[k:k + 8] for k in range(0, len(ordered), 8)]) > 0.9
    # one micro-batch a batch: the whole batch in one forward, padded as random batches are
    assert padding_share(RandomBatches(examples, 8, 1, seed=0).micro) > 0.3


def _positions(groups: list[list[int]]) -> int:
    return sum(len(g) * max(g) for g in groups)


def _brute_force(lengths: list[int], parts: int, overhead: int) -> tuple[int, int]:
    """The cheapest cut of the sorted ``lengths`` into 1..``parts`` contiguous groups: (padded positions + overhead a
    group, groups), ties to fewer groups; ``overhead=0``: exactly ``min(parts, n)`` groups."""
    n = len(lengths)
    counts = [min(parts, n)] if overhead == 0 else range(1, min(parts, n) + 1)
    return min((_positions([lengths[i:j] for i, j in zip((0, *cuts), (*cuts, n), strict=True)]) + overhead * p, p)
               for p in counts for cuts in itertools.combinations(range(1, n), p - 1))


@pytest.mark.parametrize("seed", range(40))
def test_split_by_length_finds_the_brute_force_optimum_with_the_cost_of_a_pass(seed: int) -> None:
    rng = random.Random(seed)
    batch = [Encoded([1] * rng.randint(1, 30), [2] * rng.randint(1, 3)) for _ in range(rng.randint(1, 9))]
    parts = rng.randint(1, 5)
    overhead = rng.choice([0, 0, 1, 5, 12, 30, 200])
    micro = split_by_length(batch, parts, overhead)
    assert 1 <= len(micro) <= min(parts, len(batch)) and all(micro)
    flat = [e for m in micro for e in m]
    assert sorted(map(id, flat)) == sorted(map(id, batch))
    lengths = [len(e.prompt) + len(e.response) for e in flat]
    assert lengths == sorted(lengths)
    got = _positions([[len(e.prompt) + len(e.response) for e in m] for m in micro]) + overhead * len(micro)
    assert (got, len(micro)) == _brute_force(lengths, parts, overhead)


def test_the_cost_of_a_pass_sets_how_many_passes_a_batch_takes() -> None:
    """Overhead 0 keeps the fixed count; a large one runs every batch whole; in between the count varies by batch,
    never grows with the overhead, and each batch's positions + overhead a pass is at most either fixed count's."""
    examples = _office_like(2000, seed=3)
    batches = epoch_batches(examples, 8, seed=0, epoch=0)

    def cost(micro: list[list[Encoded]], overhead: int) -> int:
        return _positions([[len(e.prompt) + len(e.response) for e in m] for m in micro]) + overhead * len(micro)

    assert all(len(split_by_length(b, 4, 0)) == 4 for b in batches)
    assert all(len(split_by_length(b, 4, 10**6)) == 1 for b in batches)
    passes = {t: [len(split_by_length(b, 4, t)) for b in batches] for t in (0, 24, 96, 400)}
    assert len(set(passes[96])) > 1  # Office-like batches differ: some run whole, some in 2 or more passes
    for low, high in ((0, 24), (24, 96), (96, 400)):
        assert all(a >= b for a, b in zip(passes[low], passes[high], strict=True))
    for b in batches:
        chosen = cost(split_by_length(b, 4, 96), 96)
        assert chosen <= cost(split_by_length(b, 4, 0), 96) and chosen <= cost([b], 96)
    data = RandomBatches(examples, 8, 4, seed=0, overhead=96)
    assert 1 < len(data.micro) / len(data) < 4
    assert padding_share(data.micro) < padding_share(data.batches)


def test_epoch_batches_cut_a_seeded_shuffle_and_the_collator_pads_a_split_batch_once() -> None:
    examples = [Encoded([1, 2, 3][:k + 1], [4]) for k in range(3)] * 3
    batches = epoch_batches(examples, 4, seed=0, epoch=0)
    assert [len(b) for b in batches] == [4, 4, 1] and batches == epoch_batches(examples, 4, seed=0, epoch=0)
    collate = Collator(pad_id=0)
    plain = collate(batches[0])  # a list of examples: one padded batch, no micro-batch bounds
    assert plain["input_ids"].shape == (4, 4) and set(plain) == {"input_ids", "attention_mask", "labels"}
    for parts in (1, 2, 3):
        split = SplitBatch(tuple(split_by_length(batches[0], parts)))
        out = collate([split])  # the Trainer hands a one-element list holding the batch
        assert out["input_ids"].shape[0] == 4 and (out["labels"] != -100).sum() == 4
        passes = micro_batches(out)
        assert len(passes) == len(split.parts) == len(out["micro_batches"])
        for micro, part in zip(passes, split.parts, strict=True):  # each pass as if the part were collated alone
            alone = collate(part)
            assert micro.keys() == alone.keys()
            for key in alone:
                assert torch.equal(micro[key], alone[key]) and micro[key].is_contiguous(), key
    assert micro_batches(plain)[0].keys() == plain.keys()
