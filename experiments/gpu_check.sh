#!/usr/bin/env bash
# The project's GPU check: the default pipeline on one CUDA device in bf16 mixed precision
# (trainer=gpu): train, evaluate the checkpoint on the GPU (breakdowns included), predict on
# a validation image; wall times, metrics and the GPU's peak memory and utilisation.
#
#   bash experiments/gpu_check.sh [WORK_DIR] [extra train overrides ...]
#
# WORK_DIR (default logs/gpu_check) receives the runs and a summary (summary.txt). Needs the
# project importable by $PYTHON (default python3) and, for the numbers, a GPU; extra
# overrides go to the training run (trainer=cpu trainer.max_epochs=1 ... makes a CPU smoke
# test of this script).
set -euo pipefail
WORK=${1:-logs/gpu_check}
shift || true
PY=${PYTHON:-python3}
TRAINER=${TRAINER:-gpu}
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

if [ -n "${MONITOR:-}" ]; then
    kill "$MONITOR" 2>/dev/null || true
    sleep 1
    awk -F', ' '{ if ($1 > u) u = $1; if ($2 > m) m = $2; s += $1; n += 1 }
        END { if (n) printf "GPU while running: peak memory %d MiB, utilisation mean %.0f%%, peak %d%% (%d samples)\n", m, s / n, u, n }' \
        "$WORK/gpu_usage.csv" | tee -a "$SUMMARY"
fi
say "== done"
