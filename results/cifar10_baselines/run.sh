#!/usr/bin/env bash
# Every pruner once on the cifar10_cpu_small setting (search_spaces/cifar10_cpu_small.yaml):
# ResNet-20, fixed 5,000 / 2,000 CIFAR-10 images, 10 epochs (lr 0.1, x0.1 at epochs 3, 6, 8:
# the recipe's fractions), pruning at epoch 3 (SFP, FPGM: masks from epoch 0), 50% fewer FLOPs, seed 0,
# one thread, one run at a time.
# Runs go to runs/cifar10_baselines/<name>/ (not committed); each record is copied to
# results/cifar10_baselines/records/<name>.json. A finished run (its record in either place) is not run again.
#
#   bash results/cifar10_baselines/run.sh          # from the repository root
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-python}
DATA=${DATA:-../shared/data/cifar10-jpeg.zip}
COMMON=(--model resnet20 --dataset cifar10 --data-root "$DATA" --train-subset 5000 --test-subset 2000 --epochs 10
        --seed 0 --quiet)
PRUNE=(--prune-epoch 3 --target-flops 0.5)
mkdir -p results/cifar10_baselines/records
run() {
  local name=$1; shift
  local out=runs/cifar10_baselines/$name
  [ -f "results/cifar10_baselines/records/$name.json" ] && return 0
  if [ ! -f "$out/record.json" ]; then
    "$PY" run_bench.py "$@" "${COMMON[@]}" --out "$out"
  fi
  cp "$out/record.json" "results/cifar10_baselines/records/$name.json"
}
# SFP and FPGM mask from before the first epoch (their papers'; prune_epoch defaults to 0 for them)
run sfp        run --pruner sfp --target-flops 0.5
run fpgm       run --pruner fpgm --target-flops 0.5
run pfec       run --pruner pfec "${PRUNE[@]}"
run hrank      run --pruner hrank "${PRUNE[@]}"
run taylor     run --pruner taylor "${PRUNE[@]}" --frequency 5   # 32 iterations x 5 of the 40 minibatches an epoch
run slimming   run --pruner slimming "${PRUNE[@]}"
run depgraph   run --pruner depgraph "${PRUNE[@]}"
run lamp       run --pruner lamp "${PRUNE[@]}"
run tp-taylor  run --pruner tp:GroupTaylorImportance "${PRUNE[@]}"
run gm_uniform run --pruner gm_uniform "${PRUNE[@]}"
run l1_uniform run --pruner l1_uniform "${PRUNE[@]}"
run l1_global  run --pruner l1_global "${PRUNE[@]}"
run random     run --pruner random "${PRUNE[@]}"
run unpruned   train
run laasp      run --pruner laasp "${PRUNE[@]}" --step-scale 5 --subset-size 256 --recover-flop 0.2 --recover-epoch 1
