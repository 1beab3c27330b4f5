"""Items/second of `uqf embed-text` on the Office dataset (2,420 items) with the bundled MiniLM.

Run:  .venv/bin/python -m benchmarks.speed.embed_text_speed [--max-length 128] [--device auto] [--repeat 1]

Prepares the embedded Office dataset into a temporary directory, then times ``embed_text`` end to
end (model load, tokenisation, encoding, writing the file) and the encoding alone, and prints
items/s for both. Say which machine and how loaded it was when you quote the numbers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from uqf_cli.core.runtime import configure, resolve_device
from uqf_cli.data.prepare import prepare
from uqf_cli.embed import EmbedConfig, embed_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = EmbedConfig()  # uqf embed-text's own
    ap.add_argument("--model", default=defaults.model)
    ap.add_argument("--max-length", type=int, default=defaults.max_length)
    ap.add_argument("--batch-size", type=int, default=defaults.batch_size)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="embed only the first N items (0 = all 2,420)")
    args = ap.parse_args()
    configure(quiet=True)
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        ds_dir = Path(tmp) / "office"
        prepare("builtin:office", ds_dir)
        if args.limit:
            _truncate_items(ds_dir, args.limit)
        dev = resolve_device(args.device)
        print(f"device={dev} torch_threads={torch.get_num_threads()} cpu_count={os.cpu_count()} "
              f"loadavg={os.getloadavg()[0]:.1f} max_length={args.max_length} batch_size={args.batch_size}")
        for r in range(args.repeat):
            out = Path(tmp) / f"text{r}.st"
            t0 = time.perf_counter()
            res = embed_text(ds_dir, out, model=args.model, max_length=args.max_length, batch_size=args.batch_size,
                             device=args.device)
            total = time.perf_counter() - t0
            print(f"run {r}: {res.items} items, dim {res.dim}: encode {res.seconds:.1f} s = "
                  f"{res.items_per_second:.1f} items/s; end to end {total:.1f} s = {res.items / total:.1f} items/s")


def _truncate_items(ds_dir: Path, n: int) -> None:
    """Keep the first n items and the sequences that only name them (a quicker smoke run)."""
    import json

    from uqf_cli.files import read_dataset_dir, write_dataset_dir

    items, seqs, info = read_dataset_dir(ds_dir)
    keep = dict(list(items.items())[:n])
    seqs = {u: s for u, s in seqs.items() if all(i in keep for i in s)} or {"u": [next(iter(keep))]}
    info.pop("fingerprint", None)
    write_dataset_dir(ds_dir, keep, seqs, json.loads(json.dumps(info)), force=True)


if __name__ == "__main__":
    main()
