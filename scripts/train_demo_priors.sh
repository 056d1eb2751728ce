#!/usr/bin/env bash
# Recipe for the four demo priors in assets/priors/: builds the offline photo corpus, then trains one generator
# per depth of efficientnet_lite0, one after the other. Each run checkpoints to data/train/<name>/ and resumes
# when the script is started again. Logs: data/train_logs/<name>.log.
#
#   bash scripts/train_demo_priors.sh                  # CPU, 2 threads: 4 x 96,000 images, 59 min measured on a
#                                                      # free 2-core machine (see assets/priors/README.md)
#   DEVICE=cuda bash scripts/train_demo_priors.sh      # GPU
#   STEPS=300 BATCH=16 bash scripts/train_demo_priors.sh   # a 10-minute smoke run (much worse images)
#   ONLY=lite0-pooled bash scripts/train_demo_priors.sh     # one prior
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
TRAIN=${TRAIN:-"$PY -m dgnam_engine train-prior"}
STEPS=${STEPS:-3000}
BATCH=${BATCH:-32}
DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-2}
CORPUS=${CORPUS:-data/corpus}
OUT=${OUT:-assets/priors}
mkdir -p data/train_logs "$OUT"

if [ ! -f "$CORPUS/SOURCES.json" ]; then
  # the photo packages: bash scripts/install_corpus_sources.sh (see docs/corpus.md)
  "$PY" -m dgnam_engine.training.corpus "$CORPUS"
fi

# name layer depth bound-std title. bound-std: the code box is mean -/+ this many std per unit; 3 is the
# original's rule, the spatial priors measured better at 1.5 (assets/priors/README.md, "Code bounds").
PRIORS="lite0-b3 blocks.3 conv3 1.5 EfficientNet-Lite0 blocks.3 (80x14x14), plays conv3
lite0-b5 blocks.5 pool5 1.5 EfficientNet-Lite0 blocks.5 (192x7x7), plays pool5
lite0-pooled pooled fc6 3 EfficientNet-Lite0 pooled head (1280), plays fc6
lite0-logits classifier fc7 1.5 EfficientNet-Lite0 class logits (1000), plays fc7"

while read -r name layer depth bound title; do
  if [ -n "${ONLY:-}" ] && [ "$ONLY" != "$name" ]; then continue; fi
  echo "== $name ($layer) $(date +%H:%M:%S)"
  # shellcheck disable=SC2086
  $TRAIN --encoder efficientnet_lite0 --layer "$layer" --images "$CORPUS" --out "$OUT/$name.safetensors" \
    --name "$name" --title "$title" --depth "$depth" --size 64 --steps "$STEPS" --batch-size "$BATCH" \
    --width 32 --fc-width 512 --comparator-layer blocks.3 --w-image 10 --w-feature 1 --w-adv 0.02 \
    --crops-per-image 32 --bound-std "$bound" --heldout 0.1 --seed 0 --device "$DEVICE" --threads "$THREADS" \
    --ckpt-every 100 --log-every 50 2>&1 | tee -a "data/train_logs/$name.log"
done <<< "$PRIORS"
echo "== done $(date +%H:%M:%S)"
