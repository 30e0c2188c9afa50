#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): on a machine with a CUDA GPU, in at most --budget-s
# seconds (default 480, wheel installation included), first a smoke section (the CUDA-only tests,
# a 3-epoch digits LAASP run on CUDA), then ResNet-56 training img/s against the DataLoader + PIL
# loop, a 4-trial Ray sweep sharing the GPU, and a LAASP selection step against the authors' loop.
# Writes OUT/summary.md and OUT/summary.json (OUT: --out, default results/gpu).
#
#   benchmarks/gpu_check.sh [--out DIR] [--data-root DIR_OR_ZIP] [--budget-s 480] [--work DIR]
#
# Without a CUDA GPU it says so and exits 0. Where ray, optuna or torch-pruning are missing it
# installs them from the wheels in .whl/ (made by benchmarks/gpu_wheels.sh, carried with the tree).
# PYTHON picks the interpreter (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
START=$(date +%s)
BUDGET=480
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --budget-s) BUDGET="$2"; shift 2 ;;
    --out|--data-root|--work) ARGS+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is false, or torch is missing): nothing to check"
  exit 0
fi

SITE=""
if ! "$PY" -c "import ray, optuna, torch_pruning" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "error: ray, optuna or torch-pruning is missing and .whl/ holds no wheels; run benchmarks/gpu_wheels.sh" \
         "where pip can download, and carry .whl with the tree" >&2
    exit 2
  fi
  SITE="$(mktemp -d /tmp/gpu_check_site.XXXXXX)"
  echo "gpu_check: installing $(ls .whl/*.whl | wc -l) carried wheels into $SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl || exit 2
fi
export PYTHONPATH="${SITE:+$SITE:}$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
LEFT=$(( BUDGET - ($(date +%s) - START) ))
exec "$PY" benchmarks/gpu_check.py --budget-s "$LEFT" ${ARGS[@]+"${ARGS[@]}"}
