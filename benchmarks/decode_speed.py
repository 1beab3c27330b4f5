"""Constrained beam search speed: uqf's tensor trie search vs HF generate + prefix_allowed_tokens_fn.

Same model, same inputs, measured side by side in one process. The reference is the yardstick
script ``/work/shared/refs/hf_constrained_beam_ref.py``: a TIGER-size T5 (4+4 layers, d_model 128,
6 heads x 64, d_ff 1024), vocabulary pad/eos + 3 x 256 codes, 2,420 items with random unique 3-level
SIDs, 20-item histories (60 tokens), beam 20, batches of 64 users, a dict trie walked in Python.

Prints users/s of both, the ratio, and whether the top-20 item lists are identical (same items in the
same order for every user).

    .venv/bin/python benchmarks/decode_speed.py [--items 2420] [--users 256] [--batch 256]
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
from transformers import T5Config, T5ForConditionalGeneration

from uqf_cli.rec.beam import SidTrie, constrained_beam_search_t5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2420)
    ap.add_argument("--users", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256, help="users per batch for uqf (HF uses 64, as the yardstick)")
    ap.add_argument("--beam", type=int, default=20)
    args = ap.parse_args()

    torch.manual_seed(0)
    random.seed(0)
    levels, k, hist = 3, 256, 20
    vocab = 2 + levels * k
    cfg = T5Config(vocab_size=vocab, d_model=128, d_kv=64, d_ff=1024, num_layers=4, num_decoder_layers=4,
                   num_heads=6, dropout_rate=0.1, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    model = T5ForConditionalGeneration(cfg).eval()
    sids: set[tuple[int, ...]] = set()
    while len(sids) < args.items:
        sids.add(tuple(2 + lv * k + random.randrange(k) for lv in range(levels)))
    ordered = sorted(sids)
    trie: dict = {}
    for s in ordered:
        node = trie
        for t in s:
            node = node.setdefault(t, {})

    def allowed(batch_id, ids):
        node = trie
        for t in ids.tolist()[1:]:
            node = node.get(t)
            if node is None:
                return [1]
        return list(node.keys()) or [1]

    x = torch.randint(2, vocab, (args.users, hist * levels))
    row_of = {s: r for r, s in enumerate(ordered)}

    t0 = time.perf_counter()
    hf_lists: list[list[int]] = []
    with torch.no_grad():
        for b in range(0, args.users, 64):
            out = model.generate(input_ids=x[b:b + 64], num_beams=args.beam, num_return_sequences=args.beam,
                                 max_new_tokens=levels, prefix_allowed_tokens_fn=allowed, early_stopping=True)
            rows = [row_of[tuple(seq[1:].tolist())] for seq in out]
            hf_lists += [rows[u:u + args.beam] for u in range(0, len(rows), args.beam)]
    hf_s = time.perf_counter() - t0

    codes = np.asarray([[t - 2 - lv * k for lv, t in enumerate(s)] for s in ordered])
    tensor_trie = SidTrie.build(codes, [k] * levels, [2 + lv * k for lv in range(levels)])
    t0 = time.perf_counter()
    ours: list[list[int]] = []
    for b in range(0, args.users, args.batch):
        xb = x[b:b + args.batch]
        ours += constrained_beam_search_t5(model, xb, torch.ones_like(xb), tensor_trie, args.beam).items.tolist()
    our_s = time.perf_counter() - t0

    same = sum(a == b for a, b in zip(hf_lists, ours, strict=True))
    hf_rate, our_rate = args.users / hf_s, args.users / our_s
    print(f"hf_prefix_allowed_tokens_fn users_per_s {hf_rate:.1f} ({hf_s:.1f}s)")
    print(f"uqf_tensor_trie_beam        users_per_s {our_rate:.1f} ({our_s:.1f}s)")
    print(f"speedup {our_rate / hf_rate:.1f}x  identical_top{args.beam}_lists {same}/{args.users} "
          f"({'all identical' if same == args.users else 'DIFFER'})  "
          f"[{args.items} items, {levels}-level SIDs, beam {args.beam}, torch threads {torch.get_num_threads()}]")


if __name__ == "__main__":
    main()
