#!/usr/bin/env bash
# bench_ps.sh — parameter servers against allreduce at the same number of workers (2),
# interleaved repetitions, the CPU recorded: results/ps.csv.
#   default MLP (669 706 parameters) and a 20 M-parameter MLP (784-4096-4096-10):
#   allreduce N=2; PS sync with 1 and 2 servers (3 and 4 ranks: the servers share the
#   2 cores with the workers here); bytes pushed per worker and step against the formula
#   4 * nparams; the busiest server's bytes against 4 * W * max range; the servers' balance.
#   one worker made 2x slower (run.slow): allreduce, PS sync, PS delayed s=2.
#   one worker (W = 1: 1 rank against 1 worker + 1 server, so the server has a core of its
#   own here): what sync PS costs when it does not share the workers' cores.
#   then scripts/bench_ps_straggler.sh: the straggler experiment for every consistency,
#   time to 88 % test accuracy included (results/ps-straggler.csv and .png).
# REPS=N (default 3); CASES=w1: only the W = 1 rows, into OUT (default results/ps-w1.csv),
# and no straggler experiment.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/mpitrain
REPS=${REPS:-3}
R=results
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
bash scripts/import-fmnist.sh >/dev/null
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores"
# run NP STEPS LAYERS [--set ...] -> "samples_per_s push_bytes server_bytes_max balance"
run() { local np=$1 steps=$2 layers=$3; shift 3
    rm -rf "$TMP/run"
    mpirun -np "$np" --bind-to none $BIN train jobs/fmnist-mlp.ini --set train.steps="$steps" \
        --set model.layers="$layers" --set train.threads=1 --set data.test= --set train.log_every=$((steps / 5)) \
        --set run.progress=off --set run.dir="$TMP/run" "$@" >"$TMP/log" 2>&1 || {
        # a run that fails (e.g. diverges: exit 70) is recorded as nan, with its reason
        grep -m1 -o "step [0-9]*: .*diverged" "$TMP/log" >&2 || tail -n 3 "$TMP/log" >&2
        echo "nan 0 0 1 0"; return 0; }
    local sps push srv bal
    sps=$(grep '"kind":"train"' "$TMP/run/metrics.jsonl" | tail -n +2 | sed 's/.*"samples_per_s":\([0-9.e+]*\).*/\1/' | median)
    push=$(grep '"kind":"train"' "$TMP/run/metrics.jsonl" | tail -n 1 | sed -n 's/.*"ps_push_bytes":\([0-9.e+]*\).*/\1/p')
    srv=$(grep '"kind":"train"' "$TMP/run/metrics.jsonl" | tail -n 1 | sed -n 's/.*"ps_server_bytes_max":\([0-9.e+]*\).*/\1/p')
    bal=$(sed -n 's/.*parameters per server max\/mean \([0-9.]*\).*/\1/p' "$TMP/log" | head -n 1)
    nparams=$(sed -n 's/.*(\([0-9]*\) params).*/\1/p' "$TMP/log" | head -n 1)
    echo "$sps ${push:-0} ${srv:-0} ${bal:-1} $nparams"
}
MLP="dense:512 relu dense:512 relu dense:10"
BIG="dense:4096 relu dense:4096 relu dense:10"
W1=("mlp 700 $MLP|ar1|1|" "mlp 700 $MLP|ps1-w1|2|--set parallel.mode=ps --set parallel.zero=0 --set parallel.servers=1"
    "big 40 $BIG|ar1|1|" "big 40 $BIG|ps1-w1|2|--set parallel.mode=ps --set parallel.zero=0 --set parallel.servers=1")
OUT=$R/ps.csv
if [ "${CASES:-all}" = w1 ]; then OUT=${OUT_W1:-$R/ps-w1.csv}; fi
echo "# scripts/bench_ps.sh${CASES:+ CASES=$CASES}, $(date -u +%Y-%m-%d), $cpu; load average at start $(cut -d" " -f1-3 /proc/loadavg); $REPS interleaved repetitions, median samples/s" > "$OUT"
echo "model,nparams,mode,servers,workers,ranks,straggler,samples_per_s,reps,push_bytes_per_worker_step,formula_4_nparams_padded,server_bytes_max_step,server_balance_max_over_mean,vs_allreduce" >> "$OUT"
declare -A S
cases=("mlp 700 $MLP|ar|2|" "mlp 700 $MLP|ps1|3|--set parallel.mode=ps --set parallel.zero=0 --set parallel.servers=1"
       "mlp 700 $MLP|ps2|4|--set parallel.mode=ps --set parallel.zero=0 --set parallel.servers=2"
       "big 40 $BIG|ar|2|" "big 40 $BIG|ps1|3|--set parallel.mode=ps --set parallel.zero=0 --set parallel.servers=1"
       "big 40 $BIG|ps2|4|--set parallel.mode=ps --set parallel.zero=0 --set parallel.servers=2"
       "mlp 700 $MLP|ar-slow|2|--set run.slow=1:4"
       "mlp 700 $MLP|ps1-slow|3|--set parallel.mode=ps --set parallel.zero=0 --set parallel.servers=1 --set run.slow=1:4"
       "mlp 700 $MLP|ps1-delayed-slow|3|--set parallel.mode=ps --set parallel.zero=0 --set parallel.servers=1 --set parallel.consistency=delayed --set parallel.staleness=2 --set run.slow=1:4"
       "${W1[@]}")
if [ "${CASES:-all}" = w1 ]; then cases=("${W1[@]}"); fi
for rep in $(seq 1 "$REPS"); do
    for c in "${cases[@]}"; do
        IFS='|' read -r head name np sets <<<"$c"
        read -r model steps layers <<<"$head"
        # shellcheck disable=SC2086
        out=$(run "$np" "$steps" "$layers" $sets)
        echo "$out" >>"$TMP/$model-$name"
        echo "rep $rep $model $name: $out" >&2
    done
done
for c in "${cases[@]}"; do
    IFS='|' read -r head name np sets <<<"$c"
    read -r model steps layers <<<"$head"
    sps=$(awk '{print $1}' "$TMP/$model-$name" | median)
    read -r _ push srv bal nparams < <(tail -n 1 "$TMP/$model-$name")
    mode=allreduce; servers=0
    case $name in ps1*) mode=ps-sync; servers=1;; ps2*) mode=ps-sync; servers=2;; esac
    case $name in *delayed*) mode=ps-delayed-s2;; esac
    workers=$((np - servers))
    slow=none; case $name in *slow) slow="rank1+4ms/step";; esac
    ref=ar; case $name in *slow) ref=ar-slow;; *w1|ar1) ref=ar1;; esac
    base=$(awk '{print $1}' "$TMP/$model-$ref" | median)
    # the slab is padded to 16 floats per array: 4 * nparams is the formula within 0.01 %
    echo "$model,$nparams,$mode,$servers,$workers,$np,$slow,$sps,$REPS,$push,$((4 * nparams)),$srv,$bal,$(awk -v a="$sps" -v b="$base" 'BEGIN{printf "%.3f", a/b}')" >> "$OUT"
done
cat "$OUT"
if [ "${CASES:-all}" != w1 ]; then bash scripts/bench_ps_straggler.sh; fi
