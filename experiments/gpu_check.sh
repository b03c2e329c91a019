#!/usr/bin/env bash
# The project's GPU check, one command: benchmarks of the training step on one CUDA device
# (bf16 autocast and float32, at the COCO working resolution 160x160: images/s of the full
# step and of the backbone alone, peak memory at the default batch size and at a large
# one) and of the loader beside it (images/s with 0, 4, 8, 16 workers, pinned memory, at
# the default batch size 32: 64 batches per epoch, so that 16 workers can all be busy);
# then the default pipeline with trainer=gpu: train, evaluate the checkpoint on the GPU
# (breakdowns included), predict on a validation image; with CIFAR10 and WEIGHTS set,
# experiment=cifar10 at the full budget (experiments/cifar10.sh: all 45,000 training photos,
# 30 epochs, 3 seeds, the CNN alone and the pipeline from random and pretrained weights)
# and, with CIFAR10 and SUPERPIXELS=1, the superpixel-graph benchmark at the published budget
# (experiments/cifar10_superpixels.sh: 45,000 photos, 100 epochs, 4 seeds: hours on one GPU;
# its DeepSeek row needs pip install -e ".[lm]"); wall times, metrics and the GPU's peak memory and utilisation.
#
#   bash experiments/gpu_check.sh [WORK_DIR] [extra train overrides ...]
#
# WORK_DIR (default logs/gpu_check) receives the runs, the benchmarks' JSON and a summary
# (summary.txt). Needs the project importable by $PYTHON (default python3) and, for the
# numbers, a GPU. Extra overrides go to the training run. A CPU smoke test of this script:
#   TRAINER=cpu DEVICE=cpu BENCH_BATCH=4 LOADER_WORKERS="0 2" LOADER_IMAGES=16 \
#       bash experiments/gpu_check.sh WORK trainer.max_epochs=1 data.num_train=16 data.num_val=8
set -euo pipefail
WORK=${1:-logs/gpu_check}
shift || true
PY=${PYTHON:-python3}
TRAINER=${TRAINER:-gpu}
DEVICE=${DEVICE:-cuda}
BENCH_BATCH=${BENCH_BATCH:-256}          # the large batch of the throughput benchmark
LOADER_WORKERS=${LOADER_WORKERS:-0 4 8 16}
LOADER_IMAGES=${LOADER_IMAGES:-2048}    # 64 batches of the default 32 per epoch
SIZE='data.regions.size=[160,160]'      # conf/data/coco.yaml's working resolution
export PYTHONUNBUFFERED=1
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
SUMMARY="$WORK/summary.txt"
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

say "== device"
$PY - <<'EOF' | tee -a "$SUMMARY"
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, cuda {torch.version.cuda}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
else:
    print("no CUDA device")
EOF

if command -v nvidia-smi >/dev/null && [ "$TRAINER" = gpu ]; then
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 \
        >"$WORK/gpu_usage.csv" 2>/dev/null &
    MONITOR=$!
    trap 'kill $MONITOR 2>/dev/null || true' EXIT
fi

bench() {  # bench NAME ARGS...: one benchmark, its summary into the summary file
    local name=$1
    shift
    say "== bench $name: python -m graphvision.bench $*"
    $PY -m graphvision.bench "$@" --out "$WORK/bench_$name.json" >"$WORK/bench_$name.log" 2>&1 \
        || { tail -20 "$WORK/bench_$name.log"; exit 1; }
    sed -n '/^$/,$p' "$WORK/bench_$name.log" | grep -v '^wrote ' | tee -a "$SUMMARY"
}
bench train_bf16_default_batch train --device "$DEVICE" --precision bf16-mixed --batch-size 32 \
    --regions --override "$SIZE"
bench train_bf16 train --device "$DEVICE" --precision bf16-mixed --batch-size "$BENCH_BATCH" \
    --regions --override "$SIZE"
bench train_fp32 train --device "$DEVICE" --precision 32 --batch-size "$BENCH_BATCH" \
    --regions --override "$SIZE"
# shellcheck disable=SC2086  # the worker counts are words
bench loader loader --device "$DEVICE" --precision bf16-mixed --pin-memory \
    --workers $LOADER_WORKERS --images "$LOADER_IMAGES" --batch-size 32 \
    --epochs 2 --override "$SIZE"

say "== train: python -m graphvision.train trainer=$TRAINER data.prepare_workers=8 $*"
t0=$(date +%s)
$PY -m graphvision.train trainer="$TRAINER" data.prepare_workers=8 "$@" \
    hydra.run.dir="$WORK/train" >"$WORK/train.log" 2>&1 || { tail -40 "$WORK/train.log"; exit 1; }
say "train wall time: $(($(date +%s) - t0)) s (data generation and pre-processing included)"
tail -16 "$WORK/train.log" | tee -a "$SUMMARY"
say "summary.json: $(tr -d '\n ' <"$WORK/train/summary.json")"

CKPT=$(ls "$WORK"/train/checkpoints/epoch_*.ckpt | head -1)  # the best: what metrics.json holds
say "== eval: python -m graphvision.eval ckpt_path=$CKPT trainer=$TRAINER"
t0=$(date +%s)
$PY -m graphvision.eval ckpt_path="$CKPT" trainer="$TRAINER" hydra.run.dir="$WORK/eval" \
    >"$WORK/eval.log" 2>&1 || { tail -40 "$WORK/eval.log"; exit 1; }
say "eval wall time: $(($(date +%s) - t0)) s; files: $(ls "$WORK/eval" | tr '\n' ' ')"
$PY - "$WORK" <<'EOF' | tee -a "$SUMMARY"
import json, sys
work = sys.argv[1]
train = json.load(open(f"{work}/train/metrics.json"))
ev = json.load(open(f"{work}/eval/metrics.json"))
worst = max(abs(train[k] - ev[k]) for k in ev if k in train and train[k] is not None)
print(f"eval vs train metrics: {len(ev)} values, largest difference {worst:.2e}")
EOF

IMAGE=$(ls data/synthetic/*/val/*.png 2>/dev/null | head -1 || true)
if [ -n "$IMAGE" ]; then
    say "== predict: $IMAGE"
    $PY -m graphvision.predict ckpt_path="$CKPT" image="$IMAGE" out_dir="$WORK/predict" \
        hydra.run.dir="$WORK/predict_run" >"$WORK/predict.log" 2>&1 || { tail -40 "$WORK/predict.log"; exit 1; }
    say "predict wrote: $(ls "$WORK/predict" | tr '\n' ' ')"
fi

# CIFAR-10 at the full budget (every training photo, 30 epochs) when CIFAR10 and WEIGHTS name
# the image folder and the MobileNetV2 state dict (../shared/data/cifar10 and
# ../shared/weights/...; copy them into the checkout for a machine without ../shared)
if [ -n "${CIFAR10:-}" ] && [ -n "${WEIGHTS:-}" ]; then
    say "== cifar10: PER_CLASS=null EPOCHS=${CIFAR_EPOCHS:-30} bash experiments/cifar10.sh"
    t0=$(date +%s)
    PER_CLASS=null EPOCHS=${CIFAR_EPOCHS:-30} ONLY=${CIFAR_GROUPS:-cnn pretrained} \
        EXTRA="trainer=$TRAINER data.prepare_workers=8" PYTHON=$PY \
        bash "$(dirname "$0")/cifar10.sh" "$CIFAR10" "$WEIGHTS" "$WORK/cifar10" \
        >"$WORK/cifar10.log" 2>&1 || { tail -40 "$WORK/cifar10.log"; exit 1; }
    say "cifar10 wall time: $(($(date +%s) - t0)) s"
    for report in "$WORK"/cifar10/*/report.md; do
        sed -n '/^| configuration/,/^$/p' "$report" | tee -a "$SUMMARY"
    done
fi

# the superpixel-graph benchmark at the published budget (every training photo, 100 epochs,
# 4 seeds) when CIFAR10 is set and SUPERPIXELS=1; SUPERPIXEL_GROUPS picks its rows (default:
# all of them), SUPERPIXEL_EPOCHS its epochs
if [ -n "${CIFAR10:-}" ] && [ "${SUPERPIXELS:-0}" = 1 ]; then
    say "== cifar10_superpixels: PER_CLASS=null EPOCHS=${SUPERPIXEL_EPOCHS:-100} bash experiments/cifar10_superpixels.sh"
    t0=$(date +%s)
    PER_CLASS=null EPOCHS=${SUPERPIXEL_EPOCHS:-100} ONLY=${SUPERPIXEL_GROUPS:-knn adjacency all sequence} \
        EXTRA="trainer=$TRAINER data.prepare_workers=8" PYTHON=$PY \
        bash "$(dirname "$0")/cifar10_superpixels.sh" "$CIFAR10" "$WORK/cifar10_superpixels" \
        >"$WORK/cifar10_superpixels.log" 2>&1 || { tail -40 "$WORK/cifar10_superpixels.log"; exit 1; }
    say "cifar10_superpixels wall time: $(($(date +%s) - t0)) s"
    for report in "$WORK"/cifar10_superpixels/*/report.md; do
        sed -n '/^| configuration/,/^$/p' "$report" | tee -a "$SUMMARY"
    done
fi

if [ -n "${MONITOR:-}" ]; then
    kill "$MONITOR" 2>/dev/null || true
    sleep 1
    awk -F', ' '{ if ($1 > u) u = $1; if ($2 > m) m = $2; s += $1; n += 1 }
        END { if (n) printf "GPU while running: peak memory %d MiB, utilisation mean %.0f%%, peak %d%% (%d samples)\n", m, s / n, u, n }' \
        "$WORK/gpu_usage.csv" | tee -a "$SUMMARY"
fi
say "== done"
