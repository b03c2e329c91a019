#!/usr/bin/env bash
# DDP on the CPU beside one process: the default synthetic run, the same global batch (32 =
# 2 processes x 16), the same epochs, seeds 0 and 1; prints a Markdown table of fit time and
# final validation metrics (mean and spread of each setting over the seeds).
#
#   bash experiments/ddp_cpu.sh [WORK_DIR] [EPOCHS]
#
# WORK_DIR (default logs/ddp_cpu) receives the runs and table.md; EPOCHS defaults to 4.
set -euo pipefail
WORK=${1:-logs/ddp_cpu}
EPOCHS=${2:-4}
PY=${PYTHON:-python3}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
# pre-process first (fast_dev_run), so that no timed run includes building the cache
$PY -m graphvision.train debug=fdr hydra.run.dir="$WORK/warmup" >"$WORK/warmup.log" 2>&1
for seed in 0 1; do
    $PY -m graphvision.train seed=$seed trainer.max_epochs=$EPOCHS \
        hydra.run.dir="$WORK/one_process/seed_$seed" >"$WORK/one_process_$seed.log" 2>&1
    $PY -m graphvision.train seed=$seed trainer.max_epochs=$EPOCHS trainer=ddp \
        trainer.accelerator=cpu trainer.devices=2 data.batch_size=16 \
        hydra.run.dir="$WORK/ddp_2_cpu/seed_$seed" >"$WORK/ddp_2_cpu_$seed.log" 2>&1
done
$PY - "$WORK" <<'EOF' | tee "$WORK/table.md"
import json, statistics, sys
from pathlib import Path

work = Path(sys.argv[1])
names = ["val/scene_map", "val/object_acc", "val/rel_acc", "val/rel_R@50", "val/loss"]
print("| run | fit (s) | " + " | ".join(n.removeprefix("val/") for n in names) + " |")
print("| --- " * (len(names) + 2) + "|")
for setting, label in (("one_process", "1 process, batch 32"), ("ddp_2_cpu", "DDP, 2 CPU processes x 16")):
    runs = sorted((work / setting).glob("seed_*"))
    rows = [json.loads((r / "metrics.json").read_text()) for r in runs]
    fits = [json.loads((r / "summary.json").read_text())["fit_seconds"] for r in runs]

    def cell(values, digits=4):
        return f"{statistics.mean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f}"

    print(f"| {label} | {cell(fits, 0)} | " + " | ".join(cell([m[n] for m in rows]) for n in names) + " |")
EOF
