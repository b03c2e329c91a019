#!/usr/bin/env bash
# The superpixel-graph benchmark (benchmarking-gnns' CIFAR10-superpixels protocol:
# experiment=cifar10_superpixels), no CNN, about 100k parameters per model, SEEDS seeds per
# row, validated on the 5,000 validation photos, at one budget (PER_CLASS training photos of
# each class, EPOCHS epochs; the defaults fit this project's 2-core CPU):
#   knn:        GatedGCN (4 layers, width 68) and GPS (3 layers, width 56) on the protocol's
#               graph (each region joined to its 8 nearest in position) with its node features
#               (mean colour and centroid);
#   adjacency:  the same two on graphvision's region-adjacency graph;
#   all:        the same two on the adjacency graph with all 13 of graphvision's descriptors;
#   sequence:   graphvision's transformer (2 layers, width 72) and DeepSeek-V3's architecture
#               (2 layers, width 72, 4 experts, smaller heads) over the same region tokens, no message passing.
# Each row is one multirun under ROOT/<group>_<model>, then graphvision.report over it.
#
#   bash experiments/cifar10_superpixels.sh CIFAR10 [ROOT]
#
# CIFAR10: the image-folder root (../shared/data/cifar10). PER_CLASS (default 500), EPOCHS
# (default 3), SEEDS (default 0,1,2,3), ONLY (default "knn adjacency all sequence") and
# MODELS (the graph rows' models, default "gated_gcn gps") come from the environment; the full budget (45,000 photos, 100 epochs: PER_CLASS=null
# EPOCHS=100) is for a GPU (experiments/gpu_check.sh). A row that finished
# (ROOT/<row>.done) is not run again.
set -euo pipefail
CIFAR10=${1:?usage: bash experiments/cifar10_superpixels.sh CIFAR10 [ROOT]}
ROOT=${2:-logs/cifar10_superpixels}
PY=${PYTHON:-python3}
PER_CLASS=${PER_CLASS:-500}
EPOCHS=${EPOCHS:-3}
SEEDS=${SEEDS:-0,1,2,3}
ONLY=${ONLY:-knn adjacency all sequence}
MODELS=${MODELS:-gated_gcn gps}
for group in $ONLY; do  # refuse a typo before hours of the rows before it
  case "$group" in knn|adjacency|all|sequence) ;;
    *) echo "unknown group $group: knn adjacency all sequence" >&2; exit 2 ;; esac
done
for model in $MODELS; do
  case "$model" in gated_gcn|gps) ;;
    *) echo "unknown model $model: gated_gcn gps" >&2; exit 2 ;; esac
done
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
COMMON=(experiment=cifar10_superpixels "data.root=$CIFAR10" "data.per_class.train=$PER_CLASS"
        "trainer.max_epochs=$EPOCHS" "seed=$SEEDS" ${EXTRA:-})
gated_gcn=(model/gnn=gated_gcn model.dim=68 model.gnn.num_layers=4)
gps=(model/gnn=gps model.dim=56 model.gnn.num_layers=3)
PROTOCOL="model.descriptors=[mean_r,mean_g,mean_b,cx,cy]"
. "$(dirname "$0")/multirun.sh"
REPORT_ARGS="--metric val/acc"
for group in $ONLY; do
  case "$group" in
    knn) graph=(data.regions.edges=knn "$PROTOCOL") ;;
    adjacency) graph=(data.regions.edges=adjacency "$PROTOCOL") ;;
    all) graph=(data.regions.edges=adjacency model.descriptors=all) ;;
    sequence)
      multirun sequence_transformer "${COMMON[@]}" "$PROTOCOL" model/gnn=none model.dim=72 \
        model/sequence=transformer
      multirun sequence_deepseek_v3 "${COMMON[@]}" "$PROTOCOL" model/gnn=none model.dim=72 \
        model/sequence=deepseek_v3 model.sequence.config.n_routed_experts=4 \
        model.sequence.config.moe_intermediate_size=48 model.sequence.config.intermediate_size=96 \
        model.sequence.config.q_lora_rank=32 model.sequence.config.kv_lora_rank=16 \
        model.sequence.config.v_head_dim=16 model.sequence.config.qk_nope_head_dim=8
      continue ;;
  esac
  for model in $MODELS; do
    declare -n stage=$model  # the model's overrides: gated_gcn=(...) or gps=(...)
    multirun "${group}_${model}" "${COMMON[@]}" "${graph[@]}" "${stage[@]}"
    unset -n stage
  done
done
