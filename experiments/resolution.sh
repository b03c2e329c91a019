#!/usr/bin/env bash
# Working resolution and region count on real photos: coco_tiny (train on its 80 training
# photos, validate on its 80 validation photos), experiment=coco_relations (20 epochs, random
# weights, data/augment=standard), seeds 0-2, over
#   data.regions.size 128, 160, 224, 320 (square) x data.regions.n_segments 150, 300;
# then the backbone alone (model=cnn_baseline, same augmentation and epochs) at the defaults
# conf/data/coco.yaml chose from the sweep. graphvision.report over each (ROOT/*/report.md,
# ROOT/*/report.png): accuracy, seconds per training epoch (median over seeds), regions per
# image. Pre-processing time per image at each setting from bench prepare, run alone after
# the training (ROOT/prepare_<size>_<n_segments>.json): 1 and 2 workers, 160 photos.
#
#   bash experiments/resolution.sh COCO_TINY [ROOT]
#
# ROOT defaults to logs/resolution.
set -euo pipefail
COCO_TINY=${1:?usage: bash experiments/resolution.sh COCO_TINY [ROOT]}
ROOT=${2:-logs/resolution}
PY=${PYTHON:-python3}
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
# the recipe these numbers were measured with, before experiments/recipe.sh changed the
# experiment (every loss weight 1, standard augmentation): pinned, so they regenerate
COMMON=(experiment=coco_relations "data.root=$COCO_TINY" seed=0,1,2
        model.task.loss_weights.scene=1 data/augment=standard)
$PY -m graphvision.train -m "${COMMON[@]}" \
    'data.regions.size=[128,128],[160,160],[224,224],[320,320]' data.regions.n_segments=150,300 \
    hydra.sweep.dir="$ROOT/sweep" >"$ROOT/sweep.log" 2>&1
$PY -m graphvision.report "$ROOT/sweep"
for size in 128 160 224 320; do
  for n in 150 300; do
    $PY -m graphvision.bench prepare --root "$COCO_TINY" --size $size $size --n-segments $n \
        --out "$ROOT/prepare_${size}_${n}.json" 2>>"$ROOT/prepare.log"
  done
done
$PY -m graphvision.train -m "${COMMON[@]}" model=cnn_baseline \
    hydra.sweep.dir="$ROOT/cnn_baseline" >"$ROOT/cnn_baseline.log" 2>&1
$PY -m graphvision.report "$ROOT/cnn_baseline"
cat "$ROOT/sweep/report.md" "$ROOT/cnn_baseline/report.md"
