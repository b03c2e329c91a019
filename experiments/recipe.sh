#!/usr/bin/env bash
# The training recipe on coco_tiny (train on its 80 training photos, validate on its 80
# validation photos), 3 seeds each, 20 epochs, 160x160, resnet18 from random weights:
#   - plain: a plain training of the same network on the scene labels alone
#     (experiments/plain_training.py: BCE, AdamW 2e-3, cosine, batch 16, no augmentation);
#   - before: model=cnn_baseline and the defaults with the recipe as it was (every loss
#     weight 1, data/augment=standard);
#   - diagnosis (model=cnn_baseline, seed 0): the scene loss alone, with and without
#     augmentation; the scene weight at 1, 10 and 80 (BCE summed over the 80 categories) with
#     standard augmentation, at 1, 80 and 400 without; at 80 with flips alone;
#   - after: model=cnn_baseline and the defaults with experiment=coco_relations as it is now.
# Then graphvision.report over each group (ROOT/<group>/report.md).
#
#   bash experiments/recipe.sh COCO_TINY [ROOT]
#
# ROOT defaults to logs/recipe. ONLY (default "plain before diagnosis after") picks groups;
# the diagnosis runs seed 0 alone. A group that finished (ROOT/<group>.done) is not run again.
set -euo pipefail
COCO_TINY=${1:?usage: bash experiments/recipe.sh COCO_TINY [ROOT]}
ROOT=${2:-logs/recipe}
PY=${PYTHON:-python3}
ONLY=${ONLY:-plain before diagnosis after}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
COMMON=(experiment=coco_relations "data.root=$COCO_TINY")
BEFORE=(model.task.loss_weights.scene=1 data/augment=standard)
REST_OFF=(model.task.loss_weights.objects=0 model.task.loss_weights.relations=0
          model.task.loss_weights.regions=0 model.task.loss_weights.grouping=0)
. "$HERE/multirun.sh"
run() {  # run GROUP SEEDS OVERRIDES...
  local group=$1 seeds=$2
  shift 2
  multirun "$group" "${COMMON[@]}" "seed=$seeds" "$@"
}
for group in $ONLY; do
  case "$group" in
    plain)
      if [ ! -e "$ROOT/plain.done" ]; then
        $PY "$HERE/plain_training.py" "$COCO_TINY" --seeds 0 1 2 --out "$ROOT/plain.json" \
            >"$ROOT/plain.log"
        touch "$ROOT/plain.done"
      fi ;;
    before) run before 0,1,2 model=cnn_baseline,default "${BEFORE[@]}" ;;
    diagnosis)
      run diagnosis_scene_alone 0 model=cnn_baseline model.task.loss_weights.scene=1 \
          'data/augment=none,standard' "${REST_OFF[@]}"
      run diagnosis_weight 0 model=cnn_baseline 'model.task.loss_weights.scene=1,10,80' \
          data/augment=standard
      run diagnosis_weight_no_augment 0 model=cnn_baseline \
          'model.task.loss_weights.scene=1,80,400' data/augment=none
      run diagnosis_flip 0 model=cnn_baseline model.task.loss_weights.scene=80 data/augment=flip ;;
    after) run after 0,1,2 model=cnn_baseline,default ;;
    *) echo "unknown group $group: plain before diagnosis after" >&2; exit 2 ;;
  esac
done
tail -1 "$ROOT/plain.log" 2>/dev/null || true
for report in "$ROOT"/*/report.md; do
  echo "== $(basename "$(dirname "$report")")"; sed -n '/^| configuration/,/^$/p' "$report"
done
