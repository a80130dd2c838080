#!/usr/bin/env bash
# bench_ab.sh BIN_A BIN_B [PAIRS] — interleaved A/B of two mpitrain binaries on the default
# job (700 steps, no eval): for each configuration, PAIRS pairs of runs, the order within
# a pair alternating; each run's figure is the median samples/s of its metrics windows
# after the first.  Prints one CSV line per run and a summary per configuration (medians
# and the median of the per-pair ratios B/A); the CPU is recorded.  A refactoring that
# must not change throughput is checked this way (the machines are noisy: quote ratios
# of interleaved pairs, never absolute figures of separate runs).
#   CONFIGS="1:2:4 2:1:4"   ranks:threads:micro_batches, default "1:2:4 2:1:4 4:1:4"
set -euo pipefail
cd "$(dirname "$0")/.."
A=$(readlink -f "$1"); B=$(readlink -f "$2"); PAIRS=${3:-5}
CONFIGS=${CONFIGS:-"1:2:4 2:1:4 4:1:4"}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
bash scripts/import-fmnist.sh >/dev/null
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
run() { # BIN NP THREADS M -> samples/s
    rm -rf "$TMP/run"
    mpirun -np "$2" --bind-to none "$1" train jobs/fmnist-mlp.ini --set train.steps=700 \
        --set train.threads="$3" --set train.micro_batches="$4" --set data.test= \
        --set train.log_every=100 --set run.progress=off --set run.dir="$TMP/run" >/dev/null 2>&1
    grep '"kind":"train"' "$TMP/run/metrics.jsonl" | tail -n +2 | sed 's/.*"samples_per_s":\([0-9.]*\).*/\1/' | median
}
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
echo "# A=$A"
echo "# B=$B"
echo "config,pair,a_samples_per_s,b_samples_per_s,ratio_b_over_a"
for c in $CONFIGS; do
    IFS=: read -r np th m <<<"$c"
    : >"$TMP/a"; : >"$TMP/b"; : >"$TMP/r"
    for p in $(seq 1 "$PAIRS"); do
        if [ $((p % 2)) -eq 1 ]; then a=$(run "$A" "$np" "$th" "$m"); b=$(run "$B" "$np" "$th" "$m")
        else b=$(run "$B" "$np" "$th" "$m"); a=$(run "$A" "$np" "$th" "$m"); fi
        r=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.4f", b/a}')
        echo "$a" >>"$TMP/a"; echo "$b" >>"$TMP/b"; echo "$r" >>"$TMP/r"
        echo "N=${np}xT=${th}xM=${m},$p,$a,$b,$r"
    done
    echo "# N=${np}xT=${th}xM=${m}: median A $(median <"$TMP/a"), median B $(median <"$TMP/b"), median ratio B/A $(median <"$TMP/r") ($PAIRS pairs)"
done
