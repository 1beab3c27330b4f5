#!/bin/bash
# The UQF design search (issue 14): variants screened on validation NDCG@10, 1 seed, TIGER small 5 epochs.
# Inputs as in benchmarks/results/archive/office_cpu.md (uqf prepare builtin:office, embed-text, train-gcn --seed 0).
cd "$(dirname "$0")/../.."
UQF_THREADS=1 exec .venv/bin/python -m benchmarks.quality.ablation --dataset runs/office/ds --text runs/office/text.st \
  --collab runs/office/collab.st --work runs/cmp --out benchmarks/results/office_search.md --jobs 2 \
  --tiger-epochs 5 --no-baselines --seeds 1 --ablation-seeds 1 --tiger-preset small \
  --variants uqf,uqf-borrow,uqf-distill,uqf-borrow-distill,uqf-cb64,uqf-rqkmeans,uqf-no-gate,uqf-no-modality-dropout,uqf-pdrop5,uqf-wsem1,uqf-out64,uqf-structcollab,uqf-fuse20,uqf-borrow-distill10 \
  --define 'uqf-borrow={"method": "uqf", "fuse": {"cold_collab": "borrow"}, "label": "UQF, borrowed collab memory for collab-less rows"}' \
  --define 'uqf-distill={"method": "uqf", "fuse": {"w_distill": 1.0}, "label": "UQF, text-path distillation (w 1.0)"}' \
  --define 'uqf-borrow-distill={"method": "uqf", "fuse": {"cold_collab": "borrow", "w_distill": 1.0}, "label": "UQF, borrowed collab memory + distillation"}' \
  --define 'uqf-borrow-distill10={"method": "uqf", "fuse": {"cold_collab": "borrow", "w_distill": 10.0}, "label": "UQF, borrowed collab memory + distillation (w 10)"}' \
  --define 'uqf-cb64={"method": "uqf", "codebook_size": 64, "label": "UQF, RQ-VAE 3 x 64"}' \
  --define 'uqf-rqkmeans={"method": "uqf", "quantize": {"method": "rqkmeans"}, "label": "UQF, RQ-KMeans 3 x 256"}' \
  --define 'uqf-pdrop5={"method": "uqf", "fuse": {"p_drop_collab": 0.5}, "label": "UQF, collab dropout 0.5"}' \
  --define 'uqf-wsem1={"method": "uqf", "fuse": {"w_semantic": 1.0}, "label": "UQF, semantic weight 1.0"}' \
  --define 'uqf-out64={"method": "uqf", "fuse": {"out_dim": 64}, "label": "UQF, 64-d output"}' \
  --define 'uqf-structcollab={"method": "uqf", "fuse": {"structural": "collab"}, "label": "UQF, structural positives from LightGCN"}' \
  --define 'uqf-fuse20={"method": "uqf", "fuse": {"epochs": 20}, "label": "UQF, 20 fuse epochs"}' \
  "$@"
