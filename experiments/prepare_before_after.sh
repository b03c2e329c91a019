#!/usr/bin/env bash
# Pre-processing cost before and after a change, on the same machine in the same run: the
# cache of a COCO-layout root built by a worktree of BEFORE (a commit) and by this checkout,
# taking turns ROUNDS times (so a change in the machine's load falls on both), with one
# worker (in the process) and with two; then the medians of images/s and of CPU ms per
# image (CPU time of the process and its workers: steadier than wall time on a shared
# machine) and their ratios.
#
#   bash experiments/prepare_before_after.sh BEFORE [ROUNDS] [WORK_DIR]
#
# Needs $GRAPHVISION_COCO_TINY (coco_tiny, or any COCO-layout root); ROUNDS defaults to 5,
# WORK_DIR to logs/prepare_before_after (its worktree and the results, one JSON line each).
set -euo pipefail
BEFORE=${1:?usage: bash experiments/prepare_before_after.sh BEFORE [ROUNDS] [WORK_DIR]}
ROUNDS=${2:-5}
WORK=${3:-logs/prepare_before_after}
PY=${PYTHON:-python3}
: "${GRAPHVISION_COCO_TINY:?set GRAPHVISION_COCO_TINY to a COCO-layout root}"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
HERE=$(git rev-parse --show-toplevel)
LOG="$WORK/builds.log"
: >"$LOG"
rm -rf "$WORK/before" "$WORK/results.jsonl"
git worktree prune
git worktree add -f --detach "$WORK/before" "$BEFORE" >/dev/null
trap 'git -C "$HERE" worktree remove --force "$WORK/before" || true' EXIT
build() {  # build TREE LABEL WORKERS: one cache from empty, one JSON line
    # run from TREE: `python -` puts the current folder first on sys.path
    (cd "$1" && PYTHONPATH="$1" $PY - "$2" "$3" >>"$WORK/results.jsonl" 2>>"$LOG") <<'PY'
import json, os, resource, sys, tempfile, time

from omegaconf import OmegaConf

from graphvision.data import CocoDataModule
from graphvision.utils import CONFIG_DIR

label, workers = sys.argv[1], int(sys.argv[2])
regions = OmegaConf.to_container(OmegaConf.load(f"{CONFIG_DIR}/data/coco.yaml").regions)


def cpu():
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


with tempfile.TemporaryDirectory() as tmp:
    dm = CocoDataModule(root=os.environ["GRAPHVISION_COCO_TINY"], cache_dir=tmp, regions=regions,
                        prepare_workers=workers, in_memory=False)
    n = sum(len(dm.split_jobs(s)) for s in dm.splits)
    c0, t0 = cpu(), time.perf_counter()
    dm.prepare_data()
    wall, used = time.perf_counter() - t0, cpu() - c0
import graphvision

assert graphvision.__file__.startswith(os.getcwd()), (graphvision.__file__, os.getcwd())
print(json.dumps({"tree": label, "workers": workers, "images": n, "images_per_s": n / wall,
                  "cpu_ms_per_image": 1000 * used / n}))
PY
}
for round in $(seq "$ROUNDS"); do
    for workers in 1 2; do
        build "$WORK/before" before "$workers" || { tail -20 "$LOG"; exit 1; }
        build "$HERE" after "$workers" || { tail -20 "$LOG"; exit 1; }
    done
    echo "round $round of $ROUNDS done"
done
# the checkout as measured: its commit, marked -dirty when it has uncommitted changes
$PY - "$WORK/results.jsonl" "$BEFORE" "$(git -C "$HERE" describe --always --dirty)" <<'PY'
import json, statistics, sys

rows = [json.loads(line) for line in open(sys.argv[1])]
before, after = sys.argv[2], sys.argv[3]
print(f"| workers | measure | {before} | {after} | after / before |")
print("| --- | --- | --- | --- | --- |")
for workers in (1, 2):
    for key, label in (("images_per_s", "images/s"), ("cpu_ms_per_image", "CPU ms per image")):
        got = {t: [r[key] for r in rows if r["tree"] == t and r["workers"] == workers] for t in ("before", "after")}
        b, a = statistics.median(got["before"]), statistics.median(got["after"])
        cell = lambda v, m: f"{m:.1f} ({min(v):.1f}-{max(v):.1f})"
        print(f"| {workers} | {label} | {cell(got['before'], b)} | {cell(got['after'], a)} | {a / b:.2f}x |")
PY
