#!/usr/bin/env bash
# The Office tokenizer comparison on one GPU: text-only, collaborative-only, concatenation and UQF SIDs,
# 3 seeds each, TIGER at the paper's shape with the library's recipe (train-rec's defaults: AdamW 1e-3, cosine
# over 30 epochs, 2% warmup, batch 256, early stopping after 5 epochs on all validation users), with popularity,
# LightGCN and SASRec, all through benchmarks/quality/ablation.py (worker processes sharing the card).
#
# The project runs from source (PYTHONPATH); no model hub is needed. Text embeddings are made on a CPU
# machine beforehand and carried, since the embedded MiniLM package is not on the GPU machine:
#   uqf prepare builtin:office -o runs/office/ds && uqf embed-text runs/office/ds -o runs/office/text.st
#
# Settings (environment):
#   TEXT            text embeddings of the dataset (default runs/office/text.st)
#   DATASET         a prepared dataset directory, or a `uqf prepare` source (default builtin:office)
#   OUT             the table (default benchmarks/results/office_gpu.md; records in office_gpu/units/)
#   WORK            scratch directory (default runs/gpu)
#   BUDGET_MINUTES  the runner's wall-clock deadline (default 6.5, so the whole script ends within 8 minutes)
#   JOBS            worker processes sharing the device (default 6)
#   DEVICE          default auto (CUDA when present)
#   PYTHON          interpreter (default python3)
# Further arguments go to benchmarks/quality/ablation.py and override the ones below (the CPU smoke test passes
# a tiny TIGER and a tiny dataset).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
TEXT=${TEXT:-runs/office/text.st}
DATASET=${DATASET:-builtin:office}
OUT=${OUT:-benchmarks/results/office_gpu.md}
WORK=${WORK:-runs/gpu}
BUDGET_MINUTES=${BUDGET_MINUTES:-6.5}
JOBS=${JOBS:-6}
DEVICE=${DEVICE:-auto}

[ -f "$TEXT" ] || { echo "error: $TEXT: no text embeddings (make them with uqf embed-text on a CPU machine)" >&2; exit 2; }
mkdir -p "$WORK"
start=$(date +%s)
if [ -d "$DATASET" ]; then
  DS=$DATASET
else
  DS=$WORK/ds
  [ -f "$DS/dataset.json" ] || "$PY" -m uqf_cli prepare "$DATASET" -o "$DS" --quiet
fi
[ -f "$WORK/collab.st" ] || "$PY" -m uqf_cli train-gcn "$DS" -o "$WORK/collab.st" --device "$DEVICE" --seed 0 --quiet
"$PY" -m benchmarks.quality.ablation --dataset "$DS" --text "$TEXT" --collab "$WORK/collab.st" --work "$WORK/run" \
  --out "$OUT" --variants text,collab,concat,uqf --seeds 3 --tiger-preset tiger \
  --baselines --jobs "$JOBS" --budget-minutes "$BUDGET_MINUTES" --device "$DEVICE" "$@"
echo "gpu_office.sh: $(( $(date +%s) - start )) s wall; table in $OUT" >&2
