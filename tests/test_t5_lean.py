"""The lean T5 training forward computes the Hugging Face loss and gradients (dropout off)."""

from __future__ import annotations

import pytest
import torch

from uqf_cli.rec.tiger.t5_lean import lean_t5_loss


def _model():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    cfg = T5Config(vocab_size=50, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                   dropout_rate=0.1, feed_forward_proj="relu", pad_token_id=0, eos_token_id=1,
                   decoder_start_token_id=0)
    return T5ForConditionalGeneration(cfg).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 50, (5, 7), generator=g)
    mask = torch.ones(5, 7, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, :] = 0  # an empty history: every key is padding
    ids[mask == 0] = 0
    return ids, mask, torch.randint(2, 50, (5, 3), generator=g)


def test_lean_loss_and_gradients_match_hugging_face():
    model = _model()
    ids, mask, labels = _batch()
    ref = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    ours = lean_t5_loss(model, ids, mask, labels)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    params = list(model.parameters())
    for g_ref, g_ours in zip(torch.autograd.grad(ref, params), torch.autograd.grad(ours, params), strict=True):
        assert torch.allclose(g_ref, g_ours, atol=1e-5)


def test_lean_loss_depends_on_padding_mask():
    model = _model()
    ids, mask, labels = _batch()
    unmasked = torch.ones_like(mask)
    assert lean_t5_loss(model, ids, mask, labels).item() != lean_t5_loss(model, ids, unmasked, labels).item()
