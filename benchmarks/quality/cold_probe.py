"""Probes of the cold-start ceiling for UQF SIDs, on a finished ``cold_start.py --work DIR``.

Two questions the cold-start table raises (issue 14), each answered in seconds to minutes from the files
``cold_start.py`` leaves in its work directory (warm/cold text, the warm fused embeddings, the quantizers):

1. **Imputation.** Could *any* placement of a cold item in the fused space, from its text alone, do
   better than the fuser's text path? Each cold item gets the (plain or similarity-softmax weighted)
   mean of the fused vectors of its k nearest warm items by text, is coded by the saved UQF quantizer
   (``quantize --apply``), and its level-1 pair share with its true co-occurrence neighbours is compared
   with the text-only SIDs' (the same measure as ``cold_start.py``).
2. **Granularity.** Does the ratio depend on how coarse level 1 is? Both tokenizers (UQF text path and
   text-only) are refitted on the warm items with smaller codebooks and the cold items coded again.

    UQF_THREADS=1 .venv/bin/python -m benchmarks.quality.cold_probe --dataset runs/office/ds --work runs/cold_default
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.quality import cold_start as cs
from uqf_cli.core.runtime import configure, set_threads_from_env
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import load_embeddings, make_provenance, read_sids, save_embeddings
from uqf_cli.fuse import topk_cosine
from uqf_cli.quantize import QuantizeConfig, apply_quantizer


def pair_share(sids: dict, items: list[str], nbrs: dict, depth: int = 1) -> float:
    return cs.prefix_agreement(sids, items, nbrs, depth)["pair_share"]


def imputation(work: Path, cold_list: list[str], nbrs: dict, ks: list[int], scratch: Path) -> list[str]:
    """Level-1 pair share of cold items placed at the mean fused vector of their k nearest warm texts."""
    tw, tc = load_embeddings(work / "text_warm.st"), load_embeddings(work / "text_cold.st")
    uw = load_embeddings(work / "unified_warm.st")
    if uw.item_ids != tw.item_ids:
        sys.exit(f"error: {work}: unified_warm.st and text_warm.st list different items")
    warm_sids = read_sids(work / "uqf_warm_sids.jsonl").as_dict()
    text_sids = {**read_sids(work / "text_warm_sids.jsonl").as_dict(),
                 **read_sids(work / "text_cold_sids.jsonl").as_dict()}
    uqf_sids = {**warm_sids, **read_sids(work / "uqf_cold_sids.jsonl").as_dict()}
    base = pair_share(text_sids, cold_list, nbrs)
    lines = [f"text-only SIDs: {base:.4f}; UQF, fuser text path: {pair_share(uqf_sids, cold_list, nbrs):.4f} "
             f"({pair_share(uqf_sids, cold_list, nbrs) / base:.2f}x)"]
    xt, xc = F.normalize(tw.embeddings.float(), dim=-1), F.normalize(tc.embeddings.float(), dim=-1)
    fused = uw.embeddings.float()
    for k in ks:
        nb = topk_cosine(xc, xt, k)
        sims = (xc[:, None, :] * xt[nb]).sum(-1)
        for name, w in (("mean", torch.ones_like(sims) / k), ("softmax(cos/0.05)", torch.softmax(sims / 0.05, 1))):
            emb = F.normalize((fused[nb] * w[..., None]).sum(1), dim=-1)
            save_embeddings(scratch / "cold.st", emb, tc.item_ids, make_provenance("cold_probe", {"k": k}),
                            "unified", None, force=True)
            apply_quantizer(work / "uqf_quantizer.st", scratch / "cold.st", scratch / "cold.jsonl", device="cpu",
                            force=True)
            share = pair_share({**warm_sids, **read_sids(scratch / "cold.jsonl").as_dict()}, cold_list, nbrs)
            lines.append(f"imputed from k={k} warm text neighbours, {name}: {share:.4f} ({share / base:.2f}x)")
    return lines


def granularity(work: Path, cold_list: list[str], nbrs: dict, sizes: list[int], scratch: Path) -> list[str]:
    """Cold and warm level-1 pair shares with both tokenizers refitted at smaller codebooks."""
    warm_ds = Dataset.load(work / "warm_ds")
    cold = set(cold_list)
    warm_list = [i for i in warm_ds.item_ids if i not in cold]
    lines = []
    for size in sizes:
        out = scratch / f"cb{size}"
        out.mkdir(exist_ok=True)
        shares = {}
        for name, we, ce in (("uqf", "unified_warm.st", "unified_cold.st"), ("text", "text_warm.st", "text_cold.st")):
            qcfg = QuantizeConfig(seed=0, codebook_sizes=[size] * QuantizeConfig.levels)
            w, c, _ = cs.tokenize(out, name, warm_ds, work / we, work / ce, qcfg, "cpu")
            sids = {**w.as_dict(), **c.as_dict()}
            shares[name] = (pair_share(sids, cold_list, nbrs), pair_share(sids, warm_list, nbrs))
        lines.append(f"{QuantizeConfig.levels} x {size}: cold UQF {shares['uqf'][0]:.4f} / text "
                     f"{shares['text'][0]:.4f} = "
                     f"{shares['uqf'][0] / shares['text'][0]:.2f}x; warm UQF {shares['uqf'][1]:.4f} / text "
                     f"{shares['text'][1]:.4f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, type=Path, help="the FULL dataset cold_start.py was given")
    ap.add_argument("--work", required=True, type=Path, help="a finished cold_start.py --work directory")
    ap.add_argument("--cold-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0, help="the --seed of that cold_start.py run")
    ap.add_argument("--impute-k", default="1,3,5,10,20")
    ap.add_argument("--codebook-sizes", default="64,16", help="refit both tokenizers at these sizes ('' skips)")
    args = ap.parse_args()
    configure(quiet=True)
    set_threads_from_env()
    full = Dataset.load(args.dataset)
    cold_list = cs.pick_cold_items(full, args.cold_fraction, args.seed)
    nbrs = cs.warm_neighbours(full, set(cold_list))
    with tempfile.TemporaryDirectory(prefix="uqf_cold_probe_") as tmp:
        scratch = Path(tmp)
        lines = imputation(args.work, cold_list, nbrs, [int(k) for k in args.impute_k.split(",")], scratch)
        if args.codebook_sizes:
            lines += granularity(args.work, cold_list, nbrs, [int(s) for s in args.codebook_sizes.split(",")],
                                 scratch)
    print("\n".join(f"- {line}" for line in lines))


if __name__ == "__main__":
    main()
