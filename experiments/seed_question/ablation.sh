#!/usr/bin/env bash
# The seed question's ablation, 3 seeds per configuration, everything else at the defaults:
#   tokens:   superpixels (data.regions.backend=skimage) at n_segments 64 and the default;
#             SLIC returns fewer regions than it is asked for, so the group tokens_equal puts
#             square patches (backend=grid) at the near-square count closest to the
#             superpixels' realised count per validation image (regions_per_image in the
#             runs' summary.json): 7x7 and 9x9 on the synthetic scenes (49.2 and 80.7
#             superpixels), 7x7 and 10x11 on coco_tiny (46.1 and 111.1). On coco_tiny the
#             grid also runs at the requested counts (64, 150); on the synthetic scenes it
#             does not, to fit the ablation in about an hour on 2 cores;
#   context:  model/gnn=none against the default GCN;
#   sequence: model/sequence=none|deepseek_v3|pretrained_lm against the default transformer;
#   the backbone alone (model=cnn_baseline).
# Each group is one multirun under ROOT/<group>; a group that finished (ROOT/<group>.done) is
# not run again, so an interrupted ablation resumes with the group it was in. Then
# graphvision.report over ROOT (table, learning curves) and bench tokens (cost per token
# count, and accuracy per token count from the groups tokens and tokens_equal).
#
#   bash experiments/seed_question/ablation.sh synthetic ROOT [EPOCHS]
#       experiment=seed_relations (480 training, 120 validation scenes), EPOCHS (default 10)
#   bash experiments/seed_question/ablation.sh coco ROOT COCO_TINY
#       experiment=coco_relations on coco_tiny (80 training, 80 validation photos), 20 epochs
set -euo pipefail
DATASET=${1:?usage: ablation.sh synthetic|coco ROOT [EPOCHS | COCO_TINY]}
ROOT=${2:?usage: ablation.sh synthetic|coco ROOT [EPOCHS | COCO_TINY]}
PY=${PYTHON:-python3}
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
case "$DATASET" in
  synthetic)
    COMMON=(experiment=seed_relations "trainer.max_epochs=${3:-10}" seed=0,1,2)
    BACKENDS=skimage COUNTS=64,100 EQUAL=49,81 ;;
  coco)
    COCO_TINY=${3:?the coco ablation needs the coco_tiny root}
    # the recipe of the coco_tiny table, before experiments/recipe.sh changed the experiment
    # (every loss weight 1, standard augmentation): pinned, so its numbers regenerate
    COMMON=(experiment=coco_relations "data.root=$COCO_TINY" seed=0,1,2
            model.task.loss_weights.scene=1 data/augment=standard)
    BACKENDS=skimage,grid COUNTS=64,150 EQUAL=49,110 ;;
  *) echo "unknown dataset $DATASET: synthetic or coco" >&2; exit 2 ;;
esac
. "$(dirname "$0")/../multirun.sh"
run() {  # run GROUP OVERRIDES...
  local group=$1
  shift
  multirun "$group" "${COMMON[@]}" "$@"
}
run tokens "data.regions.backend=$BACKENDS" "data.regions.n_segments=$COUNTS"
run tokens_equal data.regions.backend=grid "data.regions.n_segments=$EQUAL"
run context model/gnn=none
run sequence model/sequence=none,deepseek_v3,pretrained_lm
run cnn_baseline model=cnn_baseline
$PY -m graphvision.report "$ROOT"
$PY -m graphvision.bench tokens --ablation "$ROOT" --out "$ROOT/tokens.json"
