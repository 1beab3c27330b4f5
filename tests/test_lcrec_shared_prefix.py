"""LC-Rec's shared-prefix beam steps: one copy of each prompt's keys/values for all of its beams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uqf_cli.rec.decoding import BeamResult, SidTrie, constrained_beam_search
from uqf_cli.rec.lcrec import shared_prefix
from uqf_cli.rec.lcrec.recommender import (
    MIN_COMMON_START,
    CausalLmStepDecoder,
    Scratch,
    SharedPrefixStepDecoder,
    common_start,
    left_pad,
    to_decoding_precision,
)

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


def _templated(start: int = 6) -> list[list[int]]:
    """Prompts that all open with the same ``start`` tokens (as a template does); one has a single own token."""
    opening = np.random.default_rng(2).integers(1, VOCAB, start).tolist()
    return [opening + p for p in _prompts()] + [[*opening, 7]]


def _search(model, decoder, beams: int = 10):
    prompts = _prompts()
    return constrained_beam_search(decoder(model, prompts, 0, torch.device("cpu")), _trie(), len(prompts), beams)


def _shared_search(model, prompts: list[list[int]], trie: SidTrie, beams: int, scratch: Scratch):
    """The search as :meth:`LcRecRecommender.search` runs it: logits and log-probs in reused buffers."""
    decoder = SharedPrefixStepDecoder(model, prompts, 0, torch.device("cpu"), scratch)
    return constrained_beam_search(decoder, trie, len(prompts), beams, log_softmax=decoder.log_softmax)


def _ranks_alike(got, want, top: int, tol: float) -> bool:
    """``got``'s top items rank like ``want``'s up to ties closer than ``tol``: each of got's top items is in
    want's list, with want's score within ``tol`` of want's score at that rank (bf16 rounding may swap
    near-ties, never bring in an item want ranks far lower or not at all)."""
    for g_items, w_items, w_scores in zip(got.items.tolist(), want.items.tolist(), want.scores.tolist(), strict=True):
        score_of = dict(zip(w_items, w_scores, strict=True))
        if any(item not in score_of or abs(score_of[item] - w_scores[rank]) > tol
               for rank, item in enumerate(g_items[:top])):
            return False
    return True


def _hf_search(model, prompts: list[list[int]], trie: SidTrie, beams: int):
    return constrained_beam_search(CausalLmStepDecoder(model, prompts, 0, torch.device("cpu")), trie, len(prompts),
                                   beams)


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


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_decoders_logits_are_the_models_own(precision: str) -> None:
    """The body + head in the scratch buffer give the very logits of the model's forward (same product)."""
    if precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no bf16 kernels")
    model = to_decoding_precision(_llama(seed=3), precision)
    shared_prefix.prepare(model)
    prompts = _prompts()
    decoder = SharedPrefixStepDecoder(model, prompts, 0, torch.device("cpu"))
    ids, mask = left_pad(prompts, 0, torch.device("cpu"))
    with torch.inference_mode():
        got = decoder.first()
        want = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                     logits_to_keep=1).logits[:, -1, :]
        assert got.dtype == torch.float32 and torch.equal(got, want)
        assert torch.equal(decoder.log_softmax(got), torch.log_softmax(want, dim=-1))
        assert decoder.log_softmax(got).data_ptr() == decoder.scratch.get("log_probs", (1,), torch.float32,
                                                                           got.device).data_ptr()


def test_reused_buffers_across_batches_and_dry_beams_keep_the_per_beam_cache_lists() -> None:
    """One Scratch for several batches (of other row counts), and beams that run dry (fewer items than
    beams: empty beams, -inf rows, at every level): the items and scores of Hugging Face's per-beam cache."""
    model = _llama(seed=4)
    rng = np.random.default_rng(5)
    few = SidTrie.from_token_ids(np.array([[0, 1, 2], [0, 1, 3], [0, 4, 5], [6, 7, 0], [6, 2, 1]]),
                                 [list(range(VOCAB + 8 * lv, VOCAB + 8 * lv + 8)) for lv in range(3)])
    batches = [(_prompts(), _trie(), 10), (_prompts()[:3], few, 8), ([rng.integers(1, VOCAB, 7).tolist()], _trie(), 12),
               (_templated(), _trie(), 10), (_templated()[1:], few, 8)]
    want = [_hf_search(model, p, t, b) for p, t, b in batches]
    shared_prefix.prepare(model)
    scratch = Scratch()
    for (prompts, trie, beams), w in zip(batches * 2, want * 2, strict=True):
        got = _shared_search(model, prompts, trie, beams, scratch)
        assert torch.equal(got.items, w.items)
        assert torch.allclose(got.scores, w.scores, atol=1e-5)
    assert (want[1].items == -1).any()  # the dry case really has empty beams


def test_scratch_reuses_a_buffer_until_it_is_too_small_or_of_another_kind() -> None:
    scratch, cpu = Scratch(), torch.device("cpu")
    a = scratch.get("x", (4, 6), torch.float32, cpu)
    b = scratch.get("x", (2, 5), torch.float32, cpu)
    assert b.shape == (2, 5) and b.data_ptr() == a.data_ptr()
    c = scratch.get("x", (5, 6), torch.float32, cpu)
    assert c.shape == (5, 6) and scratch.get("x", (4, 6), torch.float32, cpu).data_ptr() == c.data_ptr()
    assert scratch.get("x", (4, 6), torch.bfloat16, cpu).dtype == torch.bfloat16
    assert scratch.get("y", (4, 6), torch.float32, cpu).data_ptr() != scratch.get("x", (1,), torch.bfloat16,
                                                                                  cpu).data_ptr()


def test_common_start_leaves_every_prompt_a_token_of_its_own() -> None:
    assert common_start([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert common_start([[1, 2, 3], [1, 2, 3, 4]]) == 2 and common_start([[1, 2], [1, 2]]) == 1
    assert common_start([[1], [1]]) == 0 and common_start([[9, 2], [1, 2]]) == 0
    assert common_start(_templated(MIN_COMMON_START + 2)) == MIN_COMMON_START + 2


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_batchs_common_opening_runs_once_with_the_whole_prompts_results(precision: str) -> None:
    """The opening all prompts share runs once (its keys/values repeated per user), the rest after it: the
    first logits of each whole prompt's forward, and the per-beam cache's lists."""
    if precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no bf16 kernels")
    model = to_decoding_precision(_llama(seed=6), precision)
    prompts = _templated()
    want = _hf_search(model, prompts, _trie(), 10)
    shared_prefix.prepare(model)
    ids, mask = left_pad(prompts, 0, torch.device("cpu"))
    with torch.inference_mode():
        whole = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                      logits_to_keep=1).logits[:, -1, :]
        decoder = SharedPrefixStepDecoder(model, prompts, 0, torch.device("cpu"))
        got_first = decoder.first()
    assert decoder.state is not None and decoder.state.prefix_bias.shape[-1] == ids.shape[1]
    assert torch.isfinite(decoder.state.prefix_bias[..., :6]).all()  # the opening first, then each one's padding
    assert torch.allclose(got_first, whole, atol=1e-5 if precision == "fp32" else 0.05)
    got = _shared_search(model, prompts, _trie(), 10, Scratch())
    if precision == "fp32":
        assert torch.equal(got.items, want.items) and torch.allclose(got.scores, want.scores, atol=1e-5)
    else:
        assert _ranks_alike(got, want, top=5, tol=0.005) and torch.allclose(got.scores, want.scores, atol=0.02)
        assert not _ranks_alike(BeamResult(want.items.flip(1), want.scores), want, top=5, tol=0.005)  # it can fail


@pytest.mark.parametrize("wrap", [False, True], ids=["plain", "peft"])
def test_decoders_pass_the_cache_without_deprecation_warnings(wrap: bool) -> None:
    """Both step decoders hand the KV cache over by the name the installed transformers takes
    (``cache`` since 5.x renamed ``past_key_values``), also through a peft wrapper as in training's
    validation: no warning per beam step, and the same beams either way."""
    import warnings

    model = _llama()
    if wrap:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], lora_dropout=0.0)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        want = _search(model, CausalLmStepDecoder)
        if not wrap:
            shared_prefix.prepare(model)
            assert torch.equal(_search(model, SharedPrefixStepDecoder).items, want.items)
    assert want.items.shape[0] == len(_prompts())
