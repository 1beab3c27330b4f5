"""Constrained beam search speed: uqf's tensor trie search vs HF generate + prefix_allowed_tokens_fn.

Same model, same inputs, measured side by side in one process. The reference is the yardstick
script ``../shared/refs/hf_constrained_beam_ref.py`` (relative to the repository): a TIGER-size T5
(4+4 layers, d_model 128, 6 heads x 64, d_ff 1024), vocabulary pad/eos + 3 x 256 codes, 2,420 items
with random unique 3-level SIDs, 20-item histories (60 tokens), beam 20, batches of 64 users, a dict
trie walked in Python.

Prints users/s of both, the ratio, and whether the top-20 item lists are identical (same items in the
same order for every user). The two sides run interleaved, round by round on the same users, and both
wall-clock and process CPU time are reported: on a shared machine the wall-clock ratio moves with
the other tenants' load, the CPU-time ratio much less.

    .venv/bin/python -m benchmarks.speed.decode_speed [--items 2420] [--users 256] [--batch 256] [--threads N]
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
from transformers import T5Config, T5ForConditionalGeneration

from uqf_cli.rec.decoding import SidTrie
from uqf_cli.rec.tiger.t5_decoder import constrained_beam_search_t5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2420)
    ap.add_argument("--users", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256, help="users per round and per uqf batch (HF: batches of 64)")
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0 = torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

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
    codes = np.asarray([[t - 2 - lv * k for lv, t in enumerate(s)] for s in ordered])
    tensor_trie = SidTrie.build(codes, [k] * levels, [2 + lv * k for lv in range(levels)])

    def run_hf(xr: torch.Tensor) -> list[list[int]]:
        lists: list[list[int]] = []
        with torch.no_grad():
            for b in range(0, len(xr), 64):
                out = model.generate(input_ids=xr[b:b + 64], num_beams=args.beam, num_return_sequences=args.beam,
                                     max_new_tokens=levels, prefix_allowed_tokens_fn=allowed, early_stopping=True)
                rows = [row_of[tuple(seq[1:].tolist())] for seq in out]
                lists += [rows[u:u + args.beam] for u in range(0, len(rows), args.beam)]
        return lists

    def run_ours(xr: torch.Tensor) -> list[list[int]]:
        return constrained_beam_search_t5(model, xr, torch.ones_like(xr), tensor_trie, args.beam).items.tolist()

    # Interleaved rounds of `--batch` users (HF first, then ours, on the same users), so that both sides see
    # the same machine load; wall-clock and process CPU seconds are summed per side.
    hf_lists: list[list[int]] = []
    ours: list[list[int]] = []
    hf_wall = hf_cpu = our_wall = our_cpu = 0.0
    for b in range(0, args.users, args.batch):
        xr = x[b:b + args.batch]
        w, c = time.perf_counter(), time.process_time()
        hf_lists += run_hf(xr)
        hf_wall, hf_cpu = hf_wall + time.perf_counter() - w, hf_cpu + time.process_time() - c
        w, c = time.perf_counter(), time.process_time()
        ours += run_ours(xr)
        our_wall, our_cpu = our_wall + time.perf_counter() - w, our_cpu + time.process_time() - c

    same = sum(a == b for a, b in zip(hf_lists, ours, strict=True))
    n = args.users
    print(f"hf_prefix_allowed_tokens_fn users_per_s {n / hf_wall:.1f} ({hf_wall:.1f}s wall)  "
          f"users_per_cpu_s {n / hf_cpu:.1f} ({hf_cpu:.1f} CPU s)")
    print(f"uqf_tensor_trie_beam        users_per_s {n / our_wall:.1f} ({our_wall:.1f}s wall)  "
          f"users_per_cpu_s {n / our_cpu:.1f} ({our_cpu:.1f} CPU s)")
    print(f"speedup {hf_wall / our_wall:.1f}x wall-clock, {hf_cpu / our_cpu:.1f}x CPU time  "
          f"identical_top{args.beam}_lists {same}/{n} ({'all identical' if same == n else 'DIFFER'})  "
          f"[{args.items} items, {levels}-level SIDs, beam {args.beam}, torch threads {torch.get_num_threads()}]")

if __name__ == "__main__":
    main()
