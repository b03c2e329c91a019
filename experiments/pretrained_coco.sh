#!/usr/bin/env bash
# COCO with the ImageNet MobileNetV2 (a local state-dict file), on coco_tiny: train on its 80
# training photos, validate on its 80 validation photos, experiment=coco_relations (20
# epochs, 160x160):
#   frozen:  the pipeline (model=default, regions at stride 8) and the backbone alone
#            (model=cnn_baseline, features.18 globally pooled) from the same weights, frozen
#            (model.backbone.trainable=false), seeds 0-2;
#   the two fine-tuning regimes, seed 0: frozen-BN (model.backbone.freeze_bn=true) at the
#            model's learning rate (frozen_bn_lr1) and at lr_scale 0.05 (frozen_bn), and full
#            fine-tuning at lr_scale 0.05 (full);
#   strides: the pipeline's regions pooled at stride 16 (features.13), at 8 + 16, and at 32
#            (features.18, the map the backbone alone pools), frozen, seeds 0-2;
#   grouping: the frozen pipeline runs evaluated in sgdet with the learned grouping and with
#            the class-grouping baseline (segm AP / AP50, object recall).
# Then graphvision.report over each group (ROOT/<group>/report.md).
#
#   bash experiments/pretrained_coco.sh COCO_TINY WEIGHTS [ROOT]
#
# WEIGHTS: ../shared/weights/mobilenet_v2_imagenet1k_qnnpack_float.pth. ROOT defaults to
# logs/pretrained_coco. A group that finished (ROOT/<group>.done) is not run again.
set -euo pipefail
COCO_TINY=${1:?usage: bash experiments/pretrained_coco.sh COCO_TINY WEIGHTS [ROOT]}
WEIGHTS=${2:?usage: bash experiments/pretrained_coco.sh COCO_TINY WEIGHTS [ROOT]}
ROOT=${3:-logs/pretrained_coco}
PY=${PYTHON:-python3}
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
COMMON=(experiment=coco_relations "data.root=$COCO_TINY" model/backbone=mobilenet_v2
        "model.backbone.weights=$WEIGHTS")
. "$(dirname "$0")/multirun.sh"
run() {  # run GROUP SEEDS OVERRIDES...
  local group=$1 seeds=$2
  shift 2
  multirun "$group" "${COMMON[@]}" "seed=$seeds" "$@"
}
run frozen 0,1,2 model=cnn_baseline,default model.backbone.trainable=false
# fine-tuning at the model's learning rate (2e-3) wrecks the weights; at 0.05 of it (1e-4):
run frozen_bn_lr1 0 model=cnn_baseline,default model.backbone.freeze_bn=true
run frozen_bn 0 model=cnn_baseline,default model.backbone.freeze_bn=true \
    model.backbone.lr_scale=0.05
run full 0 model=cnn_baseline,default model.backbone.lr_scale=0.05
run strides 0,1,2 model.backbone.trainable=false \
    'model.backbone.return_nodes=[features.13],[features.6,features.13],[features.18]'
if [ ! -e "$ROOT/grouping.done" ]; then
  : >"$ROOT/grouping.log"
  for job in "$ROOT"/frozen/*/; do
    grep -q 'model=default' "$job/.hydra/overrides.yaml" || continue
    for grouping in learned class; do
      $PY -m graphvision.eval ckpt_path="$job/checkpoints/last.ckpt" mode=sgdet \
          grouping=$grouping hydra.run.dir="$ROOT/grouping/$(basename "$job")_$grouping" >>"$ROOT/grouping.log" 2>&1
    done
  done
  touch "$ROOT/grouping.done"
fi
for group in frozen frozen_bn_lr1 frozen_bn full strides; do
  echo "== $group"; sed -n '/^| configuration/,/^$/p' "$ROOT/$group/report.md"
done
