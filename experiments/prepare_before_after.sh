#!/usr/bin/env bash
# Pre-processing speed before and after a change, on the same machine in the same run:
# `python -m graphvision.bench prepare` from a worktree of BEFORE (a commit) and from this
# checkout, taking turns ROUNDS times (so a change in the machine's load falls on both),
# then the median images/s of each with 1 and 2 workers and their ratio.
#
#   bash experiments/prepare_before_after.sh BEFORE [ROUNDS] [WORK_DIR]
#
# Needs $GRAPHVISION_COCO_TINY (or any COCO-layout root there); ROUNDS defaults to 3,
# WORK_DIR to logs/prepare_before_after (its worktree and JSON results).
set -euo pipefail
BEFORE=${1:?usage: bash experiments/prepare_before_after.sh BEFORE [ROUNDS] [WORK_DIR]}
ROUNDS=${2:-3}
WORK=${3:-logs/prepare_before_after}
PY=${PYTHON:-python3}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
HERE=$(pwd)
rm -rf "$WORK/before"
git worktree prune
git worktree add -f --detach "$WORK/before" "$BEFORE" >/dev/null
trap 'git -C "$HERE" worktree remove --force "$WORK/before" || true' EXIT
for round in $(seq "$ROUNDS"); do
    (cd "$WORK/before" && PYTHONPATH="$WORK/before" $PY -m graphvision.bench prepare \
        --out "$WORK/before_$round.json" >/dev/null 2>&1)
    PYTHONPATH="$HERE" $PY -m graphvision.bench prepare --workers 1 2 --stage-images 0 \
        --out "$WORK/after_$round.json" >/dev/null 2>&1
    echo "round $round of $ROUNDS done"
done
$PY - "$WORK" "$BEFORE" "$(git rev-parse --short HEAD)" <<'PY'
import json, statistics, sys
from pathlib import Path

work, before, after = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
runs = {k: [json.loads(p.read_text()) for p in sorted(work.glob(f"{k}_*.json"))] for k in ("before", "after")}
print(f"| workers | {before} img/s | {after} img/s | ratio |")
print("| --- | --- | --- | --- |")
for workers in (1, 2):
    rates = {k: [r[f"build_{workers}_workers"]["images_per_s"] for r in rs] for k, rs in runs.items()}
    b, a = statistics.median(rates["before"]), statistics.median(rates["after"])
    spread = lambda v: f"{min(v):.1f}-{max(v):.1f}"
    print(f"| {workers} | {b:.1f} ({spread(rates['before'])}) | {a:.1f} ({spread(rates['after'])}) | {a / b:.2f}x |")
PY
