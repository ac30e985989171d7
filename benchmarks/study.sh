#!/usr/bin/env bash
# The efficacy study (SAC vs FuRL on sbx's JAX SAC, offline VLM furl-mw-vlm on the fast image path, 300k steps,
# button-press-topdown and drawer-open, seeds 0-2): a `furl sweep` that outlives sessions.
#
#   bash benchmarks/study.sh start     start, or resume, the sweep in the background (two runs side by side, one
#                                      torch/XLA thread each, checkpoints every 10k steps); safe to repeat
#   bash benchmarks/study.sh status    where each run stands
#   bash benchmarks/study.sh collect   copy every finished run's small files (config, summary, evaluations,
#                                      progress; never checkpoints or models) to benchmarks/results/study/
#   bash benchmarks/study.sh report    furl report over the committed runs -> benchmarks/results/study/report/
#
# The sweep runs outside the work tree ($STUDY_DIR, default /work/study) from a checkout of the commit it started
# with ($STUDY_DIR/src, recorded in $STUDY_DIR/commit and, by collect, in benchmarks/results/study/commit), so editing
# the work tree never changes a running study; a machine that lost $STUDY_DIR starts the grid over from that commit
# (the sweep reruns every cell; the committed files of finished runs stay until collect replaces them with the
# identical rerun). Needs the jax extra in the repository's .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STUDY_DIR="${STUDY_DIR:-/work/study}"
PY="$ROOT/.venv/bin/python"
RESULTS="$ROOT/benchmarks/results/study"
# FuRL first: the sweep runs cells methods-outermost, and with the compute of a few sessions the FuRL runs are the ones
# the study cannot do without (the order changes no run's settings)
SWEEP=(sweep --out "$STUDY_DIR/runs" --methods furl_sbx sac_sbx --tasks button-press-topdown drawer-open
       --seeds 0 1 2 --vlm furl-mw-vlm --image-preset fast --steps 300000 --eval-freq 10000
       --checkpoint-freq 10000 --workers 2 --cpus-per-run 1 --quiet --no-plots)

start() {
  mkdir -p "$STUDY_DIR"
  if [ ! -d "$STUDY_DIR/src" ]; then
    # the study's commit: this machine's record, else the one committed with the results, else (a new study) HEAD
    commit="$(cat "$STUDY_DIR/commit" 2>/dev/null || cat "$RESULTS/commit" 2>/dev/null || git -C "$ROOT" rev-parse HEAD)"
    git -C "$ROOT" worktree add -f --detach "$STUDY_DIR/src" "$commit" >/dev/null
    echo "$commit" > "$STUDY_DIR/commit"
  fi
  if pgrep -f "furl_wrappers sweep --out $STUDY_DIR/runs" >/dev/null; then
    echo "[study] already running"; return
  fi
  echo "[study] sweep at commit $(cat "$STUDY_DIR/commit"), log $STUDY_DIR/sweep.log"
  (cd "$STUDY_DIR" && PYTHONPATH="$STUDY_DIR/src" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MUJOCO_GL=egl \
     XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
     XLA_PYTHON_CLIENT_PREALLOCATE=false setsid nohup "$PY" -m furl_wrappers "${SWEEP[@]}" >> sweep.log 2>&1 &)
}

status() {
  for run in "$STUDY_DIR"/runs/*/*/seed*; do
    [ -d "$run" ] || continue
    step="$(tail -n 1 "$run/evaluations.csv" 2>/dev/null | cut -d, -f1 || true)"  # a run just started has none yet
    done_="$([ -f "$run/summary.json" ] && echo finished || echo "at eval step ${step:-0}")"
    echo "${run#"$STUDY_DIR"/runs/}: $done_"
  done
}

collect() {
  for run in "$STUDY_DIR"/runs/*/*/seed*; do
    [ -f "$run/summary.json" ] || continue  # finished runs only
    dest="$RESULTS/${run#"$STUDY_DIR"/runs/}"
    mkdir -p "$dest"
    cp "$run"/config.json "$run"/summary.json "$run"/evaluations.csv "$run"/progress.csv "$dest"/
    echo "[study] collected ${run#"$STUDY_DIR"/runs/}"
  done
  cp "$STUDY_DIR/commit" "$RESULTS/commit" 2>/dev/null || true
}

report() {
  mapfile -t runs < <(find "$RESULTS" -name summary.json -printf '%h\n' | sort)
  "$PY" -m furl_wrappers report "${runs[@]}" --out "$RESULTS/report"
}

case "${1:-}" in
  start) start ;; status) status ;; collect) collect ;; report) report ;;
  *) echo "usage: bash benchmarks/study.sh {start|status|collect|report}" >&2; exit 2 ;;
esac
