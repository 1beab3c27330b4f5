#!/usr/bin/env bash
# The uqf pipeline on Amazon Office, one `uqf` command per step: what `uqf demo` runs, in the shell.
#
#   examples/office.sh                 # writes everything under ./uqf-office
#   WORK=runs/office examples/office.sh
#   TIGER_PRESET=tiger TIGER_EPOCHS=60 examples/office.sh  # the paper's shape, trained to early stopping
#   PREPARE_FLAGS="--kcore 15 --max-history 10" QUANTIZE_FLAGS="--codebook-size 16" TIGER_EPOCHS=1 \
#       examples/office.sh             # a small smoke run (344 items: smaller codebooks)
#
# Each step writes one file or directory into $WORK and refuses to overwrite it (pass FORCE=--force
# to redo). Set UQF to another executable (e.g. ".venv/bin/uqf") if `uqf` is not on your PATH.
set -euo pipefail

UQF=${UQF:-uqf}
WORK=${WORK:-uqf-office}
SOURCE=${SOURCE:-builtin:office}     # the Office data embedded in the package (LC-Rec format)
SEED=${SEED:-0}
DEVICE=${DEVICE:-auto}               # auto picks CUDA when present
TIGER_PRESET=${TIGER_PRESET:-small} # the demo's shape (TIGER's own default is the paper's, "tiger")
TIGER_EPOCHS=${TIGER_EPOCHS:-4}      # the demo's budget (TIGER's own: early stopping, at most 60)
PREPARE_FLAGS=${PREPARE_FLAGS:-}     # e.g. "--kcore 15 --max-history 10" to shrink the data
QUANTIZE_FLAGS=${QUANTIZE_FLAGS:-}   # e.g. "--codebook-size 64" for a small catalogue
FORCE=${FORCE:-}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}   # the text model is bundled: no hub access needed
mkdir -p "$WORK"

# 1. Dataset directory: items.jsonl + sequences.jsonl (chronological), leave-one-out split.
# shellcheck disable=SC2086  # PREPARE_FLAGS and FORCE are word lists on purpose
$UQF prepare "$SOURCE" -o "$WORK/dataset" $PREPARE_FLAGS $FORCE

# 2. Text embeddings of every item (bundled all-MiniLM-L6-v2; title, brand, categories, ...).
$UQF embed-text "$WORK/dataset" -o "$WORK/text.st" --device "$DEVICE" $FORCE

# 3. Collaborative embeddings: LightGCN on the train interactions only (early stopping on valid).
$UQF train-gcn "$WORK/dataset" -o "$WORK/collab.st" --epochs 100 --seed "$SEED" --device "$DEVICE" $FORCE

# 4. Unified Q-Former: fuse text + collab into one space; keep the fuser to tokenize new items later.
$UQF fuse --text "$WORK/text.st" --collab "$WORK/collab.st" --dataset "$WORK/dataset" \
    -o "$WORK/unified.st" --save-model "$WORK/fuser.st" --seed "$SEED" --device "$DEVICE" $FORCE

# 5. RQ-VAE semantic IDs (3 levels x 256 codes; colliding items get a 4th disambiguating code).
$UQF quantize "$WORK/unified.st" -o "$WORK/sids.jsonl" --save-model "$WORK/quantizer.st" \
    --seed "$SEED" --device "$DEVICE" $QUANTIZE_FLAGS $FORCE

# 6. TIGER: a small T5 that generates the next item's SID from the history's SIDs.
$UQF train-rec "$WORK/dataset" --sids "$WORK/sids.jsonl" --backbone tiger -o "$WORK/tiger" \
    --preset "$TIGER_PRESET" --epochs "$TIGER_EPOCHS" --eval-users 500 --seed "$SEED" --device "$DEVICE" $FORCE

# 7. Test metrics: full ranking (constrained beam search, beam 20), one held-out item per user.
$UQF evaluate "$WORK/tiger" "$WORK/dataset" --split test --sids "$WORK/sids.jsonl" \
    -o "$WORK/test_metrics.json" --predictions "$WORK/test_predictions.jsonl" --device "$DEVICE" $FORCE

# 8. What the SIDs look like: utilisation, collisions, semantic and collaborative consistency.
$UQF inspect-sids "$WORK/sids.jsonl" --dataset "$WORK/dataset" --text "$WORK/text.st" \
    --collab "$WORK/collab.st" --no-tree

# Baselines beside it (full ranking, same protocol): popularity and LightGCN.
$UQF train-rec "$WORK/dataset" --backbone pop -o "$WORK/pop" $FORCE
$UQF evaluate "$WORK/pop" "$WORK/dataset" --split test -o "$WORK/pop_test_metrics.json" $FORCE
$UQF train-rec "$WORK/dataset" --backbone lightgcn -o "$WORK/lightgcn" --seed "$SEED" --device "$DEVICE" $FORCE
$UQF evaluate "$WORK/lightgcn" "$WORK/dataset" --split test -o "$WORK/lightgcn_test_metrics.json" $FORCE

echo "done: every file is in $WORK/"
