# Sourced by the experiment scripts: one Hydra multirun group under $ROOT, run with $PY.
#   multirun GROUP ARGS...  python -m graphvision.train -m ARGS into $ROOT/GROUP (its output
#                           in $ROOT/GROUP.log), then python -m graphvision.report over it
#                           ($REPORT_ARGS); a group that finished ($ROOT/GROUP.done) is not
#                           run again, so an interrupted script resumes with the group it was in
multirun() {
  local group=$1
  shift
  if [ -e "$ROOT/$group.done" ]; then echo "$group: done before"; return; fi
  rm -rf "${ROOT:?}/$group"
  $PY -m graphvision.train -m "$@" hydra.sweep.dir="$ROOT/$group" >"$ROOT/$group.log" 2>&1
  # shellcheck disable=SC2086  # the report's arguments are words
  $PY -m graphvision.report "$ROOT/$group" ${REPORT_ARGS:-} >/dev/null
  touch "$ROOT/$group.done"
}
