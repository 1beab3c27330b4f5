"""LC-Rec's shared-prefix beam steps: one copy of each prompt's keys/values for all of its beams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uqf_cli.rec.decoding import SidTrie, constrained_beam_search
from uqf_cli.rec.lcrec import shared_prefix
from uqf_cli.rec.lcrec.recommender import CausalLmStepDecoder, SharedPrefixStepDecoder, to_decoding_precision

VOCAB = 120


def _llama(seed: int = 0, attn: str = "sdpa"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB + 24, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=True, attn_implementation=attn)
    return LlamaForCausalLM(cfg).eval()


def _trie() -> SidTrie:
    codes = np.unique(np.random.default_rng(0).integers(0, 8, (60, 3)), axis=0)
    return SidTrie.from_token_ids(codes, [list(range(VOCAB + 8 * lv, VOCAB + 8 * lv + 8)) for lv in range(3)])


def _prompts() -> list[list[int]]:
    rng = np.random.default_rng(1)
    return [rng.integers(1, VOCAB, n).tolist() for n in (5, 11, 8, 2)]  # left padding of 0 to 9 tokens


def _search(model, decoder, beams: int = 10):
    prompts = _prompts()
    return constrained_beam_search(decoder(model, prompts, 0, torch.device("cpu")), _trie(), len(prompts), beams)


def test_shared_prefix_attention_equals_sdpa_over_each_beams_own_copy() -> None:
    """The attention of W beams per user over one copy of the (left-padded) prompt plus each beam's own
    tokens equals SDPA over the prompt repeated per beam and concatenated with the beam's tokens."""
    g = torch.Generator().manual_seed(0)
    users, width, kv_heads, groups, dim, prompt, own = 3, 4, 2, 3, 8, 7, 2
    rows, heads = users * width, kv_heads * groups
    q = torch.randn(rows, heads, 1, dim, generator=g)
    pk, pv = (torch.randn(users, kv_heads, prompt, dim, generator=g) for _ in range(2))
    ok, ov = (torch.randn(rows, kv_heads, own, dim, generator=g) for _ in range(2))
    mask = torch.ones(users, prompt, dtype=torch.long)
    mask[0, :3], mask[2, :6] = 0, 0
    bias = torch.zeros(users, prompt).masked_fill(mask == 0, float("-inf"))[:, None, None, :]
    got = shared_prefix.shared_prefix_attention(q, pk, pv, bias, ok, ov, dim ** -0.5)

    user = torch.arange(rows) // width
    keys = torch.cat([pk[user], ok], dim=2).repeat_interleave(groups, dim=1)
    values = torch.cat([pv[user], ov], dim=2).repeat_interleave(groups, dim=1)
    keep = torch.cat([mask[user].bool(), torch.ones(rows, own, dtype=torch.bool)], dim=1)[:, None, None, :]
    want = torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=keep).transpose(1, 2)
    assert got.shape == want.shape == (rows, 1, heads, dim)
    assert torch.allclose(got, want, atol=1e-6)


def test_float32_beam_search_equals_the_per_beam_cache() -> None:
    """In float32 the shared-prefix steps give the items and scores of Hugging Face's per-beam cache."""
    model = _llama()
    want = _search(model, CausalLmStepDecoder)
    shared_prefix.prepare(model)
    got = _search(model, SharedPrefixStepDecoder)
    assert torch.equal(got.items, want.items)
    assert torch.allclose(got.scores, want.scores, atol=1e-5)
    assert torch.equal(_search(model, CausalLmStepDecoder).items, want.items)  # the prompt's forward is still SDPA


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU has no bf16 kernels")
def test_bf16_beam_search_keeps_the_per_beam_cache_lists() -> None:
    """bf16 body + float32 head: the same beams as the per-beam cache, scores within bf16 rounding."""
    model = to_decoding_precision(_llama(seed=2), "bf16")
    want = _search(model, CausalLmStepDecoder)
    shared_prefix.prepare(model)
    got = _search(model, SharedPrefixStepDecoder)
    assert torch.equal(got.items[:, :5], want.items[:, :5])
    assert torch.allclose(got.scores, want.scores, atol=0.02)


def test_unprepared_or_unsupported_models_are_refused() -> None:
    model = _llama()
    with pytest.raises(RuntimeError, match="ran in 0 of 2 layers"):
        _search(model, SharedPrefixStepDecoder)  # no prepare(): the steps would ignore the prompt
    assert shared_prefix.supported(model)
    assert not shared_prefix.supported(_llama(attn="eager"))
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    assert not shared_prefix.supported(gpt2)
