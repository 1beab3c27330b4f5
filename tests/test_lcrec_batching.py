"""LC-Rec's bucketed batching: random batches, each run as length-sorted micro-batches (no model needed)."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from uqf_cli.rec.lcrec.batching import Collator, MicroBatches, epoch_batches, padding_share, split_by_length
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
    data = MicroBatches(examples, 8, 4, seed=5)
    sizes = []
    for epoch in (0, 1, 2):
        data.set_epoch(epoch)
        assert len(data) == len(data.micro) == 25 * 4 + 3  # 25 full batches of 4 micro-batches; 3 windows last
        assert sorted(id(e) for k in range(len(data)) for e in data[k]) == sorted(id(e) for e in examples)
        assert [len(b) for b in data.batches] == [8] * 25 + [3]
        # each batch's micro-batches are consecutive items: the Trainer accumulates them into one step
        start = 0
        for batch in data.batches:
            parts = data.micro[start:start + min(4, len(batch))]
            assert sorted(id(e) for m in parts for e in m) == sorted(id(e) for e in batch)
            start += len(parts)
        sizes.append([[id(e) for e in b] for b in data.batches])
    assert sizes[0] != sizes[1] != sizes[2]  # another composition every epoch, like the random sampler
    again = MicroBatches(examples, 8, 4, seed=5)  # the same on every rank and after a resume
    again.set_epoch(2)
    assert [[id(e) for e in b] for b in again.batches] == sizes[2]
    other = MicroBatches(examples, 8, 4, seed=6)
    assert [[id(e) for e in b] for b in other.batches] != sizes[0]


def test_steps_stay_as_diverse_as_random_batches_with_little_padding() -> None:
    """The optimizer steps are random batches (their mean lengths vary as random batches' do), while the forward
    passes pad a few percent instead of random batches' ~40 %. Sorting all windows by length and cutting the
    order into batches pads less still, but makes every step one history length (share about 1)."""
    examples = _office_like(4000)
    data = MicroBatches(examples, 8, 4, seed=0)
    assert _between_step_share(data.batches) < 0.2  # random batches of 8: 1/8
    assert padding_share(data.micro) < 0.05
    shuffled = examples[:]
    random.Random(1).shuffle(shuffled)
    plain = [shuffled[k:k + 8] for k in range(0, len(shuffled), 8)]
    assert padding_share(plain) > 0.3 and padding_share(data.batches) > 0.3  # the same batches in one forward each
    ordered = sorted(shuffled, key=lambda e: len(e.prompt))
    assert _between_step_share([ordered[k:k + 8] for k in range(0, len(ordered), 8)]) > 0.9
    # one micro-batch a batch: the whole batch in one forward, padded as random batches are
    assert padding_share(MicroBatches(examples, 8, 1, seed=0).micro) > 0.3


@pytest.mark.parametrize("seed", range(20))
def test_split_by_length_cuts_the_sorted_batch_with_the_fewest_padded_positions(seed: int) -> None:
    rng = random.Random(seed)
    batch = [Encoded([1] * rng.randint(1, 30), [2] * rng.randint(1, 3)) for _ in range(rng.randint(1, 9))]
    parts = rng.randint(1, 5)
    micro = split_by_length(batch, parts)
    assert len(micro) == min(parts, len(batch)) and all(micro)
    flat = [e for m in micro for e in m]
    assert sorted(map(id, flat)) == sorted(map(id, batch))
    lengths = [len(e.prompt) + len(e.response) for e in flat]
    assert lengths == sorted(lengths)

    def cost(groups: list[list[int]]) -> int:
        return sum(len(g) * max(g) for g in groups)

    best = min(cost([lengths[i:j] for i, j in zip((0, *cuts), (*cuts, len(lengths)), strict=True)])
               for cuts in itertools.combinations(range(1, len(lengths)), len(micro) - 1))
    assert cost([[len(e.prompt) + len(e.response) for e in m] for m in micro]) == best


def test_epoch_batches_cut_a_seeded_shuffle_and_the_collator_takes_a_micro_batch() -> None:
    examples = [Encoded([1, 2, 3][:k + 1], [4]) for k in range(3)] * 3
    batches = epoch_batches(examples, 4, seed=0, epoch=0)
    assert [len(b) for b in batches] == [4, 4, 1] and batches == epoch_batches(examples, 4, seed=0, epoch=0)
    micro = split_by_length(batches[0], 2)
    out = Collator(pad_id=0)([micro[1]])  # the Trainer hands a one-element list holding the micro-batch
    assert out["input_ids"].shape[0] == len(micro[1])
    assert (out["labels"] != -100).sum() == len(micro[1])
