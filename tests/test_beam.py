"""Constrained beam search: trie tables, validity, and identical rankings to HF generate."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from uqf_cli.rec.decoding import SidTrie
from uqf_cli.rec.tiger.t5_decoder import constrained_beam_search_t5


def _tiny_t5(vocab: int, seed: int = 0):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                   dropout_rate=0.1, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return T5ForConditionalGeneration(cfg).eval()


def _random_sids(n: int, levels: int, k: int, seed: int = 0) -> np.ndarray:
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    while len(seen) < n:
        seen.add(tuple(rng.randrange(k) for _ in range(levels)))
    return np.asarray(sorted(seen))


def test_trie_tables_follow_item_prefixes() -> None:
    codes = np.asarray([[0, 1], [0, 2], [1, 0]])
    trie = SidTrie.build(codes, [2, 3], [2, 4])
    assert trie.tables[0].tolist() == [[0, 1]]  # root -> two depth-1 nodes
    assert trie.tables[1].tolist() == [[-1, 0, 1], [2, -1, -1]]  # depth-1 node -> item rows
    with pytest.raises(ValueError, match="unique"):
        SidTrie.build(np.asarray([[0, 1], [0, 1]]), [2, 3], [2, 4])
    with pytest.raises(ValueError, match="outside"):
        SidTrie.build(np.asarray([[0, 3]]), [2, 3], [2, 4])


def test_colliding_sids_share_a_leaf_named_by_their_first_row() -> None:
    codes = np.asarray([[0, 1], [0, 2], [1, 1], [1, 1]])  # the last two collide
    trie = SidTrie.from_token_ids(codes, [[100, 101], [102, 103, 104]], collisions="group")
    assert trie.tables[0].tolist() == [[0, 1]]
    assert trie.tables[1].tolist() == [[-1, 0, 1], [-1, 2, -1]]
    assert [trie.rows_of(leaf) for leaf in (0, 1, 2)] == [[0], [1], [2, 3]]
    with pytest.raises(ValueError, match="collisions"):
        SidTrie.from_token_ids(codes, [[100, 101], [102, 103, 104]], collisions="keep")


def test_same_ranking_as_hf_generate_with_prefix_allowed_tokens_fn() -> None:
    levels, k, n_items, beam = 3, 16, 400, 20
    vocab = 2 + levels * k
    model = _tiny_t5(vocab)
    codes = _random_sids(n_items, levels, k)
    offsets = [2 + lv * k for lv in range(levels)]
    tokens = codes + np.asarray(offsets)[None, :]
    trie_dict: dict = {}
    for row in tokens.tolist():
        node = trie_dict
        for t in row:
            node = node.setdefault(t, {})

    def allowed(batch_id, ids):  # the reference: a Python walk per beam and step
        node = trie_dict
        for t in ids.tolist()[1:]:
            node = node.get(t)
            if node is None:
                return [1]
        return list(node.keys()) or [1]

    torch.manual_seed(1)
    x = torch.randint(2, vocab, (12, 15))
    mask = torch.ones_like(x)
    mask[3, 9:] = 0  # padded rows must be handled the same way
    mask[7, 4:] = 0
    with torch.no_grad():
        ref = model.generate(input_ids=x, attention_mask=mask, num_beams=beam, num_return_sequences=beam,
                             max_new_tokens=levels, prefix_allowed_tokens_fn=allowed, early_stopping=True)
    row_of = {tuple(r): i for i, r in enumerate(tokens.tolist())}
    ref_items = [[row_of[tuple(s[1:].tolist())] for s in ref[u * beam:(u + 1) * beam]] for u in range(len(x))]
    ours = constrained_beam_search_t5(model, x, mask, SidTrie.build(codes, [k] * levels, offsets), beam)
    assert ours.items.tolist() == ref_items
    assert torch.all(ours.scores[:, :-1] >= ours.scores[:, 1:])


def test_small_catalogue_returns_only_real_items() -> None:
    levels, k = 2, 8
    model = _tiny_t5(2 + levels * k)
    codes = np.asarray([[0, 1], [0, 5], [3, 3], [7, 0], [7, 7]])
    trie = SidTrie.build(codes, [k] * levels, [2, 2 + k])
    x = torch.randint(2, 2 + levels * k, (4, 6))
    res = constrained_beam_search_t5(model, x, torch.ones_like(x), trie, beam_size=10)
    for row, scores in zip(res.items.tolist(), res.scores.tolist(), strict=True):
        real = [r for r in row if r >= 0]
        assert sorted(real) == list(range(5))  # every item exactly once, nothing invented
        assert all(s == float("-inf") for r, s in zip(row, scores, strict=True) if r < 0)
