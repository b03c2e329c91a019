#!/usr/bin/env bash
# Real photos: coco_tiny (train on its 80 training photos, validate on its 80 validation
# photos), experiment=coco_relations (20 epochs, 160x160, random weights), seeds 0-2, for
#   - the backbone's layer2 alone (stride 8) against layer2+layer3+layer4 pooled per region,
#     without augmentation;
#   - the backbone alone (model=cnn_baseline: last map globally pooled, no graph), without;
#   - the default model (layer2) with data/augment=standard, and with its flips alone (no
#     crop, rotation or colour change).
# Then graphvision.report over all of them (ROOT/report.md, ROOT/report.png).
#
#   bash experiments/real_photos.sh COCO_TINY [ROOT]
#
# ROOT defaults to logs/real_photos; extra runs go there too, and the report covers them.
set -euo pipefail
COCO_TINY=${1:?usage: bash experiments/real_photos.sh COCO_TINY [ROOT]}
ROOT=${2:-logs/real_photos}
PY=${PYTHON:-python3}
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
# the recipe these numbers were measured with, before experiments/recipe.sh changed the
# experiment (every loss weight 1; each run names its augmentation): pinned, so they regenerate
COMMON=(experiment=coco_relations "data.root=$COCO_TINY" seed=0,1,2
        model.task.loss_weights.scene=1)
$PY -m graphvision.train -m "${COMMON[@]}" data/augment=none \
    'model.backbone.return_nodes=[layer2],[layer2,layer3,layer4]' \
    hydra.sweep.dir="$ROOT/depths" >"$ROOT/depths.log" 2>&1
$PY -m graphvision.train -m "${COMMON[@]}" data/augment=none model=cnn_baseline \
    hydra.sweep.dir="$ROOT/cnn_baseline" >"$ROOT/cnn_baseline.log" 2>&1
$PY -m graphvision.train -m "${COMMON[@]}" data/augment=standard \
    hydra.sweep.dir="$ROOT/augment" >"$ROOT/augment.log" 2>&1
$PY -m graphvision.train -m "${COMMON[@]}" data/augment=standard data.augment.min_scale=1.0 \
    data.augment.rotate=0.0 data.augment.colour=0.0 \
    hydra.sweep.dir="$ROOT/flip" >"$ROOT/flip.log" 2>&1
$PY -m graphvision.report "$ROOT"
cat "$ROOT/report.md"
