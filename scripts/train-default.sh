#!/usr/bin/env bash
# The README's run command (`make train`): import Fashion-MNIST, train the default job
# with mpirun, evaluate the final weights, print the run directory.
#   NP=2 make train           two ranks (default 1 rank using every core)
#   JOB=jobs/x.ini make train another job;  SET="optim.lr=0.1 train.epochs=5" overrides
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${NP:-1}
JOB=${JOB:-jobs/fmnist-mlp.ini}
bash scripts/import-fmnist.sh
sets=()
for kv in ${SET:-}; do sets+=(--set "$kv"); done
t0=$(date +%s.%N)
bash scripts/mpirun.sh "$NP" build/mpitrain train "$JOB" "${sets[@]}" | tee /tmp/mpitrain-train.$$.out
t1=$(date +%s.%N)
run=$(sed -n 's/^run directory: //p' /tmp/mpitrain-train.$$.out | tail -n 1)
rm -f /tmp/mpitrain-train.$$.out
echo "evaluating the final weights of $run on the test split:"
build/mpitrain eval "$run"
awk -v a="$t0" -v b="$t1" 'BEGIN{printf "training wall time (mpirun, incl. start-up and evals): %.1f s\n", b-a}'
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
if [ "${RECORD:-0}" = 1 ]; then   # RECORD=1 make train: keep the figures in results/
    { echo "# make train ($JOB, NP=$NP) on $(date -u +%Y-%m-%d), $(nproc) cores; wall time ${wall} s"
      echo "epoch,step,test_loss,test_accuracy"
      grep '"kind":"eval"' "$run/metrics.jsonl" | sed 's/.*"step":\([0-9]*\),"epoch":\([0-9]*\).*"loss":\([0-9.e-]*\),"accuracy":\([0-9.e-]*\).*/\2,\1,\3,\4/'
    } > results/train-default.csv
    echo "recorded results/train-default.csv"
fi
echo "run directory: $run (config.ini, metrics.jsonl, checkpoints/)"
